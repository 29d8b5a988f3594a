//! Faults pvmouse must survive, in a real VM: a guest that stops draining under a flood, a
//! control socket under abuse, and QEMU killed under the backend.
//!
//! The backend killed and restarted under a running QEMU is not here: QEMU 10's
//! vhost-user-input aborts on reconnect. `end_to_end.rs` keeps that reproduction, ignored.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pvmouse_vmtest::exclusive::boot;
use pvmouse_vmtest::{PVMOUSE_NAME, Qmp, QmpStream, Vm, VmConfig, round_to_i32, wait};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// Starts the probe's counting reader on pvmouse and waits until it has the device open.
fn count_guest_input(vm: &Vm) {
    vm.probe
        .request(
            &format!("bench {PVMOUSE_NAME}"),
            &format!("BENCH {PVMOUSE_NAME} "),
            WAIT,
        )
        .unwrap();
}

/// (frames, presses, releases, SYN_DROPPED) the guest has read from pvmouse.
fn tally(vm: &Vm) -> (u64, u64, u64, u64) {
    let t = vm.probe.query("tally", PVMOUSE_NAME, WAIT).unwrap();
    let n = |k: &str| t[k].as_u64().unwrap();
    (n("frames"), n("presses"), n("releases"), n("dropped"))
}

/// Waits until the guest's view of pvmouse, its keys held and absolute values (EVIOCGKEY,
/// EVIOCGABS), is what `ready` wants.
fn guest_state_until(vm: &Vm, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    vm.probe
        .query_until("state", PVMOUSE_NAME, what, WAIT, ready)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Sends one command on a pipelined connection, without waiting for its reply.
fn send(stream: &mut QmpStream, command: &Value) {
    stream.send(&format!("{command}\n")).unwrap();
}

#[test]
fn a_guest_that_stops_draining_for_10_s_under_8000_events_per_s_gets_every_transition() {
    let vm = boot(VmConfig::default());
    count_guest_input(&vm);
    let mut stream = QmpStream::connect(&vm.control_socket()).unwrap();
    let mut qemu = vm.qemu_qmp().unwrap();
    let rss_before = vm.backend_rss_kib().unwrap();
    let (_, presses_before, releases_before, _) = tally(&vm);

    // 8000 commands a second for 10 s while the VM is stopped: motion, and a click every 200th
    // command (40 transitions a second, 400 in all), a backlog the guest's reader usually drains
    // without overflowing its own buffer when the device delivers it all after `cont`.
    qemu.execute("stop", json!({})).unwrap();
    let started = Instant::now();
    let mut sent = 0u64;
    let mut transitions = 0u64;
    let mut down = false;
    let mut last_x = 0;
    let mut rss_max = rss_before;
    while started.elapsed() < Duration::from_secs(10) {
        sent += 1;
        if sent % 200 == 0 {
            down = !down;
            transitions += 1;
            send(
                &mut stream,
                &json!({"execute": "pvmouse-send", "arguments": {"buttons": {"left": down}}}),
            );
        } else {
            last_x = i64::try_from(sent % 30000).unwrap() + 1;
            send(
                &mut stream,
                &json!({"execute": "input-send-event", "arguments": {"events": [
                {"type": "abs", "data": {"axis": "x", "value": last_x}}]}}),
            );
        }
        if sent % 8000 == 0 {
            rss_max = rss_max.max(vm.backend_rss_kib().unwrap());
        }
        // Pacing, not waiting: 8000 commands a second.
        let next = started + Duration::from_micros(sent * 125);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let sending = started.elapsed();
    let replies = stream.wait_replies(sent, WAIT);
    assert_eq!(replies.total(), sent, "every command is answered");
    let status = vm
        .control()
        .unwrap()
        .execute("query-pvmouse", json!({}))
        .unwrap();
    assert_eq!(status["driver-paused"], true, "{status}");
    assert_eq!(replies.errors, 0, "no command was refused: {status}");
    qemu.execute("cont", json!({})).unwrap();

    // After the guest resumes, the device delivers its whole queue...
    let mut ctl = vm.control().unwrap();
    wait_status(&mut ctl, "drained", |s| {
        s["pending-frames"] == 0 && s["driver-active"] == true
    });
    // ...and the guest's kernel holds the newest position and the final button state.
    let want_x = (last_x * 65535 + 16383) / 32767;
    let want_keys = json!(if down { vec![272] } else { vec![] });
    guest_state_until(&vm, "the guest's final state", |st| {
        st["abs"]["0"] == want_x && st["keys"] == want_keys
    });
    let (_, presses, releases, dropped) = tally(&vm);
    let (presses, releases) = (presses - presses_before, releases - releases_before);
    let rss_after = vm.backend_rss_kib().unwrap();
    println!(
        "sent {sent} commands in {:.1} s while stopped ({transitions} transitions); guest read \
         {presses} presses, {releases} releases, {dropped} SYN_DROPPED; backend RSS \
         {rss_before} -> max {rss_max} -> {rss_after} KiB",
        sending.as_secs_f64()
    );
    // The reader saw every transition, unless the backlog's flush kept it off the guest's one
    // CPU long enough for its 128-event buffer to overflow: the kernel then says so
    // (SYN_DROPPED) and that reader alone loses events. Seen in 2 of 8 runs under TCG; see
    // RELIABILITY.md.
    if dropped == 0 {
        assert_eq!(presses + releases, transitions, "every transition arrives");
        assert_eq!(presses, transitions / 2 + transitions % 2);
    } else {
        assert!(presses + releases < transitions && presses > 0 && releases > 0);
    }
    assert!(
        rss_max < rss_before + 8 * 1024,
        "backend memory grew from {rss_before} to {rss_max} KiB"
    );
}

/// Round-trip times of `query-version` on a well-behaved connection, in milliseconds, sorted.
fn latencies(client: &mut Qmp, n: usize) -> Vec<f64> {
    let mut out: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            client.execute("query-version", json!({})).unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    out.sort_by(f64::total_cmp);
    out
}

#[test]
fn control_socket_abuse_leaves_good_clients_and_the_guest_untouched() {
    let vm = boot(VmConfig::default());
    count_guest_input(&vm);
    let mut good = vm.control().unwrap();
    let normal = latencies(&mut good, 200);
    let rss_before = vm.backend_rss_kib().unwrap();
    let (frames_before, ..) = tally(&vm);
    let path = vm.control_socket();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut abusers = Vec::new();
    // 200 connections at once, each sending a half command and then holding the line open.
    abusers.push(std::thread::spawn({
        let (path, stop) = (path.clone(), stop.clone());
        move || {
            let mut held = Vec::new();
            for _ in 0..200 {
                if let Ok(mut s) = UnixStream::connect(&path) {
                    let _ = s.write_all(b"{\"execute\": \"pvmouse-send\", \"argum");
                    held.push(s);
                }
            }
            // Holding the connections until told to stop: nothing to poll but the flag.
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            held.len()
        }
    }));
    // A 1 MiB line: an input command padded past the limit, never completed by a newline.
    abusers.push(std::thread::spawn({
        let path = path.clone();
        move || {
            let Ok(mut s) = UnixStream::connect(&path) else {
                return 0;
            };
            let mut line =
                b"{\"execute\": \"pvmouse-send\", \"arguments\": {\"x\": 0.5, \"pad\": \"".to_vec();
            line.resize(1 << 20, b'a');
            let _ = s.write_all(&line);
            1
        }
    }));
    // A client that negotiates, then asks and asks and never reads a reply.
    abusers.push(std::thread::spawn({
        let (path, stop) = (path.clone(), stop.clone());
        move || {
            let Ok(mut s) = UnixStream::connect(&path) else {
                return 0;
            };
            let _ = s.write_all(b"{\"execute\": \"qmp_capabilities\"}\n");
            let mut sent = 0;
            while !stop.load(Ordering::Relaxed)
                && s.write_all(b"{\"execute\": \"query-commands\"}\n").is_ok()
            {
                sent += 1;
            }
            sent
        }
    }));
    // Random binary garbage on fresh connections, including valid-looking input commands
    // that were never negotiated.
    abusers.push(std::thread::spawn({
        let (path, stop) = (path.clone(), stop.clone());
        move || {
            let mut seed = 0x2545_f491_4f6c_dd1d_u64;
            let mut sent = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = UnixStream::connect(&path) else {
                    // A refused connection is tried again, at a pace that leaves the backend
                    // some CPU.
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let mut junk = vec![0u8; 4096];
                for b in &mut junk {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    *b = seed.to_le_bytes()[0];
                }
                let _ = s.write_all(&junk);
                let _ = s.write_all(b"\n{\"execute\": \"input-send-event\", \"arguments\": {\"events\": [{\"type\": \"btn\", \"data\": {\"down\": true, \"button\": \"left\"}}]}}\n");
                let _ = s.shutdown(std::net::Shutdown::Write);
                let mut reply = Vec::new();
                let _ = s.read_to_end(&mut reply);
                sent += junk.len();
            }
            sent
        }
    }));

    // The abuse runs for 2 s before the good client measures: a duration, not a wait.
    std::thread::sleep(Duration::from_secs(2));
    let during = latencies(&mut good, 200);
    let rss_during = vm.backend_rss_kib().unwrap();
    stop.store(true, Ordering::Relaxed);
    let counts: Vec<usize> = abusers.into_iter().map(|t| t.join().unwrap()).collect();
    // The backend closes the abusers' connections as it reads their ends; nothing a client
    // sees says when it has read them all.
    std::thread::sleep(Duration::from_millis(500));
    let after = latencies(&mut good, 50);
    let (frames_after, ..) = tally(&vm);
    let rss_after = vm.backend_rss_kib().unwrap();
    let p = |v: &[f64], q: f64| {
        let rank = usize::try_from(round_to_i32((v.len() as f64 * q).ceil())).unwrap();
        v[rank.clamp(1, v.len()) - 1]
    };
    println!(
        "abusers (held connections, 1 MiB line, unread commands, garbage bytes): {counts:?}; \
         good client p50/p99 ms: before {:.3}/{:.3}, during {:.3}/{:.3}, after {:.3}/{:.3}; \
         backend RSS {rss_before} -> {rss_during} -> {rss_after} KiB",
        p(&normal, 0.5),
        p(&normal, 0.99),
        p(&during, 0.5),
        p(&during, 0.99),
        p(&after, 0.5),
        p(&after, 0.99)
    );
    assert!(counts[0] >= 64, "the flood got connections: {counts:?}");
    assert!(counts[2] > 0 && counts[3] > 0, "{counts:?}");
    // The well-behaved client keeps its normal latency: within 20 ms at p99 while four
    // abusers hammer the same thread on a two-core machine.
    assert!(
        p(&during, 0.99) < p(&normal, 0.99) + 20.0,
        "during abuse: {during:?}"
    );
    assert!(
        p(&after, 0.99) < p(&normal, 0.99) + 5.0,
        "after abuse: {after:?}"
    );
    assert!(
        rss_during < rss_before + 16 * 1024 && rss_after < rss_before + 16 * 1024,
        "backend memory {rss_before} -> {rss_during} -> {rss_after} KiB"
    );
    assert_eq!(
        frames_after, frames_before,
        "the guest received nothing from the abusers"
    );
    let status = good.execute("query-pvmouse", json!({})).unwrap();
    assert_eq!(
        status["counters"]["commands"], 0,
        "no input command was accepted: {status}"
    );
}

/// Round-trip times of `pvmouse-send` moves on `client`, in milliseconds, sorted.
fn input_latencies(client: &mut Qmp, n: usize) -> Vec<f64> {
    let mut out: Vec<f64> = (0..n)
        .map(|i| {
            let x = f64::from(u32::try_from(i % 1000).unwrap()) / 1000.0;
            let t = Instant::now();
            client
                .execute("pvmouse-send", json!({"x": x, "y": 0.5}))
                .unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    out.sort_by(f64::total_cmp);
    out
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = usize::try_from(round_to_i32((sorted.len() as f64 * q).ceil())).unwrap();
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Lines received on a control connection, each with its arrival time.
type TimedLines = Arc<Mutex<Vec<(Instant, Value)>>>;

/// A negotiated control connection read line by line on its own thread, each line timed.
fn event_log(path: &std::path::Path) -> (TimedLines, UnixStream) {
    use std::io::BufRead;
    let stream = UnixStream::connect(path).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    std::thread::spawn({
        let log = log.clone();
        move || {
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    return;
                };
                log.lock().unwrap().push((Instant::now(), v));
            }
        }
    });
    writer
        .write_all(b"{\"execute\": \"qmp_capabilities\"}\n")
        .unwrap();
    (log, writer)
}

#[test]
fn a_guest_flapping_bridge_presence_cannot_flood_or_cut_off_control_clients() {
    let vm = boot(VmConfig::default());
    let path = vm.control_socket();
    let mut timed = vm.control().unwrap();
    let before = input_latencies(&mut timed, 300);
    let (log, _reader_writer) = event_log(&path);
    // Negotiates, then never reads a byte.
    let mut idle = UnixStream::connect(&path).unwrap();
    idle.write_all(b"{\"execute\": \"qmp_capabilities\"}\n")
        .unwrap();

    let storm = 10;
    let mark = vm.probe.mark();
    let started = Instant::now();
    vm.probe
        .send(&format!("flap {PVMOUSE_NAME} {storm}"))
        .unwrap();
    let mut during = Vec::new();
    while started.elapsed() < Duration::from_secs(storm - 1) {
        during.extend(input_latencies(&mut timed, 50));
    }
    during.sort_by(f64::total_cmp);
    let (_, done) = vm
        .probe
        .wait_for(mark, WAIT, |l| {
            l.starts_with("FLAP ") || l.starts_with("ERR ")
        })
        .unwrap();
    let ended = Instant::now();
    let flips: u64 = done
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{done}"));
    // The last state goes out within one interval; then the device, hearing no heartbeat,
    // declares the bridge gone within its 1.5 s timeout. The whole 3.5 s is waited out: an
    // event after that "gone" would break the rate limit, and it would have no other signal.
    std::thread::sleep(Duration::from_millis(3500));
    let after = input_latencies(&mut timed, 300);

    let events: Vec<(Instant, Value)> = log
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, e)| e["event"] == "PVMOUSE_BRIDGE_CHANGE")
        .cloned()
        .collect();
    println!(
        "guest wrote {flips} presence messages in {storm} s; the reading client got {} bridge \
         events; input p50/p99 ms: before {:.3}/{:.3}, during {:.3}/{:.3}, after {:.3}/{:.3}",
        events.len(),
        percentile(&before, 0.5),
        percentile(&before, 0.99),
        percentile(&during, 0.5),
        percentile(&during, 0.99),
        percentile(&after, 0.5),
        percentile(&after, 0.99)
    );
    assert!(flips > 1000, "the guest flapped only {flips} times");
    // At most one event per second, as the spec says.
    for pair in events.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(950),
            "two bridge events {gap:?} apart"
        );
    }
    assert!(
        events.len() <= usize::try_from(storm).unwrap() + 4,
        "{}",
        events.len()
    );
    // After the storm: the newest state (present, version 7) is the last presence reported, then
    // the silence that follows it. An event already due as the storm ended may come first with
    // the state of that moment.
    let after_storm: Vec<&Value> = events
        .iter()
        .filter(|(at, _)| *at >= ended - Duration::from_millis(50))
        .map(|(_, e)| &e["data"])
        .collect();
    assert_eq!(
        after_storm
            .iter()
            .rev()
            .find(|e| e["present"] == true)
            .copied(),
        Some(&json!({"present": true, "version": 7})),
        "{after_storm:?}"
    );
    assert_eq!(
        after_storm.last().copied(),
        Some(&json!({"present": false})),
        "{after_storm:?}"
    );
    // The client that never read is still connected: its reply comes after its backlog.
    idle.write_all(b"{\"execute\": \"query-version\", \"id\": \"still-there\"}\n")
        .unwrap();
    idle.set_read_timeout(Some(WAIT)).unwrap();
    let mut backlog = String::new();
    let mut chunk = [0u8; 4096];
    while !backlog.contains("still-there") {
        let n = idle.read(&mut chunk).unwrap();
        assert!(n > 0, "the idle client was disconnected: {backlog}");
        backlog.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    // Host clients' input is not slowed by the storm beyond noise.
    assert!(
        percentile(&during, 0.99) < percentile(&before, 0.99) * 3.0 + 5.0,
        "during the storm: {during:?}"
    );
}

/// What the process has open, by kind: the targets of /proc/PID/fd without the inode numbers,
/// which differ from one connection to the next.
fn open_fds(pid: u32) -> Vec<String> {
    let mut kinds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| {
            let t = t.to_string_lossy().into_owned();
            t.split('[').next().unwrap_or(&t).to_owned()
        })
        .collect();
    kinds.sort();
    kinds
}

/// The open descriptors once they stop changing: a connection's worker winds down, or starts,
/// a moment after the status says so. Two reads 100 ms apart that agree count as settled;
/// after 5 s the last read stands.
fn settled_fds(pid: u32) -> Vec<String> {
    let mut last: Option<Vec<String>> = None;
    wait::until_every(
        "the backend's descriptors to settle",
        Duration::from_secs(5),
        Duration::from_millis(100),
        || {
            let now = open_fds(pid);
            let settled = last.as_ref() == Some(&now);
            last = Some(now.clone());
            if settled { Ok(now) } else { Err(now.len()) }
        },
    )
    .unwrap_or_else(|_| last.clone().unwrap_or_else(|| open_fds(pid)))
}

/// Polls query-pvmouse until `ready` holds.
fn wait_status(ctl: &mut Qmp, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
    wait::status(ctl, what, Duration::from_secs(60), ready).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn a_killed_qemu_leaves_the_backend_listening_without_leaks_and_it_serves_the_next_one() {
    let mut vm = boot(VmConfig::default());
    let backend = vm.backend_pid().unwrap();
    let mut ctl = vm.control().unwrap();
    // The guest holds the left button at a known place when QEMU dies.
    ctl.execute(
        "pvmouse-send",
        json!({"display": 1, "x": 0.25, "y": 0.75, "buttons": {"left": true}}),
    )
    .unwrap();
    wait_status(&mut ctl, "active", |s| s["driver-active"] == true);
    let rss_start = vm.backend_rss_kib().unwrap();
    let (mut listening, mut serving) = (Vec::new(), Vec::new());
    for round in 0..3 {
        vm.kill_qemu();
        wait_status(&mut ctl, "disconnected", |s| {
            s["frontend-connected"] == false
        });
        listening.push(settled_fds(backend));
        assert!(
            std::path::Path::new(&format!("/proc/{backend}")).exists(),
            "the backend died with QEMU"
        );

        vm.relaunch_qemu()
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        wait_status(&mut ctl, "active again", |s| s["driver-active"] == true);
        serving.push(settled_fds(backend));
        // The new guest gets the whole state, held button included.
        guest_state_until(
            &vm,
            &format!("round {round}: the held button and position in the new guest"),
            |st| st["keys"] == json!([272]) && st["abs"]["0"] == 16384 && st["abs"]["40"] == 1,
        );
        // And it takes new input.
        count_guest_input(&vm);
        ctl.execute("pvmouse-send", json!({"buttons": {"left": false}}))
            .unwrap();
        ctl.execute("pvmouse-send", json!({"buttons": {"left": true}}))
            .unwrap();
        wait::until(
            &format!("round {round}: input after relaunch"),
            WAIT,
            || wait::when(tally(&vm).1, |presses| *presses >= 1),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }
    let rss_end = vm.backend_rss_kib().unwrap();
    let counts = |v: &[Vec<String>]| v.iter().map(Vec::len).collect::<Vec<_>>();
    println!(
        "open fds while listening {:?}, while serving {:?}; backend RSS {rss_start} -> \
         {rss_end} KiB over 3 QEMU kills",
        counts(&listening),
        counts(&serving)
    );
    assert!(
        listening.windows(2).all(|w| w[0] == w[1]),
        "fds leak: {listening:?}"
    );
    assert!(
        serving.windows(2).all(|w| w[0] == w[1]),
        "fds leak: {serving:?}"
    );
    assert!(
        rss_end < rss_start + 1024,
        "memory grew {rss_start} -> {rss_end} KiB"
    );
}
