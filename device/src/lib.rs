//! `vhost-user-pvmouse`: the host half of pvmouse, a paravirtual multi-display absolute pointer.
//!
//! Control clients speak QMP to [`control`]; their commands become [`pointer::PointerAction`]s,
//! then [`frame::Frame`]s in [`pending::PendingFrames`]. The thread that submits a command
//! delivers its frames into the guest's event queue itself, under the device lock. The vring
//! worker in [`backend`] only acts on what the guest starts: a kick that brings buffers for frames
//! still pending, the status queue, the bridge presence timer.

pub mod config_space;
pub mod coordinates;
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
