//! `pvmouse-client`: the client side of pvmouse's control socket ([spec/control.md]).
//!
//! - [`Connection`]: one QMP connection, negotiated. Typed commands ([`command`]) and their
//!   replies, any command by name, and the events that arrive between replies. It speaks to
//!   QEMU's own QMP monitor as well, since the framing is the same.
//! - [`RecordStream`]: a connection switched to 16-byte stream records (`pvmouse-stream`), the
//!   cheap way to relay a viewer's pointer.
//! - [`Reconnecting`]: a record stream that survives the backend going away (a restart, an
//!   upgrade): it connects again on the next record and first sets the caller's whole pointer
//!   state again, so that nothing a cut connection lost is missed.
//!
//! Every refusal reaches the caller as [`Error::Refused`] with QEMU's error class and text;
//! nothing is logged here, so the caller decides what a refusal is worth.
//!
//! [spec/control.md]: https://github.com/pvmouse/pvmouse/blob/main/spec/control.md

pub mod command;
mod connection;
mod reconnect;
mod stream;

pub use connection::Connection;
pub use reconnect::{Outage, Reconnecting, Sent};
pub use stream::{RecordStream, RefusalHook};

/// What can go wrong talking to a control socket.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// The server closed the connection (a backend stopping or restarting, say).
    #[error("the control connection closed")]
    Closed,
    /// The server sent something that is not this protocol.
    #[error("not the control protocol: {0}")]
    Protocol(String),
    /// The server answered with an error: nothing of the command was applied.
    #[error("{command} refused ({class}): {desc}")]
    Refused {
        command: String,
        class: String,
        desc: String,
    },
    /// What was awaited did not come in time.
    #[error("no {0} in time")]
    Timeout(String),
}

impl Error {
    /// Whether the connection this came from is unusable (the caller should connect again),
    /// as opposed to a refusal, after which the connection carries on.
    pub fn is_connection_lost(&self) -> bool {
        !matches!(self, Error::Refused { .. })
    }
}

pub type Result<T> = std::result::Result<T, Error>;
