//! `vhost-user-pvmouse`: the host half of pvmouse, a paravirtual multi-display absolute pointer.
//!
//! Control clients speak QMP to [`control`]; their commands become [`pointer::PointerAction`]s,
//! then [`frame::Frame`]s in [`pending::PendingFrames`]. The thread that submits a command
//! delivers its frames into the guest's event queue itself, under the device lock. The vring
//! worker in [`backend`] only acts on what the guest starts: a kick that brings buffers for frames
//! still pending, the status queue, the device timer.
//!
//! With `--restartable`, [`keeper`] holds the sockets and the frontend's connection and runs all
//! of the above in a worker process that it replaces when it ends; the worker keeps its state
//! in a [`ledger`] the keeper holds.

/// This build's version, as `query-version` and the QMP greeting report it: `PVMOUSE_VERSION`
/// at build time if set (to tell two builds apart, as the upgrade test does), else the crate's.
pub const VERSION: &str = match option_env!("PVMOUSE_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

pub mod config_space;
pub mod coordinates;
pub mod frame;
pub mod guest_fault;
pub mod identity;
pub mod ledger;
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
pub mod keeper;
pub mod notice;
pub mod presence;
pub mod socket;
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
