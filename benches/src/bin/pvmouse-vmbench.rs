//! `pvmouse-vmbench`: pvmouse against QEMU's virtio-tablet and usb-tablet, side by side, each in
//! its own VM from the same guest image; then the desktop path, from the host to a client of
//! sway, in one desktop VM; then the VNC path. It keeps each section's figures as JSON, renders
//! the sections of RESULTS.md from them, and draws a latency CDF. `--render-only` renders the
//! sections again from the figures kept, with no VM.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use pvmouse_benches::desktop_path::{self, DesktopPlan};
use pvmouse_benches::environment::Environment;
use pvmouse_benches::figures::{Desktop, EndToEnd, Vnc};
use pvmouse_benches::kinds::Kind;
use pvmouse_benches::report::Section;
use pvmouse_benches::run::{Plan, log_to, run_all};
use pvmouse_benches::{cdf_plot, vnc_path};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// A few hundred samples per kind, to check that the benchmark works (CI).
    #[arg(long)]
    smoke: bool,
    /// Kinds to run, comma-separated (default all): floor, pvmouse-bridged, pvmouse-raw,
    /// virtio-tablet, usb-tablet-xhci, usb-tablet-uhci.
    #[arg(long, value_delimiter = ',', conflicts_with = "render_only")]
    kinds: Vec<String>,
    /// Where to write the results file; its generated sections are replaced, the rest kept.
    /// Default: benches/RESULTS.md, or target/vm-bench/RESULTS.md with --smoke.
    #[arg(long)]
    results: Option<PathBuf>,
    /// Where to keep each section's figures (JSON) beside the results file; the run also
    /// writes them to target/vm-bench/. Default: benches/results, or target/vm-bench with
    /// --smoke.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Render the sections from the figures kept in the data directory, without a run.
    #[arg(long)]
    render_only: bool,
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

impl Cli {
    fn sections(&self) -> Vec<Section> {
        let mut sections = Vec::new();
        if !self.desktop_only && !self.vnc_only {
            sections.push(Section::EndToEnd);
        }
        if !self.no_desktop && !self.vnc_only {
            sections.push(Section::Desktop);
        }
        if !self.no_vnc && !self.desktop_only {
            sections.push(Section::Vnc);
        }
        sections
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = kinds(&cli.kinds) {
        eprintln!("pvmouse-vmbench: {e}");
        return ExitCode::from(2);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pvmouse-vmbench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let root = pvmouse_vmtest::assets::workspace_root();
    let out_dir = root.join("target/vm-bench");
    let results_path = cli.results.clone().unwrap_or_else(|| {
        if cli.smoke {
            out_dir.join("RESULTS.md")
        } else {
            root.join("benches/RESULTS.md")
        }
    });
    let data_dir = cli.data.clone().unwrap_or_else(|| {
        if cli.smoke {
            out_dir.clone()
        } else {
            root.join("benches/results")
        }
    });
    let mut results_file =
        std::fs::read_to_string(&results_path).unwrap_or_else(|_| "# Results\n".into());
    let sections = cli.sections();
    if cli.render_only {
        for section in sections {
            let path = section.data_file(&data_dir);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("{}: {e} (run the benchmark first)", path.display()))?;
            let figures: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            let rendered = section
                .render(&figures)
                .map_err(|e| format!("rendering {}: {e:#}", path.display()))?;
            results_file = section.splice(&results_file, &rendered);
        }
    } else {
        std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
        // Pacing sleeps must wake on time: the default 50 µs timer slack would skew 8 kHz
        // bursts.
        // SAFETY: PR_SET_TIMERSLACK takes a plain integer and touches no memory of ours.
        unsafe {
            libc::prctl(libc::PR_SET_TIMERSLACK, 1, 0, 0, 0);
        }
        let command = if cli.smoke {
            "make bench-smoke"
        } else {
            "make bench"
        };
        // Read once, before the run writes anything, so that every section names the same
        // commit and the same start.
        let env = Environment::of_host(command);
        let mut kept = Vec::new();
        for section in sections {
            let figures = measure(section, &cli, env.clone(), &out_dir, &results_path)?;
            write_figures(&section.data_file(&out_dir), &figures)?;
            let rendered = section
                .render(&figures)
                .map_err(|e| format!("rendering the {} section: {e:#}", section.name()))?;
            println!("{rendered}");
            results_file = section.splice(&results_file, &rendered);
            kept.push((section, figures));
        }
        // The copies beside the results file are written with it, so that the two agree.
        if data_dir != out_dir {
            for (section, figures) in &kept {
                write_figures(&section.data_file(&data_dir), figures)?;
            }
        }
    }
    std::fs::write(&results_path, results_file)
        .map_err(|e| format!("{}: {e}", results_path.display()))?;
    println!("wrote {}", results_path.display());
    Ok(())
}

/// Runs one section's VMs and returns its figures, as JSON.
fn measure(
    section: Section,
    cli: &Cli,
    mut env: Environment,
    out_dir: &Path,
    results_path: &Path,
) -> Result<serde_json::Value, String> {
    let started = std::time::Instant::now();
    let log = log_to(&out_dir.join("vm-bench.log"));
    match section {
        Section::EndToEnd => {
            let kinds = kinds(&cli.kinds)?;
            let mut plan = if cli.smoke {
                Plan::smoke()
            } else {
                Plan::full()
            };
            if let Some(n) = cli.burst {
                plan.burst_transitions = n;
            }
            let results = run_all(&kinds, &plan, &mut env, &log)?;
            let plot_path = cli
                .plot
                .clone()
                .unwrap_or_else(|| results_path.with_file_name("latency-cdf.svg"));
            cdf_plot::draw(&results, plan.steady_rate_hz, &plot_path)
                .map_err(|e| format!("plotting {}: {e}", plot_path.display()))?;
            let plot_name = plot_path.file_name().map_or_else(
                || plot_path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            );
            to_json(&EndToEnd::of(&results, &env, &plan, &plot_name))
        }
        Section::Desktop => {
            let plan = if cli.smoke {
                DesktopPlan::smoke()
            } else {
                DesktopPlan::full()
            };
            let (results, kernel) =
                desktop_path::measure(&plan, &log).map_err(|e| format!("desktop path: {e}"))?;
            env.guest_kernel = kernel;
            env.wall_seconds = started.elapsed().as_secs_f64();
            to_json(&Desktop::of(&results, &env, &plan))
        }
        Section::Vnc => {
            let (rate, samples) = if cli.smoke {
                (100.0, 150)
            } else {
                (200.0, 2000)
            };
            let (results, kernel) =
                vnc_path::measure(rate, samples, &log).map_err(|e| format!("VNC path: {e}"))?;
            env.guest_kernel = kernel;
            env.wall_seconds = started.elapsed().as_secs_f64();
            to_json(&Vnc::of(&results, &env, rate, samples))
        }
        Section::ManyVms => Err("the many-VMs section is `pvmouse-manybench`'s".into()),
    }
}

fn kinds(ids: &[String]) -> Result<Vec<Kind>, String> {
    if ids.is_empty() {
        return Ok(Kind::ALL.to_vec());
    }
    ids.iter()
        .map(|id| Kind::from_id(id).ok_or_else(|| format!("unknown kind {id:?}")))
        .collect()
}

fn to_json(figures: &impl Serialize) -> Result<serde_json::Value, String> {
    serde_json::to_value(figures).map_err(|e| format!("the figures as JSON: {e}"))
}

fn write_figures(path: &Path, figures: &serde_json::Value) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(figures).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}
