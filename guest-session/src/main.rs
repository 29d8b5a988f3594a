//! `pvmouse-session`: the per-user half of pvmouse's guest side. It runs in the graphical
//! session, reads the display server's logical layout (X11 RandR, or Wayland `wl_output` and
//! `xdg-output`), and tells `pvmouse-guestd` over its session socket, again whenever it
//! changes.

mod bridge;
mod wayland;
mod x11;

use std::process::ExitCode;
use std::sync::mpsc::channel;

use clap::Parser;
use pvmouse_session::cli::{Cli, Mode, Server};
use pvmouse_spec::session::{PointerMode, SessionLayout};

fn main() -> ExitCode {
    let cli = Cli::parse();
    pvmouse_logging::init();
    let server = match cli.server {
        Server::Auto if std::env::var_os("WAYLAND_DISPLAY").is_some() => Server::Wayland,
        Server::Auto if std::env::var_os("DISPLAY").is_some() => Server::X11,
        Server::Auto => {
            eprintln!("pvmouse-session: neither WAYLAND_DISPLAY nor DISPLAY is set");
            return ExitCode::from(2);
        }
        s => s,
    };
    let forced = cli.mode.map(|m| match m {
        Mode::Desktop => PointerMode::Desktop,
        Mode::PerDisplay => PointerMode::PerDisplay,
    });
    let (tx, rx) = channel();
    let report = {
        let tx = tx.clone();
        let print = cli.print;
        move |mut layout: SessionLayout| {
            if let Some(mode) = forced {
                layout.mode = mode;
            }
            if print {
                println!("{}", serde_json::to_string(&layout).unwrap_or_default());
                return true;
            }
            tx.send(bridge::Event::Layout(layout)).is_ok()
        }
    };
    if !cli.print {
        let socket = cli.socket.clone();
        std::thread::spawn(move || bridge::run(socket, rx, tx));
    }
    let result = match server {
        Server::Wayland => wayland::watch(report).map_err(|e| e.to_string()),
        _ => x11::watch(report).map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pvmouse-session: {e}");
            ExitCode::FAILURE
        }
    }
}
