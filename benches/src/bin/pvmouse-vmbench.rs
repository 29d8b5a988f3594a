//! `pvmouse-vmbench`: pvmouse against QEMU's virtio-tablet and usb-tablet, side by side, each in
//! its own VM from the same guest image; then the desktop path, from the host to a client of
//! sway, in one desktop VM. It writes both sections of RESULTS.md and a latency CDF.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use pvmouse_benches::desktop_path::{self, DesktopPlan};
use pvmouse_benches::environment::Environment;
use pvmouse_benches::kinds::Kind;
use pvmouse_benches::run::{Plan, log_to, run_all};
use pvmouse_benches::vnc_path;
use pvmouse_benches::{cdf_plot, report};

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// A few hundred samples per kind, to check that the benchmark works (CI).
    #[arg(long)]
    smoke: bool,
    /// Kinds to run, comma-separated (default all): floor, pvmouse-bridged, pvmouse-raw,
    /// virtio-tablet, usb-tablet-xhci, usb-tablet-uhci.
    #[arg(long, value_delimiter = ',')]
    kinds: Vec<String>,
    /// Where to write the results file; its generated section is replaced, the rest kept.
    /// Default: benches/RESULTS.md, or target/vm-bench/RESULTS.md with --smoke.
    #[arg(long)]
    results: Option<PathBuf>,
    /// Where to draw the latency CDF (SVG). Default: beside the results file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Button transitions in the burst, instead of the plan's (8000, or 800 with --smoke).
    #[arg(long)]
    burst: Option<usize>,
    /// Only the desktop path (host to a client of sway), not the device kinds.
    #[arg(long, conflicts_with = "no_desktop")]
    desktop_only: bool,
    /// Skip the desktop path.
    #[arg(long)]
    no_desktop: bool,
    /// Only the VNC path (a viewer through pvmouse-vnc, beside QEMU's VNC and virtio-tablet).
    #[arg(long, conflicts_with_all = ["desktop_only", "no_vnc"])]
    vnc_only: bool,
    /// Skip the VNC path.
    #[arg(long)]
    no_vnc: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let kinds: Vec<Kind> = if cli.kinds.is_empty() {
        Kind::ALL.to_vec()
    } else {
        let mut kinds = Vec::new();
        for id in &cli.kinds {
            match Kind::from_id(id) {
                Some(k) => kinds.push(k),
                None => {
                    eprintln!("pvmouse-vmbench: unknown kind {id:?}");
                    return ExitCode::from(2);
                }
            }
        }
        kinds
    };
    let root = pvmouse_vmtest::assets::workspace_root();
    let out_dir = root.join("target/vm-bench");
    if let Err(e) = std::fs::create_dir_all(&out_dir) {
        eprintln!("pvmouse-vmbench: {}: {e}", out_dir.display());
        return ExitCode::FAILURE;
    }
    let results_path = cli.results.unwrap_or_else(|| {
        if cli.smoke {
            out_dir.join("RESULTS.md")
        } else {
            root.join("benches/RESULTS.md")
        }
    });
    let plot_path = cli
        .plot
        .unwrap_or_else(|| results_path.with_file_name("latency-cdf.svg"));
    let mut plan = if cli.smoke {
        Plan::smoke()
    } else {
        Plan::full()
    };
    if let Some(n) = cli.burst {
        plan.burst_transitions = n;
    }
    // Pacing sleeps must wake on time: the default 50 µs timer slack would skew 8 kHz bursts.
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and touches no memory of ours.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0);
    }
    let command = if cli.smoke {
        "make bench-smoke"
    } else {
        "make bench"
    };
    let mut env = Environment::of_host(command);
    let log = log_to(&out_dir.join("vm-bench.log"));
    let mut results_file =
        std::fs::read_to_string(&results_path).unwrap_or_else(|_| "# Results\n".into());
    if !cli.desktop_only && !cli.vnc_only {
        let results = match run_all(&kinds, &plan, &mut env, &log) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("pvmouse-vmbench: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = cdf_plot::draw(&results, plan.steady_rate_hz, &plot_path) {
            eprintln!("pvmouse-vmbench: plotting {}: {e}", plot_path.display());
            return ExitCode::FAILURE;
        }
        let plot_name = plot_path.file_name().map_or_else(
            || plot_path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let section = report::markdown(&results, &env, &plan, &plot_name);
        results_file = report::splice(&results_file, &section);
        println!("{section}");
    }
    if !cli.no_desktop && !cli.vnc_only {
        let desktop_plan = if cli.smoke {
            DesktopPlan::smoke()
        } else {
            DesktopPlan::full()
        };
        let results = match desktop_path::measure(&desktop_plan, &log) {
            Ok((r, kernel)) => {
                env.guest_kernel = kernel;
                r
            }
            Err(e) => {
                eprintln!("pvmouse-vmbench: desktop path: {e}");
                return ExitCode::FAILURE;
            }
        };
        let section = report::desktop_markdown(&results, &env, &desktop_plan);
        results_file = report::splice_between(
            &results_file,
            report::DESKTOP_BEGIN,
            report::DESKTOP_END,
            &section,
        );
        println!("{section}");
    }
    if !cli.no_vnc && !cli.desktop_only {
        let (rate, samples) = if cli.smoke {
            (100.0, 150)
        } else {
            (200.0, 2000)
        };
        let results = match vnc_path::measure(rate, samples, &log) {
            Ok((r, kernel)) => {
                env.guest_kernel = kernel;
                r
            }
            Err(e) => {
                eprintln!("pvmouse-vmbench: VNC path: {e}");
                return ExitCode::FAILURE;
            }
        };
        let section = report::vnc_markdown(&results, &env, rate, samples);
        results_file =
            report::splice_between(&results_file, report::VNC_BEGIN, report::VNC_END, &section);
        println!("{section}");
    }
    if let Err(e) = std::fs::write(&results_path, results_file) {
        eprintln!("pvmouse-vmbench: {}: {e}", results_path.display());
        return ExitCode::FAILURE;
    }
    println!("wrote {}", results_path.display());
    ExitCode::SUCCESS
}
