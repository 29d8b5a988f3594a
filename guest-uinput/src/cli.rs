//! The command line (kept in the library so that the man page is rendered from it).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use pvmouse_spec::session::DEFAULT_SOCKET;

use crate::pointers::DEFAULT_UDEV_RULES;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Mode {
    /// What the session agent says its display server needs; desktop without an agent.
    Auto,
    /// One pointer over the layout's bounding box (X11, mutter, KWin, sway).
    Desktop,
    /// One pointer per display, bound to its output with udev's WL_OUTPUT (Weston).
    PerDisplay,
}

/// pvmouse guest bridge: grabs pvmouse devices and drives one uinput absolute pointer that
/// spans the guest's multi-monitor desktop.
#[derive(Debug, Parser)]
#[command(name = "pvmouse-guestd", version, about)]
pub struct Cli {
    /// The layout, as `ID=WIDTHxHEIGHT@X,Y` entries separated by commas; overrides any file
    /// and DRM detection. Example: `0=1024x768@0,0,1=1280x1024@1024,0`.
    #[arg(long, value_name = "SPEC")]
    pub layout: Option<String>,

    /// A TOML layout file (default: /etc/pvmouse/layout.toml, if it exists).
    #[arg(long, value_name = "PATH")]
    pub layout_file: Option<PathBuf>,

    /// How many pointers to create and how they map; `auto` follows the session agent.
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: Mode,

    /// The socket session agents (`pvmouse-session`) connect to.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub session_socket: PathBuf,

    /// Serve no session socket: the layout comes from --layout, the file or DRM only.
    #[arg(long)]
    pub no_session: bool,

    /// The user (name or uid) whose session agent may set the layout, besides root and the
    /// user logind says is active on seat0.
    #[arg(long, value_name = "USER")]
    pub session_user: Option<String>,

    /// Map every event in the bridge even in desktop mode, instead of handing the layout to the
    /// device so the display server reads it directly (slower: one more hop per event).
    #[arg(long)]
    pub map_in_bridge: bool,

    /// Where the per-display pointers' udev binding rules are written.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_UDEV_RULES, hide = true)]
    pub udev_rules: PathBuf,

    /// Where evdev nodes live.
    #[arg(long, value_name = "DIR", default_value = "/dev/input", hide = true)]
    pub input_dir: PathBuf,

    /// Where DRM card nodes live.
    #[arg(long, value_name = "DIR", default_value = "/dev/dri", hide = true)]
    pub dri_dir: PathBuf,
}
