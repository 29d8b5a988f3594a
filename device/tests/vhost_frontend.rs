//! Drives a running vhost-user-pvmouse the way QEMU does: the vhost crate's frontend over memfd
//! guest memory on one side, a QMP client on the control socket on the other. Asserts the exact
//! events in the used ring, the QMP events, and the full-state frame after a reconnect.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pvmouse_spec::InputEvent;
use pvmouse_spec::evdev::*;
use pvmouse_spec::profile::{DISPLAY_AXIS, EVENTQ, STATUSQ};
use pvmouse_spec::status::StatusMessage;
use serde_json::{Value, json};
use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vhost_user_pvmouse::Identity;
use vhost_user_pvmouse::NoticeBoard;
use vhost_user_pvmouse::PvMouse;
use vhost_user_pvmouse::PvMouseBackend;
use vhost_user_pvmouse::SocketAccess;
use vhost_user_pvmouse::VhostSocket;
use vhost_user_pvmouse::testing::{MockRing, descriptor_index};
use vhost_user_pvmouse::{ControlHandle, ControlServer};
use vhost_user_pvmouse::{serve, vhost_listener};
use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

const MEM_SIZE: usize = 0x20_0000;
const STATUSQ_BASE: u64 = 0x10_0000;
/// QEMU 10's vhost-user-input fixes its queues at 4 entries.
const QUEUE_SIZE: u16 = 4;

/// How a vhost-user frontend sets up an input device, where frontends differ.
#[derive(Debug, Clone, Copy)]
struct FrontendKind {
    name: &'static str,
    queue_size: u16,
    /// Refuses a backend that does not offer the MQ protocol feature, and asks GET_QUEUE_NUM.
    needs_mq: bool,
    /// Reads the whole 136-byte config after each select or subsel write.
    rereads_config: bool,
}

/// QEMU 10 (`hw/virtio/vhost-user-input.c` over vhost-user-base).
const QEMU: FrontendKind = FrontendKind {
    name: "QEMU 10",
    queue_size: QUEUE_SIZE,
    needs_mq: false,
    rereads_config: false,
};

/// StratoVirt (`virtio/src/vhost/user/input.rs`, 2026): MQ required, its own default queue
/// size, and the whole config read after every select write (shared/NOTES.md).
const STRATOVIRT: FrontendKind = FrontendKind {
    name: "StratoVirt",
    queue_size: 256,
    needs_mq: true,
    rereads_config: true,
};

fn memfd(size: usize) -> File {
    let name = c"pvmouse-test-guest";
    // SAFETY: memfd_create takes a valid NUL-terminated name and flags; it returns a new
    // descriptor or -1, which is checked before the descriptor is wrapped.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create failed");
    // SAFETY: fd was just created and nothing else owns it.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size as u64).unwrap();
    file
}

/// A QMP client that keeps asynchronous events aside while waiting for replies.
struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    events: Vec<Value>,
}

impl Qmp {
    fn connect(path: &Path) -> Self {
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut q = Qmp {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            events: Vec::new(),
        };
        let greeting = q.read();
        assert!(greeting["QMP"]["version"].is_object(), "{greeting}");
        assert_eq!(
            q.execute("qmp_capabilities", json!({})),
            json!({"return": {}})
        );
        q
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    fn execute(&mut self, command: &str, arguments: Value) -> Value {
        let msg = json!({"execute": command, "arguments": arguments});
        writeln!(self.writer, "{msg}").unwrap();
        loop {
            let v = self.read();
            if v.get("event").is_some() {
                self.events.push(v);
            } else {
                return v;
            }
        }
    }

    /// Waits for the named QMP event (already received or arriving within the read timeout).
    fn wait_event(&mut self, name: &str) -> Value {
        loop {
            if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
                return self.events.remove(i);
            }
            let v = self.read();
            if v.get("event").is_some() {
                self.events.push(v);
            }
        }
    }
}

/// One frontend connection, set up as QEMU (or `kind`) sets up vhost-user-input.
struct Guest<'m> {
    frontend: Frontend,
    kind: FrontendKind,
    eventq: MockRing<'m>,
    statusq: MockRing<'m>,
    kicks: [EventFd; 2],
    _calls: [EventFd; 2],
    seen: u16,
    /// Eventq descriptors the device has given back, as a driver tracks them.
    free: Vec<u16>,
}

impl<'m> Guest<'m> {
    fn connect(socket: &Path, mem: &'m GuestMemoryMmap, file: &File) -> Self {
        Self::connect_as(QEMU, socket, mem, file)
    }

    fn connect_as(
        kind: FrontendKind,
        socket: &Path,
        mem: &'m GuestMemoryMmap,
        file: &File,
    ) -> Self {
        let size = kind.queue_size;
        let mut frontend = connect_with_retry(socket);
        frontend.set_owner().unwrap();
        let features = frontend.get_features().unwrap();
        assert_ne!(
            features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits(),
            0
        );
        frontend.set_features(features).unwrap();
        let proto = frontend.get_protocol_features().unwrap();
        assert!(proto.contains(VhostUserProtocolFeatures::CONFIG));
        let mut wanted = VhostUserProtocolFeatures::CONFIG;
        if kind.needs_mq {
            assert!(
                proto.contains(VhostUserProtocolFeatures::MQ),
                "{} refuses a backend without MQ: {proto:?}",
                kind.name
            );
            wanted |= VhostUserProtocolFeatures::MQ;
        }
        frontend.set_protocol_features(wanted).unwrap();
        if kind.needs_mq {
            assert_eq!(frontend.get_queue_num().unwrap(), 2, "{}", kind.name);
        }

        let host = mem.get_host_address(GuestAddress(0)).unwrap() as u64;
        let region = VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: MEM_SIZE as u64,
            userspace_addr: host,
            mmap_offset: 0,
            mmap_handle: file.as_raw_fd(),
        };
        frontend.set_mem_table(&[region]).unwrap();

        // Fresh rings each connection, as a guest driver that (re)initialises its queues.
        let eventq = MockRing::at(mem, 0, size);
        let statusq = MockRing::at(mem, STATUSQ_BASE, size);
        let kicks = [
            EventFd::new(EFD_NONBLOCK).unwrap(),
            EventFd::new(EFD_NONBLOCK).unwrap(),
        ];
        let calls = [
            EventFd::new(EFD_NONBLOCK).unwrap(),
            EventFd::new(EFD_NONBLOCK).unwrap(),
        ];
        for (q, ring) in [(EVENTQ, &eventq), (STATUSQ, &statusq)] {
            let q = usize::from(q);
            let (desc, avail, used) = ring.layout();
            frontend.set_vring_num(q, size).unwrap();
            frontend
                .set_vring_addr(
                    q,
                    &VringConfigData {
                        queue_max_size: size,
                        queue_size: size,
                        flags: 0,
                        desc_table_addr: host + desc,
                        used_ring_addr: host + used,
                        avail_ring_addr: host + avail,
                        log_addr: None,
                    },
                )
                .unwrap();
            frontend.set_vring_base(q, 0).unwrap();
            frontend.set_vring_call(q, &calls[q]).unwrap();
            frontend.set_vring_kick(q, &kicks[q]).unwrap();
            frontend.set_vring_enable(q, true).unwrap();
        }
        Guest {
            frontend,
            kind,
            eventq,
            statusq,
            kicks,
            _calls: calls,
            seen: 0,
            free: (0..size).rev().collect(),
        }
    }

    fn config(&mut self, select: u8, subsel: u8) -> Vec<u8> {
        // Linux writes select and subsel as two one-byte writes.
        let flags = VhostUserConfigFlags::WRITABLE;
        self.frontend.set_config(0, flags, &[select]).unwrap();
        if self.kind.rereads_config {
            self.frontend.get_config(0, 136, flags, &[0; 136]).unwrap();
        }
        self.frontend.set_config(1, flags, &[subsel]).unwrap();
        if self.kind.rereads_config {
            self.frontend.get_config(0, 136, flags, &[0; 136]).unwrap();
        }
        let (_, image) = self.frontend.get_config(0, 136, flags, &[0; 136]).unwrap();
        let size = usize::from(image[2]);
        image[8..8 + size].to_vec()
    }

    /// Posts every free eventq buffer and kicks, as Linux's virtio_input refills.
    fn refill(&mut self) {
        while let Some(i) = self.free.pop() {
            self.eventq.offer_event_buffer(i);
        }
        self.kicks[usize::from(EVENTQ)].write(1).unwrap();
    }

    /// Waits until `count` more events are in the used ring and returns them.
    fn take_events(&mut self, count: u16) -> Vec<InputEvent> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.eventq.used_idx().wrapping_sub(self.seen) < count {
            assert!(
                Instant::now() < deadline,
                "timed out: {} of {count} events arrived",
                self.eventq.used_idx().wrapping_sub(self.seen)
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        let events = (0..count)
            .map(|n| {
                let n = self.seen.wrapping_add(n);
                self.free.push(descriptor_index(&self.eventq.used(n)));
                InputEvent::from_le_bytes(self.eventq.used_event(n))
            })
            .collect();
        self.seen = self.seen.wrapping_add(count);
        events
    }

    /// Refills and collects until `count` events have arrived.
    fn stream_events(&mut self, count: u16) -> Vec<InputEvent> {
        let mut out = Vec::new();
        while out.len() < usize::from(count) {
            let n = (count - u16::try_from(out.len()).unwrap()).min(self.kind.queue_size);
            self.refill();
            out.extend(self.take_events(n));
        }
        out
    }

    fn send_status(&mut self, event: InputEvent) {
        let index = self.statusq.used_idx() % self.kind.queue_size;
        self.statusq.offer_status_buffer(index, event.to_le_bytes());
        self.kicks[usize::from(STATUSQ)].write(1).unwrap();
    }
}

fn connect_with_retry(socket: &Path) -> Frontend {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Frontend::connect(socket, 2) {
            Ok(f) => return f,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("cannot connect to the backend: {e}"),
        }
    }
}

fn ev(kind: u16, code: u16, value: i32) -> InputEvent {
    InputEvent::new(kind, code, value)
}

fn syn() -> InputEvent {
    InputEvent::syn_report()
}

#[test]
fn drives_the_daemon_like_qemu_and_survives_a_frontend_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let (vhost_path, control_path, control) = serve_in_process(dir.path());

    let mut qmp = Qmp::connect(&control_path);
    let (file, mem) = guest_memory();

    // --- First connection: identity, activation, commands.
    let mut guest = Guest::connect(&vhost_path, &mem, &file);
    assert_eq!(
        qmp.wait_event("PVMOUSE_FRONTEND_CHANGE")["data"],
        json!({"connected": true})
    );
    assert_eq!(guest.config(1, 0), b"pvmouse-test");
    assert_eq!(guest.config(2, 0), b"serial-42");
    assert_eq!(guest.config(3, 0), [0x06, 0, 0x76, 0x70, 0x6f, 0x6d, 1, 0]);
    assert_eq!(guest.config(0x11, 3), [0b11, 0, 0, 0, 0, 1]);
    let misc: Vec<u8> = [0i32, 1, 0, 0, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!(guest.config(0x12, 0x28), misc);
    assert!(guest.config(0x11, 0x14).is_empty(), "no autorepeat");

    // Activation: a full-state frame (display, five buttons, SYN), streamed across refills.
    let full = guest.stream_events(7);
    assert_eq!(full[0], ev(EV_ABS, DISPLAY_AXIS, 0));
    for (i, code) in (BTN_LEFT..=BTN_EXTRA).enumerate() {
        assert_eq!(full[1 + i], ev(EV_KEY, code, 0));
    }
    assert_eq!(full[6], syn());
    assert_eq!(
        qmp.wait_event("PVMOUSE_DRIVER_CHANGE")["data"],
        json!({"active": true})
    );

    let ok = json!({"return": {}});
    let r = qmp.execute(
        "input-send-event",
        json!({"head": 1, "events": [
            {"type": "abs", "data": {"axis": "x", "value": 0x7fff}},
            {"type": "abs", "data": {"axis": "y", "value": 0}},
            {"type": "btn", "data": {"down": true, "button": "left"}}]}),
    );
    assert_eq!(r, ok);
    assert_eq!(
        guest.stream_events(5),
        [
            ev(EV_ABS, DISPLAY_AXIS, 1),
            ev(EV_ABS, ABS_X, 65535),
            ev(EV_ABS, ABS_Y, 0),
            ev(EV_KEY, BTN_LEFT, 1),
            syn()
        ],
        "Y=0 is sent: the position was not known before"
    );
    let r = qmp.execute(
        "pvmouse-send",
        json!({"x": 0.5, "y": 1.0, "wheel": {"vertical": 240}}),
    );
    assert_eq!(r, ok);
    let frame = guest.stream_events(5);
    assert_eq!(
        frame,
        [
            ev(EV_ABS, ABS_X, 32768),
            ev(EV_ABS, ABS_Y, 65535),
            ev(EV_REL, REL_WHEEL, 2),
            ev(EV_REL, REL_WHEEL_HI_RES, 240),
            syn()
        ]
    );

    // Bad input reaches no guest.
    let r = qmp.execute("pvmouse-send", json!({"display": 2, "x": 0.1}));
    assert_eq!(r["error"]["class"], "GenericError", "{r}");
    let r = qmp.execute(
        "input-send-event",
        json!({"events": [{"type": "rel", "data": {"axis": "x", "value": 1}}]}),
    );
    assert!(
        r["error"]["desc"].as_str().unwrap().contains("absolute"),
        "{r}"
    );

    // The guest bridge's heartbeat on the status queue.
    guest.send_status(ev(
        EV_MSC,
        MSC_RAW,
        StatusMessage::BridgePresent { version: 1 }.encode(),
    ));
    assert_eq!(
        qmp.wait_event("PVMOUSE_BRIDGE_CHANGE")["data"],
        json!({"present": true, "version": 1})
    );
    let status = qmp.execute("query-pvmouse", json!({}))["return"].clone();
    assert_eq!(status["bridge-present"], true);
    assert_eq!(status["driver-active"], true);
    assert_eq!(status["pointer"]["buttons"]["left"], true);
    assert_eq!(status["pointer"]["display"], 1);

    // --- Disconnect: state is kept; input meanwhile changes state only.
    drop(guest);
    assert_eq!(
        qmp.wait_event("PVMOUSE_FRONTEND_CHANGE")["data"],
        json!({"connected": false})
    );
    assert_eq!(
        qmp.wait_event("PVMOUSE_BRIDGE_CHANGE")["data"],
        json!({"present": false})
    );
    let r = qmp.execute("pvmouse-send", json!({"buttons": {"right": true}}));
    assert_eq!(r, ok);

    // --- Reconnect: the first thing the new driver gets is the full current state.
    let mut guest = Guest::connect(&vhost_path, &mem, &file);
    let full = guest.stream_events(9);
    assert_eq!(
        full,
        [
            ev(EV_ABS, DISPLAY_AXIS, 1),
            ev(EV_ABS, ABS_X, 32768),
            ev(EV_ABS, ABS_Y, 65535),
            ev(EV_KEY, BTN_LEFT, 1),
            ev(EV_KEY, BTN_RIGHT, 1),
            ev(EV_KEY, BTN_MIDDLE, 0),
            ev(EV_KEY, BTN_SIDE, 0),
            ev(EV_KEY, BTN_EXTRA, 0),
            syn()
        ]
    );
    let r = qmp.execute(
        "pvmouse-send",
        json!({"buttons": {"left": false, "right": false}}),
    );
    assert_eq!(r, ok);
    assert_eq!(
        guest.stream_events(3),
        [ev(EV_KEY, BTN_LEFT, 0), ev(EV_KEY, BTN_RIGHT, 0), syn()]
    );
    let counters = qmp.execute("query-pvmouse", json!({}))["return"]["counters"].clone();
    assert_eq!(counters["activations"], 2);
    drop(guest);
    control.stop().unwrap();
}

/// Guest memory shared as QEMU shares it: a memfd, and the mapping of it.
fn guest_memory() -> (File, GuestMemoryMmap) {
    let file = memfd(MEM_SIZE);
    let mem = GuestMemoryMmap::<()>::from_ranges_with_files([(
        GuestAddress(0),
        MEM_SIZE,
        Some(FileOffset::new(file.try_clone().unwrap(), 0)),
    )])
    .unwrap();
    (file, mem)
}

/// A backend served in-process on a fresh socket pair in `dir`: the vhost-user path, the
/// control path and the control thread's handle.
fn serve_in_process(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, ControlHandle) {
    let vhost_path = dir.join("vhost.sock");
    let control_path = dir.join("control.sock");
    let identity = Identity::new("pvmouse-test", "serial-42", 2).unwrap();
    let notices = Arc::new(NoticeBoard::new().unwrap());
    let device = Arc::new(PvMouse::new(identity, notices.clone()).unwrap());
    let control = ControlServer::bind(&control_path, device.clone(), notices)
        .unwrap()
        .spawn()
        .unwrap();
    let backend = Arc::new(PvMouseBackend::new(device).unwrap());
    let (mut listener, socket_file) = vhost_listener(
        &VhostSocket::Path(vhost_path.clone()),
        SocketAccess::default(),
    )
    .unwrap();
    std::thread::spawn(move || {
        let _socket_file = socket_file;
        serve(&mut listener, backend)
    });
    (vhost_path, control_path, control)
}

#[test]
fn other_frontends_negotiate_and_deliver_at_every_queue_size() {
    let any = |queue_size| FrontendKind {
        name: "a frontend with other queues",
        queue_size,
        needs_mq: false,
        rereads_config: false,
    };
    for kind in [QEMU, STRATOVIRT, any(8), any(64), any(1024)] {
        let dir = tempfile::tempdir().unwrap();
        let (vhost_path, control_path, _control) = serve_in_process(dir.path());
        let mut qmp = Qmp::connect(&control_path);
        let (file, mem) = guest_memory();
        let mut guest = Guest::connect_as(kind, &vhost_path, &mem, &file);
        let at = format!("{}, {} entries", kind.name, kind.queue_size);
        assert_eq!(guest.config(1, 0), b"pvmouse-test", "{at}");
        assert_eq!(guest.config(0x11, 3), [0b11, 0, 0, 0, 0, 1], "{at}");
        // Activation's full-state frame, then a move with a click on display 1.
        let full = guest.stream_events(7);
        assert_eq!(full.last(), Some(&syn()), "{at}: {full:?}");
        qmp.execute(
            "pvmouse-send",
            json!({"display": 1, "x": 0.25, "y": 0.75, "buttons": {"left": true}}),
        );
        let events = guest.stream_events(5);
        assert_eq!(
            events,
            [
                ev(EV_ABS, DISPLAY_AXIS, 1),
                ev(EV_ABS, ABS_X, 16384),
                ev(EV_ABS, ABS_Y, 49151),
                ev(EV_KEY, BTN_LEFT, 1),
                syn()
            ],
            "{at}"
        );
        // The status queue takes a bridge heartbeat at this size too.
        guest.send_status(ev(
            EV_MSC,
            MSC_RAW,
            StatusMessage::BridgePresent { version: 1 }.encode(),
        ));
        let bridge = qmp.wait_event("PVMOUSE_BRIDGE_CHANGE");
        assert_eq!(bridge["data"]["present"], true, "{at}");
        println!("{at}: negotiated, configured, activated, delivered");
    }
}
