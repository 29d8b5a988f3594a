//! `pvmouse-vnc`, the VNC front door: an RFB proxy per head in front of QEMU's VNC servers. The
//! viewers' pointer events become pvmouse input on that head's display; everything else passes
//! through. It is a client of the backend's control socket, so it is a crate of its own: it
//! ships, runs and restarts apart from the backend.

pub mod cli;
pub mod delivery;
pub mod downstream;
#[cfg(any(test, feature = "test-utils"))]
pub mod fuzzing;
pub mod mode;
pub mod pointer;
pub mod proxy;
pub mod rfb;
