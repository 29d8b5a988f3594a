//! The contract between pvmouse's host backend (`vhost-user-pvmouse`) and its guest bridge
//! (`pvmouse-guestd`): the device profile's identity and ranges, the evdev codes it uses, the
//! little-endian event wire type, the status-queue presence messages, the control protocol's
//! limits, and the guest-local session protocol.
//!
//! `spec/pvmouse.md` and `spec/control.md` are normative; this crate is their machine-readable
//! half. Nothing in `device/` or `guest-uinput/` declares these values again.

#![forbid(unsafe_code)]

pub mod control;
pub mod evdev;
pub mod layout;
pub mod profile;
pub mod session;
pub mod status;
pub mod stream;
pub mod wire;

pub use wire::InputEvent;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
