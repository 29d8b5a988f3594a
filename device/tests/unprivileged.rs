//! The backend as an ordinary user, which is how libvirt's `qemu` user and a desktop user run
//! it: root ignores file permissions, so a backend only ever tested as root can hide a
//! permission bug (see `support/backend.rs`).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

#[path = "support/backend.rs"]
mod backend;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use backend::{NOBODY, spawn_unprivileged, wait_for, workers_of};

#[test]
fn the_restartable_backend_runs_as_an_ordinary_user() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (vhost, control) = (
        dir.path().join("vhost.sock"),
        dir.path().join("control.sock"),
    );
    // What a keeper killed earlier left: a directory named for a process that is gone.
    let abandoned = dir.path().join("pvmouse-keeper-999999999-1");
    std::fs::create_dir(&abandoned).unwrap();
    std::fs::write(abandoned.join("worker.sock"), "").unwrap();
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } == 0 {
        for p in [&abandoned, &abandoned.join("worker.sock")] {
            std::os::unix::fs::chown(p, Some(NOBODY), Some(NOBODY)).unwrap();
        }
    }
    let mut backend = spawn_unprivileged(
        dir.path(),
        &[
            "--restartable",
            "--socket-path",
            vhost.to_str().unwrap(),
            "--control-socket",
            control.to_str().unwrap(),
        ],
    );
    wait_for(
        "the control socket",
        Duration::from_secs(20),
        &mut backend,
        || pvmouse_client::Connection::connect(&control).is_ok(),
    );
    let status = pvmouse_client::Connection::connect(&control)
        .unwrap()
        .status()
        .unwrap();
    println!(
        "as an ordinary user: {} displays, keeper and worker up",
        status.displays
    );
    // The keeper's private socket has no name on disk: nothing of it to see, or to leave.
    let on_disk = left_in(dir.path());
    println!("with keeper and worker running, the directory holds {on_disk:?}");
    assert!(!abandoned.exists(), "the abandoned directory is removed");
    let mut sockets = on_disk.clone();
    sockets.sort();
    assert_eq!(sockets, ["control.sock", "vhost.sock"], "{on_disk:?}");
    // Killed outright, the keeper can remove nothing: only its two named sockets stay (and the
    // next backend replaces them as stale).
    let _ = backend.kill();
    let _ = backend.wait();
    let mut after = left_in(dir.path());
    after.sort();
    assert_eq!(after, ["control.sock", "vhost.sock"]);
}

/// Sends SIGTERM and waits for the exit status.
fn terminate(child: &mut Child) -> std::process::ExitStatus {
    // SAFETY: kill sends a signal to the child this test started and has not reaped.
    let sent = unsafe { libc::kill(libc::pid_t::try_from(child.id()).unwrap(), libc::SIGTERM) };
    assert_eq!(sent, 0);
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "SIGTERM did not end it"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What is left in `dir` but `keep`.
fn left_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn sigterm_stops_either_backend_and_leaves_nothing_behind() {
    for restartable in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (vhost, control) = (
            dir.path().join("vhost.sock"),
            dir.path().join("control.sock"),
        );
        let mut args = vec![
            "--socket-path",
            vhost.to_str().unwrap(),
            "--control-socket",
            control.to_str().unwrap(),
        ];
        args.insert(
            0,
            if restartable {
                "--restartable"
            } else {
                "--single-process"
            },
        );
        let mut backend = spawn_unprivileged(dir.path(), &args);
        wait_for(
            "the control socket",
            Duration::from_secs(20),
            &mut backend,
            || pvmouse_client::Connection::connect(&control).is_ok(),
        );
        // A client holding a button: the backend lets go as it stops.
        let mut client = pvmouse_client::Connection::connect(&control).unwrap();
        client
            .execute(
                "pvmouse-send",
                serde_json::json!({"x": 0.5, "y": 0.5, "buttons": {"left": true}}),
            )
            .unwrap();
        // The keeper's workers: its children that were handed a ledger.
        let workers = workers_of(backend.id());
        assert_eq!(workers.len(), usize::from(restartable), "{workers:?}");
        let before = left_in(dir.path());
        let status = terminate(&mut backend);
        let after = left_in(dir.path());
        println!(
            "restartable {restartable}: before SIGTERM {before:?}; exit {status}; after {after:?}"
        );
        let mut log = String::new();
        std::io::Read::read_to_string(&mut backend.stderr.take().unwrap(), &mut log).unwrap();
        assert!(status.success(), "{status}\n{log}");
        assert!(after.is_empty(), "left behind: {after:?}");
        assert!(
            log.contains("released the buttons held"),
            "the held button was not let go:\n{log}"
        );
        for w in &workers {
            assert!(
                !Path::new("/proc").join(w.to_string()).exists(),
                "worker {w} outlived its keeper"
            );
        }
    }
}
