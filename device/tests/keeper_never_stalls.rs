//! The restartable backend never holds its frontend up, whatever its worker does: QEMU's
//! vhost-user calls block its main loop (a QMP `stop` waits for `GET_VRING_BASE`), so a worker
//! that is stopped, killed mid-call or not there at all (restart backoff) must not make it wait.
//! The keeper answers in the worker's place within [`ANSWER_BOUND`], replaces a stopped worker,
//! and the session carries on: the ring restarts where it stood and input arrives.
//!
//! The backend runs as an ordinary user (`support/backend.rs`), driven by the vhost crate's
//! frontend as QEMU drives it (`support/frontend.rs`).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

#[path = "support/backend.rs"]
mod backend;
#[path = "support/frontend.rs"]
mod frontend;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backend::{signal, spawn_unprivileged, wait_for, workers_of};
use frontend::*;
use pvmouse_spec::evdev::*;
use pvmouse_spec::profile::{EVENTQ, STATUSQ};
use serde_json::json;
use vhost::VhostBackend;

/// The keeper's own bound is 50 ms for the worker plus a kill (see `keeper/relay.rs`); a
/// test machine running other tests gets ten times that.
const ANSWER_BOUND: Duration = Duration::from_millis(500);

struct Keeper {
    child: Child,
    _dir: tempfile::TempDir,
    vhost: PathBuf,
    control: PathBuf,
}

impl Keeper {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (vhost, control) = (
            dir.path().join("vhost.sock"),
            dir.path().join("control.sock"),
        );
        let mut child = spawn_unprivileged(
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
            &mut child,
            || pvmouse_client::Connection::connect(&control).is_ok(),
        );
        Keeper {
            child,
            _dir: dir,
            vhost,
            control,
        }
    }

    /// The worker running now, other than `not`, waiting up to 10 s for one.
    fn worker(&self, not: Option<u32>) -> u32 {
        let start = Instant::now();
        loop {
            if let Some(w) = workers_of(self.child.id())
                .into_iter()
                .find(|w| Some(*w) != not)
            {
                return w;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no new worker");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a move and checks that the guest gets it: the session carries on. A control client
/// talks to a worker, so each move comes on a new connection, as a client reconnects after a
/// worker restart.
fn input_arrives(keeper: &Keeper, guest: &mut Guest<'_>, x: f64) {
    let mut qmp = Qmp::connect(&keeper.control);
    let r = qmp.execute("pvmouse-send", json!({"x": x, "y": x}));
    assert_eq!(r, json!({"return": {}}));
    let events = guest.stream_events(3);
    assert_eq!(events[0].code, ABS_X, "{events:?}");
    assert_eq!(events[2], syn());
}

/// Calls `f` and says how long it took; if it takes longer than 5 s, `rescue` runs (so that
/// a test of a stalling keeper fails instead of hanging).
fn timed<T>(rescue: impl FnOnce() + Send + 'static, f: impl FnOnce() -> T) -> (T, Duration) {
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while !done.load(Ordering::SeqCst) {
                if start.elapsed() > Duration::from_secs(5) {
                    rescue();
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    done.store(true, Ordering::SeqCst);
    watchdog.join().unwrap();
    (out, took)
}

#[test]
fn a_stopped_worker_holds_nothing_up_and_is_replaced() {
    let keeper = Keeper::start();
    let (file, mem) = guest_memory();
    let mut guest = Guest::connect(&keeper.vhost, &mem, &file);
    guest.stream_events(7);
    input_arrives(&keeper, &mut guest, 0.25);

    let stopped = keeper.worker(None);
    signal(stopped, libc::SIGSTOP);
    // QEMU's `stop`: both rings stopped, each call answered.
    let rescue = move || signal(stopped, libc::SIGCONT);
    let (bases, took) = timed(rescue, || {
        [EVENTQ, STATUSQ].map(|q| guest.frontend.get_vring_base(usize::from(q)).unwrap())
    });
    println!("stop with a stopped worker answered in {took:?}: bases {bases:?}");
    assert!(took < ANSWER_BOUND, "the frontend waited {took:?}");
    assert_eq!(
        bases[0],
        u32::from(guest.eventq.used_idx()),
        "where the ring stands"
    );

    let next = keeper.worker(Some(stopped));
    assert!(
        !workers_of(keeper.child.id()).contains(&stopped),
        "the stopped worker is gone"
    );
    println!("worker {stopped} stopped, replaced by {next}");
    // QEMU's `cont`: the rings set up again from where they stood; input flows.
    guest.start_ring(EVENTQ, bases[0]);
    guest.start_ring(STATUSQ, bases[1]);
    input_arrives(&keeper, &mut guest, 0.75);
}

#[test]
fn in_restart_backoff_the_frontend_is_answered_by_the_keeper() {
    let keeper = Keeper::start();
    let (file, mem) = guest_memory();
    let mut guest = Guest::connect(&keeper.vhost, &mem, &file);
    assert_eq!(guest.config(1, 0), b"pvmouse", "read once from a worker");
    guest.stream_events(7);

    // Workers that die at once, nine in a row: the keeper waits 1.6 s before the next.
    let mut last = None;
    for _ in 0..9 {
        let w = keeper.worker(last);
        signal(w, libc::SIGKILL);
        last = Some(w);
    }
    std::thread::sleep(Duration::from_millis(50));
    assert!(workers_of(keeper.child.id()).is_empty(), "backing off");
    let (answers, took) = timed(
        || {},
        || {
            let name = guest.config(1, 0);
            let base = guest.frontend.get_vring_base(usize::from(STATUSQ)).unwrap();
            (name, base)
        },
    );
    let during = workers_of(keeper.child.id()).is_empty();
    println!("in backoff: config and ring stop answered in {took:?}: {answers:?}");
    assert!(during, "answered while no worker ran");
    assert!(took < ANSWER_BOUND, "the frontend waited {took:?}");
    assert_eq!(answers.0, b"pvmouse", "the config as a worker gave it");

    // The next worker picks the session up, the status ring stopped, the event ring running.
    keeper.worker(last);
    guest.start_ring(STATUSQ, answers.1);
    input_arrives(&keeper, &mut guest, 0.5);
}

#[test]
fn a_worker_killed_while_the_frontend_stops_a_ring_loses_nothing() {
    let keeper = Keeper::start();
    let (file, mem) = guest_memory();
    let mut guest = Guest::connect(&keeper.vhost, &mem, &file);
    guest.stream_events(7);
    let mut slowest = Duration::ZERO;
    for round in 0..10u32 {
        input_arrives(&keeper, &mut guest, f64::from(round) / 10.0);
        let worker = keeper.worker(None);
        // The kill lands before, during or after the keeper passes the stop on.
        let delay = Duration::from_micros(u64::from(round) * 300);
        let killer = std::thread::spawn(move || {
            std::thread::sleep(delay);
            signal(worker, libc::SIGKILL);
        });
        let (base, took) = timed(|| {}, || guest.frontend.get_vring_base(usize::from(EVENTQ)));
        killer.join().unwrap();
        let base = base.unwrap();
        slowest = slowest.max(took);
        assert_eq!(base, u32::from(guest.eventq.used_idx()), "round {round}");
        keeper.worker(Some(worker));
        guest.start_ring(EVENTQ, base);
        // Workers that live a while: no restart backoff.
        std::thread::sleep(Duration::from_millis(250));
    }
    input_arrives(&keeper, &mut guest, 1.0);
    println!("10 ring stops with the worker killed 0-2.7 ms in: slowest answer {slowest:?}");
    assert!(slowest < ANSWER_BOUND, "the frontend waited {slowest:?}");
}
