//! The command line (kept in the library so that the man page is rendered from it).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use pvmouse_spec::session::DEFAULT_SOCKET;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Server {
    /// Wayland if WAYLAND_DISPLAY is set, else X11 if DISPLAY is.
    Auto,
    Wayland,
    X11,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Mode {
    Desktop,
    PerDisplay,
}

/// pvmouse session agent: tells pvmouse-guestd the display server's logical layout.
#[derive(Debug, Parser)]
#[command(name = "pvmouse-session", version, about)]
pub struct Cli {
    /// Which display server to read.
    #[arg(long, value_enum, default_value = "auto")]
    pub server: Server,

    /// The pointer mode to ask for, instead of the one the display server needs as far as the
    /// agent knows (per-display for Weston, desktop for the others).
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,

    /// pvmouse-guestd's session socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// Print the layout as JSON lines on standard output instead of sending it.
    #[arg(long)]
    pub print: bool,
}
