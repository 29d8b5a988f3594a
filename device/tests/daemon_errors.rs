//! The backend's error paths, run as the real binary: every one logs its cause and exits with
//! status 1 (2 for a bad command line), none hangs or spins, and no socket is taken from a
//! running backend or left behind.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

use vhost::vhost_user::Listener;
use vhost_user_pvmouse::Identity;
use vhost_user_pvmouse::NoticeBoard;
use vhost_user_pvmouse::PvMouse;
use vhost_user_pvmouse::PvMouseBackend;
use vhost_user_pvmouse::serve;

const BINARY: &str = env!("CARGO_BIN_EXE_vhost-user-pvmouse");

fn spawn(args: &[&str]) -> Child {
    spawn_inheriting(None, args)
}

/// Starts the backend; with `fd`, the child (and only it: tests run in parallel) inherits that
/// descriptor at the same number.
fn spawn_inheriting(fd: Option<RawFd>, args: &[&str]) -> Child {
    let mut command = Command::new(BINARY);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(fd) = fd {
        // SAFETY: the closure runs in the child between fork and exec and calls only fcntl,
        // which is async-signal-safe; it touches no memory of the parent.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    command.spawn().unwrap()
}

/// Waits up to `limit` for the child to exit; kills it and fails if it does not.
fn exit_within(child: &mut Child, limit: Duration) -> (ExitStatus, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            for line in BufReader::new(child.stderr.take().unwrap()).lines() {
                stderr.push_str(&line.unwrap());
                stderr.push('\n');
            }
            return (status, stderr);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the backend did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_with_fd(fd: RawFd, extra: &[&str]) -> (ExitStatus, String) {
    let fd_arg = fd.to_string();
    let mut args = vec!["--fd", fd_arg.as_str()];
    args.extend_from_slice(extra);
    let mut child = spawn_inheriting(Some(fd), &args);
    exit_within(&mut child, Duration::from_secs(10))
}

#[test]
fn an_inherited_descriptor_that_is_not_a_listening_stream_socket_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let datagram = UnixDatagram::bind(dir.path().join("dgram")).unwrap();
    let (connected, _peer) = UnixStream::pair().unwrap();
    for (fd, want) in [
        (datagram.as_raw_fd(), "not a stream socket"),
        (connected.as_raw_fd(), "not listening"),
    ] {
        let (status, stderr) = run_with_fd(fd, &[]);
        assert_eq!(status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("--fd {fd} ")) && stderr.contains(want),
            "{stderr}"
        );
    }
}

#[test]
fn fd_names_an_inherited_descriptor_never_one_of_the_backends_own() {
    // Nothing is inherited past stderr. Before the fix, descriptor 4 was the backend's own
    // control listener by the time --fd was adopted, and it served vhost-user on it.
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("c.sock");
    let mut child = spawn(&["--fd", "4", "--control-socket", control.to_str().unwrap()]);
    let (status, stderr) = exit_within(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--fd 4 ") && stderr.contains("not an open file descriptor"),
        "{stderr}"
    );
    assert!(!control.exists(), "no control socket is left behind");
}

/// CPU ticks (utime + stime) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces; fields count from after its closing parenthesis.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn an_inherited_non_blocking_listener_waits_without_spinning() {
    let dir = tempfile::tempdir().unwrap();
    let listener = UnixListener::bind(dir.path().join("v.sock")).unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut child = spawn_inheriting(
        Some(listener.as_raw_fd()),
        &["--fd", &listener.as_raw_fd().to_string()],
    );
    // The child holds its own copy.
    drop(listener);
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(child.id());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(child.id()) - before;
    assert!(
        child.try_wait().unwrap().is_none(),
        "still waiting for QEMU"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // A spinning accept loop burns the whole 2 s (200 ticks at 100 Hz).
    println!("idle backend with an inherited non-blocking listener: {used} ticks in 2 s");
    assert!(used <= 10, "{used} ticks of CPU in 2 s while idle");
}

#[test]
fn a_failing_serve_loop_returns_its_error_instead_of_hanging() {
    // A socket that passes as a listener but cannot accept: the path that used to join a vring
    // worker nobody had told to stop.
    let (not_listening, _peer) = UnixStream::pair().unwrap();
    let listener = UnixListener::from(OwnedFd::from(not_listening));
    let mut listener = Listener::from(listener);
    let notices = Arc::new(NoticeBoard::new().unwrap());
    let device =
        Arc::new(PvMouse::new(Identity::new("pvmouse", "s", 1).unwrap(), notices).unwrap());
    let backend = Arc::new(PvMouseBackend::new(device).unwrap());
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(serve(&mut listener, backend).map(|never| match never {}));
    });
    let result = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("serve hung after its listener failed");
    let err = result.unwrap_err();
    assert!(err.to_string().contains("vhost-user"), "{err}");
}

fn query_version(control: &Path) -> serde_json::Value {
    let stream = UnixStream::connect(control).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    (&stream)
        .write_all(b"{\"execute\":\"qmp_capabilities\"}{\"execute\":\"query-version\"}\n")
        .unwrap();
    let mut replies = Vec::new();
    for _ in 0..2 {
        line.clear();
        reader.read_line(&mut line).unwrap();
        replies.push(serde_json::from_str::<serde_json::Value>(&line).unwrap());
    }
    replies.pop().unwrap()
}

fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{path:?} never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_backend_on_the_same_paths_is_refused_and_the_first_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let vhost = dir.path().join("v.sock");
    let control = dir.path().join("c.sock");
    let args = [
        "--socket-path",
        vhost.to_str().unwrap(),
        "--control-socket",
        control.to_str().unwrap(),
    ];
    let mut first = spawn(&args);
    wait_for(&vhost);
    wait_for(&control);
    let mut second = spawn(&args);
    let (status, stderr) = exit_within(&mut second, Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("another process is listening"), "{stderr}");
    let reply = query_version(&control);
    assert!(reply["return"]["package"].is_string(), "{reply}");
    first.kill().unwrap();
    first.wait().unwrap();
}

#[test]
fn a_failed_vhost_bind_leaves_no_control_socket_and_one_path_cannot_serve_both() {
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("c.sock");
    let missing_dir = dir.path().join("no-such-dir").join("v.sock");
    let mut child = spawn(&[
        "--socket-path",
        missing_dir.to_str().unwrap(),
        "--control-socket",
        control.to_str().unwrap(),
    ]);
    let (status, stderr) = exit_within(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot create socket"), "{stderr}");
    assert!(!control.exists(), "control socket left behind");

    let same = dir.path().join("both.sock");
    let same = same.to_str().unwrap();
    let mut child = spawn(&["--socket-path", same, "--control-socket", same]);
    let (status, stderr) = exit_within(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("give each socket its own path"), "{stderr}");
    assert!(!Path::new(same).exists());
}
