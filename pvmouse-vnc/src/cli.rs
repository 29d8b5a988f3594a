//! The command line (kept in the library so that the man page is rendered from it).

use std::path::PathBuf;

use clap::Parser;

use crate::proxy::{DEFAULT_MAX_VIEWERS, Head};

/// VNC front door for pvmouse: proxies each head's QEMU VNC server and turns the viewers'
/// pointer events into pvmouse input on that head's display.
#[derive(Debug, Parser)]
#[command(name = "pvmouse-vnc", version, about)]
pub struct Cli {
    /// vhost-user-pvmouse's control socket.
    #[arg(long, value_name = "PATH")]
    pub control: PathBuf,

    /// One head: the pvmouse display, where viewers connect, and the QEMU VNC server for that
    /// head, e.g. `1=tcp:127.0.0.1:5951,unix:/run/qemu/vnc1.sock`. Repeat for each head.
    #[arg(long = "head", value_name = "DISPLAY=LISTEN,UPSTREAM")]
    pub heads: Vec<Head>,

    /// A file of heads, one `DISPLAY=LISTEN,UPSTREAM` a line (`#` starts a comment), for many.
    #[arg(long, value_name = "PATH")]
    pub heads_file: Option<PathBuf>,

    /// Viewers served at once per head; the next few are told why not, and beyond twice this
    /// many a connection is closed unread.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_VIEWERS,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub max_viewers: u16,
}
