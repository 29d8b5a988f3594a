//! The real `vhost-user-pvmouse` binary, driven by an unmodified standard QMP client library
//! (Python's `qemu.qmp`, as QEMU users script against). The library is a test requirement:
//! its absence fails the test rather than skipping it.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn the_stock_qemu_qmp_library_drives_the_control_socket() {
    let dir = tempfile::tempdir().unwrap();
    let control = dir.path().join("control.sock");
    let vhost = dir.path().join("vhost.sock");
    let _daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_vhost-user-pvmouse"))
            .arg("--socket-path")
            .arg(&vhost)
            .arg("--control-socket")
            .arg(&control)
            .args(["--displays", "2"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(&control);
    wait_for(&vhost);
    for sock in [&control, &vhost] {
        let mode = std::fs::metadata(sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", sock.display());
    }

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/qmp_library_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&control)
        .output()
        .expect("python3 is required for this test");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'qemu'"),
        "install the qemu.qmp library (pip install qemu.qmp): {stderr}"
    );
    assert!(out.status.success(), "qemu.qmp client failed:\n{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "qemu.qmp session ok"
    );
}

#[test]
fn print_capabilities_follows_the_backend_program_conventions() {
    let out = Command::new(env!("CARGO_BIN_EXE_vhost-user-pvmouse"))
        .arg("--print-capabilities")
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["type"], "input");
}

#[test]
fn refuses_to_replace_a_file_that_is_not_a_socket() {
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("precious");
    std::fs::write(&precious, "data").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vhost-user-pvmouse"))
        .arg("--socket-path")
        .arg(&precious)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a socket"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "data");
}
