//! `pvmouse-vnc`: VNC viewers on a multi-monitor guest, with their pointer through pvmouse. An
//! RFB proxy per head in front of QEMU's VNC servers; see README.md beside this crate.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use pvmouse_vnc::cli::Cli;
use pvmouse_vnc::mode::ModeWatch;
use pvmouse_vnc::proxy::{Address, Head, listen};

/// How long the check of the heads against the backend waits for it at start.
const CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The largest heads file read: 16 heads take well under 2 KiB.
const MAX_HEADS_FILE: u64 = 64 * 1024;

/// The heads file's lines, from a regular file of at most [`MAX_HEADS_FILE`] bytes: a FIFO or a
/// device (`/dev/zero`) is refused, not read for ever.
fn read_heads_file(path: &Path) -> Result<Vec<Head>, String> {
    let shown = path.display();
    // Non-blocking, so that opening a FIFO does not wait for a writer.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("{shown}: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("{shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown}: not a regular file"));
    }
    let mut text = String::new();
    file.take(MAX_HEADS_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{shown}: {e}"))?;
    if text.len() as u64 > MAX_HEADS_FILE {
        return Err(format!("{shown}: larger than {MAX_HEADS_FILE} bytes"));
    }
    let mut heads = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        heads.push(
            line.parse()
                .map_err(|e| format!("{shown}, line {}: {e}", n + 1))?,
        );
    }
    Ok(heads)
}

/// Refuses a head whose display the backend does not have, when the backend answers now: every
/// click on it would be refused. A backend not running yet is waited for by each viewer.
fn check_displays(control: &Path, heads: &[Head]) -> Result<(), String> {
    let answer = pvmouse_client::Connection::connect_timeout(control, CHECK_WAIT)
        .and_then(|mut c| c.status());
    let status = match answer {
        Ok(status) => status,
        Err(e) => {
            tracing::warn!(control = %control.display(), "the backend's control socket does not answer now ({e}); heads are checked by use");
            return Ok(());
        }
    };
    match heads.iter().find(|h| h.display >= status.displays) {
        Some(h) => Err(format!(
            "head {} is display {}, but the backend has {} display(s)",
            h.listen, h.display, status.displays
        )),
        None => Ok(()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    pvmouse_logging::init();
    // Sockets this process creates are its user's alone: set before any thread starts.
    // SAFETY: umask only swaps the process's file-creation mask; it cannot fail.
    unsafe { libc::umask(0o177) };
    let mut heads = cli.heads;
    if let Some(path) = &cli.heads_file {
        match read_heads_file(path) {
            Ok(more) => heads.extend(more),
            Err(e) => {
                eprintln!("pvmouse-vnc: {e}");
                return ExitCode::from(2);
            }
        }
    }
    if heads.is_empty() {
        eprintln!("pvmouse-vnc: no heads: give --head or --heads-file");
        return ExitCode::from(2);
    }
    if let Err(e) = check_displays(&cli.control, &heads) {
        eprintln!("pvmouse-vnc: {e}");
        return ExitCode::from(2);
    }
    // Asked for before any head starts, so that no signal finds the default action.
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("pvmouse-vnc: cannot watch for SIGTERM: {e}");
            return ExitCode::FAILURE;
        }
    };
    // pvmouse's pointer mode, followed once for all heads.
    let mode = match ModeWatch::start(cli.control.clone()) {
        Ok(mode) => mode,
        Err(e) => {
            eprintln!("pvmouse-vnc: cannot follow pvmouse's pointer mode: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut sockets = Vec::new();
    for head in heads {
        let shown = format!("display {} on {}", head.display, head.listen);
        let unix = match &head.listen {
            Address::Unix(path) => Some(path.clone()),
            Address::Tcp(_) => None,
        };
        if let Err(e) = listen(
            head,
            cli.control.clone(),
            usize::from(cli.max_viewers),
            mode.clone(),
        ) {
            eprintln!("pvmouse-vnc: cannot listen for {shown}: {e}");
            remove(&sockets);
            return ExitCode::FAILURE;
        }
        sockets.extend(unix);
    }
    // The heads run on their own threads until a signal ends the process. Its control
    // connections close with it, and the backend lets go of what the viewers held.
    if let Some(signal) = signals.forever().next() {
        tracing::info!(signal, "stopping: removing the listening sockets");
    }
    remove(&sockets);
    ExitCode::SUCCESS
}

/// Removes the Unix sockets the heads listen on.
fn remove(sockets: &[PathBuf]) {
    for path in sockets {
        let _ = std::fs::remove_file(path);
    }
}
