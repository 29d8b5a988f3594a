//! How the control socket frames what clients send: in time linear in the bytes (a client that
//! trickles a large command cannot slow another), one reply per bad input however it is split,
//! duplicate keys refused, and errors that name the problem in a short line.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

#[path = "support/control_server.rs"]
mod control_server;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use control_server::{Client, Server};
use serde_json::{Value, json};
use vhost_user_pvmouse::Identity;
use vhost_user_pvmouse::NoticeBoard;
use vhost_user_pvmouse::testing::Conversation;
use vhost_user_pvmouse::{PointerDevice, PvMouse};

fn device() -> PvMouse {
    PvMouse::new(
        Identity::new("pvmouse", "s", 2).unwrap(),
        Arc::new(NoticeBoard::new().unwrap()),
    )
    .unwrap()
}

/// The replies a conversation gives to `stream` fed in pieces of `piece` bytes.
fn replies(stream: &[u8], piece: usize) -> Vec<Value> {
    let device = device();
    let mut conversation = Conversation::default();
    let mut output = Vec::new();
    for chunk in stream.chunks(piece) {
        conversation.feed(&device, chunk, &mut output);
    }
    output
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

#[test]
fn one_bad_input_gets_one_reply_however_it_is_split() {
    let stream = b"{\"execute\": \"qmp_capabilities\"}\n\
        {\"execute\": \"query-version\",\n \"arguments\": {], \"x\": 1}\n\
        {\"execute\": \"query-version\", \"id\": 2}\n\
        nonsense {\"execute\": \"query-version\"}\n\
        {\"execute\": \"query-version\", \"id\": 3}\n";
    let whole = replies(stream, stream.len());
    assert_eq!(whole.len(), 5, "{whole:?}");
    assert_eq!(whole[0], json!({"return": {}}));
    assert!(
        whole[1]["error"]["desc"]
            .as_str()
            .unwrap()
            .starts_with("JSON parse error")
    );
    assert_eq!(whole[2]["id"], 2);
    assert!(
        whole[3]["error"]["desc"]
            .as_str()
            .unwrap()
            .starts_with("JSON parse error")
    );
    assert_eq!(whole[4]["id"], 3);
    for piece in 1..stream.len() {
        assert_eq!(replies(stream, piece), whole, "split every {piece} bytes");
    }
}

#[test]
fn a_command_cut_short_does_not_swallow_the_commands_after_it() {
    for bad in [
        &b"{\"execute\": \"pvmouse-send\", \"arguments\": {\"x\": 0.5\n"[..],
        b"{nonsense\n",
        b"[1, 2\n",
    ] {
        let mut stream = b"{\"execute\": \"qmp_capabilities\"}\n".to_vec();
        stream.extend_from_slice(bad);
        for id in 0..5 {
            stream.extend_from_slice(
                format!("{{\"execute\": \"query-version\", \"id\": {id}}}\n").as_bytes(),
            );
        }
        for piece in [1, 2, 7, stream.len()] {
            let replies = replies(&stream, piece);
            let text = String::from_utf8_lossy(bad);
            assert_eq!(
                replies.len(),
                7,
                "{text:?} in pieces of {piece}: {replies:?}"
            );
            assert!(
                replies[1]["error"]["desc"]
                    .as_str()
                    .unwrap()
                    .starts_with("JSON parse error")
            );
            for (id, reply) in replies[2..].iter().enumerate() {
                assert_eq!(reply["id"], id, "{text:?}: {reply}");
                assert!(reply["return"].is_object(), "{text:?}: {reply}");
            }
        }
    }
}

/// A conversation that has negotiated, with its device.
struct Session {
    device: PvMouse,
    conversation: Conversation,
}

impl Session {
    fn negotiated() -> Self {
        let mut session = Session {
            device: device(),
            conversation: Conversation::default(),
        };
        let mut output = Vec::new();
        session.conversation.feed(
            &session.device,
            b"{\"execute\": \"qmp_capabilities\"}\n",
            &mut output,
        );
        session
    }

    /// The `desc` of the error reply to `bytes`.
    fn error(&mut self, bytes: &[u8]) -> String {
        let mut output = Vec::new();
        self.conversation.feed(&self.device, bytes, &mut output);
        let reply: Value = serde_json::from_slice(&output).unwrap();
        reply["error"]["desc"].as_str().unwrap().to_owned()
    }
}

#[test]
fn duplicate_keys_are_refused_at_any_depth_and_change_nothing() {
    let mut session = Session::negotiated();
    for bad in [
        &b"{\"execute\": \"pvmouse-send\", \"execute\": \"query-version\"}\n"[..],
        b"{\"execute\": \"pvmouse-send\", \"arguments\": {\"x\": 0.1, \"x\": 0.9}}\n",
        b"{\"execute\": \"pvmouse-send\", \"arguments\": {\"buttons\": {\"left\": true, \"left\": false}}}\n",
    ] {
        let desc = session.error(bad);
        assert!(desc.contains("duplicate key '"), "{desc}");
        assert!(desc.len() < 160, "{desc}");
    }
    let status = session.device.status();
    assert_eq!(status.counters.commands, 0, "nothing reached the device");
}

#[test]
fn errors_name_the_problem_in_a_short_line() {
    let mut session = Session::negotiated();
    for (command, want) in [
        (
            json!({"execute": "pvmouse-send", "arguments": {"x": -1e-300}}),
            "Parameter 'x' out of range: -1e-300 is not in 0.0..=1.0",
        ),
        (
            json!({"execute": "pvmouse-send", "arguments": {"display": 18_446_744_073_709_551_615_u64}}),
            "Parameter 'display' out of range: 18446744073709551615 is not in 0..=1",
        ),
        (
            json!({"execute": "input-send-event", "arguments": {"events": [
                {"type": "abs", "data": {"axis": "x", "value": 1e30}}]}}),
            "Parameter 'events[0].data.value' out of range: 1e30 is not in 0..=32767",
        ),
        (
            json!({"execute": "pvmouse-send", "arguments": {"display": 0.5}}),
            "Invalid parameter type for 'display', expected: integer",
        ),
    ] {
        let desc = session.error(format!("{command}\n").as_bytes());
        assert!(desc.starts_with(want), "{command}: {desc}");
        assert!(desc.len() < 160, "{} characters: {desc}", desc.len());
    }
    // A literal too large for 64 bits arrives as a float, and is still out of range.
    let desc = session.error(
        b"{\"execute\": \"pvmouse-send\", \"arguments\": {\"display\": 18446744073709551616}}\n",
    );
    assert!(
        desc.starts_with("Parameter 'display' out of range: 1.8446744073709552e19"),
        "{desc}"
    );
}

/// CPU time (utime + stime, in clock ticks) of this process's threads called `name`.
fn thread_ticks(name: &str) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        total += fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    }
    total
}

fn round_trips(client: &mut Client, n: usize) -> Vec<f64> {
    let mut out: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            client.query_version().unwrap();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    out.sort_by(f64::total_cmp);
    out
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = (sorted.len() as f64 * q).ceil();
    sorted[(1..=sorted.len())
        .find(|r| *r as f64 >= rank)
        .unwrap_or(sorted.len())
        - 1]
}

#[test]
fn clients_trickling_large_commands_do_not_slow_a_good_client() {
    let server = Server::start();
    let mut good = Client::negotiated(&server.path);
    let baseline = round_trips(&mut good, 300);

    let mut command = b"{\"execute\": \"query-version\", \"arguments\": {\"pad\": \"".to_vec();
    command.resize(60_000, b'a');
    command.extend_from_slice(b"\"}}\n");
    let command = Arc::new(command);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let tricklers: Vec<_> = (0..8)
        .map(|_| {
            let (path, command, stop, sent) = (
                server.path.clone(),
                command.clone(),
                stop.clone(),
                sent.clone(),
            );
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&path).unwrap();
                // Replies pile up unread on purpose: they are short errors.
                s.write_all(b"{\"execute\": \"qmp_capabilities\"}\n")
                    .unwrap();
                // Most of the command at once, then the rest two bytes at a time, paced as a
                // trickler is: the server holds a 50 KB unfinished command per client and gets
                // a read for every two bytes.
                let (head, tail) = command.split_at(50_000);
                'outer: loop {
                    if s.write_all(head).is_err() {
                        break;
                    }
                    for pair in tail.chunks(2) {
                        if stop.load(Ordering::Relaxed) || s.write_all(pair).is_err() {
                            break 'outer;
                        }
                        sent.fetch_add(2, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_micros(100));
                    }
                }
            })
        })
        .collect();
    // Every trickler has sent its 50 KB and is trickling.
    std::thread::sleep(Duration::from_millis(500));
    let ticks_before = thread_ticks("pvmouse-control");
    let sent_before = sent.load(Ordering::Relaxed);
    let started = Instant::now();
    let mut during = Vec::new();
    while started.elapsed() < Duration::from_secs(2) {
        during.extend(round_trips(&mut good, 50));
    }
    during.sort_by(f64::total_cmp);
    let ticks = thread_ticks("pvmouse-control") - ticks_before;
    let bytes = sent.load(Ordering::Relaxed) - sent_before;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tricklers {
        t.join().unwrap();
    }
    // Clock ticks are 10 ms on Linux (USER_HZ 100).
    let ns_per_byte = ticks as f64 * 1e7 / bytes as f64;
    println!(
        "8 tricklers holding 50 KB unfinished commands trickled {bytes} more bytes in \
         {elapsed:?}, 2 bytes per write; control thread CPU {ticks} ticks ({ns_per_byte:.0} ns \
         per trickled byte); good client p50/p99 ms: baseline {:.3}/{:.3}, during {:.3}/{:.3}",
        percentile(&baseline, 0.5),
        percentile(&baseline, 0.99),
        percentile(&during, 0.5),
        percentile(&during, 0.99),
    );
    assert!(
        bytes > 20_000,
        "the tricklers barely sent anything: {bytes}"
    );
    let allowed = (percentile(&baseline, 0.99) * 10.0).max(5.0);
    assert!(
        percentile(&during, 0.99) <= allowed,
        "p99 {:.3} ms during the trickle, {allowed:.3} ms allowed",
        percentile(&during, 0.99)
    );
}
