//! The QMP control socket against a mock device: what commands become, and that bad input of
//! every kind gets a clear error, reaches no device, and leaves the connection working.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pvmouse_client::Connection;
use pvmouse_spec::control::{MAX_CLIENTS, MAX_COMMAND_BYTES};
use pvmouse_spec::profile::Button;
use serde_json::{Value, json};
use vhost_user_pvmouse::Identity;
use vhost_user_pvmouse::QueueFull;
use vhost_user_pvmouse::{ControlHandle, ControlServer};
use vhost_user_pvmouse::{Counters, DeviceStatus, PointerDevice, SubmitError, Submitted};
use vhost_user_pvmouse::{Notice, NoticeBoard};
use vhost_user_pvmouse::{PointerAction, PointerState, WheelAxis};

struct MockDevice {
    identity: Identity,
    submitted: Mutex<Vec<Vec<PointerAction>>>,
    full: Mutex<bool>,
}

impl PointerDevice for MockDevice {
    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn submit(&self, actions: &[PointerAction]) -> Result<Submitted, SubmitError> {
        if *self.full.lock().unwrap() {
            return Err(QueueFull { pending: 4096 }.into());
        }
        self.submitted.lock().unwrap().push(actions.to_vec());
        Ok(Submitted {
            frames: 1,
            queued: true,
        })
    }

    fn status(&self) -> DeviceStatus {
        DeviceStatus {
            pointer: PointerState::default(),
            frontend_connected: true,
            driver_active: true,
            driver_paused: false,
            bridge_version: None,
            desktop_coordinates: false,
            pending_frames: 0,
            coalesced_frames: 0,
            counters: Counters::default(),
            guest_faults: Vec::new(),
            mode: pvmouse_spec::profile::PointerMode::Absolute,
            relative: None,
        }
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    device: Arc<MockDevice>,
    notices: Arc<NoticeBoard>,
    handle: Option<ControlHandle>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let device = Arc::new(MockDevice {
            identity: Identity::new("pvmouse", "s", 2).unwrap(),
            submitted: Mutex::new(Vec::new()),
            full: Mutex::new(false),
        });
        let notices = Arc::new(NoticeBoard::new().unwrap());
        let handle = ControlServer::bind(&path, device.clone(), notices.clone())
            .unwrap()
            .spawn()
            .unwrap();
        Fixture {
            _dir: dir,
            path,
            device,
            notices,
            handle: Some(handle),
        }
    }

    fn client(&self) -> Client {
        Client::connect(&self.path, true)
    }

    fn take_submitted(&self) -> Vec<Vec<PointerAction>> {
        std::mem::take(&mut *self.device.submitted.lock().unwrap())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.stop().unwrap();
        }
    }
}

/// A wire-level client: every line it reads must end in CRLF, as QMP's do.
struct Client {
    conn: Connection,
}

impl Client {
    fn connect(path: &Path, negotiate: bool) -> Self {
        let mut conn = Connection::greeted(path).unwrap();
        conn.set_reply_timeout(Duration::from_secs(10)).unwrap();
        let line = conn.greeting_line();
        assert!(line.ends_with("\r\n"), "QMP lines end in CRLF: {line:?}");
        let greeting = conn.greeting();
        assert!(greeting["QMP"]["capabilities"].is_array(), "{greeting}");
        let mut c = Client { conn };
        if negotiate {
            assert_eq!(
                c.cmd(json!({"execute": "qmp_capabilities"})),
                json!({"return": {}})
            );
        }
        c
    }

    fn read(&mut self) -> Value {
        let line = self.conn.read_line().unwrap();
        assert!(line.ends_with("\r\n"), "QMP lines end in CRLF: {line:?}");
        serde_json::from_str(line).unwrap()
    }

    /// Everything the server sends until it closes the connection.
    fn read_to_close(&mut self) -> String {
        let mut rest = String::new();
        loop {
            match self.conn.read_line() {
                Ok(line) => rest.push_str(line),
                Err(pvmouse_client::Error::Closed) => return rest,
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn socket(&self) -> &UnixStream {
        self.conn.socket()
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.conn.write_raw(bytes).unwrap();
    }

    fn cmd(&mut self, msg: Value) -> Value {
        self.send_raw(format!("{msg}\n").as_bytes());
        self.read()
    }

    fn is_alive(&mut self) -> bool {
        self.cmd(json!({"execute": "query-pvmouse"}))["return"]["name"] == "pvmouse"
    }
}

fn error_of(reply: &Value) -> (String, String) {
    let e = &reply["error"];
    assert!(e.is_object(), "expected an error, got {reply}");
    (
        e["class"].as_str().unwrap().to_owned(),
        e["desc"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn negotiation_follows_qmp_and_ids_are_echoed() {
    let f = Fixture::new();
    let mut c = Client::connect(&f.path, false);
    let r = c.cmd(json!({"execute": "query-pvmouse", "id": 1}));
    assert_eq!(error_of(&r).0, "CommandNotFound");
    assert_eq!(r["id"], 1);
    let r = c.cmd(json!({"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}));
    assert!(error_of(&r).1.contains("oob"));
    let r = c.cmd(json!({"execute": "qmp_capabilities", "id": {"tag": [1, "a"]}}));
    assert_eq!(r, json!({"return": {}, "id": {"tag": [1, "a"]}}));
    let r = c.cmd(json!({"execute": "qmp_capabilities"}));
    assert_eq!(error_of(&r).0, "CommandNotFound");
    let r = c.cmd(json!({"execute": "query-commands", "id": "x"}));
    assert!(
        r["return"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "pvmouse-send"}))
    );
    assert_eq!(r["id"], "x");
}

#[test]
fn input_send_event_keeps_qemus_meaning() {
    let f = Fixture::new();
    let mut c = f.client();
    let r = c.cmd(
        json!({"execute": "input-send-event", "arguments": {"events": [
        {"type": "abs", "data": {"axis": "x", "value": 0}},
        {"type": "abs", "data": {"axis": "y", "value": 0x7fff}},
        {"type": "btn", "data": {"down": true, "button": "middle"}},
        {"type": "btn", "data": {"down": true, "button": "wheel-down"}},
        {"type": "btn", "data": {"down": false, "button": "wheel-down"}},
        {"type": "btn", "data": {"down": true, "button": "wheel-left"}}]}}),
    );
    assert_eq!(r, json!({"return": {}}));
    let r = c.cmd(
        json!({"execute": "input-send-event", "arguments": {"head": 1, "device": "pvmouse",
        "events": [{"type": "abs", "data": {"axis": "x", "value": 16384}}]}}),
    );
    assert_eq!(r, json!({"return": {}}));
    let got = f.take_submitted();
    assert_eq!(
        got[0],
        vec![
            PointerAction::Move {
                display: Some(0),
                x: Some(0),
                y: None
            },
            PointerAction::Move {
                display: Some(0),
                x: None,
                y: Some(65535)
            },
            PointerAction::Button {
                button: Button::Middle,
                down: true
            },
            PointerAction::Wheel {
                axis: WheelAxis::Vertical,
                hi_res: -120
            },
            PointerAction::Wheel {
                axis: WheelAxis::Horizontal,
                hi_res: -120
            },
        ],
        "wheel releases do nothing; no head means display 0"
    );
    assert_eq!(
        got[1],
        vec![PointerAction::Move {
            display: Some(1),
            x: Some(32769),
            y: None
        }]
    );
}

#[test]
fn pvmouse_send_orders_motion_buttons_then_wheels() {
    let f = Fixture::new();
    let mut c = f.client();
    let r = c.cmd(json!({"execute": "pvmouse-send", "arguments": {
        "wheel": {"horizontal": 30, "vertical": -240},
        "buttons": {"extra": true, "left": false},
        "y": 0.25, "display": 1}}));
    assert_eq!(r, json!({"return": {}}));
    assert_eq!(
        f.take_submitted(),
        vec![vec![
            PointerAction::Move {
                display: Some(1),
                x: None,
                y: Some(16384)
            },
            PointerAction::Button {
                button: Button::Left,
                down: false
            },
            PointerAction::Button {
                button: Button::Extra,
                down: true
            },
            PointerAction::Wheel {
                axis: WheelAxis::Vertical,
                hi_res: -240
            },
            PointerAction::Wheel {
                axis: WheelAxis::Horizontal,
                hi_res: 30
            },
        ]]
    );
    let r = c.cmd(json!({"execute": "pvmouse-send", "arguments": {"x": 1, "y": 0}}));
    assert_eq!(r, json!({"return": {}}));
    assert_eq!(
        f.take_submitted(),
        vec![vec![PointerAction::Move {
            display: None,
            x: Some(65535),
            y: Some(0)
        }]]
    );
}

#[test]
fn every_kind_of_bad_input_gets_a_clear_error_and_reaches_no_device() {
    let f = Fixture::new();
    let mut c = f.client();
    let ise =
        |events: Value| json!({"execute": "input-send-event", "arguments": {"events": events}});
    let send = |args: Value| json!({"execute": "pvmouse-send", "arguments": args});
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (b"nonsense\n".to_vec(), "GenericError", "JSON parse error"),
        (b"\xff\xfe\x00\x01garbage\n".to_vec(), "GenericError", "JSON parse error"),
        (b"{\"execute\": \"query-pvmouse\"\xff}\n".to_vec(), "GenericError", "JSON parse error"),
        (b"[1, 2]\n".to_vec(), "GenericError", "must be a JSON object"),
        (b"42\n".to_vec(), "GenericError", "must be a JSON object"),
        (b"{\"execute\": \"nope\"}\n".to_vec(), "CommandNotFound", "nope"),
        (b"{\"execute\": 5}\n".to_vec(), "GenericError", "'execute' must be a string"),
        (b"{\"execute\": \"input-send-event\"}\n".to_vec(), "GenericError", "'events' is missing"),
        (json!({"execute": "query-pvmouse", "arguments": {"x": 1}}).to_string().into_bytes(), "GenericError", "'x' is unexpected"),
        (json!({"execute": "input-send-event", "arguments": {"events": "x"}}).to_string().into_bytes(), "GenericError", "'events', expected: array"),
        (json!({"execute": "input-send-event", "arguments": {"head": 2, "events": []}}).to_string().into_bytes(), "GenericError", "2 is not in 0..=1"),
        (json!({"execute": "input-send-event", "arguments": {"head": "1", "events": []}}).to_string().into_bytes(), "GenericError", "'head', expected: integer"),
        (json!({"execute": "input-send-event", "arguments": {"device": "mouse0", "events": []}}).to_string().into_bytes(), "DeviceNotFound", "mouse0"),
        (ise(json!([{"type": "abs", "data": {"axis": "x", "value": 32768}}])).to_string().into_bytes(), "GenericError", "events[0].data.value' out of range"),
        (ise(json!([{"type": "abs", "data": {"axis": "y", "value": -1}}])).to_string().into_bytes(), "GenericError", "out of range"),
        (ise(json!([{"type": "abs", "data": {"axis": "z", "value": 1}}])).to_string().into_bytes(), "GenericError", "'events[0].data.axis' does not accept value 'z'"),
        (ise(json!([{"type": "abs", "data": {"axis": "x", "value": 1.5}}])).to_string().into_bytes(), "GenericError", "expected: integer"),
        (ise(json!([{"type": "btn", "data": {"down": true, "button": "touch"}}])).to_string().into_bytes(), "GenericError", "'touch'"),
        (ise(json!([{"type": "btn", "data": {"down": "yes", "button": "left"}}])).to_string().into_bytes(), "GenericError", "expected: boolean"),
        (ise(json!([{"type": "rel", "data": {"axis": "x", "value": 1_048_577}}])).to_string().into_bytes(), "GenericError", "out of range"),
        (ise(json!([{"type": "rel", "data": {"axis": "w", "value": 1}}])).to_string().into_bytes(), "GenericError", "'events[0].data.axis' does not accept value 'w'"),
        (send(json!({"x": 0.5, "dx": 3})).to_string().into_bytes(), "GenericError", "not both"),
        (send(json!({"dy": -1_048_577})).to_string().into_bytes(), "GenericError", "out of range"),
        (json!({"execute": "pvmouse-set-mode", "arguments": {"mode": "tablet"}}).to_string().into_bytes(), "GenericError", "'tablet' (absolute or relative)"),
        (json!({"execute": "pvmouse-set-mode", "arguments": {}}).to_string().into_bytes(), "GenericError", "'mode' is missing"),
        (ise(json!([{"type": "key", "data": {"down": true, "key": {"type": "qcode", "data": "a"}}}])).to_string().into_bytes(), "GenericError", "'key'"),
        (ise(json!([{"type": "warp", "data": {}}])).to_string().into_bytes(), "GenericError", "'warp'"),
        (ise(json!([7])).to_string().into_bytes(), "GenericError", "'events[0]', expected: object"),
        // Atomicity: a good event before a bad one is not applied either.
        (ise(json!([{"type": "btn", "data": {"down": true, "button": "left"}}, {"type": "abs", "data": {"axis": "x"}}])).to_string().into_bytes(), "GenericError", "'events[1].data.value' is missing"),
        (send(json!({"x": 1.5})).to_string().into_bytes(), "GenericError", "1.5 is not in 0.0..=1.0"),
        (send(json!({"y": -0.01})).to_string().into_bytes(), "GenericError", "not in 0.0..=1.0"),
        (send(json!({"x": "0.5"})).to_string().into_bytes(), "GenericError", "'x', expected: number"),
        (send(json!({"display": 5})).to_string().into_bytes(), "GenericError", "this device has 2 displays"),
        (send(json!({"buttons": {"left": 1}})).to_string().into_bytes(), "GenericError", "'buttons.left', expected: boolean"),
        (send(json!({"buttons": {"thumb": true}})).to_string().into_bytes(), "GenericError", "'buttons.thumb' is unexpected"),
        (send(json!({"wheel": {"vertical": 1_000_000_000}})).to_string().into_bytes(), "GenericError", "'wheel.vertical' out of range"),
        (send(json!({"wheel": {"vertical": 0.5}})).to_string().into_bytes(), "GenericError", "expected: integer"),
        (send(json!({"wheel": {"diagonal": 1}})).to_string().into_bytes(), "GenericError", "'wheel.diagonal' is unexpected"),
    ];
    for (input, class, desc) in cases {
        let mut line = input.clone();
        if !line.ends_with(b"\n") {
            line.push(b'\n');
        }
        c.send_raw(&line);
        let reply = c.read();
        let (got_class, got_desc) = error_of(&reply);
        let shown = String::from_utf8_lossy(&input);
        assert_eq!(got_class, class, "{shown}: {got_desc}");
        assert!(
            got_desc.contains(desc),
            "{shown}: {got_desc:?} lacks {desc:?}"
        );
        assert!(f.take_submitted().is_empty(), "{shown} reached the device");
        assert!(c.is_alive(), "{shown} broke the connection");
    }
}

#[test]
fn an_over_long_command_is_refused_and_the_next_one_works() {
    let f = Fixture::new();
    let mut c = f.client();
    let mut long = br#"{"execute": "pvmouse-send", "arguments": {"pad": ""#.to_vec();
    long.extend(std::iter::repeat_n(b'a', 4 * MAX_COMMAND_BYTES));
    long.extend_from_slice(b"\"}}\n");
    c.send_raw(&long);
    let (_, desc) = error_of(&c.read());
    assert!(desc.contains("too long"), "{desc}");
    assert!(c.is_alive());
    assert!(f.take_submitted().is_empty());
}

#[test]
fn commands_may_be_concatenated_or_split_without_newlines() {
    let f = Fixture::new();
    let mut c = Client::connect(&f.path, false);
    c.send_raw(br#"{"execute":"qmp_capabilities"}{"execute":"query-pvmouse","id":2}"#);
    assert_eq!(c.read(), json!({"return": {}}));
    assert_eq!(c.read()["id"], 2);
    for b in br#"  {"execute": "pvmouse-send", "arguments": {"x": 0.5}, "id": 3}"# {
        c.send_raw(&[*b]);
    }
    assert_eq!(c.read(), json!({"return": {}, "id": 3}));
    assert_eq!(f.take_submitted().len(), 1);
}

#[test]
fn a_full_device_queue_is_reported_not_hidden() {
    let f = Fixture::new();
    let mut c = f.client();
    *f.device.full.lock().unwrap() = true;
    let r = c.cmd(json!({"execute": "pvmouse-send", "arguments": {"buttons": {"left": true}}}));
    let (_, desc) = error_of(&r);
    assert!(
        desc.contains("not draining") && desc.contains("nothing of this command"),
        "{desc}"
    );
}

#[test]
fn clients_are_independent_and_all_get_events() {
    let f = Fixture::new();
    let mut a = f.client();
    let mut b = f.client();
    let mut unnegotiated = Client::connect(&f.path, false);
    f.notices.post(Notice::Driver { active: true });
    for c in [&mut a, &mut b] {
        let e = c.read();
        assert_eq!(e["event"], "PVMOUSE_DRIVER_CHANGE");
        assert_eq!(e["data"], json!({"active": true}));
        assert!(e["timestamp"]["seconds"].as_u64().unwrap() > 0);
    }
    // Events go only to clients that finished negotiation.
    let r = unnegotiated.cmd(json!({"execute": "qmp_capabilities"}));
    assert_eq!(r, json!({"return": {}}));
    f.notices.post(Notice::Bridge {
        present: false,
        version: 0,
    });
    assert_eq!(unnegotiated.read()["data"], json!({"present": false}));
    assert_eq!(a.read()["event"], "PVMOUSE_BRIDGE_CHANGE");
    assert_eq!(b.read()["event"], "PVMOUSE_BRIDGE_CHANGE");
    assert!(a.is_alive() && b.is_alive());
}

#[test]
fn a_half_closed_client_still_gets_its_replies() {
    let f = Fixture::new();
    let mut c = f.client();
    c.send_raw(b"{\"execute\": \"query-pvmouse\"}\n{\"execute\": \"query-commands\"}\n");
    c.socket().shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(c.read()["return"]["name"], "pvmouse");
    assert!(c.read()["return"].is_array());
    assert_eq!(c.read_to_close(), "", "then the server closes");
}

#[test]
fn connections_past_the_limit_are_told_why_and_closed() {
    let f = Fixture::new();
    let clients: Vec<Client> = (0..MAX_CLIENTS)
        .map(|_| Client::connect(&f.path, false))
        .collect();
    let extra = UnixStream::connect(&f.path).unwrap();
    extra
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut text = String::new();
    BufReader::new(extra).read_to_string(&mut text).unwrap();
    assert!(text.contains("too many control connections"), "{text}");
    drop(clients);
    // Slots free up again once clients leave.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = UnixStream::connect(&f.path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        if line.contains("\"QMP\"") {
            break;
        }
        assert!(Instant::now() < deadline, "slots never freed: {line}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_client_that_never_reads_is_dropped_and_others_keep_working() {
    let f = Fixture::new();
    let mut good = f.client();
    let hog = UnixStream::connect(&f.path).unwrap();
    hog.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut hog_w = hog.try_clone().unwrap();
    let request = b"{\"execute\": \"query-commands\"}\n".repeat(1000);
    let started = Instant::now();
    let dropped = loop {
        if hog_w.write_all(&request).is_err() {
            break true;
        }
        if started.elapsed() > Duration::from_secs(30) {
            break false;
        }
    };
    assert!(dropped, "the server kept a client that never reads");
    assert!(good.is_alive());
}

#[test]
fn after_pvmouse_stream_records_flow_unanswered_unless_asked_and_other_clients_are_unaffected() {
    use pvmouse_spec::stream::Record;
    let f = Fixture::new();
    let mut other = f.client();
    let mut c = f.client();
    // The command and the first records in one write: the records start after the newline.
    let mut bytes = b"{\"execute\": \"pvmouse-stream\"}\n".to_vec();
    for x in 0..100u16 {
        bytes.extend_from_slice(
            &Record {
                display: Some(1),
                x: Some(x),
                ..Record::default()
            }
            .encode(),
        );
    }
    c.send_raw(&bytes);
    assert_eq!(c.read(), json!({"return": {}}));
    // Answered: a click, then a refused display, then an empty record confirming the rest.
    let click = Record {
        buttons_set: Button::Left.bit(),
        buttons_down: Button::Left.bit(),
        answer: true,
        ..Record::default()
    };
    let refused = Record {
        display: Some(7),
        answer: true,
        ..Record::default()
    };
    let mut bytes = click.encode().to_vec();
    bytes.extend_from_slice(&refused.encode());
    c.send_raw(&bytes[..20]);
    std::thread::sleep(Duration::from_millis(20));
    c.send_raw(&bytes[20..]);
    assert_eq!(c.read(), json!({"return": {}}));
    assert!(error_of(&c.read()).1.contains("display 7 is out of range"));
    // Unanswered garbage (no answer flag) is told of once, in an event, and the stream goes on.
    c.send_raw(&[0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0].repeat(5));
    c.send_raw(
        &Record {
            answer: true,
            ..Record::default()
        }
        .encode(),
    );
    let mut got = vec![c.read(), c.read()];
    got.sort_by_key(|v| v.get("event").is_none());
    assert_eq!(got[0]["event"], "PVMOUSE_STREAM_REFUSED", "{got:?}");
    assert_eq!(got[0]["data"]["refused"], 5);
    assert_eq!(got[1], json!({"return": {}}));
    let submitted = f.take_submitted();
    assert_eq!(
        submitted.len(),
        102,
        "100 moves, a click and an empty confirmation"
    );
    assert_eq!(
        submitted[99],
        vec![PointerAction::Move {
            display: Some(1),
            x: Some(99),
            y: None
        }]
    );
    assert_eq!(
        submitted[100],
        vec![PointerAction::Button {
            button: Button::Left,
            down: true
        }]
    );
    assert!(other.is_alive());
}

#[test]
fn a_streaming_client_that_never_reads_its_answers_is_dropped_and_garbage_alone_is_not() {
    use pvmouse_spec::stream::Record;
    let f = Fixture::new();
    let mut good = f.client();
    let stream_client = || {
        let mut c = f.client();
        assert_eq!(
            c.cmd(json!({"execute": "pvmouse-stream"})),
            json!({"return": {}})
        );
        c.socket()
            .set_write_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        c
    };
    // Writes `record` for 3 s or until the server drops the client: whether it did, and how
    // many records went out.
    let flood = |c: &mut Client, record: [u8; 16]| {
        let burst = record.repeat(4096);
        let started = Instant::now();
        let mut sent = 0;
        while started.elapsed() < Duration::from_secs(3) {
            if c.socket().write_all(&burst).is_err() {
                return (true, sent);
            }
            sent += 4096;
        }
        (false, sent)
    };
    // Asking for answers and never reading them: the answers pile up and it is dropped.
    let mut hog = stream_client();
    let answered = Record {
        answer: true,
        ..Record::default()
    }
    .encode();
    assert!(
        flood(&mut hog, answered).0,
        "kept a client that never reads"
    );
    // Refused records without answers, never read: never dropped for it, told in events that
    // each stand for many refusals (one per read at most, none while its socket is full), and
    // the device saw none of them.
    let mut noisy = stream_client();
    f.take_submitted();
    let garbage = [0xffu8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let (dropped, sent) = flood(&mut noisy, garbage);
    assert!(!dropped, "dropped for unanswered garbage");
    noisy.send_raw(&answered);
    let (mut events, mut told) = (0u64, 0u64);
    loop {
        let v = noisy.read();
        if v.get("event").is_none() {
            assert_eq!(v, json!({"return": {}}));
            break;
        }
        assert_eq!(v["event"], "PVMOUSE_STREAM_REFUSED", "{v}");
        events += 1;
        told += v["data"]["refused"].as_u64().unwrap();
    }
    println!("{sent} refused records told in {events} events");
    assert!(events >= 1 && told <= sent);
    assert!(events * 100 < sent, "{events} events for {sent} records");
    assert_eq!(f.take_submitted(), vec![Vec::<PointerAction>::new()]);
    assert!(good.is_alive());
}
