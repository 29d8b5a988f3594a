//! What a benchmark run ran on, read at run time for the report.

use std::process::Command;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub host_kernel: String,
    pub qemu: String,
    pub guest_kernel: String,
    pub accel: String,
    pub command: String,
    /// The commit measured, with "-dirty" when the work tree had changes.
    pub commit: String,
    pub wall_seconds: f64,
}

fn first_line_of(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into())
}

impl Environment {
    /// The host's side; the guest kernel is filled in from a running guest.
    pub fn of_host(command: &str) -> Environment {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: u64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        Environment {
            date: first_line_of(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
            cpu: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
                .unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            memory: format!("{:.0} GiB", mem_kib as f64 / 1024.0 / 1024.0),
            host_kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
            qemu: first_line_of(Command::new("qemu-system-x86_64").arg("--version")),
            guest_kernel: "unknown".into(),
            accel: std::env::var("PVMOUSE_ACCEL").unwrap_or_else(|_| "tcg".into()),
            command: command.to_owned(),
            commit: commit(),
            wall_seconds: 0.0,
        }
    }
}

/// The workspace's commit, from git.
fn commit() -> String {
    let root = pvmouse_vmtest::assets::workspace_root();
    let head = first_line_of(Command::new("git").arg("-C").arg(&root).args([
        "rev-parse",
        "--short",
        "HEAD",
    ]));
    let dirty = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    if dirty { format!("{head}-dirty") } else { head }
}
