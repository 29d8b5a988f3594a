//! pvmouse frames in, desktop-pointer frames out. Pure: no syscalls, so it is tested and
//! benchmarked without a device.

use std::time::{Duration, Instant};

use pvmouse_spec::InputEvent;
use pvmouse_spec::evdev::{ABS_X, ABS_Y, EV_ABS, EV_KEY, EV_REL, EV_SYN, SYN_REPORT};
use pvmouse_spec::profile::{Button, DISPLAY_AXIS, KEY_CODES, POSITION_CODES, REL_CODES};

use crate::layout::Layout;

pub use pvmouse_spec::session::PointerMode;

/// One of each event the desktop pointer advertises, the position twice (a renewal): a pvmouse
/// frame without its display axis (SYN_REPORT is not stored).
pub const MAX_OUTPUT_EVENTS: usize = 2 * POSITION_CODES.len() + KEY_CODES.len() + REL_CODES.len();

/// One output frame, SYN_REPORT not included (uinput's emit adds it). Each event names the
/// display whose pointer it is for; with one desktop pointer that is always 0.
#[derive(Debug, Clone, Copy)]
pub struct OutputFrame {
    events: [InputEvent; MAX_OUTPUT_EVENTS],
    targets: [u8; MAX_OUTPUT_EVENTS],
    len: usize,
}

impl OutputFrame {
    const fn new() -> Self {
        Self {
            events: [InputEvent::new(0, 0, 0); MAX_OUTPUT_EVENTS],
            targets: [0; MAX_OUTPUT_EVENTS],
            len: 0,
        }
    }

    fn push_to(&mut self, target: u8, ev: InputEvent) {
        if let (Some(slot), Some(t)) = (
            self.events.get_mut(self.len),
            self.targets.get_mut(self.len),
        ) {
            *slot = ev;
            *t = target;
            self.len += 1;
        }
    }

    pub fn as_slice(&self) -> &[InputEvent] {
        &self.events[..self.len]
    }

    /// The events with the display whose pointer each is for.
    pub fn targeted(&self) -> impl Iterator<Item = (u8, InputEvent)> + '_ {
        self.targets[..self.len]
            .iter()
            .copied()
            .zip(self.events[..self.len].iter().copied())
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Debug)]
pub struct Mapper {
    layout: Layout,
    mode: PointerMode,
    display: u8,
    x: i32,
    y: i32,
    moved: bool,
    /// Axes (X, Y) seen in the frame being read: one seen twice is the device's renewal after
    /// relative mode, and the output pointer's position is renewed the same way.
    seen: [bool; 2],
    renew: bool,
    /// Buttons the desktop pointer holds down, as `Button::bit`s.
    held: u8,
    /// In per-display mode, the display whose pointer pressed the held buttons: they are
    /// released there, so a drag that crosses displays ends on the device it began on.
    button_owner: u8,
    frame: OutputFrame,
    dropped_unknown_display: u64,
    last_warning: Option<Instant>,
}

impl Mapper {
    pub fn new(layout: Layout) -> Self {
        Self::with_mode(layout, PointerMode::Desktop)
    }

    pub fn with_mode(layout: Layout, mode: PointerMode) -> Self {
        Self {
            layout,
            mode,
            display: 0,
            x: 0,
            y: 0,
            moved: false,
            seen: [false; 2],
            renew: false,
            held: 0,
            button_owner: 0,
            frame: OutputFrame::new(),
            dropped_unknown_display: 0,
            last_warning: None,
        }
    }

    /// A layout change applies from the next frame; the pointer is re-placed at once.
    pub fn set_layout(&mut self, layout: Layout) -> OutputFrame {
        self.layout = layout;
        let mut out = OutputFrame::new();
        self.place(&mut out, false);
        out
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn mode(&self) -> PointerMode {
        self.mode
    }

    /// The display whose pointer an event belongs to: 0 (the only pointer) in desktop mode.
    fn target(&self, display: u8) -> u8 {
        match self.mode {
            PointerMode::Desktop => 0,
            PointerMode::PerDisplay => display,
        }
    }

    /// Changes the mode and layout together: held buttons are released on the pointers that
    /// pressed them (the caller emits that frame before it changes its pointers), and the
    /// caller then places the pointer with [`Mapper::place_now`].
    pub fn set_mode(&mut self, layout: Layout, mode: PointerMode) -> OutputFrame {
        let released = self.release_all();
        self.layout = layout;
        self.mode = mode;
        released
    }

    /// A frame that puts the pointer where the device is, as it is.
    pub fn place_now(&mut self) -> OutputFrame {
        let mut out = OutputFrame::new();
        self.place(&mut out, false);
        out
    }

    /// Takes over a pvmouse device's current state (EVIOCGABS, EVIOCGKEY), as after a daemon
    /// restart: the pointer goes where the device is, and held buttons are pressed again, so
    /// a drag in progress carries on.
    pub fn sync(&mut self, display: u8, x: i32, y: i32, keys_down: &[u16]) -> OutputFrame {
        (self.display, self.x, self.y) = (display, x, y);
        let mut out = OutputFrame::new();
        self.place(&mut out, false);
        for b in Button::ALL {
            let down = keys_down.contains(&b.code());
            if down != (self.held & b.bit() != 0) {
                if let Some((target, e)) = self.button(b.code(), down) {
                    out.push_to(target, e);
                }
            }
        }
        out
    }

    /// A button change, and the pointer it goes to: the one that owns the held buttons.
    fn button(&mut self, code: u16, down: bool) -> Option<(u8, InputEvent)> {
        let b = Button::from_code(code)?;
        if down && self.held == 0 {
            self.button_owner = self.display;
        }
        if down {
            self.held |= b.bit();
        } else {
            self.held &= !b.bit();
        }
        let target = self.target(self.button_owner);
        Some((target, InputEvent::new(EV_KEY, code, i32::from(down))))
    }

    /// Releases every held button: on exit and when the pvmouse device goes away.
    pub fn release_all(&mut self) -> OutputFrame {
        let mut out = OutputFrame::new();
        for b in Button::ALL {
            if self.held & b.bit() != 0 {
                if let Some((target, e)) = self.button(b.code(), false) {
                    out.push_to(target, e);
                }
            }
        }
        out
    }

    /// Puts the pointer where the device says; `renew`ed (as the device renews) if asked.
    fn place(&mut self, out: &mut OutputFrame, renew: bool) {
        let mapped = match self.mode {
            PointerMode::Desktop => self.layout.map(self.display, self.x, self.y),
            PointerMode::PerDisplay => self.layout.map_on_display(self.display, self.x, self.y),
        };
        match mapped {
            Some((u, v)) => {
                let target = self.target(self.display);
                for (code, value) in [(ABS_X, u), (ABS_Y, v)] {
                    if renew {
                        // One unit off first, within the range either way: the input core
                        // drops a value equal to the axis's, which relative motion made stale.
                        let off = if value > 0 { value - 1 } else { value + 1 };
                        out.push_to(target, InputEvent::new(EV_ABS, code, off));
                    }
                    out.push_to(target, InputEvent::new(EV_ABS, code, value));
                }
            }
            None => self.warn_unknown_display(),
        }
    }

    fn warn_unknown_display(&mut self) {
        self.dropped_unknown_display += 1;
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(10))
        {
            tracing::warn!(
                display = self.display,
                dropped = self.dropped_unknown_display,
                "pointer is on a display that is not in the layout; motion dropped"
            );
            self.last_warning = Some(now);
        }
    }

    /// Feeds one pvmouse event. At SYN_REPORT, returns the output frame, if it has anything.
    pub fn feed(&mut self, ev: InputEvent) -> Option<OutputFrame> {
        match (ev.kind, ev.code) {
            (EV_ABS, DISPLAY_AXIS) => {
                self.display = u8::try_from(ev.value).unwrap_or(u8::MAX);
                self.moved = true;
            }
            (EV_ABS, ABS_X) => {
                self.x = ev.value;
                self.moved = true;
                self.renew |= std::mem::replace(&mut self.seen[0], true);
            }
            (EV_ABS, ABS_Y) => {
                self.y = ev.value;
                self.moved = true;
                self.renew |= std::mem::replace(&mut self.seen[1], true);
            }
            (EV_KEY, code) => {
                if let Some((target, e)) = self.button(code, ev.value != 0) {
                    self.frame.push_to(target, e);
                }
            }
            // Only the wheels the pointer advertises: a relative axis it lacks would reach
            // readers as an event their device cannot have (found by fuzzing).
            (EV_REL, code) if REL_CODES.contains(&code) => {
                let target = self.target(self.display);
                self.frame.push_to(target, ev);
            }
            (EV_SYN, SYN_REPORT) => {
                let mut out = OutputFrame::new();
                let renew = std::mem::take(&mut self.renew);
                self.seen = [false; 2];
                if std::mem::take(&mut self.moved) {
                    self.place(&mut out, renew);
                }
                for (target, e) in std::mem::replace(&mut self.frame, OutputFrame::new()).targeted()
                {
                    out.push_to(target, e);
                }
                return (!out.is_empty()).then_some(out);
            }
            // The bridge's own heartbeats come back as EV_MSC; nothing else is expected.
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::ParseLayout;
    use pvmouse_spec::evdev::{BTN_LEFT, BTN_RIGHT, EV_MSC, MSC_RAW, REL_WHEEL, REL_WHEEL_HI_RES};
    use pvmouse_spec::profile::AXIS_MAX;

    fn mapper() -> Mapper {
        Mapper::new(Layout::parse_spec("0=1024x768@0,0,1=1280x1024@1024,0").unwrap())
    }

    fn ev(kind: u16, code: u16, value: i32) -> InputEvent {
        InputEvent::new(kind, code, value)
    }

    fn run(m: &mut Mapper, evs: &[InputEvent]) -> Vec<Vec<InputEvent>> {
        evs.iter()
            .filter_map(|e| m.feed(*e))
            .map(|f| f.as_slice().to_vec())
            .collect()
    }

    #[test]
    fn each_pvmouse_frame_is_one_output_frame() {
        let mut m = mapper();
        let syn = InputEvent::syn_report();
        let out = run(
            &mut m,
            &[
                ev(EV_ABS, DISPLAY_AXIS, 1),
                ev(EV_ABS, ABS_X, AXIS_MAX),
                ev(EV_ABS, ABS_Y, AXIS_MAX),
                ev(EV_KEY, BTN_LEFT, 1),
                syn,
                ev(EV_REL, REL_WHEEL, 1),
                ev(EV_REL, REL_WHEEL_HI_RES, 120),
                syn,
                ev(EV_MSC, MSC_RAW, 0x5056_0101),
                syn,
            ],
        );
        assert_eq!(out.len(), 2, "a heartbeat echo makes no frame");
        // Display 1's last pixel, (2303, 1023): the centre of the desktop's last column and row.
        let (u, v) = m.layout.to_output(2303, 1023);
        assert_eq!((u, v), (65521, 65503));
        assert_eq!(
            out[0],
            [
                ev(EV_ABS, ABS_X, u),
                ev(EV_ABS, ABS_Y, v),
                ev(EV_KEY, BTN_LEFT, 1)
            ]
        );
        assert_eq!(
            out[1],
            [ev(EV_REL, REL_WHEEL, 1), ev(EV_REL, REL_WHEEL_HI_RES, 120)]
        );
    }

    /// The device renews the position after relative mode (each axis one unit off, then the
    /// value, in one frame); the pointer the bridge drives must be renewed too, or its input
    /// core drops a value it already holds and the pointer stays where relative motion left it.
    #[test]
    fn a_renewed_position_is_renewed_on_the_output_pointer() {
        let mut m = mapper();
        let syn = InputEvent::syn_report();
        let place = [ev(EV_ABS, ABS_X, 100), ev(EV_ABS, ABS_Y, 200), syn];
        let first = run(&mut m, &place);
        let renewed = run(
            &mut m,
            &[
                ev(EV_ABS, ABS_X, 101),
                ev(EV_ABS, ABS_X, 100),
                ev(EV_ABS, ABS_Y, 201),
                ev(EV_ABS, ABS_Y, 200),
                syn,
            ],
        );
        let [x, y] = [first[0][0].value, first[0][1].value];
        let off = |v: i32| if v > 0 { v - 1 } else { v + 1 };
        assert_eq!(
            renewed[0],
            [
                ev(EV_ABS, ABS_X, off(x)),
                ev(EV_ABS, ABS_X, x),
                ev(EV_ABS, ABS_Y, off(y)),
                ev(EV_ABS, ABS_Y, y)
            ]
        );
        // The next frame is plain again.
        let plain = run(&mut m, &[ev(EV_ABS, ABS_X, 0), syn]);
        assert_eq!(plain[0].len(), 2, "{plain:?}");
    }

    #[test]
    fn a_display_change_alone_moves_the_pointer() {
        let mut m = mapper();
        run(&mut m, &[ev(EV_ABS, ABS_X, 0), InputEvent::syn_report()]);
        let out = run(
            &mut m,
            &[ev(EV_ABS, DISPLAY_AXIS, 1), InputEvent::syn_report()],
        );
        // Display 1's first pixel, (1024, 0), aimed at its centre.
        let (u, v) = m.layout.to_output(1024, 0);
        assert_eq!(u, crate::layout::nearest(1024.5 / 2304.0 * 65535.0));
        assert_eq!(out[0], [ev(EV_ABS, ABS_X, u), ev(EV_ABS, ABS_Y, v)]);
    }

    #[test]
    fn motion_on_an_unknown_display_is_dropped_but_buttons_pass() {
        let mut m = mapper();
        let out = run(
            &mut m,
            &[
                ev(EV_ABS, DISPLAY_AXIS, 5),
                ev(EV_KEY, BTN_RIGHT, 1),
                InputEvent::syn_report(),
            ],
        );
        assert_eq!(out, [vec![ev(EV_KEY, BTN_RIGHT, 1)]]);
        assert_eq!(m.dropped_unknown_display, 1);
    }

    #[test]
    fn sync_presses_what_the_device_holds_and_release_all_lets_go() {
        let mut m = mapper();
        let f = m.sync(1, 0, 0, &[BTN_LEFT]);
        assert_eq!(f.as_slice().len(), 3);
        assert_eq!(f.as_slice()[2], ev(EV_KEY, BTN_LEFT, 1));
        assert_eq!(
            m.sync(1, 0, 0, &[BTN_LEFT]).as_slice().len(),
            2,
            "no second press"
        );
        assert_eq!(m.release_all().as_slice(), [ev(EV_KEY, BTN_LEFT, 0)]);
        assert!(m.release_all().is_empty());
    }

    #[test]
    fn a_new_layout_applies_without_a_new_frame_from_the_device() {
        let mut m = mapper();
        run(
            &mut m,
            &[ev(EV_ABS, DISPLAY_AXIS, 1), InputEvent::syn_report()],
        );
        let f = m.set_layout(Layout::parse_spec("1=1000x1000@0,0,0=1000x1000@1000,0").unwrap());
        // Display 1 is now the left one: its first pixel, (0, 0).
        let (u, v) = m.layout.to_output(0, 0);
        assert_eq!((u, v), (16, 33));
        assert_eq!(f.as_slice(), [ev(EV_ABS, ABS_X, u), ev(EV_ABS, ABS_Y, v)]);
    }

    fn targeted(f: &OutputFrame) -> Vec<(u8, InputEvent)> {
        f.targeted().collect()
    }

    #[test]
    fn per_display_motion_goes_to_its_display_and_a_drag_ends_where_it_began() {
        let layout = Layout::parse_spec("0=1024x768@0,0,1=1280x1024@1024,0").unwrap();
        let mut m = Mapper::with_mode(layout, PointerMode::PerDisplay);
        let syn = InputEvent::syn_report();
        let press = m.feed(ev(EV_KEY, BTN_LEFT, 1));
        assert!(press.is_none());
        let f = m.feed(syn).unwrap();
        assert_eq!(targeted(&f), [(0, ev(EV_KEY, BTN_LEFT, 1))]);
        m.feed(ev(EV_ABS, DISPLAY_AXIS, 1));
        m.feed(ev(EV_ABS, ABS_X, 0));
        m.feed(ev(EV_KEY, BTN_LEFT, 0));
        let f = m.feed(syn).unwrap();
        // Display 1's own range: its first pixel's centre, 0.5/1280 of 65535.
        assert_eq!(
            targeted(&f),
            [
                (1, ev(EV_ABS, ABS_X, 26)),
                (1, ev(EV_ABS, ABS_Y, 32)),
                (0, ev(EV_KEY, BTN_LEFT, 0)),
            ],
            "the release goes to the pointer that pressed"
        );
    }

    #[test]
    fn a_mode_change_releases_held_buttons_on_the_old_pointers() {
        let mut m = mapper();
        run(
            &mut m,
            &[ev(EV_KEY, BTN_RIGHT, 1), InputEvent::syn_report()],
        );
        let layout = m.layout().clone();
        let released = m.set_mode(layout, PointerMode::PerDisplay);
        assert_eq!(targeted(&released), [(0, ev(EV_KEY, BTN_RIGHT, 0))]);
        assert_eq!(m.mode(), PointerMode::PerDisplay);
        assert!(m.release_all().is_empty(), "nothing is left held");
    }
}
