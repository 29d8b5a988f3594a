use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pvmouse_guestd::cli::{Cli, Mode};
use pvmouse_guestd::daemon::{self, Config};
use pvmouse_guestd::layout::resolve::Sources;
use pvmouse_guestd::mapper::PointerMode;
use pvmouse_guestd::session::{Access, LOGIND_SEAT};

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
