//! The backend as systemd starts it: its two listening sockets handed over (socket activation,
//! `LISTEN_FDS` named by `FileDescriptorName=`) and its readiness told (`Type=notify`). There is
//! no systemd as PID 1 here, so Debian's `systemd-socket-activate` hands the sockets over, as a
//! `.socket` unit would, and the test's own datagram socket stands for `NOTIFY_SOCKET`. The
//! backend runs as an ordinary user (`support/backend.rs`), plain and restartable.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

#[path = "support/backend.rs"]
mod backend;
#[path = "support/frontend.rs"]
mod frontend;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use backend::{BINARY, signal, unprivileged};
use frontend::*;
use pvmouse_spec::InputEvent;
use pvmouse_spec::evdev::*;
use serde_json::json;

/// What the backend told the service manager, each datagram's lines, within `limit`.
fn told(notify: &UnixDatagram, limit: Duration) -> Vec<String> {
    notify.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    match notify.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n])
            .lines()
            .map(str::to_owned)
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn wait_exit(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut log = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
            return (status, log);
        }
        assert!(start.elapsed() < limit, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The backend behind `systemd-socket-activate`, in `dir`: its vhost-user and control
/// sockets, the notify socket, and the process (which becomes the backend on the first
/// connection).
fn activate(dir: &Path, extra: &[&str]) -> (Child, UnixDatagram) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let notify_path = dir.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    // The backend runs as another user; the service manager's socket takes its word.
    std::fs::set_permissions(&notify_path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut command = unprivileged(dir, "systemd-socket-activate");
    command
        .arg("--listen")
        .arg(dir.join("vhost.sock"))
        .arg("--listen")
        .arg(dir.join("control.sock"))
        .arg("--fdname=vhost-user:control")
        .arg(format!("--setenv=NOTIFY_SOCKET={}", notify_path.display()))
        .arg(BINARY)
        .args(extra);
    (command.spawn().unwrap(), notify)
}

fn wait_for_socket(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_socket_activated_backend_serves_both_sockets_and_says_when_it_is_ready() {
    // Restartable is the default; the unit runs it so.
    for restartable in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let extra: &[&str] = if restartable {
            &[]
        } else {
            &["--single-process"]
        };
        let (mut backend, notify) = activate(dir.path(), extra);
        let (vhost, control) = (
            dir.path().join("vhost.sock"),
            dir.path().join("control.sock"),
        );
        wait_for_socket(&control);
        assert!(
            told(&notify, Duration::from_millis(200)).is_empty(),
            "ready before it ran"
        );
        // The first connection starts the backend on the sockets handed over.
        let mut qmp = Qmp::connect(&control);
        let start = Instant::now();
        let ready = told(&notify, Duration::from_secs(10));
        println!(
            "restartable {restartable}: told {ready:?} {:?} after the first connection",
            start.elapsed()
        );
        assert!(ready.contains(&"READY=1".to_owned()), "{ready:?}");

        let (file, mem) = guest_memory();
        let mut guest = Guest::connect(&vhost, &mem, &file);
        guest.stream_events(7);
        let r = qmp.execute("pvmouse-send", json!({"x": 0.5, "y": 0.25}));
        assert_eq!(r, json!({"return": {}}));
        let events = guest.stream_events(3);
        assert_eq!(events[0], InputEvent::new(EV_ABS, ABS_X, 32768));
        assert_eq!(events[1], InputEvent::new(EV_ABS, ABS_Y, 16384));

        signal(backend.id(), libc::SIGTERM);
        let stopping = told(&notify, Duration::from_secs(10));
        let (status, log) = wait_exit(&mut backend, Duration::from_secs(10));
        assert!(stopping.contains(&"STOPPING=1".to_owned()), "{stopping:?}");
        assert!(status.success(), "{status}\n{log}");
        // The sockets are the socket unit's, not the service's: they stay for the next start.
        assert!(
            vhost.exists() && control.exists(),
            "a handed-over socket was removed"
        );
    }
}

#[test]
fn a_handed_over_socket_that_is_not_a_listening_stream_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("vhost.sock");
    let mut command = unprivileged(dir.path(), "systemd-socket-activate");
    command
        .arg("--datagram")
        .arg("--listen")
        .arg(&path)
        .arg("--fdname=vhost-user")
        .arg(BINARY);
    let mut backend = command.spawn().unwrap();
    wait_for_socket(&path);
    // A datagram starts it.
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"x", &path)
        .unwrap();
    let (status, log) = wait_exit(&mut backend, Duration::from_secs(10));
    println!("a datagram socket handed over: {status}; {}", log.trim());
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("not a stream socket"), "{log}");
}

#[test]
fn a_handed_over_socket_with_a_name_it_does_not_know_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().join("x.sock");
    let mut command = unprivileged(dir.path(), "systemd-socket-activate");
    command
        .arg("--listen")
        .arg(&path)
        .arg("--fdname=vnc")
        .arg(BINARY);
    let mut backend = command.spawn().unwrap();
    wait_for_socket(&path);
    let _ = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let (status, log) = wait_exit(&mut backend, Duration::from_secs(10));
    println!("a socket named vnc handed over: {status}; {}", log.trim());
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("named \"vnc\""), "{log}");
}
