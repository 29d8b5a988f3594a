//! The host control protocol: QMP over a Unix socket (`spec/control.md`).

pub mod args;
pub mod commands;
pub mod conversation;
pub mod events;
pub mod framing;
pub mod qmp;
pub mod server;
pub mod stream;

pub use server::{ControlHandle, ControlServer};
