//! `vhost-user-pvmouse`: the host half of pvmouse, a paravirtual multi-display absolute pointer.
//!
//! Control clients speak QMP to [`control`]; their commands become [`pointer::PointerAction`]s,
//! then [`frame::Frame`]s in [`pending::PendingFrames`], which the vring worker in [`backend`]
//! streams into the guest's event queue.

pub mod config_space;
pub mod frame;
pub mod guest_fault;
pub mod identity;
pub mod pending;
pub mod pointer;
pub mod virtqueue;

pub mod backend;
pub mod cli;
pub mod control;
pub mod daemon;
pub mod device;
#[cfg(any(test, feature = "test-utils"))]
pub mod fuzzing;
pub mod notice;
pub mod presence;
pub mod socket;
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
