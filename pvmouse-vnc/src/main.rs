//! `pvmouse-vnc`: VNC viewers on a multi-monitor guest, with their pointer through pvmouse. An
//! RFB proxy per head in front of QEMU's VNC servers; see README.md beside this crate.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pvmouse_vnc::proxy::{Head, listen};

/// VNC front door for pvmouse: proxies each head's QEMU VNC server and turns the viewers'
/// pointer events into pvmouse input on that head's display.
#[derive(Debug, Parser)]
#[command(name = "pvmouse-vnc", version, about)]
struct Cli {
    /// vhost-user-pvmouse's control socket.
    #[arg(long, value_name = "PATH")]
    control: PathBuf,

    /// One head: the pvmouse display, where viewers connect, and the QEMU VNC server for that
    /// head, e.g. `1=tcp:127.0.0.1:5951,unix:/run/qemu/vnc1.sock`. Repeat for each head.
    #[arg(long = "head", value_name = "DISPLAY=LISTEN,UPSTREAM")]
    heads: Vec<Head>,

    /// A file of heads, one `DISPLAY=LISTEN,UPSTREAM` a line (`#` starts a comment), for many.
    #[arg(long, value_name = "PATH")]
    heads_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    pvmouse_logging::init();
    let mut heads = cli.heads;
    if let Some(path) = &cli.heads_file {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("pvmouse-vnc: {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            match line.parse() {
                Ok(h) => heads.push(h),
                Err(e) => {
                    eprintln!("pvmouse-vnc: {}, line {}: {e}", path.display(), n + 1);
                    return ExitCode::from(2);
                }
            }
        }
    }
    if heads.is_empty() {
        eprintln!("pvmouse-vnc: no heads: give --head or --heads-file");
        return ExitCode::from(2);
    }
    let mut threads = Vec::new();
    for head in heads {
        let shown = format!("display {} on {}", head.display, head.listen);
        match listen(head, cli.control.clone()) {
            Ok(t) => threads.push(t),
            Err(e) => {
                eprintln!("pvmouse-vnc: cannot listen for {shown}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    for t in threads {
        let _ = t.join();
    }
    ExitCode::SUCCESS
}
