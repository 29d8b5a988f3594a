//! `pvmouse-manybench`: many restartable backends on one host, each attached by an in-process
//! frontend as QEMU attaches one, measured together (see `many_vms`). Writes its figures as
//! JSON and its section of RESULTS.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pvmouse_benches::many_vms::{Plan, run};
use pvmouse_benches::report::Section;

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Backends (VMs) to run at once.
    #[arg(long, default_value_t = 100)]
    vms: usize,
    /// Seconds all of them are measured idle.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// VM 0's latency samples, alone and under load each.
    #[arg(long, default_value_t = 1000)]
    samples: usize,
    /// Moves a second per VM.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Five VMs, 3 s idle, 100 samples, into target/vm-bench/ (CI runs it as a test).
    #[arg(long)]
    smoke: bool,
}

fn main() -> ExitCode {
    match main_result(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pvmouse-manybench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main_result(cli: Cli) -> Result<(), String> {
    let root = pvmouse_vmtest::assets::workspace_root();
    let backend = pvmouse_vmtest::assets::build_binaries()
        .map_err(|e| e.to_string())?
        .backend;
    let plan = if cli.smoke {
        Plan {
            vms: 5,
            idle: Duration::from_secs(3),
            samples: 100,
            rate_hz: cli.rate,
            backend,
        }
    } else {
        Plan {
            vms: cli.vms,
            idle: Duration::from_secs(cli.idle_seconds),
            samples: cli.samples,
            rate_hz: cli.rate,
            backend,
        }
    };
    let command = if cli.smoke {
        "pvmouse-manybench --smoke".to_owned()
    } else {
        "make bench-many".to_owned()
    };
    let figures = run(&plan, &command)?;
    let (results, data) = if cli.smoke {
        let out = root.join("target/vm-bench");
        (out.join("RESULTS.md"), out)
    } else {
        (
            root.join("benches/RESULTS.md"),
            root.join("benches/results"),
        )
    };
    std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    let json = serde_json::to_string_pretty(&figures).map_err(|e| e.to_string())?;
    let data_file: PathBuf = Section::ManyVms.data_file(&data);
    std::fs::write(&data_file, json + "\n").map_err(|e| format!("{}: {e}", data_file.display()))?;
    let section = Section::ManyVms
        .render(&figures)
        .map_err(|e| format!("rendering: {e:#}"))?;
    println!("{section}");
    let existing = std::fs::read_to_string(&results).unwrap_or_else(|_| "# Results\n".into());
    std::fs::write(&results, Section::ManyVms.splice(&existing, &section))
        .map_err(|e| format!("{}: {e}", results.display()))?;
    Ok(())
}
