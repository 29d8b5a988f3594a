//! Stream records: the binary input a control client sends after `pvmouse-stream`
//! (`spec/control.md`, `pvmouse-stream`).
//!
//! A gateway that relays a viewer's pointer sends one command per event. As JSON each costs a
//! formatted command, a parse and a reply that the client waits for, which is most of the host's
//! work per event. A record is 16 fixed bytes, checked and applied without allocation, and
//! answered only when the client asks, so motion costs one write and one read. Fixed framing
//! also means that no content can make the two sides disagree on where the next record starts.

use crate::profile::{AXIS_MAX, Button};

/// Every record's length in bytes.
pub const RECORD_LEN: usize = 16;

/// Pointer state and wheel movement for one frame.
pub const KIND_POINTER: u8 = 1;
/// Relative motion (and buttons) for one frame: switches the pointer to relative mode.
pub const KIND_MOTION: u8 = 2;

/// `flags` bits.
pub mod flag {
    /// `display` is set: the position is on that display.
    pub const DISPLAY: u8 = 1 << 0;
    /// `x` is set.
    pub const X: u8 = 1 << 1;
    /// `y` is set.
    pub const Y: u8 = 1 << 2;
    /// Answer this record with one reply once it is applied or refused.
    pub const ANSWER: u8 = 1 << 3;
    /// Motion records only: the motion never switches the mode. While the pointer is absolute
    /// it is dropped (its buttons still apply). For a relay whose viewer was told the pointer is
    /// relative: motion it sends after the host switched back must not switch again.
    pub const KEEP_MODE: u8 = 1 << 4;
    /// Every flag a pointer record may have; one with any other bit set is refused.
    pub const ALL: u8 = DISPLAY | X | Y | ANSWER;
}

/// One record, decoded. Buttons are states to set, not transitions, so a record sent twice
/// changes nothing the second time unless it scrolls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Record {
    pub display: Option<u8>,
    pub x: Option<u16>,
    pub y: Option<u16>,
    /// The buttons this record sets ([`Button::bit`]), and of those, the ones set down.
    pub buttons_set: u8,
    pub buttons_down: u8,
    /// Hi-res wheel units, 120 a detent; positive is up or right.
    pub wheel_vertical: i16,
    pub wheel_horizontal: i16,
    /// The client waits for a reply to this record.
    pub answer: bool,
    /// Relative motion in device units. A record that moves is a [`KIND_MOTION`] record, which
    /// carries buttons too but no position or wheel.
    pub dx: i32,
    pub dy: i32,
    /// The motion never switches the mode ([`flag::KEEP_MODE`]).
    pub keep_mode: bool,
}

/// Why a record's bytes are not a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error(
        "unknown record kind {0} ({KIND_POINTER}, pointer, and {KIND_MOTION}, motion, are defined)"
    )]
    UnknownKind(u8),
    #[error("undefined flag bits {0:#04x}")]
    UndefinedFlags(u8),
    #[error("undefined button bits {0:#04x} (bits 0 to 4 are the buttons)")]
    UndefinedButtons(u8),
    #[error("buttons {0:#04x} set down but not named as set")]
    DownNotSet(u8),
    #[error("reserved bytes are not zero")]
    Reserved,
}

const BUTTON_BITS: u8 = (1 << Button::ALL.len()) - 1;

impl Record {
    /// The record's bytes, all multi-byte fields little-endian:
    ///
    /// | offset | size | field |
    /// |---|---|---|
    /// | 0 | 1 | kind: 1 |
    /// | 1 | 1 | flags |
    /// | 2 | 1 | display, if flag `DISPLAY` |
    /// | 3 | 1 | buttons set (bit 0 left, 1 right, 2 middle, 3 side, 4 extra) |
    /// | 4 | 1 | of those, the ones down |
    /// | 5 | 1 | reserved, 0 |
    /// | 6 | 2 | x, 0 … 65535, if flag `X` |
    /// | 8 | 2 | y, 0 … 65535, if flag `Y` |
    /// | 10 | 2 | vertical wheel, signed hi-res units |
    /// | 12 | 2 | horizontal wheel, signed hi-res units |
    /// | 14 | 2 | reserved, 0 |
    ///
    /// A motion record ([`KIND_MOTION`]) has kind 2, flags (`ANSWER` and `KEEP_MODE` only), buttons at 3 and 4
    /// as above, dx at 6 and dy at 10 (signed, 4 bytes each), and zeros elsewhere.
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        if self.dx != 0 || self.dy != 0 {
            let mut b = [0u8; RECORD_LEN];
            b[0] = KIND_MOTION;
            b[1] = if self.answer { flag::ANSWER } else { 0 }
                | if self.keep_mode { flag::KEEP_MODE } else { 0 };
            b[3] = self.buttons_set;
            b[4] = self.buttons_down & self.buttons_set;
            b[6..10].copy_from_slice(&self.dx.to_le_bytes());
            b[10..14].copy_from_slice(&self.dy.to_le_bytes());
            return b;
        }
        let mut flags = 0;
        if self.display.is_some() {
            flags |= flag::DISPLAY;
        }
        if self.x.is_some() {
            flags |= flag::X;
        }
        if self.y.is_some() {
            flags |= flag::Y;
        }
        if self.answer {
            flags |= flag::ANSWER;
        }
        let mut b = [0u8; RECORD_LEN];
        b[0] = KIND_POINTER;
        b[1] = flags;
        b[2] = self.display.unwrap_or(0);
        b[3] = self.buttons_set;
        b[4] = self.buttons_down & self.buttons_set;
        b[6..8].copy_from_slice(&self.x.unwrap_or(0).to_le_bytes());
        b[8..10].copy_from_slice(&self.y.unwrap_or(0).to_le_bytes());
        b[10..12].copy_from_slice(&self.wheel_vertical.to_le_bytes());
        b[12..14].copy_from_slice(&self.wheel_horizontal.to_le_bytes());
        b
    }

    /// Checks every byte: what a record does not define must be zero, so that a later version
    /// can give it a meaning without an old device misreading it.
    pub fn decode(b: &[u8; RECORD_LEN]) -> Result<Self, RecordError> {
        let defined = match b[0] {
            KIND_POINTER => flag::ALL,
            KIND_MOTION => flag::ANSWER | flag::KEEP_MODE,
            kind => return Err(RecordError::UnknownKind(kind)),
        };
        let flags = b[1];
        if flags & !defined != 0 {
            return Err(RecordError::UndefinedFlags(flags & !defined));
        }
        let (set, down) = (b[3], b[4]);
        if set & !BUTTON_BITS != 0 {
            return Err(RecordError::UndefinedButtons(set & !BUTTON_BITS));
        }
        if down & !set != 0 {
            return Err(RecordError::DownNotSet(down & !set));
        }
        if b[0] == KIND_MOTION {
            let i32_at = |i: usize| i32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            let (dx, dy) = (i32_at(6), i32_at(10));
            if b[2] != 0 || b[5] != 0 || b[14] != 0 || b[15] != 0 || (dx == 0 && dy == 0) {
                return Err(RecordError::Reserved);
            }
            return Ok(Record {
                buttons_set: set,
                buttons_down: down,
                answer: flags & flag::ANSWER != 0,
                dx,
                dy,
                keep_mode: flags & flag::KEEP_MODE != 0,
                ..Record::default()
            });
        }
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let i16_at = |i: usize| i16::from_le_bytes([b[i], b[i + 1]]);
        let unused_display = flags & flag::DISPLAY == 0 && b[2] != 0;
        let unused_x = flags & flag::X == 0 && u16_at(6) != 0;
        let unused_y = flags & flag::Y == 0 && u16_at(8) != 0;
        if b[5] != 0 || u16_at(14) != 0 || unused_display || unused_x || unused_y {
            return Err(RecordError::Reserved);
        }
        Ok(Record {
            display: (flags & flag::DISPLAY != 0).then_some(b[2]),
            x: (flags & flag::X != 0).then_some(u16_at(6)),
            y: (flags & flag::Y != 0).then_some(u16_at(8)),
            buttons_set: set,
            buttons_down: down,
            wheel_vertical: i16_at(10),
            wheel_horizontal: i16_at(12),
            answer: flags & flag::ANSWER != 0,
            dx: 0,
            dy: 0,
            keep_mode: false,
        })
    }
}

/// The axis value that aims at the centre of pixel `pixel` of a display `size` pixels across:
/// `round((pixel + ½) · 65535 / size)`, computed exactly (spec/pvmouse.md §3.1), halves rounded
/// up. A pixel past the edge is the last one; a size of 0 is taken as 1.
pub fn pixel_centre(pixel: u16, size: u16) -> u16 {
    let size = u64::from(size.max(1));
    let pixel = u64::from(pixel).min(size - 1);
    let max = u64::from(AXIS_MAX.unsigned_abs());
    // (2p + 1) · max / (2 · size), plus a half: (… + size) / (2 · size), floored.
    let value = ((2 * pixel + 1) * max + size) / (2 * size);
    // pixel < size, so value ≤ max: the conversion cannot fail.
    u16::try_from(value).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_record() -> impl Strategy<Value = Record> {
        (
            (
                proptest::option::of(any::<u8>()),
                proptest::option::of(any::<u16>()),
                proptest::option::of(any::<u16>()),
            ),
            (0..=BUTTON_BITS, any::<u8>()),
            (any::<i16>(), any::<i16>(), any::<bool>()),
        )
            .prop_map(|((display, x, y), (set, down), (v, h, answer))| Record {
                display,
                x,
                y,
                buttons_set: set,
                buttons_down: down & set,
                wheel_vertical: v,
                wheel_horizontal: h,
                answer,
                ..Record::default()
            })
    }

    fn any_motion() -> impl Strategy<Value = Record> {
        (
            any::<i32>(),
            any::<i32>(),
            0..=BUTTON_BITS,
            any::<u8>(),
            (any::<bool>(), any::<bool>()),
        )
            .prop_filter("moves", |(dx, dy, ..)| *dx != 0 || *dy != 0)
            .prop_map(|(dx, dy, set, down, (answer, keep_mode))| Record {
                dx,
                dy,
                buttons_set: set,
                buttons_down: down & set,
                answer,
                keep_mode,
                ..Record::default()
            })
    }

    proptest! {
        #[test]
        fn every_record_survives_its_bytes(r in any_record()) {
            prop_assert_eq!(Record::decode(&r.encode()), Ok(r));
        }

        #[test]
        fn every_motion_record_survives_its_bytes(r in any_motion()) {
            let bytes = r.encode();
            prop_assert_eq!(bytes[0], KIND_MOTION);
            prop_assert_eq!(Record::decode(&bytes), Ok(r));
        }

        /// Uniformly random bytes almost never form a record, so the bytes are a record's with
        /// one byte changed: some still decode (a changed coordinate), most are refused (a
        /// changed flag or reserved byte), and both are checked.
        #[test]
        fn bytes_near_a_record_decode_exactly_or_are_refused(
            r in any_record(),
            i in 0..RECORD_LEN,
            v in any::<u8>(),
        ) {
            let mut b = r.encode();
            b[i] = v;
            match Record::decode(&b) {
                Ok(decoded) => prop_assert_eq!(decoded.encode(), b),
                // Refused only if the change broke a rule: the original bytes decode.
                Err(_) => prop_assert_ne!(b, r.encode()),
            }
        }

        #[test]
        fn the_pixel_centre_lands_on_its_pixel(size in 1u16.., pixel in any::<u16>()) {
            let p = pixel.min(size - 1);
            let a = pixel_centre(pixel, size);
            // spec §3.1: value a means pixel min(⌊a · S / 65535⌋, S − 1).
            let max = u64::from(AXIS_MAX.unsigned_abs());
            let back = (u64::from(a) * u64::from(size) / max).min(u64::from(size) - 1);
            prop_assert_eq!(back, u64::from(p));
        }
    }

    #[test]
    fn what_is_not_defined_is_refused() {
        let good = Record {
            x: Some(7),
            ..Record::default()
        }
        .encode();
        let with = |i: usize, v: u8| {
            let mut b = good;
            b[i] = v;
            Record::decode(&b)
        };
        assert_eq!(with(0, 3), Err(RecordError::UnknownKind(3)));
        assert_eq!(with(1, 0x12), Err(RecordError::UndefinedFlags(0x10)));
        assert_eq!(with(3, 0x20), Err(RecordError::UndefinedButtons(0x20)));
        assert_eq!(with(4, 1), Err(RecordError::DownNotSet(1)));
        assert_eq!(with(5, 1), Err(RecordError::Reserved));
        assert_eq!(with(15, 1), Err(RecordError::Reserved));
        assert_eq!(
            with(2, 1),
            Err(RecordError::Reserved),
            "a display without its flag"
        );
        assert_eq!(
            with(8, 1),
            Err(RecordError::Reserved),
            "a y without its flag"
        );
    }

    #[test]
    fn a_motion_record_defines_less() {
        let good = Record {
            dx: -5,
            dy: 9,
            ..Record::default()
        }
        .encode();
        let with = |i: usize, v: u8| {
            let mut b = good;
            b[i] = v;
            Record::decode(&b)
        };
        assert_eq!(
            with(1, flag::X),
            Err(RecordError::UndefinedFlags(flag::X)),
            "no position"
        );
        for reserved in [2, 5, 14, 15] {
            assert_eq!(with(reserved, 1), Err(RecordError::Reserved), "{reserved}");
        }
        let mut still = good;
        still[6..14].fill(0);
        assert_eq!(
            Record::decode(&still),
            Err(RecordError::Reserved),
            "motion of nothing"
        );
    }

    #[test]
    fn pixel_centres_round_exactly() {
        assert_eq!(pixel_centre(0, 1), 32768, "the middle, half rounded up");
        assert_eq!(pixel_centre(0, 3), 10923, "10922.5 rounds up");
        assert_eq!(pixel_centre(1279, 1280), 65509);
        assert_eq!(
            pixel_centre(5000, 1280),
            65509,
            "past the edge: the last pixel"
        );
        assert_eq!(pixel_centre(0, 0), 32768);
    }
}
