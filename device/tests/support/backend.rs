//! The backend binary as a test starts it: as an ordinary user, which is how libvirt's `qemu`
//! user and a desktop user run it (root ignores file permissions, so a backend only ever tested
//! as root can hide a permission bug). Run as root, a test drops to `nobody` (uid 65534) with
//! `setpriv`; run as anyone else, it runs the backend as that user.

#![allow(dead_code, reason = "each test binary uses its own part of this")]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_vhost-user-pvmouse");
pub const NOBODY: u32 = 65_534;

/// The backend in `dir` as an unprivileged user, its temporary files in `dir` too.
pub fn spawn_unprivileged(dir: &Path, args: &[&str]) -> Child {
    let mut command = unprivileged(dir, BINARY);
    command.args(args).spawn().unwrap()
}

/// `program` to be run in `dir` as an unprivileged user (`nobody` when this test runs as
/// root), its temporary files in `dir`, its output on stderr piped.
pub fn unprivileged(dir: &Path, program: &str) -> Command {
    // SAFETY: geteuid cannot fail and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    let mut command = if root {
        std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY)).unwrap();
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", program]);
        c
    } else {
        Command::new(program)
    };
    command
        .env("TMPDIR", dir)
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// Waits until `ok`, failing with the backend's log if it exits first.
pub fn wait_for(what: &str, limit: Duration, child: &mut Child, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
            panic!("{what}: the backend exited ({status}) first:\n{stderr}");
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A keeper's workers now: its children that were handed a ledger.
pub fn workers_of(keeper: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let mut after = stat.rsplit(')').next().unwrap_or("").split_whitespace();
            let (state, ppid) = (after.next(), after.next());
            // A zombie has been killed already; it is only not reaped yet.
            ppid == Some(keeper.to_string().as_str())
                && state != Some("Z")
                && std::fs::read_to_string(e.path().join("cmdline"))
                    .is_ok_and(|c| c.contains("--ledger-fd"))
        })
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill only sends a signal; the pid is a process this test started or its child.
    let sent = unsafe { libc::kill(libc::pid_t::try_from(pid).unwrap(), signal) };
    assert_eq!(sent, 0, "signal {signal} to {pid}");
}
