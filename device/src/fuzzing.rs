//! What a guest or a control client can send, as plain functions of bytes: the fuzz targets in
//! `fuzz/` call these, and `tests/fuzz_corpora.rs` replays every committed corpus entry through
//! them in the normal test suite. Each one panics only if pvmouse breaks an invariant.

use std::sync::Arc;

use pvmouse_spec::control::MAX_COMMAND_BYTES;
use pvmouse_spec::profile::Button;
use serde_json::{Map, Value, json};
use vm_memory::{Bytes, GuestAddress};

use crate::control::conversation::Conversation;
use crate::device::{PointerDevice, PvMouse};
use crate::identity::Identity;
use crate::notice::NoticeBoard;
use crate::pointer::{PointerAction, WheelAxis};
use crate::testing::{MockEventQueue, MockRing, guest_memory};

/// The status queue's rings and buffers sit here, clear of the event queue's.
const STATUSQ_BASE: u64 = 0x4_0000;

fn device(displays: u32) -> PvMouse {
    let identity = Identity::new("pvmouse", "pvmouse-fuzz", displays).expect("valid identity");
    let notices = Arc::new(NoticeBoard::new().expect("eventfd"));
    PvMouse::new(identity, notices).expect("device")
}

/// Input that makes frames of every kind: a display change, motion, a click and a scroll.
fn some_input(device: &PvMouse, seed: u8) {
    let actions = [
        PointerAction::Move {
            display: Some(seed & 1),
            x: Some(u16::from(seed) * 257),
            y: Some(u16::MAX - u16::from(seed)),
        },
        PointerAction::Button {
            button: Button::ALL[usize::from(seed) % Button::ALL.len()],
            down: seed & 2 != 0,
        },
        PointerAction::Wheel {
            axis: if seed & 4 != 0 {
                WheelAxis::Vertical
            } else {
                WheelAxis::Horizontal
            },
            hi_res: i32::from(i8::from_ne_bytes([seed])) * 10,
        },
    ];
    // A full queue refuses the command; that is a client-visible answer, not a fault.
    let _ = device.submit(&actions);
}

/// The guest controls all of its ring memory: descriptor tables, avail rings (indexes included),
/// flags, the buffers' addresses and lengths, and what the status buffers hold. The first byte
/// picks the queue size; the rest is split between the event queue's memory and the status
/// queue's.
pub fn guest_queues(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let size = [4u16, 8, 16, 64][usize::from(head & 3)];
    let mem = guest_memory();
    let eventq = MockRing::new(&mem, size);
    let statusq = MockRing::at(&mem, STATUSQ_BASE, size);
    let (ev_bytes, st_bytes) = rest.split_at(rest.len() / 2);
    let cap = |b: &[u8]| {
        b.len()
            .min(usize::try_from(STATUSQ_BASE).unwrap_or(usize::MAX))
    };
    mem.write_slice(&ev_bytes[..cap(ev_bytes)], GuestAddress(0))
        .expect("in memory");
    mem.write_slice(&st_bytes[..cap(st_bytes)], GuestAddress(STATUSQ_BASE))
        .expect("in memory");

    let device = device(2);
    device.activate(MockEventQueue::new(&mem, &eventq));
    let mut status = statusq.queue();
    for round in 0..=(head >> 2 & 3) {
        let used_before = eventq.used_idx();
        some_input(&device, head.wrapping_add(round));
        device.refill();
        // Two passes (the submit's and the refill's), each giving back at most a queue's worth,
        // whatever the guest claims in its avail index.
        let used = eventq.used_idx().wrapping_sub(used_before);
        assert!(
            used <= 2 * size,
            "used index moved by {used} on a queue of {size}"
        );
        device.service_statusq(&mut status, &mem);
    }
    // The device is still usable: a fresh driver on a well-formed ring gets input.
    device.driver_reset();
    let mut good = MockRing::at(&mem, 0, 4);
    good.offer_event_buffers(4);
    device.activate(MockEventQueue::new(&mem, &good));
    assert!(
        good.used_idx() > 0,
        "a reset device delivers its full-state frame"
    );
}

/// What the guest bridge writes on the status queue: heartbeats, layout messages whole, cut
/// short, damaged or made up, releases and clears, mixed with host input. Each 4-byte chunk is
/// one status value: its first byte picks a pvmouse message (any kind), a data value, host
/// input, or the raw bytes. Whatever came before, a bridge that then sends a whole layout has it
/// in force.
pub fn status_messages(data: &[u8]) {
    use pvmouse_spec::evdev::EV_MSC;
    use pvmouse_spec::profile::STATUS_MSC_CODE;
    use pvmouse_spec::status::{StatusMessage, encode_layout};

    let mem = guest_memory();
    let mut eventq = MockRing::new(&mem, 64);
    let mut statusq = MockRing::at(&mem, STATUSQ_BASE, 16);
    eventq.offer_event_buffers(64);
    let device = device(2);
    device.activate(MockEventQueue::new(&mem, &eventq));
    let mut queue = statusq.queue();
    let mut next = 0u16;
    let mut send = |value: i32| {
        let event = pvmouse_spec::InputEvent::new(EV_MSC, STATUS_MSC_CODE, value);
        statusq.offer_status_buffer(next % 16, event.to_le_bytes());
        next = next.wrapping_add(1);
        device.service_statusq(&mut queue, &mem);
    };
    for chunk in data.chunks_exact(4) {
        let &[op, a, b, c] = chunk else { return };
        let value = match op % 4 {
            0 => i32::from_be_bytes([0x50, 0x56, a & 0x87, b]),
            1 => i32::from_be_bytes([0, a, b, c]),
            2 => {
                some_input(&device, a);
                if b & 1 != 0 {
                    device.on_timer();
                }
                continue;
            }
            _ => i32::from_be_bytes([op, a, b, c]),
        };
        send(value);
    }
    let layout = pvmouse_spec::layout::Layout::new(std::collections::BTreeMap::from([(
        1,
        pvmouse_spec::layout::Rect {
            x: -5,
            y: 7,
            width: 640,
            height: 480,
        },
    )]))
    .expect("a valid layout");
    send(StatusMessage::BridgePresent { version: 1 }.encode());
    for value in encode_layout(&layout, 3).expect("it fits") {
        send(value);
    }
    assert!(
        device.status().desktop_coordinates,
        "a whole layout after anything is in force"
    );
}

/// What a frontend can send the keeper: any bytes as vhost-user messages. Each whole message is
/// recorded; whatever was recorded replays into messages a worker can take, none over the
/// size limit.
pub fn keeper_messages(data: &[u8]) {
    use crate::keeper::message::{MAX_PAYLOAD, Message};
    use crate::keeper::session::Session;
    use std::io::Write;
    let Ok((mut a, b)) = std::os::unix::net::UnixStream::pair() else {
        return;
    };
    // The socket buffer holds far more than a fuzz input.
    if a.write_all(data).is_err() {
        return;
    }
    drop(a);
    let mut session = Session::default();
    let mut messages = 0;
    while let Ok(m) = Message::recv(&b) {
        let _ = m.wants_reply();
        session
            .record(&m)
            .expect("recording needs no resources a test lacks");
        messages += 1;
    }
    let replay = session
        .replay()
        .expect("replaying needs no resources a test lacks");
    assert!(
        replay.len() <= messages + 1,
        "{} replayed of {messages}",
        replay.len()
    );
    assert!(replay.iter().all(|m| m.payload.len() <= MAX_PAYLOAD));
}

/// What a replacement worker finds in the ledger: any bytes as a state in any format (the
/// first two bytes pick it). A state taken over never holds more frames than the device can,
/// and a driver that then starts gets all of them, whatever the state said about its rings.
pub fn ledger_states(data: &[u8]) {
    use crate::ledger::Written;
    use pvmouse_spec::profile::MAX_PENDING_FRAMES;
    let Some(([a, b], bytes)) = data.split_first_chunk::<2>() else {
        return;
    };
    let written = Written {
        format: u16::from_le_bytes([*a, *b]),
        bytes: bytes.to_vec(),
    };
    let device = device(2);
    let restored = device.take_over(&written);
    let pending = device.status().pending_frames;
    assert!(
        pending <= MAX_PENDING_FRAMES + 2,
        "{pending} frames taken over"
    );
    assert!(
        restored || pending == 0,
        "a refused state left frames behind"
    );
    let mem = guest_memory();
    let mut ring = MockRing::new(&mem, 256);
    ring.offer_event_buffers(256);
    device.activate(MockEventQueue::new(&mem, &ring));
    some_input(&device, 7);
    let _ = device.refill();
}

/// Config reads and writes at any offset and size, with `select`/`subsel` written in between,
/// as 4-byte operations: kind, offset (two bytes), size or value.
pub fn config_space(data: &[u8]) {
    let device = device(16);
    for op in data.chunks(4) {
        let &[kind, lo, hi, arg] = op else { return };
        let offset = u32::from(u16::from_le_bytes([lo, hi]));
        match kind % 4 {
            0 => {
                let size = u32::from(arg) * 17 % 300;
                let got = device.read_config(offset, size);
                assert!(
                    got.is_empty() || got.len() == size as usize,
                    "read {offset}+{size} gave {} bytes",
                    got.len()
                );
            }
            1 => device.write_config(offset, &[arg]),
            2 => device.write_config(offset % 4, &[arg]),
            _ => {
                let len = usize::from(arg);
                device.write_config(offset, &vec![arg; len]);
            }
        }
    }
    // Whatever was written, the identity the guest reads back is intact.
    device.write_config(0, &[1, 0]);
    let name = device.read_config(0, 136);
    assert_eq!(name.len(), 136);
    assert_eq!(&name[8..15], b"pvmouse");
}

/// One client's raw bytes, delivered in pieces the first byte picks. Every reply is a complete
/// JSON object with `return`, `error` or `event`, the buffered input stays bounded, and how the
/// bytes were split changes no reply.
pub fn control_bytes(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let piece = 1 + usize::from(head);
    let output = replies_in_pieces(rest, piece);
    check_replies(&output);
    // Past the command limit, where the refusal falls depends on the reads: only below it.
    if rest.len() <= MAX_COMMAND_BYTES {
        let whole = replies_in_pieces(rest, rest.len().max(1));
        assert_eq!(
            String::from_utf8_lossy(&output),
            String::from_utf8_lossy(&whole),
            "split every {piece} bytes"
        );
    }
}

/// The replies of a conversation with a device whose driver is active, fed `bytes` in pieces.
fn replies_in_pieces(bytes: &[u8], piece: usize) -> Vec<u8> {
    with_active_device(|device| {
        let mut conversation = Conversation::default();
        let mut output = Vec::new();
        for chunk in bytes.chunks(piece) {
            conversation.feed(device, chunk, &mut output);
            assert!(conversation.buffered() <= MAX_COMMAND_BYTES + piece);
        }
        output
    })
}

/// Runs `f` on a two-display device whose driver is active, with 64 buffers offered.
fn with_active_device<R>(f: impl FnOnce(&PvMouse) -> R) -> R {
    let device = device(2);
    let mem = guest_memory();
    let mut ring = MockRing::new(&mem, 64);
    ring.offer_event_buffers(64);
    device.activate(MockEventQueue::new(&mem, &ring));
    f(&device)
}

/// A connection after `pvmouse-stream`: the first byte sets the size of the reads the rest
/// arrives in. Wherever the reads split the records, the device ends in the same state and the
/// client gets the same answers as when it all arrives at once.
pub fn stream_records(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let run = |piece: usize| with_active_device(|device| stream_in_pieces(device, rest, piece));
    assert_eq!(run(1 + usize::from(head)), run(rest.len().max(1)));
}

/// What a streaming client is answered, and the device's pointer and command count after it,
/// with `rest` arriving in reads of `piece` bytes.
fn stream_in_pieces(
    device: &PvMouse,
    rest: &[u8],
    piece: usize,
) -> (Vec<Vec<u8>>, crate::pointer::PointerState, u64) {
    let mut conversation = Conversation::default();
    let mut output = Vec::new();
    conversation.feed(
        device,
        b"{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"pvmouse-stream\"}\n",
        &mut output,
    );
    for chunk in rest.chunks(piece) {
        conversation.feed(device, chunk, &mut output);
        assert_eq!(
            conversation.buffered(),
            0,
            "records are never buffered as JSON"
        );
    }
    check_replies(&output);
    let answers: Vec<Vec<u8>> = output
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && !l.starts_with(b"{\"event\""))
        .map(<[u8]>::to_vec)
        .collect();
    let status = device.status();
    assert!(status.pointer.display < 2);
    (answers, status.pointer, status.counters.commands)
}

/// Structured JSON values built from the bytes, biased towards the commands and arguments the
/// server knows, so the fuzzer reaches deep into argument validation.
pub fn control_values(data: &[u8]) {
    let device = device(2);
    let mut conversation = Conversation::default();
    let mut output = Vec::new();
    conversation.feed(
        &device,
        b"{\"execute\":\"qmp_capabilities\"}\n",
        &mut output,
    );
    let mut bytes = data;
    while !bytes.is_empty() {
        let command = command_value(&mut bytes);
        let mut line = serde_json::to_vec(&command).expect("a Value serialises");
        line.push(b'\n');
        conversation.feed(&device, &line, &mut output);
    }
    check_replies(&output);
    // Only commands reach the device, and only valid ones change it.
    let status = device.status();
    assert!(status.pointer.display < 2);
}

fn check_replies(output: &[u8]) {
    for line in output.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).expect("each reply is one JSON value");
        let kind = ["return", "error", "event", "QMP"]
            .iter()
            .filter(|k| v.get(**k).is_some())
            .count();
        assert_eq!(kind, 1, "reply {v}");
    }
}

const COMMANDS: [&str; 7] = [
    "input-send-event",
    "pvmouse-send",
    "query-pvmouse",
    "query-version",
    "query-commands",
    "qmp_capabilities",
    "quit",
];
const KEYS: [&str; 22] = [
    "events",
    "head",
    "device",
    "type",
    "data",
    "axis",
    "value",
    "down",
    "button",
    "display",
    "x",
    "y",
    "buttons",
    "wheel",
    "vertical",
    "horizontal",
    "left",
    "right",
    "middle",
    "abs",
    "btn",
    "rel",
];

fn take(bytes: &mut &[u8]) -> u8 {
    match bytes.split_first() {
        Some((&b, rest)) => {
            *bytes = rest;
            b
        }
        None => 0,
    }
}

fn command_value(bytes: &mut &[u8]) -> Value {
    let mut obj = Map::new();
    let name = take(bytes);
    let execute = match COMMANDS.get(usize::from(name % 8)) {
        Some(c) => Value::from(*c),
        None => value(bytes, 0),
    };
    obj.insert("execute".into(), execute);
    if take(bytes) % 4 != 0 {
        obj.insert("arguments".into(), object(bytes, 1));
    }
    if take(bytes) % 8 == 0 {
        obj.insert("id".into(), value(bytes, 2));
    }
    Value::Object(obj)
}

fn object(bytes: &mut &[u8], depth: u32) -> Value {
    let n = take(bytes) % 5;
    let mut map = Map::new();
    for _ in 0..n {
        let key = KEYS[usize::from(take(bytes)) % KEYS.len()];
        map.insert(key.into(), value(bytes, depth + 1));
    }
    Value::Object(map)
}

fn value(bytes: &mut &[u8], depth: u32) -> Value {
    let kind = take(bytes);
    let arg = take(bytes);
    match kind % 10 {
        0 => Value::Null,
        1 => Value::Bool(arg & 1 == 1),
        2 => json!(i64::from(i8::from_ne_bytes([arg])) * 1000),
        3 => json!(i64::from(u16::from_le_bytes([arg, take(bytes)]))),
        4 => json!(f64::from(arg) / 255.0),
        5 => match arg % 8 {
            0 => json!(i64::MIN),
            1 => json!(i64::MAX),
            2 => json!(-1),
            3 => json!(32767),
            4 => json!(32768),
            5 => json!(65535),
            6 => json!(1e300),
            _ => json!(-0.0),
        },
        6 => Value::from(KEYS[usize::from(arg) % KEYS.len()]),
        7 if depth < 4 => {
            let n = arg % 5;
            Value::Array((0..n).map(|_| value(bytes, depth + 1)).collect())
        }
        8 if depth < 4 => object(bytes, depth),
        _ => Value::from(String::from_utf8_lossy(&[arg, take(bytes)]).into_owned()),
    }
}
