//! `pvmouse-guestd`: the guest half of pvmouse. It grabs pvmouse's raw evdev devices, maps
//! (display, x, y) onto the guest's multi-monitor desktop, and injects the result through
//! uinput as one ordinary absolute pointer.

pub mod arbitration;
pub mod cli;
pub mod daemon;
pub mod devices;
pub mod drm_hotplug;
#[cfg(any(test, feature = "test-utils"))]
pub mod fuzzing;
pub mod handoff;
pub mod layout;
pub mod mapper;
pub mod output;
pub mod pointers;
pub mod session;
