//! `vhost-user-pvmouse`: the host half of pvmouse, a paravirtual multi-display absolute pointer.
//!
//! Control clients speak QMP to `control`; their commands become [`PointerAction`]s, then
//! `frame::Frame`s in `pending::PendingFrames`. The thread that submits a command
//! delivers its frames into the guest's event queue itself, under the device lock. The vring
//! worker in [`PvMouseBackend`] only acts on what the guest starts: a kick that brings buffers for frames
//! still pending, the status queue, the device timer.
//!
//! With `--restartable`, `keeper` holds the sockets and the frontend's connection and runs all
//! of the above in a worker process that it replaces when it ends; the worker keeps its state
//! in a `ledger` the keeper holds.

/// This build's version, as `query-version` and the QMP greeting report it: `PVMOUSE_VERSION`
/// at build time if set (to tell two builds apart, as the upgrade test does), else the crate's.
pub const VERSION: &str = match option_env!("PVMOUSE_VERSION") {
    Some(v) => v,
    None => env!("CARGO_PKG_VERSION"),
};

// The backend's internals: everything below is `pub(crate)` in effect, reachable only through
// the façade that follows, so that a refactoring inside stays inside.
mod backend;
mod cli;
mod config_space;
mod control;
mod coordinates;
mod daemon;
mod device;
mod frame;
mod guest_fault;
mod identity;
mod keeper;
mod ledger;
mod notice;
mod pending;
mod pointer;
mod presence;
mod socket;
mod virtqueue;

// The device: what a control client's commands become, and what it reports.
pub use device::{Counters, DeviceStatus, PointerDevice, PvMouse, SubmitError, Submitted};
pub use identity::{Identity, IdentityError};
pub use notice::{Notice, NoticeBoard};
pub use pending::QueueFull;
pub use pointer::{PointerAction, PointerState, WheelAxis};

// Its configuration: the command line, validated.
pub use cli::{
    Activated, CONTROL_FD_NAME, Cli, Config, ConfigError, ControlSocket, Role, VHOST_USER_FD_NAME,
    VhostSocket, capabilities_json,
};
pub use socket::{SocketAccess, SocketError};

// Serving it: the vhost-user backend, the control server, the daemon that runs both.
pub use backend::PvMouseBackend;
pub use control::{ControlHandle, ControlServer};
pub use daemon::{
    DaemonError, Ending, Listening, Stopper, Stops, listen, run, serve, stop_channel,
    vhost_listener,
};

/// The bodies of the cargo-fuzz targets (`fuzz/`), replayed over their corpora in `cargo test`.
#[cfg(any(test, feature = "test-utils"))]
pub mod fuzzing;
/// A mock guest, a real control server without a guest, and the protocol cores that tests and
/// benchmarks drive directly.
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
