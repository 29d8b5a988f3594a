use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pvmouse_guestd::daemon::{self, Config};
use pvmouse_guestd::layout::resolve::Sources;

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

    /// Where evdev nodes live.
    #[arg(long, value_name = "DIR", default_value = "/dev/input", hide = true)]
    input_dir: PathBuf,

    /// Where DRM card nodes live.
    #[arg(long, value_name = "DIR", default_value = "/dev/dri", hide = true)]
    dri_dir: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = Config {
        layout: Sources {
            spec: cli.layout,
            file: cli.layout_file,
            default_file: PathBuf::from("/etc/pvmouse/layout.toml"),
            dri_dir: cli.dri_dir,
        },
        input_dir: cli.input_dir,
    };
    match daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pvmouse-guestd: {e}");
            ExitCode::FAILURE
        }
    }
}
