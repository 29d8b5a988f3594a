//! The pvmouse device profile: identity, axes, buttons, wheels and queue layout.
//! `spec/pvmouse.md` explains each choice.

use crate::evdev::{
    ABS_MISC, ABS_X, ABS_Y, BTN_EXTRA, BTN_LEFT, BTN_MIDDLE, BTN_RIGHT, BTN_SIDE, BUS_VIRTUAL,
    MSC_RAW, REL_HWHEEL, REL_HWHEEL_HI_RES, REL_WHEEL, REL_WHEEL_HI_RES, REL_X, REL_Y,
};

/// The virtio device ID the profile presents (virtio input).
pub const VIRTIO_DEVICE_ID: u32 = 18;

/// Queue indices, as in every virtio-input device.
pub const EVENTQ: u16 = 0;
pub const STATUSQ: u16 = 1;
pub const NUM_QUEUES: u16 = 2;

/// `ID_DEVIDS`. Vendor and product are the ASCII pairs "pv" and "mo": BUS_VIRTUAL has no ID
/// registry, and these collide with no QEMU virtio-input device.
pub const BUSTYPE: u16 = BUS_VIRTUAL;
pub const VENDOR: u16 = 0x7076;
pub const PRODUCT: u16 = 0x6d6f;
/// The profile version. It changes only when the event contract changes.
pub const VERSION: u16 = 0x0001;

pub const DEFAULT_NAME: &str = "pvmouse";
pub const DEFAULT_SERIAL: &str = "pvmouse-0";
/// Linux's virtio_input keeps 64-byte name and serial buffers, NUL included.
pub const MAX_ID_STRING_LEN: usize = 63;

/// ABS_X and ABS_Y cover one display, independent of its size in pixels.
pub const AXIS_MIN: i32 = 0;
pub const AXIS_MAX: i32 = 65535;

/// The display a position belongs to travels on this absolute axis, range `0..=displays-1`.
pub const DISPLAY_AXIS: u16 = ABS_MISC;
pub const MIN_DISPLAYS: u32 = 1;
pub const MAX_DISPLAYS: u32 = 16;

/// High-resolution wheel units per detent (`REL_WHEEL_HI_RES` convention of Linux).
pub const HI_RES_PER_DETENT: i32 = 120;

/// The status-queue code the device advertises for guest→host messages (see [`crate::status`]).
pub const STATUS_MSC_CODE: u16 = MSC_RAW;

/// The capabilities the device advertises, per event type, each in ascending code order. Within a
/// frame, events of one type go in this order too. Everything that lists codes (the config
/// space, the frame encoder, the guest bridge's pointer) derives from these sets.
pub const KEY_CODES: [u16; Button::ALL.len()] = {
    let mut codes = [0; Button::ALL.len()];
    let mut i = 0;
    while i < codes.len() {
        codes[i] = Button::ALL[i].code();
        i += 1;
    }
    codes
};
/// Both wheels, in detents and in high-resolution units.
pub const REL_CODES: [u16; 4] = [REL_HWHEEL, REL_WHEEL, REL_WHEEL_HI_RES, REL_HWHEEL_HI_RES];
/// The position within a display, then the display.
pub const POSITION_CODES: [u16; 2] = [ABS_X, ABS_Y];
pub const ABS_CODES: [u16; 3] = [POSITION_CODES[0], POSITION_CODES[1], DISPLAY_AXIS];
/// Guest→host status messages (the status queue), and the device's answers to them.
pub const MSC_CODES: [u16; 1] = [STATUS_MSC_CODE];

/// The most events one frame can hold, SYN_REPORT included: every absolute axis, every button,
/// every relative code and the acknowledgement at most once, and the position twice more (the
/// renewal after relative mode, see [`PointerMode`]), or relative motion on the relative device.
pub const MAX_FRAME_EVENTS: usize = ABS_CODES.len()
    + POSITION_CODES.len()
    + KEY_CODES.len()
    + REL_CODES.len()
    + MSC_CODES.len()
    + 1;

/// The relative device: a second virtio-input device the same backend serves, for relative
/// motion while the pointer is in [`PointerMode::Relative`]. It carries `REL_X`/`REL_Y` only;
/// buttons and wheels stay on the absolute device in both modes, so no button is ever pressed
/// on one device and released on the other. It advertises the buttons (and never sends them)
/// because udev tags a pointer as a mouse only if it has buttons, and libinput takes only
/// tagged devices.
pub const RELATIVE_PRODUCT: u16 = 0x7265;
pub const RELATIVE_REL_CODES: [u16; 2] = [REL_X, REL_Y];
/// Appended to the device's name and serial for the relative device's.
pub const RELATIVE_SUFFIX: &str = " relative";
pub const RELATIVE_SERIAL_SUFFIX: &str = "-rel";

/// What the host's pointer input means, switched by the host: absolute positions with a
/// display (the default), or relative motion (games and programs that lock the pointer).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PointerMode {
    #[default]
    Absolute,
    Relative,
}

impl PointerMode {
    pub const fn name(self) -> &'static str {
        match self {
            PointerMode::Absolute => "absolute",
            PointerMode::Relative => "relative",
        }
    }

    pub fn from_name(name: &str) -> Option<PointerMode> {
        [PointerMode::Absolute, PointerMode::Relative]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// How many frames the device holds for a guest that is not draining its eventq. Only motion
/// is coalesced, so this bounds button and wheel frames that are waiting.
pub const MAX_PENDING_FRAMES: usize = 4096;

/// The largest queue the device offers; it works with every size from 4 (QEMU 10's
/// vhost-user-input frontend) up to this.
pub const MAX_QUEUE_SIZE: u16 = 1024;

/// The five buttons, in the order the device reports them within a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Button {
    Left,
    Right,
    Middle,
    Side,
    Extra,
}

impl Button {
    pub const ALL: [Button; 5] = [
        Button::Left,
        Button::Right,
        Button::Middle,
        Button::Side,
        Button::Extra,
    ];

    pub const fn code(self) -> u16 {
        match self {
            Button::Left => BTN_LEFT,
            Button::Right => BTN_RIGHT,
            Button::Middle => BTN_MIDDLE,
            Button::Side => BTN_SIDE,
            Button::Extra => BTN_EXTRA,
        }
    }

    /// The name QEMU's `InputButton` enum and the control protocol use.
    pub const fn name(self) -> &'static str {
        match self {
            Button::Left => "left",
            Button::Right => "right",
            Button::Middle => "middle",
            Button::Side => "side",
            Button::Extra => "extra",
        }
    }

    /// This button's bit in a button mask.
    pub const fn bit(self) -> u8 {
        1 << (self as u8)
    }

    pub fn from_name(name: &str) -> Option<Button> {
        Button::ALL.into_iter().find(|b| b.name() == name)
    }

    pub fn from_code(code: u16) -> Option<Button> {
        Button::ALL.into_iter().find(|b| b.code() == code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn button_bits_are_distinct_and_codes_ascend() {
        let mut seen = 0u8;
        for pair in Button::ALL.windows(2) {
            assert!(pair[0].code() < pair[1].code());
        }
        for b in Button::ALL {
            assert_eq!(seen & b.bit(), 0);
            seen |= b.bit();
            assert_eq!(Button::from_name(b.name()), Some(b));
            assert_eq!(Button::from_code(b.code()), Some(b));
        }
        assert_eq!(seen, 0b1_1111);
    }

    #[test]
    fn largest_frame_has_sixteen_events() {
        assert_eq!(MAX_FRAME_EVENTS, 16);
    }

    #[test]
    fn code_sets_ascend_without_repeats() {
        for set in [&KEY_CODES[..], &REL_CODES, &ABS_CODES, &MSC_CODES] {
            assert!(set.windows(2).all(|w| w[0] < w[1]), "{set:?}");
        }
        assert_eq!(
            KEY_CODES,
            [BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE, BTN_EXTRA]
        );
    }
}
