//! The Linux evdev event types and codes the pvmouse profile uses, with the values of
//! `include/uapi/linux/input-event-codes.h`. Only the codes the profile needs are listed.

pub const EV_SYN: u16 = 0x00;
pub const EV_KEY: u16 = 0x01;
pub const EV_REL: u16 = 0x02;
pub const EV_ABS: u16 = 0x03;
pub const EV_MSC: u16 = 0x04;
pub const EV_REP: u16 = 0x14;

pub const SYN_REPORT: u16 = 0;
/// The kernel's client buffer overflowed: a reader lost events (never sent by a device).
pub const SYN_DROPPED: u16 = 3;

pub const BTN_LEFT: u16 = 0x110;
pub const BTN_RIGHT: u16 = 0x111;
pub const BTN_MIDDLE: u16 = 0x112;
pub const BTN_SIDE: u16 = 0x113;
pub const BTN_EXTRA: u16 = 0x114;

pub const REL_X: u16 = 0x00;
pub const REL_Y: u16 = 0x01;
pub const REL_HWHEEL: u16 = 0x06;
pub const REL_WHEEL: u16 = 0x08;
pub const REL_WHEEL_HI_RES: u16 = 0x0b;
pub const REL_HWHEEL_HI_RES: u16 = 0x0c;

pub const ABS_X: u16 = 0x00;
pub const ABS_Y: u16 = 0x01;
pub const ABS_MISC: u16 = 0x28;

pub const MSC_RAW: u16 = 0x03;

/// `BUS_VIRTUAL` from `include/uapi/linux/input.h`.
pub const BUS_VIRTUAL: u16 = 0x06;
