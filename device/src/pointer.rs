//! The pointer's state and how actions on it become frames.

use pvmouse_spec::profile::{Button, HI_RES_PER_DETENT, PointerMode};

use crate::coordinates::Coordinates;
use crate::frame::{Frame, WheelStep};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WheelAxis {
    Vertical,
    Horizontal,
}

/// One validated step of a control command. Values are already in device units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointerAction {
    /// Sets any of display, X and Y; the ones left `None` keep their value.
    Move {
        display: Option<u8>,
        x: Option<u16>,
        y: Option<u16>,
    },
    Button {
        button: Button,
        down: bool,
    },
    /// Scrolls by `hi_res` units, 120 per detent; positive is up or right, as in Linux.
    Wheel {
        axis: WheelAxis,
        hi_res: i32,
    },
    /// Moves by this much, in device units (the guest's pointer acceleration applies), on the
    /// relative device. Switches to relative mode first if the pointer is absolute, unless
    /// `keep_mode`: then, while the pointer is absolute, it is dropped.
    Motion {
        dx: i32,
        dy: i32,
        keep_mode: bool,
    },
    /// Switches what pointer input means. Back to absolute, the position last set (in either
    /// mode) is sent again, renewed.
    Mode(PointerMode),
}

/// The frames a command produces: all of them, and those that carry a button or wheel change
/// and so can never be coalesced away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameCount {
    pub total: usize,
    pub held: usize,
}

/// What the device believes the guest's pointer looks like once every queued frame arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PointerState {
    pub display: u8,
    /// `None` until a client sets it: a freshly started backend must not move the guest's
    /// pointer to a corner it never asked for.
    pub x: Option<u16>,
    pub y: Option<u16>,
    /// Bit per [`Button::bit`], set while pressed.
    pub buttons: u8,
    /// Hi-res units not yet reported as a whole detent, per axis (vertical, horizontal).
    /// (Crate-visible for the format-1 ledger's reader, as `wire` is.)
    pub(crate) wheel_remainder: [i32; 2],
    /// What the guest's `ABS_X` and `ABS_Y` hold once every queued frame arrives. The position
    /// above is per display; these are in the [`Coordinates`] in force.
    pub(crate) wire: (Option<u16>, Option<u16>),
    /// Whether positions reach the guest. Kept in the snapshot beside the pointer, not in it, so
    /// that the pointer's encoding stays that of ledger format 3.
    #[serde(skip)]
    pub mode: PointerMode,
    /// Axes (X, Y) whose next value must be renewed: the switch back to absolute had no value
    /// for them yet, and the guest's axis may hold the one that comes (0 at first).
    #[serde(skip)]
    pub(crate) renew_pending: [bool; 2],
}

impl PointerState {
    pub fn is_down(&self, button: Button) -> bool {
        self.buttons & button.bit() != 0
    }

    /// Applies `actions` in order and hands every completed frame to `emit`, in order.
    ///
    /// A command becomes one frame unless keeping the client's order needs more: a button that
    /// changes twice, motion after a button or wheel change, or a wheel that reverses each start
    /// a new frame. Actions that change nothing produce nothing.
    /// Positions reach the guest in `coordinates`.
    pub fn apply(
        &mut self,
        actions: &[PointerAction],
        coordinates: &Coordinates,
        mut emit: impl FnMut(Frame),
    ) {
        let mut frame = Frame::default();
        for action in actions {
            match *action {
                PointerAction::Move { display, x, y } => {
                    let display = display.filter(|d| *d != self.display);
                    let x = x.filter(|v| Some(*v) != self.x);
                    let y = y.filter(|v| Some(*v) != self.y);
                    if display.is_none() && x.is_none() && y.is_none() {
                        continue;
                    }
                    self.display = display.unwrap_or(self.display);
                    self.x = x.or(self.x);
                    self.y = y.or(self.y);
                    if self.mode == PointerMode::Relative {
                        // Remembered for the switch back; no position reaches the guest now.
                        continue;
                    }
                    let (wx, wy) = self.rewire(coordinates);
                    if display.is_none() && wx.is_none() && wy.is_none() {
                        continue;
                    }
                    if !frame.is_motion_only() {
                        emit(std::mem::take(&mut frame));
                    }
                    let [renew_x, renew_y] = self.renew_pending;
                    frame.renew |= (renew_x && wx.is_some()) || (renew_y && wy.is_some());
                    self.renew_pending = [renew_x && wx.is_none(), renew_y && wy.is_none()];
                    frame.display = display.or(frame.display);
                    frame.x = wx.or(frame.x);
                    frame.y = wy.or(frame.y);
                }
                PointerAction::Button { button, down } => {
                    if self.is_down(button) == down {
                        continue;
                    }
                    if frame.is_relative() {
                        emit(std::mem::take(&mut frame));
                    }
                    let bit = button.bit();
                    if frame.buttons_set & bit != 0 {
                        emit(std::mem::take(&mut frame));
                    }
                    frame.buttons_set |= bit;
                    if down {
                        frame.buttons_down |= bit;
                        self.buttons |= bit;
                    } else {
                        frame.buttons_down &= !bit;
                        self.buttons &= !bit;
                    }
                }
                PointerAction::Wheel { axis, hi_res } => {
                    if hi_res == 0 {
                        continue;
                    }
                    let pending = match axis {
                        WheelAxis::Vertical => frame.wheel_vertical,
                        WheelAxis::Horizontal => frame.wheel_horizontal,
                    };
                    if pending.hi_res.signum() == -hi_res.signum() || frame.is_relative() {
                        emit(std::mem::take(&mut frame));
                    }
                    let step = self.wheel_step(axis, hi_res);
                    let slot = match axis {
                        WheelAxis::Vertical => &mut frame.wheel_vertical,
                        WheelAxis::Horizontal => &mut frame.wheel_horizontal,
                    };
                    slot.hi_res = slot.hi_res.saturating_add(step.hi_res);
                    slot.detents = slot.detents.saturating_add(step.detents);
                }
                PointerAction::Motion { dx, dy, keep_mode } => {
                    if (dx == 0 && dy == 0) || (keep_mode && self.mode == PointerMode::Absolute) {
                        continue;
                    }
                    if self.mode == PointerMode::Absolute {
                        self.mode = PointerMode::Relative;
                    }
                    if !frame.is_empty() && !frame.is_relative() {
                        emit(std::mem::take(&mut frame));
                    }
                    frame.dx = frame.dx.saturating_add(dx);
                    frame.dy = frame.dy.saturating_add(dy);
                }
                PointerAction::Mode(mode) => {
                    if mode == self.mode {
                        continue;
                    }
                    if !frame.is_empty() {
                        emit(std::mem::take(&mut frame));
                    }
                    self.mode = mode;
                    if mode == PointerMode::Absolute {
                        frame = self.renewal(coordinates);
                    }
                }
            }
        }
        if !frame.is_empty() {
            emit(frame);
        }
    }

    /// How many frames `apply` would produce, without changing anything.
    pub fn count_frames(&self, actions: &[PointerAction], coordinates: &Coordinates) -> FrameCount {
        let mut scratch = *self;
        let mut count = FrameCount::default();
        scratch.apply(actions, coordinates, |frame| {
            count.total += 1;
            // Relative motion and a renewal may not fold into what is queued before them (the
            // other device's motion), so they may take a slot of their own.
            if !frame.is_motion_only() || frame.is_relative() || frame.renew {
                count.held += 1;
            }
        });
        count
    }

    /// Everything a guest needs to match this state, whatever it saw before: the display, the
    /// position where known, and every button, released ones included, so none stays stuck.
    /// In relative mode, no position: it reaches the guest at the switch back.
    pub fn full_state_frame(&mut self, coordinates: &Coordinates) -> Frame {
        let all = Button::ALL.iter().fold(0, |m, b| m | b.bit());
        let (x, y) = match self.mode {
            PointerMode::Absolute => {
                self.rewire(coordinates);
                self.wire
            }
            PointerMode::Relative => (None, None),
        };
        Frame {
            display: Some(self.display),
            x,
            y,
            buttons_set: all,
            buttons_down: self.buttons,
            ..Frame::default()
        }
    }

    /// The frame that moves the guest's pointer to where it is, after the coordinates change:
    /// empty if the values happen to be the same.
    /// Nothing in relative mode: the switch back renews the position in the coordinates then.
    pub fn recoordinate(&mut self, coordinates: &Coordinates) -> Frame {
        if self.mode == PointerMode::Relative {
            return Frame::default();
        }
        let (x, y) = self.rewire(coordinates);
        Frame {
            x,
            y,
            ..Frame::default()
        }
    }

    /// The first frame after a switch back to absolute: the display and the whole position,
    /// renewed, so that the guest's pointer lands there whatever relative motion did to it.
    /// An axis with no value yet is renewed when its first value comes.
    fn renewal(&mut self, coordinates: &Coordinates) -> Frame {
        self.rewire(coordinates);
        self.renew_pending = [self.wire.0.is_none(), self.wire.1.is_none()];
        Frame {
            display: Some(self.display),
            x: self.wire.0,
            y: self.wire.1,
            renew: self.wire.0.is_some() || self.wire.1.is_some(),
            ..Frame::default()
        }
    }

    /// Brings the guest's `ABS_X`/`ABS_Y` to the current position in `coordinates`; returns
    /// those that change.
    fn rewire(&mut self, coordinates: &Coordinates) -> (Option<u16>, Option<u16>) {
        let Some((x, y)) = coordinates.wire(self.display, self.x, self.y) else {
            return (None, None);
        };
        let x = x.filter(|v| Some(*v) != self.wire.0);
        let y = y.filter(|v| Some(*v) != self.wire.1);
        self.wire = (x.or(self.wire.0), y.or(self.wire.1));
        (x, y)
    }

    /// Accumulates hi-res units the way Linux's hid-input does: a whole detent is reported each
    /// time 120 units add up, and reversing direction discards the partial detent.
    fn wheel_step(&mut self, axis: WheelAxis, hi_res: i32) -> WheelStep {
        let rem = &mut self.wheel_remainder[axis as usize];
        if rem.signum() == -hi_res.signum() {
            *rem = 0;
        }
        *rem = rem.saturating_add(hi_res);
        let detents = *rem / HI_RES_PER_DETENT;
        *rem -= detents * HI_RES_PER_DETENT;
        WheelStep { detents, hi_res }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PER_DISPLAY: Coordinates = Coordinates::PerDisplay;

    fn run(state: &mut PointerState, actions: &[PointerAction]) -> Vec<Frame> {
        let predicted = state.count_frames(actions, &PER_DISPLAY).total;
        let mut out = Vec::new();
        state.apply(actions, &PER_DISPLAY, |f| out.push(f));
        assert_eq!(out.len(), predicted);
        out
    }

    fn mv(display: Option<u8>, x: Option<u16>, y: Option<u16>) -> PointerAction {
        PointerAction::Move { display, x, y }
    }

    fn btn(button: Button, down: bool) -> PointerAction {
        PointerAction::Button { button, down }
    }

    fn wheel(axis: WheelAxis, hi_res: i32) -> PointerAction {
        PointerAction::Wheel { axis, hi_res }
    }

    #[test]
    fn a_move_sets_only_what_changed() {
        let mut s = PointerState::default();
        let f = run(&mut s, &[mv(Some(0), Some(5), Some(6))]);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].display, f[0].x, f[0].y), (None, Some(5), Some(6)));
        let f = run(&mut s, &[mv(Some(1), Some(5), Some(7))]);
        assert_eq!((f[0].display, f[0].x, f[0].y), (Some(1), None, Some(7)));
        assert!(run(&mut s, &[mv(Some(1), Some(5), Some(7))]).is_empty());
    }

    #[test]
    fn motion_then_click_is_one_frame_but_click_then_motion_is_two() {
        let mut s = PointerState::default();
        let f = run(
            &mut s,
            &[mv(None, Some(1), Some(1)), btn(Button::Left, true)],
        );
        assert_eq!(f.len(), 1);
        let f = run(&mut s, &[btn(Button::Left, false), mv(None, Some(2), None)]);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].buttons_set, Button::Left.bit());
        assert_eq!(f[1].x, Some(2));
    }

    #[test]
    fn press_and_release_in_one_command_are_two_frames() {
        let mut s = PointerState::default();
        let f = run(
            &mut s,
            &[btn(Button::Right, true), btn(Button::Right, false)],
        );
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].buttons_down, Button::Right.bit());
        assert_eq!(f[1].buttons_down, 0);
        assert!(!s.is_down(Button::Right));
    }

    #[test]
    fn pressing_a_held_button_changes_nothing() {
        let mut s = PointerState::default();
        run(&mut s, &[btn(Button::Middle, true)]);
        assert!(run(&mut s, &[btn(Button::Middle, true)]).is_empty());
    }

    #[test]
    fn hi_res_wheel_reports_detents_as_they_complete() {
        let mut s = PointerState::default();
        let f = run(&mut s, &[wheel(WheelAxis::Vertical, 60)]);
        assert_eq!(
            f[0].wheel_vertical,
            WheelStep {
                detents: 0,
                hi_res: 60
            }
        );
        let f = run(&mut s, &[wheel(WheelAxis::Vertical, 90)]);
        assert_eq!(
            f[0].wheel_vertical,
            WheelStep {
                detents: 1,
                hi_res: 90
            }
        );
        // 30 left over; reversing drops it, so -120 is exactly one detent down.
        let f = run(&mut s, &[wheel(WheelAxis::Vertical, -120)]);
        assert_eq!(
            f[0].wheel_vertical,
            WheelStep {
                detents: -1,
                hi_res: -120
            }
        );
        let f = run(&mut s, &[wheel(WheelAxis::Horizontal, 240)]);
        assert_eq!(
            f[0].wheel_horizontal,
            WheelStep {
                detents: 2,
                hi_res: 240
            }
        );
        assert!(f[0].wheel_vertical.is_zero());
    }

    #[test]
    fn same_direction_wheel_steps_add_up_and_a_reversal_splits() {
        let mut s = PointerState::default();
        let f = run(
            &mut s,
            &[
                wheel(WheelAxis::Vertical, 120),
                wheel(WheelAxis::Vertical, 120),
            ],
        );
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].wheel_vertical,
            WheelStep {
                detents: 2,
                hi_res: 240
            }
        );
        let f = run(
            &mut s,
            &[
                wheel(WheelAxis::Vertical, 120),
                wheel(WheelAxis::Vertical, -120),
            ],
        );
        assert_eq!(f.len(), 2);
    }

    #[test]
    fn full_state_names_every_button_and_only_known_position() {
        let mut s = PointerState::default();
        run(
            &mut s,
            &[mv(Some(2), Some(9), None), btn(Button::Side, true)],
        );
        let f = s.full_state_frame(&PER_DISPLAY);
        assert_eq!((f.display, f.x, f.y), (Some(2), Some(9), None));
        assert_eq!(f.buttons_set, 0b1_1111);
        assert_eq!(f.buttons_down, Button::Side.bit());
    }

    #[test]
    fn count_frames_matches_apply_and_changes_nothing() {
        let s = PointerState::default();
        let actions = [
            btn(Button::Left, true),
            btn(Button::Left, false),
            mv(None, Some(3), Some(3)),
            wheel(WheelAxis::Vertical, 120),
        ];
        // The wheel joins the motion frame, so that frame is held too.
        assert_eq!(
            s.count_frames(&actions, &PER_DISPLAY),
            FrameCount { total: 3, held: 3 }
        );
        let motion = [mv(None, Some(1), None), mv(Some(0), None, Some(2))];
        assert_eq!(
            s.count_frames(&motion, &PER_DISPLAY),
            FrameCount { total: 1, held: 0 }
        );
        assert_eq!(s, PointerState::default());
    }
}
