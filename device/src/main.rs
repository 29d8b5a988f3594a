use std::process::ExitCode;

use clap::Parser;
use vhost_user_pvmouse::{self as daemon, Ending};
use vhost_user_pvmouse::{Activated, Cli, Config, Role, capabilities_json};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_capabilities {
        println!("{}", capabilities_json());
        return ExitCode::SUCCESS;
    }
    // Sockets systemd handed over, taken before anything else opens a descriptor. They come
    // marked close-on-exec, and their variables are unset so that no child takes them.
    // SAFETY: the variables are removed while this process has one thread: nothing reads the
    // environment concurrently.
    let activated = match unsafe { sd_notify::listen_fds_with_names_and_unset_env() } {
        Ok(fds) => Activated::from_named(fds),
        Err(e) => {
            eprintln!("vhost-user-pvmouse: cannot take the sockets systemd handed over: {e}");
            return ExitCode::from(2);
        }
    };
    pvmouse_logging::init();
    // SAFETY: umask only swaps the process's file-creation mask; no memory is involved. It runs
    // before any thread starts, so every socket this process creates is born 0600.
    unsafe { libc::umask(0o177) };
    let config = match activated.and_then(|activated| Config::new(cli, activated)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vhost-user-pvmouse: {e}");
            return ExitCode::from(2);
        }
    };
    if let Role::Worker(_) = config.role {
        abort_on_panic();
    }
    let result = daemon::listen(&config).and_then(|listening| {
        // Only now: the watcher opens descriptors, and `--fd N` has been taken.
        let (stopper, stops) = daemon::stop_channel();
        watch_signals(stopper).map_err(daemon::DaemonError::Setup)?;
        daemon::run(config, listening, stops)
    });
    match result {
        // The keeper starts the binary now on disk; the status tells it this end was asked for.
        Ok(Ending::Upgrade | Ending::Terminated) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM and SIGINT stop the backend cleanly (buttons let go, sockets removed) instead of
/// killing it where it stands.
fn watch_signals(stopper: daemon::Stopper) -> std::io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new()
        .name("pvmouse-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                tracing::info!(signal, "asked to stop");
                stopper.terminate();
            }
        })?;
    Ok(())
}

/// In a keeper's worker, a panic on any thread ends the whole process: the keeper starts
/// another, which takes over the state. Unwinding would end only the thread that panicked and
/// leave a device that half works.
fn abort_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        tracing::error!("worker panicked: {info}; ending it, the keeper starts another");
        std::process::abort();
    }));
}
