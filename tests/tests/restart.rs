//! A `--restartable` backend under a real QEMU and guest: its worker is killed, made to panic
//! and upgraded under a stream of input, and neither QEMU nor the guest's driver notices.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pvmouse_client::Connection;
use pvmouse_spec::evdev::{BTN_LEFT, EV_KEY};
use pvmouse_vmtest::exclusive::{self, ExclusiveVm};
use pvmouse_vmtest::vm::fd_count;
use pvmouse_vmtest::{PVMOUSE_NAME, Vm, VmConfig, round_to_i32};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// A control client that notices a cut connection: a command whose reply never came is
/// reported unanswered, and the next command connects again (waiting, not refused, while the
/// keeper starts a worker).
struct Client {
    path: PathBuf,
    conn: Option<Connection>,
}

impl Client {
    fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            conn: None,
        }
    }

    /// `Some(reply)` if the command was answered, `None` if the connection was cut first.
    fn execute(&mut self, command: &str, arguments: Value) -> Option<Value> {
        if self.conn.is_none() {
            let mut c = Connection::connect(&self.path).ok()?;
            c.set_reply_timeout(WAIT).ok()?;
            self.conn = Some(c);
        }
        let answer = self.conn.as_mut()?.reply(command, arguments).ok();
        if answer.is_none() {
            self.conn = None;
        }
        answer
    }
}

/// What the stream sent and what was answered.
#[derive(Debug, Default)]
struct StreamLog {
    sent: usize,
    answered: usize,
    cut: usize,
    /// BTN_LEFT values whose command was answered with success, in order.
    transitions: Vec<i32>,
    last_x: Option<f64>,
    /// The longest the stream went without an answer: what a restart costs a client.
    max_gap: Duration,
}

/// Moves at 1 kHz with a left-button change every 10th command, until `stop`. A button
/// command is "set left to v": one that was cut is sent again with the same value, so the
/// guest must see exactly the answered transitions.
fn stream(path: PathBuf, stop: Arc<AtomicBool>) -> StreamLog {
    let mut log = StreamLog::default();
    let mut client = Client::new(&path);
    let mut down = true;
    let start = Instant::now();
    let mut i = 0u32;
    let mut last_answer = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let (command, args, x) = if i % 10 == 0 {
            ("pvmouse-send", json!({"buttons": {"left": down}}), None)
        } else {
            let x = f64::from(i % 997) / 997.0;
            (
                "pvmouse-send",
                json!({"display": 0, "x": x, "y": 0.5}),
                Some(x),
            )
        };
        log.sent += 1;
        match client.execute(command, args) {
            Some(reply) if reply.get("return").is_some() => {
                log.answered += 1;
                log.max_gap = log.max_gap.max(last_answer.elapsed());
                last_answer = Instant::now();
                if let Some(x) = x {
                    log.last_x = Some(x);
                } else {
                    log.transitions.push(i32::from(down));
                    down = !down;
                }
            }
            Some(reply) => panic!("{command} refused: {reply}"),
            None => log.cut += 1,
        }
        // Pacing, not waiting: one command a millisecond.
        let next = start + Duration::from_millis(u64::from(i));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    // End released, so that no button may stay held.
    while client
        .execute("pvmouse-send", json!({"buttons": {"left": false}}))
        .is_none()
    {}
    if log.transitions.last() == Some(&1) {
        log.transitions.push(0);
    }
    log
}

fn watch(vm: &Vm) {
    vm.probe.watch(PVMOUSE_NAME, WAIT).unwrap();
}

/// Waits for the keeper's next worker: one that is not `old`.
fn next_worker(vm: &Vm, old: Option<u32>) -> (u32, Duration) {
    vm.next_worker(old, WAIT).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `hurt` on the worker `times` times under a stream, then checks what the guest and QEMU
/// saw. Returns the keeper's (RSS KiB, fds) after the first and after the last.
fn survive(vm: &mut Vm, times: usize, hurt: &dyn Fn(&Vm, u32)) -> [(u64, usize); 2] {
    let mut ctl = vm.control().unwrap();
    let before = ctl.execute("query-pvmouse", json!({})).unwrap();
    // What the guest kernel says about virtio and input: a reset or a re-probe of the driver
    // would add lines.
    let kernel_log = |vm: &Vm| {
        vm.probe
            .run("dmesg | grep -i 'virtio\\|input' || true", WAIT)
            .unwrap()
            .1
    };
    let dmesg_before = kernel_log(vm);
    watch(vm);
    let mark = vm.probe.mark();
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (path, stop) = (vm.control_socket(), stop.clone());
        std::thread::spawn(move || stream(path, stop))
    };
    let keeper = vm.backend_pid().unwrap();
    let mut marks = Vec::new();
    let mut gaps = Vec::new();
    let (mut worker, _) = next_worker(vm, None);
    for n in 0..times {
        // The stream runs 300 ms on each worker before it is hurt: a duration, not a wait.
        std::thread::sleep(Duration::from_millis(300));
        hurt(vm, worker);
        let (new, took) = next_worker(vm, Some(worker));
        gaps.push(took);
        worker = new;
        if n == 0 || n + 1 == times {
            // The keeper closes what it held for the old worker after the new one runs, and
            // says so nowhere: the figures are read once that has had time.
            std::thread::sleep(Duration::from_millis(200));
            marks.push((vm.backend_rss_kib().unwrap(), fd_count(keeper).unwrap()));
        }
    }
    // And 300 ms on the last worker.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let log = feeder.join().unwrap();
    println!(
        "{times} restarts under the stream: sent {}, answered {}, cut by a restart {}, \
         {} button transitions answered; a new worker appeared after {:?} at most; the \
         stream's longest wait for an answer {:?}",
        log.sent,
        log.answered,
        log.cut,
        log.transitions.len(),
        gaps.iter().max(),
        log.max_gap
    );

    // The guest ends where the newest answered move put it, with the button released...
    let want_x = round_to_i32(log.last_x.unwrap() * 65535.0);
    vm.probe
        .query_until(
            "state",
            PVMOUSE_NAME,
            &format!("the guest at x {want_x} with no key"),
            WAIT,
            |st| st["abs"]["0"] == want_x && st["keys"] == json!([]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    // ...having seen every answered transition, in order, and nothing else.
    let seen: Vec<i32> = vm
        .probe
        .events(PVMOUSE_NAME, mark)
        .iter()
        .filter(|e| e.event.kind == EV_KEY && e.event.code == BTN_LEFT)
        .map(|e| e.event.value)
        .collect();
    assert_eq!(seen, log.transitions, "BTN_LEFT as the guest saw it");
    // The guest's driver never went away, and QEMU never let go of the device.
    let lines = vm.probe.lines(mark);
    assert!(
        !lines
            .iter()
            .any(|l| l.starts_with(&format!("GONE {PVMOUSE_NAME}"))),
        "the guest's pvmouse device went away"
    );
    assert!(vm.qemu_alive(), "QEMU exited");
    let after = ctl.execute("query-pvmouse", json!({}));
    let after = match after {
        Ok(v) => v,
        Err(_) => vm
            .control()
            .unwrap()
            .execute("query-pvmouse", json!({}))
            .unwrap(),
    };
    assert_eq!(after["frontend-connected"], true, "{after}");
    assert_eq!(after["driver-active"], true, "{after}");
    let new_drivers = |s: &Value| {
        s["counters"]["activations"].as_u64().unwrap() - s["counters"]["resumes"].as_u64().unwrap()
    };
    assert_eq!(
        new_drivers(&after),
        new_drivers(&before),
        "a restart looked like a new driver to the device: {after}"
    );
    assert_eq!(
        kernel_log(vm),
        dmesg_before,
        "the guest kernel logged something about virtio or input"
    );
    [marks[0], marks[marks.len() - 1]]
}

fn boot(backend_bin: Option<PathBuf>) -> ExclusiveVm {
    let vm = exclusive::boot(VmConfig {
        restartable: true,
        backend_bin,
        ..VmConfig::default()
    });
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } == 0 {
        // The harness runs a restartable backend as `nobody`: keeper and worker both.
        let uid = |pid: u32| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().map(str::to_owned))
                .unwrap()
        };
        let keeper = vm.backend_pid().unwrap();
        let worker = vm.next_worker(None, Duration::from_secs(30)).unwrap().0;
        assert_eq!((uid(keeper), uid(worker)), ("65534".into(), "65534".into()));
    }
    vm
}

#[test]
fn a_worker_killed_20_times_under_a_stream_goes_unnoticed() {
    let mut vm = boot(None);
    let [first, last] = survive(&mut vm, 20, &|_, worker| {
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &worker.to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
    });
    println!("keeper after the 1st kill: {first:?} (RSS KiB, fds); after the 20th: {last:?}");
    assert_eq!(first.1, last.1, "the keeper's descriptors changed");
    assert!(
        last.0 <= first.0 + 256,
        "the keeper grew: {first:?} -> {last:?}"
    );
}

#[test]
fn a_worker_panic_is_survived_the_same_way() {
    let mut vm = boot(None);
    survive(&mut vm, 3, &|vm, _| {
        let mut ctl = vm.control().unwrap();
        // The worker dies before it can answer.
        assert!(ctl.execute("x-pvmouse-panic", json!({})).is_err());
    });
}

#[test]
fn an_upgrade_under_a_stream_runs_the_new_binary_and_goes_unnoticed() {
    let new_build = pvmouse_vmtest::assets::build_upgrade_backend().unwrap();
    let old_build = pvmouse_vmtest::assets::build_binaries().unwrap().backend;
    // A copy of its own, so that replacing it touches no other test's binary.
    let dir = tempfile::tempdir().unwrap();
    let installed = dir.path().join("vhost-user-pvmouse");
    std::fs::copy(&old_build, &installed).unwrap();
    let mut vm = boot(Some(installed.clone()));
    let version = |vm: &Vm| {
        vm.control()
            .unwrap()
            .execute("query-version", json!({}))
            .unwrap()["package"]
            .clone()
    };
    let before = version(&vm);
    survive(&mut vm, 1, &|vm, _| {
        // As a package manager does: the new file beside the old, then renamed over it.
        let staged = dir.path().join("vhost-user-pvmouse.new");
        std::fs::copy(&new_build, &staged).unwrap();
        std::fs::rename(&staged, &installed).unwrap();
        let answer = vm
            .control()
            .unwrap()
            .execute("pvmouse-upgrade", json!({}))
            .unwrap();
        assert_eq!(answer, json!({}));
    });
    let after = version(&vm);
    println!("query-version before the upgrade {before}, after {after}");
    assert_eq!(
        after,
        json!(format!(
            "vhost-user-pvmouse {}",
            pvmouse_vmtest::assets::UPGRADE_VERSION
        ))
    );
    assert_ne!(before, after);
}

/// Sends `signal` (as `kill` names it) to `pid`.
fn kill(signal: &str, pid: u32) {
    let sent = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {signal} {pid}");
}

/// A move to `x` reaches the guest, sent by a client that reconnects while workers come and go.
fn lands(vm: &Vm, x: f64) {
    let mut client = Client::new(&vm.control_socket());
    let start = Instant::now();
    while client
        .execute("pvmouse-send", json!({"x": x, "y": 0.5}))
        .is_none()
    {
        assert!(start.elapsed() < WAIT, "no worker answered for {WAIT:?}");
    }
    let want = round_to_i32(x * 65535.0);
    vm.probe
        .query_until("state", PVMOUSE_NAME, &format!("x {want}"), WAIT, |st| {
            st["abs"]["0"] == want
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// QMP `stop`, then `cont`, on QEMU's own monitor: how long `stop` held the monitor.
fn stop_and_cont(vm: &Vm) -> Duration {
    let mut qemu = vm.qemu_qmp().unwrap();
    let start = Instant::now();
    qemu.execute("stop", json!({})).unwrap();
    let took = start.elapsed();
    qemu.execute("cont", json!({})).unwrap();
    took
}

/// QEMU stops the VM (each ring's `GET_VRING_BASE`) while the worker is stopped, killed at
/// that moment, or not there at all (restart backoff): the keeper answers in its place, QEMU's
/// monitor is not held up, and input reaches the guest after `cont`. The keeper's own bound is
/// 100 ms; a TCG guest on a busy two-core machine gets 500.
#[test]
fn qemus_stop_never_waits_on_a_stopped_dying_or_absent_worker() {
    const BOUND: Duration = Duration::from_millis(500);
    let vm = boot(None);
    watch(&vm);
    lands(&vm, 0.2);

    let (stopped, _) = next_worker(&vm, None);
    kill("-STOP", stopped);
    let with_stopped = stop_and_cont(&vm);
    let (mut worker, _) = next_worker(&vm, Some(stopped));
    lands(&vm, 0.4);

    let mut with_killed = Duration::ZERO;
    for round in 0..10u64 {
        let (dying, delay) = (worker, Duration::from_micros(round * 300));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            kill("-KILL", dying);
        });
        with_killed = with_killed.max(stop_and_cont(&vm));
        killer.join().unwrap();
        worker = next_worker(&vm, Some(worker)).0;
        // Workers that live a while: no restart backoff.
        std::thread::sleep(Duration::from_millis(250));
    }
    lands(&vm, 0.6);

    // Nine workers in a row that die at once: the keeper waits 1.6 s before the next.
    let mut last = worker;
    kill("-KILL", last);
    for _ in 0..8 {
        last = next_worker(&vm, Some(last)).0;
        kill("-KILL", last);
    }
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(vm.worker_pid(), None, "backing off");
    let in_backoff = stop_and_cont(&vm);
    assert_eq!(vm.worker_pid(), None, "stop answered while no worker ran");
    next_worker(&vm, Some(last));
    lands(&vm, 0.8);

    println!(
        "QMP stop took {with_stopped:?} with the worker stopped, at most {with_killed:?} with \
         it killed 0-2.7 ms into the stop (10 rounds), {in_backoff:?} in restart backoff"
    );
    for took in [with_stopped, with_killed, in_backoff] {
        assert!(took < BOUND, "QEMU's monitor waited {took:?}");
    }
}
