//! The backend's systemd unit allows only the system calls in its `SystemCallFilter=`; one
//! outside it would kill the service in production, where no test here runs it (there is no
//! systemd as PID 1). So the restartable backend runs under `strace -f` beside a real QEMU and
//! guest, through everything it does: QEMU's set-up, input, QMP `stop` and `cont`, a worker
//! killed and upgraded, and SIGTERM (strace -D: the keeper keeps the pid the harness
//! started). Every system call any of its processes made must be
//! one the unit's filter allows, as `systemd-analyze syscall-filter` expands it.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use pvmouse_client::Connection;
use pvmouse_vmtest::exclusive;
use pvmouse_vmtest::{PVMOUSE_NAME, VmConfig, round_to_i32};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const UNIT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../device/packaging/vhost-user-pvmouse@.service"
);

/// Every group `systemd-analyze syscall-filter` knows, with its members (names and groups).
fn groups() -> BTreeMap<String, Vec<String>> {
    let out = std::process::Command::new("systemd-analyze")
        .arg("syscall-filter")
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut groups = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let item = line.trim();
        if item.is_empty() || item.starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            current = Some(item.to_owned());
            groups.insert(item.to_owned(), Vec::new());
        } else if let Some(g) = &current {
            groups.get_mut(g).unwrap().push(item.to_owned());
        }
    }
    groups
}

fn expand(item: &str, groups: &BTreeMap<String, Vec<String>>, out: &mut BTreeSet<String>) {
    match groups.get(item) {
        Some(members) => members.iter().for_each(|m| expand(m, groups, out)),
        None => {
            out.insert(item.to_owned());
        }
    }
}

/// The system calls the unit's `SystemCallFilter=` lines allow: the allow list, less each `~`
/// list, with `@default` always allowed, as systemd applies them.
fn allowed_by_unit() -> BTreeSet<String> {
    let groups = groups();
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let mut allowed = BTreeSet::new();
    expand("@default", &groups, &mut allowed);
    let mut denied = BTreeSet::new();
    for value in unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
    {
        let (set, list) = match value.strip_prefix('~') {
            Some(rest) => (&mut denied, rest),
            None => (&mut allowed, value),
        };
        for item in list.split_whitespace() {
            expand(item, &groups, set);
        }
    }
    allowed.retain(|s| !denied.contains(s));
    allowed
}

#[test]
fn every_system_call_the_backend_makes_is_one_its_unit_allows() {
    let allowed = allowed_by_unit();
    assert!(
        allowed.contains("memfd_create") || allowed.len() > 100,
        "{allowed:?}"
    );
    let backend = pvmouse_vmtest::assets::build_binaries().unwrap().backend;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let trace = dir.path().join("strace.txt");
    let wrapper = dir.path().join("vhost-user-pvmouse");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec strace -D -f -qq -o {} {} \"$@\"\n",
            trace.display(),
            backend.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The backend runs as nobody and writes its trace here.
    std::os::unix::fs::chown(dir.path(), Some(65_534), Some(65_534)).unwrap();

    let vm = exclusive::boot(VmConfig {
        restartable: true,
        backend_bin: Some(wrapper),
        ..VmConfig::default()
    });
    vm.probe.watch(PVMOUSE_NAME, WAIT).unwrap();
    let lands = |vm: &pvmouse_vmtest::Vm, x: f64| {
        let start = Instant::now();
        loop {
            let sent = Connection::connect(&vm.control_socket())
                .and_then(|mut c| c.execute("pvmouse-send", json!({"x": x, "y": 0.5})));
            if sent.is_ok() {
                break;
            }
            assert!(start.elapsed() < WAIT, "no worker answered");
            std::thread::sleep(Duration::from_millis(20));
        }
        let want = round_to_i32(x * 65535.0);
        vm.probe
            .query_until("state", PVMOUSE_NAME, "the move", WAIT, |st| {
                st["abs"]["0"] == want
            })
            .unwrap_or_else(|e| panic!("{e}"));
    };
    let kill = |signal: &str, pid: u32| {
        assert!(
            std::process::Command::new("kill")
                .args([signal, &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
    };
    lands(&vm, 0.2);
    let mut qemu = vm.qemu_qmp().unwrap();
    qemu.execute("stop", json!({})).unwrap();
    qemu.execute("cont", json!({})).unwrap();
    lands(&vm, 0.3);
    // (Not SIGSTOP: under ptrace the stop goes to strace, not to the keeper.)
    let (worker, _) = vm.next_worker(None, WAIT).unwrap();
    kill("-KILL", worker);
    vm.next_worker(Some(worker), WAIT).unwrap();
    lands(&vm, 0.4);
    let (worker, _) = vm.next_worker(None, WAIT).unwrap();
    let answer = Connection::connect(&vm.control_socket())
        .unwrap()
        .execute("pvmouse-upgrade", json!({}))
        .unwrap();
    assert_eq!(answer, json!({}));
    vm.next_worker(Some(worker), WAIT).unwrap();
    lands(&vm, 0.6);
    // A clean stop: the keeper is the process strace runs.
    let keeper = vm.backend_pid().unwrap();
    kill("-TERM", keeper);
    pvmouse_vmtest::vm::wait_exited(keeper, WAIT)
        .unwrap_or_else(|e| panic!("SIGTERM did not end the backend: {e}"));
    drop(vm);

    let text = std::fs::read_to_string(&trace).unwrap();
    let mut made = BTreeSet::new();
    for line in text.lines() {
        // `PID name(args…) = result`; resumed calls and signals are not calls.
        let rest = line.split_once(' ').map_or("", |(_, r)| r).trim_start();
        if let Some((name, _)) = rest.split_once('(') {
            if !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                made.insert(name.to_owned());
            }
        }
    }
    let outside: Vec<&String> = made.iter().filter(|s| !allowed.contains(*s)).collect();
    println!(
        "the backend made {} kinds of system call: {made:?}",
        made.len()
    );
    assert!(made.len() > 20 && made.contains("memfd_create"), "{made:?}");
    assert!(
        outside.is_empty(),
        "outside the unit's SystemCallFilter: {outside:?}"
    );
}
