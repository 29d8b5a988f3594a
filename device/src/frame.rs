//! One evdev frame: the events between two SYN_REPORTs.
//!
//! A frame holds only what changed, as "set to" values for position and buttons and as deltas for
//! wheels. It is a small `Copy` value so that queuing one never allocates.

use pvmouse_spec::InputEvent;

use pvmouse_spec::evdev::{
    ABS_X, ABS_Y, EV_ABS, EV_KEY, EV_MSC, EV_REL, REL_HWHEEL, REL_HWHEEL_HI_RES, REL_WHEEL,
    REL_WHEEL_HI_RES, REL_X, REL_Y,
};
use pvmouse_spec::profile::{Button, DISPLAY_AXIS, MAX_FRAME_EVENTS, REL_CODES, STATUS_MSC_CODE};
use serde::{Deserialize, Serialize, Serializer};

/// A wheel movement within one frame: high-resolution units and the whole detents they complete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WheelStep {
    pub detents: i32,
    pub hi_res: i32,
}

impl WheelStep {
    pub fn is_zero(&self) -> bool {
        self.detents == 0 && self.hi_res == 0
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub display: Option<u8>,
    pub x: Option<u16>,
    pub y: Option<u16>,
    /// Buttons whose state this frame sets.
    pub buttons_set: u8,
    /// For each button in `buttons_set`, its new state (bit set = pressed).
    pub buttons_down: u8,
    pub wheel_vertical: WheelStep,
    pub wheel_horizontal: WheelStep,
    /// An answer to the guest bridge (`pvmouse_spec::status::Acknowledgement`), sent last in
    /// the frame: it marks the point in the stream where the coordinates change.
    pub acknowledgement: Option<i32>,
    /// Relative motion, for the relative device only: a frame never carries it with anything
    /// else. Summed when frames coalesce, so no motion is lost.
    pub dx: i32,
    pub dy: i32,
    /// The position is sent even if the guest's axes hold these values already: each axis
    /// first one unit off, then the value, in the same frame. Linux's input core drops an
    /// absolute value equal to the last one, and after relative motion the guest's pointer is
    /// elsewhere, so the first position after a switch back to absolute must be renewed.
    pub renew: bool,
}

/// The events of one frame, SYN_REPORT last, in a fixed-size buffer. In a snapshot, the events
/// only, as many as there are.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(try_from = "Vec<InputEvent>")]
pub struct FrameEvents {
    events: [InputEvent; MAX_FRAME_EVENTS],
    len: usize,
}

impl FrameEvents {
    pub const fn empty() -> Self {
        Self {
            events: [InputEvent::new(0, 0, 0); MAX_FRAME_EVENTS],
            len: 0,
        }
    }

    pub fn as_slice(&self) -> &[InputEvent] {
        &self.events[..self.len]
    }

    fn push(&mut self, ev: InputEvent) {
        // A frame's fields bound its events to MAX_FRAME_EVENTS, so this cannot overflow.
        if let Some(slot) = self.events.get_mut(self.len) {
            *slot = ev;
            self.len += 1;
        }
    }
}

impl Serialize for FrameEvents {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.as_slice().serialize(serializer)
    }
}

impl TryFrom<Vec<InputEvent>> for FrameEvents {
    type Error = String;

    fn try_from(events: Vec<InputEvent>) -> Result<Self, String> {
        if events.len() > MAX_FRAME_EVENTS {
            return Err(format!(
                "{} events in one frame; a frame has at most {MAX_FRAME_EVENTS}",
                events.len()
            ));
        }
        let mut out = Self::empty();
        for ev in events {
            out.push(ev);
        }
        Ok(out)
    }
}

impl Frame {
    pub fn is_empty(&self) -> bool {
        !self.has_motion()
            && self.buttons_set == 0
            && !self.has_wheel()
            && self.acknowledgement.is_none()
    }

    pub fn has_motion(&self) -> bool {
        self.display.is_some() || self.x.is_some() || self.y.is_some() || self.is_relative()
    }

    /// The frame is relative motion, the relative device's.
    pub fn is_relative(&self) -> bool {
        self.dx != 0 || self.dy != 0
    }

    pub fn has_wheel(&self) -> bool {
        !self.wheel_vertical.is_zero() || !self.wheel_horizontal.is_zero()
    }

    /// Motion is the only thing the device may coalesce; a frame with a button or wheel change,
    /// or an acknowledgement, must reach the guest as its own frame.
    pub fn is_motion_only(&self) -> bool {
        self.buttons_set == 0 && !self.has_wheel() && self.acknowledgement.is_none()
    }

    /// Folds a motion-only frame that was queued before `later` into `later`. The position of the
    /// earlier frame survives only where `later` does not set its own, so the combined frame
    /// leaves the guest in the same state as the two frames in order.
    pub fn absorb_earlier_motion(later: Frame, earlier: &Frame) -> Frame {
        Frame {
            display: later.display.or(earlier.display),
            x: later.x.or(earlier.x),
            y: later.y.or(earlier.y),
            dx: later.dx.saturating_add(earlier.dx),
            dy: later.dy.saturating_add(earlier.dy),
            renew: later.renew || earlier.renew,
            ..later
        }
    }

    /// This frame's value for one of the profile's relative codes.
    fn wheel_value(&self, code: u16) -> i32 {
        match code {
            REL_WHEEL => self.wheel_vertical.detents,
            REL_WHEEL_HI_RES => self.wheel_vertical.hi_res,
            REL_HWHEEL => self.wheel_horizontal.detents,
            REL_HWHEEL_HI_RES => self.wheel_horizontal.hi_res,
            _ => 0,
        }
    }

    /// The evdev events of this frame: display, X, Y, buttons in code order, wheels in code
    /// order, the acknowledgement, then SYN_REPORT. The order is part of the spec.
    pub fn events(&self) -> FrameEvents {
        let mut out = FrameEvents::empty();
        if let Some(d) = self.display {
            out.push(InputEvent::new(EV_ABS, DISPLAY_AXIS, i32::from(d)));
        }
        for (code, value) in [(ABS_X, self.x), (ABS_Y, self.y)] {
            let Some(value) = value else { continue };
            if self.renew {
                // One unit off stays within 0..=65535 either way.
                out.push(InputEvent::new(EV_ABS, code, i32::from(value ^ 1)));
            }
            out.push(InputEvent::new(EV_ABS, code, i32::from(value)));
        }
        for b in Button::ALL {
            if self.buttons_set & b.bit() != 0 {
                let down = i32::from(self.buttons_down & b.bit() != 0);
                out.push(InputEvent::new(EV_KEY, b.code(), down));
            }
        }
        for (code, value) in [(REL_X, self.dx), (REL_Y, self.dy)] {
            if value != 0 {
                out.push(InputEvent::new(EV_REL, code, value));
            }
        }
        for code in REL_CODES {
            let value = self.wheel_value(code);
            if value != 0 {
                out.push(InputEvent::new(EV_REL, code, value));
            }
        }
        if let Some(value) = self.acknowledgement {
            out.push(InputEvent::new(EV_MSC, STATUS_MSC_CODE, value));
        }
        out.push(InputEvent::syn_report());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvmouse_spec::evdev::{BTN_EXTRA, BTN_LEFT};

    fn ev(kind: u16, code: u16, value: i32) -> InputEvent {
        InputEvent::new(kind, code, value)
    }

    #[test]
    fn largest_frame_fits_and_is_ordered() {
        let f = Frame {
            display: Some(3),
            x: Some(1),
            y: Some(2),
            buttons_set: 0b1_1111,
            buttons_down: 0b1_0001,
            wheel_vertical: WheelStep {
                detents: 1,
                hi_res: 120,
            },
            wheel_horizontal: WheelStep {
                detents: -1,
                hi_res: -150,
            },
            acknowledgement: Some(0x5056_8201),
            renew: true,
            ..Frame::default()
        };
        let evs = f.events();
        let evs = evs.as_slice();
        assert_eq!(evs.len(), MAX_FRAME_EVENTS);
        assert_eq!(evs[0], ev(EV_ABS, DISPLAY_AXIS, 3));
        assert_eq!(evs[1], ev(EV_ABS, ABS_X, 0), "renewed: one unit off first");
        assert_eq!(evs[2], ev(EV_ABS, ABS_X, 1));
        assert_eq!(evs[3], ev(EV_ABS, ABS_Y, 3));
        assert_eq!(evs[4], ev(EV_ABS, ABS_Y, 2));
        assert_eq!(evs[5], ev(EV_KEY, BTN_LEFT, 1));
        assert_eq!(evs[9], ev(EV_KEY, BTN_EXTRA, 1));
        assert_eq!(evs[10], ev(EV_REL, REL_HWHEEL, -1));
        assert_eq!(evs[11], ev(EV_REL, REL_WHEEL, 1));
        assert_eq!(evs[12], ev(EV_REL, REL_WHEEL_HI_RES, 120));
        assert_eq!(evs[13], ev(EV_REL, REL_HWHEEL_HI_RES, -150));
        assert_eq!(evs[14], ev(EV_MSC, STATUS_MSC_CODE, 0x5056_8201));
        assert!(evs[15].is_syn_report());
    }

    #[test]
    fn relative_motion_is_its_own_frame_and_sums_when_coalesced() {
        let a = Frame {
            dx: 5,
            dy: -3,
            ..Frame::default()
        };
        let b = Frame {
            dx: i32::MAX,
            dy: 4,
            ..Frame::default()
        };
        assert!(a.is_motion_only() && a.is_relative());
        let merged = Frame::absorb_earlier_motion(b, &a);
        assert_eq!((merged.dx, merged.dy), (i32::MAX, 1), "summed, saturating");
        assert_eq!(
            a.events().as_slice(),
            &[
                ev(EV_REL, REL_X, 5),
                ev(EV_REL, REL_Y, -3),
                InputEvent::syn_report()
            ]
        );
    }

    #[test]
    fn hi_res_without_a_whole_detent_omits_the_detent_event() {
        let f = Frame {
            wheel_vertical: WheelStep {
                detents: 0,
                hi_res: 60,
            },
            ..Frame::default()
        };
        assert_eq!(
            f.events().as_slice(),
            &[ev(EV_REL, REL_WHEEL_HI_RES, 60), InputEvent::syn_report()]
        );
    }

    #[test]
    fn earlier_motion_fills_only_what_the_later_frame_leaves_unset() {
        let earlier = Frame {
            display: Some(1),
            x: Some(10),
            y: Some(20),
            ..Frame::default()
        };
        let later = Frame {
            x: Some(30),
            buttons_set: 1,
            buttons_down: 1,
            ..Frame::default()
        };
        let merged = Frame::absorb_earlier_motion(later, &earlier);
        assert_eq!(merged.display, Some(1));
        assert_eq!(merged.x, Some(30));
        assert_eq!(merged.y, Some(20));
        assert_eq!(merged.buttons_set, 1);
    }
}
