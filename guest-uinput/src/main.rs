use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use pvmouse_guestd::daemon::{self, Config};
use pvmouse_guestd::layout::resolve::Sources;
use pvmouse_guestd::mapper::PointerMode;
use pvmouse_guestd::pointers::DEFAULT_UDEV_RULES;
use pvmouse_guestd::session::{Access, LOGIND_SEAT};
use pvmouse_spec::session::DEFAULT_SOCKET;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
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
struct Cli {
    /// The layout, as `ID=WIDTHxHEIGHT@X,Y` entries separated by commas; overrides any file
    /// and DRM detection. Example: `0=1024x768@0,0,1=1280x1024@1024,0`.
    #[arg(long, value_name = "SPEC")]
    layout: Option<String>,

    /// A TOML layout file (default: /etc/pvmouse/layout.toml, if it exists).
    #[arg(long, value_name = "PATH")]
    layout_file: Option<PathBuf>,

    /// How many pointers to create and how they map; `auto` follows the session agent.
    #[arg(long, value_enum, default_value = "auto")]
    mode: Mode,

    /// The socket session agents (`pvmouse-session`) connect to.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    session_socket: PathBuf,

    /// Serve no session socket: the layout comes from --layout, the file or DRM only.
    #[arg(long)]
    no_session: bool,

    /// The user (name or uid) whose session agent may set the layout, besides root and the
    /// user logind says is active on seat0.
    #[arg(long, value_name = "USER")]
    session_user: Option<String>,

    /// Map every event in the bridge even in desktop mode, instead of handing the layout to the
    /// device so the display server reads it directly (slower: one more hop per event).
    #[arg(long)]
    map_in_bridge: bool,

    /// Where the per-display pointers' udev binding rules are written.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_UDEV_RULES, hide = true)]
    udev_rules: PathBuf,

    /// Where evdev nodes live.
    #[arg(long, value_name = "DIR", default_value = "/dev/input", hide = true)]
    input_dir: PathBuf,

    /// Where DRM card nodes live.
    #[arg(long, value_name = "DIR", default_value = "/dev/dri", hide = true)]
    dri_dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    pvmouse_logging::init();
    let user = match cli.session_user.as_deref().map(uid_of).transpose() {
        Ok(user) => user,
        Err(e) => {
            eprintln!("pvmouse-guestd: --session-user: {e}");
            return ExitCode::from(2);
        }
    };
    let config = Config {
        layout: Sources {
            spec: cli.layout,
            file: cli.layout_file,
            default_file: PathBuf::from("/etc/pvmouse/layout.toml"),
            dri_dir: cli.dri_dir,
            session: None,
        },
        input_dir: cli.input_dir,
        mode: match cli.mode {
            Mode::Auto => None,
            Mode::Desktop => Some(PointerMode::Desktop),
            Mode::PerDisplay => Some(PointerMode::PerDisplay),
        },
        session: (!cli.no_session).then(|| {
            (
                cli.session_socket,
                Access {
                    user,
                    seat_file: PathBuf::from(LOGIND_SEAT),
                },
            )
        }),
        udev_rules: cli.udev_rules,
        handoff: !cli.map_in_bridge,
    };
    match daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pvmouse-guestd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A uid, or a user name looked up in /etc/passwd (no NSS: the binary is static).
fn uid_of(user: &str) -> Result<u32, String> {
    if let Ok(uid) = user.parse() {
        return Ok(uid);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(user)).then(|| f.nth(1)?.parse().ok())?
        })
        .ok_or_else(|| format!("no user {user:?} in /etc/passwd"))
}
