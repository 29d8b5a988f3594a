//! A viewer's `PointerEvent`s as pvmouse input: the position normalised by the head's current
//! framebuffer size, aimed at the pixel's centre (spec/pvmouse.md §3.1, so the guest gets the
//! exact pixel the viewer pointed at), or relative motion from a viewer told the pointer is
//! relative; the button mask as the buttons' states, and buttons 4 to 7 as wheel detents.

use pvmouse_spec::profile::{Button, HI_RES_PER_DETENT};
use pvmouse_spec::stream::{Record, pixel_centre};

use crate::rfb::RELATIVE_ORIGIN;

/// RFB button-mask bits that are buttons, and pvmouse's buttons for them. Bit 7 is X's button
/// 8, "back", which Linux reports as BTN_SIDE.
const BUTTONS: [(u8, Button); 4] = [
    (0, Button::Left),
    (1, Button::Middle),
    (2, Button::Right),
    (7, Button::Side),
];
/// One detent in a record's hi-res units.
const DETENT: i16 = 120;
const _: () = assert!(DETENT as i32 == HI_RES_PER_DETENT);
/// Wheel bits (buttons 4 to 7): vertical and horizontal hi-res units per press.
const WHEELS: [(u8, i16, i16); 4] = [
    (3, DETENT, 0),
    (4, -DETENT, 0),
    (5, 0, -DETENT),
    (6, 0, DETENT),
];

/// Turns one viewer's `PointerEvent`s into stream records for its head's display.
#[derive(Debug, Clone)]
pub struct PointerRouter {
    display: u8,
    mask: u8,
    /// The newest position sent, in device units.
    position: Option<(u16, u16)>,
}

impl PointerRouter {
    pub fn new(display: u8) -> Self {
        Self {
            display,
            mask: 0,
            position: None,
        }
    }

    /// The record for one `PointerEvent` on a framebuffer of `size`. Motion alone is not
    /// answered: a newer position replaces it anyway. A record that changes a button or
    /// scrolls is, so that none is lost unseen.
    pub fn record(&mut self, mask: u8, x: u16, y: u16, size: (u16, u16)) -> Record {
        let position = (pixel_centre(x, size.0), pixel_centre(y, size.1));
        self.position = Some(position);
        Record {
            display: Some(self.display),
            x: Some(position.0),
            y: Some(position.1),
            ..self.changes(mask)
        }
    }

    /// The record for a `PointerEvent` whose position is not used (one outside the framebuffer
    /// of `size` from a viewer that asks for pointer type changes, which would never send one in
    /// absolute mode: relative motion it sent before it read the switch back): its buttons and
    /// wheels alone.
    pub fn buttons(&mut self, mask: u8) -> Record {
        Record {
            display: Some(self.display),
            ..self.changes(mask)
        }
    }

    /// The records for one `PointerEvent` from a viewer told the pointer is relative: its
    /// position is motion from [`RELATIVE_ORIGIN`], as QEMU reads it. Motion keeps the mode
    /// ([`Record::keep_mode`]): after the host switched back to absolute, motion still on its
    /// way is dropped, not a switch to relative again. Motion larger than the framebuffer of
    /// `size` is no viewer's motion but a position it sent before it read the switch to
    /// relative, and is dropped too. A motion record carries buttons but no wheel, so a scroll
    /// is a record of its own, after it. Empty records are `None`.
    pub fn motion(&mut self, mask: u8, x: u16, y: u16, size: (u16, u16)) -> [Option<Record>; 2] {
        let changes = self.changes(mask);
        let (mut dx, mut dy) = (
            i32::from(x) - RELATIVE_ORIGIN,
            i32::from(y) - RELATIVE_ORIGIN,
        );
        if dx.unsigned_abs() >= u32::from(size.0) || dy.unsigned_abs() >= u32::from(size.1) {
            (dx, dy) = (0, 0);
        }
        let wheel = Record {
            wheel_vertical: changes.wheel_vertical,
            wheel_horizontal: changes.wheel_horizontal,
            answer: true,
            ..Record::default()
        };
        // No display: in relative mode a click is nowhere in particular, with motion or without.
        let first = Record {
            buttons_set: changes.buttons_set,
            buttons_down: changes.buttons_down,
            answer: changes.buttons_set != 0,
            dx,
            dy,
            keep_mode: true,
            ..Record::default()
        };
        let moves = dx != 0 || dy != 0 || first.buttons_set != 0;
        let scrolls = wheel.wheel_vertical != 0 || wheel.wheel_horizontal != 0;
        [moves.then_some(first), scrolls.then_some(wheel)]
    }

    /// What the button mask `mask` changes since the last: button transitions and wheel
    /// detents, answered if there are any.
    fn changes(&mut self, mask: u8) -> Record {
        let changed = mask ^ self.mask;
        let pressed = mask & !self.mask;
        let (mut buttons_set, mut buttons_down) = (0, 0);
        for (bit, button) in BUTTONS {
            if changed & (1 << bit) != 0 {
                buttons_set |= button.bit();
                if mask & (1 << bit) != 0 {
                    buttons_down |= button.bit();
                }
            }
        }
        let (mut wheel_vertical, mut wheel_horizontal) = (0, 0);
        for (bit, vertical, horizontal) in WHEELS {
            if pressed & (1 << bit) != 0 {
                wheel_vertical += vertical;
                wheel_horizontal += horizontal;
            }
        }
        self.mask = mask;
        Record {
            buttons_set,
            buttons_down,
            wheel_vertical,
            wheel_horizontal,
            answer: buttons_set != 0 || wheel_vertical != 0 || wheel_horizontal != 0,
            ..Record::default()
        }
    }

    /// What this viewer holds, answered: its position and the buttons it holds down. The
    /// proxy replays the head's state ([`HeadPointer::state`]), which all its viewers share;
    /// this one is for tests that drive a control connection for one viewer alone.
    #[cfg(test)]
    pub(crate) fn state(&self) -> Record {
        let mut held = 0;
        for (bit, button) in BUTTONS {
            if self.mask & (1 << bit) != 0 {
                held |= button.bit();
            }
        }
        state_record(self.display, self.position, held)
    }

    /// The record that lets go of every button this viewer holds, answered, or `None` if it
    /// holds none: what its connection's end sends, so that a viewer that leaves mid-drag does
    /// not leave every other viewer dragging.
    pub fn release(&mut self) -> Option<Record> {
        let mut held = 0;
        for (bit, button) in BUTTONS {
            if self.mask & (1 << bit) != 0 {
                held |= button.bit();
            }
        }
        self.mask = 0;
        (held != 0).then_some(Record {
            display: Some(self.display),
            buttons_set: held,
            answer: true,
            ..Record::default()
        })
    }
}

/// One head's pointer, as all its viewers share it: the device has one pointer per display, so a
/// button is down while any viewer holds it, and let go when the last one does. Every viewer's
/// records pass through here, in one order, on their way to the head's one control connection.
#[derive(Debug)]
pub struct HeadPointer {
    display: u8,
    /// How many viewers hold each button, by bit of [`Button::bit`].
    holders: [u32; 8],
    position: Option<(u16, u16)>,
}

impl HeadPointer {
    pub fn new(display: u8) -> Self {
        Self {
            display,
            holders: [0; 8],
            position: None,
        }
    }

    /// A viewer's record as the head's, with the head's whole state after it: a press kept only
    /// if it is the button's first holder, a release only if it is the last. `None` if nothing
    /// is left to send.
    pub fn merge(&mut self, mut record: Record) -> Option<(Record, Record)> {
        let mut kept = 0u8;
        for (i, holders) in self.holders.iter_mut().enumerate() {
            let bit = 1u8 << i;
            if record.buttons_set & bit == 0 {
                continue;
            }
            if record.buttons_down & bit != 0 {
                *holders += 1;
                if *holders == 1 {
                    kept |= bit;
                }
            } else if *holders > 0 {
                *holders -= 1;
                if *holders == 0 {
                    kept |= bit;
                }
            }
        }
        record.buttons_set &= kept;
        record.buttons_down &= kept;
        if let (Some(x), Some(y)) = (record.x, record.y) {
            self.position = Some((x, y));
        }
        let changes =
            record.buttons_set != 0 || record.wheel_vertical != 0 || record.wheel_horizontal != 0;
        record.answer &= changes;
        let moves = record.x.is_some() || record.y.is_some() || record.dx != 0 || record.dy != 0;
        if !changes && !moves {
            return None;
        }
        Some((record, self.state()))
    }

    /// The head's whole state: its position and the buttons any viewer holds, answered.
    pub fn state(&self) -> Record {
        let held = self
            .holders
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .fold(0u8, |m, (i, _)| m | (1 << i));
        state_record(self.display, self.position, held)
    }
}

/// A pointer's whole state as one answered record: its position and the buttons `held` down.
fn state_record(display: u8, position: Option<(u16, u16)>, held: u8) -> Record {
    Record {
        display: Some(display),
        x: position.map(|p| p.0),
        y: position.map(|p| p.1),
        buttons_set: held,
        buttons_down: held,
        answer: true,
        ..Record::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_button_two_viewers_hold_is_let_go_when_the_last_lets_go() {
        let mut head = HeadPointer::new(1);
        let (mut a, mut b) = (PointerRouter::new(1), PointerRouter::new(1));
        let left = Button::Left.bit();
        let size = (1280, 1024);
        let (r, s) = head.merge(a.record(1, 10, 10, size)).unwrap();
        assert_eq!(
            (r.buttons_set, r.buttons_down, s.buttons_down),
            (left, left, left)
        );
        // B presses and lets go: the device's button stays down for A.
        let (r, _) = head.merge(b.record(1, 20, 20, size)).unwrap();
        assert_eq!((r.buttons_set, r.answer), (0, false), "already down");
        let (r, s) = head.merge(b.record(0, 20, 20, size)).unwrap();
        assert_eq!(r.buttons_set, 0, "A still holds it");
        assert_eq!(s.buttons_down, left);
        // A leaves: its release is the last, and goes.
        let (r, s) = head.merge(a.release().unwrap()).unwrap();
        assert_eq!(
            (r.buttons_set, r.buttons_down, s.buttons_down),
            (left, 0, 0)
        );
        // A release nobody's press matches changes nothing and sends nothing.
        assert_eq!(head.merge(b.release().unwrap_or_default()), None);
    }

    #[test]
    fn positions_aim_at_pixel_centres_and_the_mask_becomes_transitions_and_detents() {
        let mut r = PointerRouter::new(1);
        let a = r.record(0, 0, 1023, (1280, 1024));
        assert_eq!(a.display, Some(1));
        assert_eq!(a.x, Some(pixel_centre(0, 1280)));
        assert_eq!(a.y, Some(pixel_centre(1023, 1024)));
        assert_eq!((a.buttons_set, a.wheel_vertical, a.answer), (0, 0, false));
        let a = r.record(0b1, 10, 10, (1280, 1024));
        assert_eq!(
            (a.buttons_set, a.buttons_down),
            (Button::Left.bit(), Button::Left.bit())
        );
        assert!(a.answer, "a click is answered");
        let a = r.record(0b1001, 10, 10, (1280, 1024));
        assert_eq!((a.wheel_vertical, a.wheel_horizontal), (120, 0));
        assert_eq!(a.buttons_set, 0, "left still held: no change");
        let a = r.record(0b1, 10, 10, (1280, 1024));
        assert_eq!(a.wheel_vertical, 0, "a release scrolls nothing");
        let a = r.record(0b100_0001, 10, 10, (1280, 1024));
        assert_eq!((a.wheel_vertical, a.wheel_horizontal), (0, 120));
        let a = r.record(0b1000_0100, 10, 10, (1280, 1024));
        assert_eq!(
            (a.buttons_set, a.buttons_down),
            (
                Button::Left.bit() | Button::Right.bit() | Button::Side.bit(),
                Button::Right.bit() | Button::Side.bit()
            )
        );
        let a = r.record(0b1000_0100, 5000, 5000, (1280, 1024));
        assert_eq!(
            a.x,
            Some(pixel_centre(1279, 1280)),
            "past the edge is the last pixel"
        );
        let s = r.state();
        assert_eq!((s.x, s.y, s.answer), (a.x, a.y, true));
        assert_eq!(s.buttons_down, Button::Right.bit() | Button::Side.bit());
        assert_eq!(
            s.buttons_set & Button::Extra.bit(),
            0,
            "not a button a viewer has"
        );
    }

    #[test]
    fn a_leaving_viewer_releases_exactly_the_buttons_it_holds() {
        let mut r = PointerRouter::new(1);
        r.record(0, 10, 10, (1280, 1024));
        assert_eq!(r.release(), None, "nothing held, nothing sent");
        // Left and right held, a wheel bit set: only the buttons are let go.
        r.record(0b1_0101, 10, 10, (1280, 1024));
        let a = r.release().unwrap();
        assert_eq!(a.buttons_set, Button::Left.bit() | Button::Right.bit());
        assert_eq!(a.buttons_down, 0);
        assert_eq!(
            (a.x, a.y, a.wheel_vertical, a.wheel_horizontal),
            (None, None, 0, 0)
        );
        assert!(a.answer);
        assert_eq!(r.release(), None, "released once");
    }

    #[test]
    fn a_relative_viewers_positions_are_motion_from_the_origin_with_buttons_and_wheels() {
        let mut r = PointerRouter::new(1);
        let origin = u16::try_from(RELATIVE_ORIGIN).unwrap();
        let size = (1024, 768);
        // Motion with the left button pressed: one motion record carries both, answered, and
        // never switches the mode.
        let [m, w] = r.motion(1, origin + 7, origin - 3, size);
        let m = m.unwrap();
        assert_eq!((m.dx, m.dy, m.display, m.x), (7, -3, None, None));
        assert_eq!((m.buttons_set, m.buttons_down, m.answer), (1, 1, true));
        assert!(m.keep_mode);
        assert_eq!(w, None, "no scroll");
        // No motion and no change: nothing.
        assert_eq!(r.motion(1, origin, origin, size), [None, None]);
        // A scroll is a record of its own after the motion; a release without motion goes to
        // no display either.
        let [m, w] = r.motion(0b1001, origin + 1, origin, size);
        assert_eq!((m.unwrap().dx, m.unwrap().buttons_set), (1, 0));
        assert_eq!(w.unwrap().wheel_vertical, 120);
        let [m, _] = r.motion(0, origin, origin, size);
        let m = m.unwrap();
        assert_eq!(
            (m.dx, m.display, m.buttons_set, m.buttons_down),
            (0, None, 1, 0)
        );
        // A position sent before the viewer read the switch (pixel 10 of 1024) is no motion.
        assert_eq!(r.motion(0, 10, 10, size), [None, None]);
        let [m, _] = r.motion(1, 10, origin + 5, size);
        assert_eq!(
            (m.unwrap().dx, m.unwrap().dy, m.unwrap().buttons_set),
            (0, 0, 1)
        );
        // The largest motion within the framebuffer goes.
        let [m, _] = r.motion(1, origin + 1023, origin - 767, size);
        assert_eq!((m.unwrap().dx, m.unwrap().dy), (1023, -767));
        // Buttons alone, for a position that is not used.
        let b = r.buttons(0);
        assert_eq!(
            (b.x, b.buttons_set, b.buttons_down, b.display),
            (None, 1, 0, Some(1))
        );
    }
}
