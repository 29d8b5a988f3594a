use std::process::ExitCode;

use clap::Parser;
use vhost_user_pvmouse::cli::{Cli, Config, capabilities_json};
use vhost_user_pvmouse::{daemon, keeper};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.print_capabilities {
        println!("{}", capabilities_json());
        return ExitCode::SUCCESS;
    }
    pvmouse_logging::init();
    // SAFETY: umask only swaps the process's file-creation mask; no memory is involved. It runs
    // before any thread starts, so every socket this process creates is born 0600.
    unsafe { libc::umask(0o177) };
    let config = match Config::try_from(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("vhost-user-pvmouse: {e}");
            return ExitCode::from(2);
        }
    };
    let run = if config.restartable {
        keeper::run
    } else {
        daemon::run
    };
    match run(config) {
        Ok(never) => match never {},
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
