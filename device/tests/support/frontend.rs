//! A vhost-user frontend as QEMU (or another VMM) drives an input device, over memfd guest
//! memory with the vhost crate's frontend, and a QMP client for the control socket: shared by
//! the tests that drive a real backend without a VM.

#![allow(dead_code, reason = "each test binary uses its own part of this")]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use pvmouse_spec::InputEvent;
use pvmouse_spec::profile::{EVENTQ, STATUSQ};
use serde_json::{Value, json};
use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::vhost_user::{Frontend, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vhost_user_pvmouse::testing::{MockRing, descriptor_index};
use vm_memory::{FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

pub const MEM_SIZE: usize = 0x20_0000;
pub const STATUSQ_BASE: u64 = 0x10_0000;
/// QEMU 10's vhost-user-input fixes its queues at 4 entries.
pub const QUEUE_SIZE: u16 = 4;

/// How a vhost-user frontend sets up an input device, where frontends differ (read from each
/// one's source; see device/README.md, "Frontends").
#[derive(Debug, Clone, Copy)]
pub struct FrontendKind {
    pub name: &'static str,
    pub queue_size: u16,
    /// Refuses a backend that does not offer the MQ protocol feature.
    pub needs_mq: bool,
    /// The protocol features it asks for (it gets those the backend offers).
    pub asks: VhostUserProtocolFeatures,
    /// Asks GET_QUEUE_NUM when MQ is negotiated.
    pub asks_queue_num: bool,
    /// Reads the whole 136-byte config after each select or subsel write.
    pub rereads_config: bool,
    /// Forwards each guest config access as it comes (1 byte at a time for Linux's
    /// `virtio_cread_bytes`) with these GET_CONFIG flags, instead of reading all 136 bytes.
    pub config_per_access: Option<VhostUserConfigFlags>,
    /// The driver probes (reads config) before the device is activated: before SET_FEATURES
    /// and SET_MEM_TABLE, and for libkrun before SET_OWNER.
    pub probes_first: bool,
    /// Sends SET_OWNER at activation, not at connect (libkrun).
    pub owner_at_activation: bool,
    /// SET_MEM_TABLE before SET_FEATURES (libkrun).
    pub memory_before_features: bool,
    /// Per ring: NUM, BASE, ADDR, KICK, CALL (QEMU, libkrun); else NUM, ADDR, BASE, CALL,
    /// KICK (crosvm). ENABLE last either way.
    pub base_before_addr: bool,
    /// One call eventfd for every ring (libkrun).
    pub shared_call: bool,
}

const BASE_KIND: FrontendKind = FrontendKind {
    name: "",
    queue_size: QUEUE_SIZE,
    needs_mq: false,
    asks: VhostUserProtocolFeatures::CONFIG,
    asks_queue_num: false,
    rereads_config: false,
    config_per_access: None,
    probes_first: false,
    owner_at_activation: false,
    memory_before_features: false,
    base_before_addr: true,
    shared_call: false,
};

/// QEMU 10 (`hw/virtio/vhost-user-input.c` over vhost-user-base).
pub const QEMU: FrontendKind = FrontendKind {
    name: "QEMU 10",
    asks: VhostUserProtocolFeatures::CONFIG.union(VhostUserProtocolFeatures::REPLY_ACK),
    ..BASE_KIND
};

/// StratoVirt (`virtio/src/vhost/user/input.rs`, 2026): MQ required, its own default queue
/// size, and the whole config read after every select write (shared/NOTES.md).
pub const STRATOVIRT: FrontendKind = FrontendKind {
    name: "StratoVirt",
    queue_size: 256,
    needs_mq: true,
    asks: VhostUserProtocolFeatures::CONFIG.union(VhostUserProtocolFeatures::MQ),
    asks_queue_num: true,
    rereads_config: true,
    ..BASE_KIND
};

/// crosvm's generic vhost-user frontend (`devices/src/virtio/vhost_user_frontend/`, 2026-08):
/// asks CONFIG, MQ, BACKEND_REQ and REPLY_ACK (among others pvmouse does not offer), then
/// GET_QUEUE_NUM; forwards each config access with flags WRITABLE during the driver's probe,
/// before SET_FEATURES and SET_MEM_TABLE; sets rings NUM, ADDR, BASE, CALL, KICK, ENABLE.
/// Its queue size is the guest's choice up to `max-queue-size` (default 32768, more than
/// pvmouse's 1024: see device/README.md).
pub const CROSVM: FrontendKind = FrontendKind {
    name: "crosvm",
    queue_size: 1024,
    asks: VhostUserProtocolFeatures::CONFIG
        .union(VhostUserProtocolFeatures::MQ)
        .union(VhostUserProtocolFeatures::BACKEND_REQ)
        .union(VhostUserProtocolFeatures::REPLY_ACK),
    asks_queue_num: true,
    config_per_access: Some(VhostUserConfigFlags::WRITABLE),
    probes_first: true,
    base_before_addr: false,
    ..BASE_KIND
};

/// libkrun (`src/devices/src/virtio/vhost_user/device.rs`, 2026-06), on the vhost crate's own
/// frontend: GET_FEATURES first with no SET_OWNER, asks CONFIG and MQ only, config accesses
/// with flags 0 during the probe; at activation SET_OWNER, SET_MEM_TABLE, then SET_FEATURES;
/// one call eventfd for both rings; `KRUN_VHOST_USER_INPUT_QUEUE_SIZES` of 1024.
pub const LIBKRUN: FrontendKind = FrontendKind {
    name: "libkrun",
    queue_size: 1024,
    asks: VhostUserProtocolFeatures::CONFIG.union(VhostUserProtocolFeatures::MQ),
    config_per_access: Some(VhostUserConfigFlags::empty()),
    probes_first: true,
    owner_at_activation: true,
    memory_before_features: true,
    shared_call: true,
    ..BASE_KIND
};

/// The rings' indices, as `start_ring` takes them.
pub const EVENTQ_INDEX: u16 = EVENTQ;
pub const STATUSQ_INDEX: u16 = STATUSQ;

pub fn memfd(size: usize) -> File {
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
pub struct Qmp {
    pub reader: BufReader<UnixStream>,
    pub writer: UnixStream,
    pub events: Vec<Value>,
}

impl Qmp {
    pub fn connect(path: &Path) -> Self {
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

    pub fn read(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }

    pub fn execute(&mut self, command: &str, arguments: Value) -> Value {
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
    pub fn wait_event(&mut self, name: &str) -> Value {
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
pub struct Guest<'m> {
    pub frontend: Frontend,
    pub kind: FrontendKind,
    pub eventq: MockRing<'m>,
    pub statusq: MockRing<'m>,
    pub kicks: [EventFd; 2],
    pub calls: [EventFd; 2],
    /// Where guest memory is mapped here, which the frontend's ring addresses are in.
    pub host: u64,
    /// Guest memory, as the frontend hands it to the backend.
    pub memory: File,
    /// The virtio features the backend offered, all acked.
    pub features: u64,
    /// The frontend's end of the backend's request channel, when negotiated.
    pub _backend_req: Option<UnixStream>,
    /// The device name the driver read in its probe, for frontends that probe first.
    pub probed_name: Option<Vec<u8>>,
    pub seen: u16,
    /// Eventq descriptors the device has given back, as a driver tracks them.
    pub free: Vec<u16>,
}

impl<'m> Guest<'m> {
    pub fn connect(socket: &Path, mem: &'m GuestMemoryMmap, file: &File) -> Self {
        Self::connect_as(QEMU, socket, mem, file)
    }

    pub fn connect_as(
        kind: FrontendKind,
        socket: &Path,
        mem: &'m GuestMemoryMmap,
        file: &File,
    ) -> Self {
        let size = kind.queue_size;
        let mut frontend = connect_with_retry(socket);
        if !kind.owner_at_activation {
            frontend.set_owner().unwrap();
        }
        let features = frontend.get_features().unwrap();
        assert_ne!(
            features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits(),
            0
        );
        let proto = frontend.get_protocol_features().unwrap();
        assert!(proto.contains(VhostUserProtocolFeatures::CONFIG));
        if kind.needs_mq {
            assert!(
                proto.contains(VhostUserProtocolFeatures::MQ),
                "{} refuses a backend without MQ: {proto:?}",
                kind.name
            );
        }
        let wanted = proto & kind.asks;
        frontend.set_protocol_features(wanted).unwrap();
        if kind.asks_queue_num && wanted.contains(VhostUserProtocolFeatures::MQ) {
            assert_eq!(frontend.get_queue_num().unwrap(), 2, "{}", kind.name);
        }
        let backend_req = wanted
            .contains(VhostUserProtocolFeatures::BACKEND_REQ)
            .then(|| {
                let (ours, theirs) = UnixStream::pair().unwrap();
                frontend.set_backend_request_fd(&theirs).unwrap();
                ours
            });

        let host = mem.get_host_address(GuestAddress(0)).unwrap() as u64;
        // Fresh rings each connection, as a guest driver that (re)initialises its queues.
        let eventq = MockRing::at(mem, 0, size);
        let statusq = MockRing::at(mem, STATUSQ_BASE, size);
        let kicks = [
            EventFd::new(EFD_NONBLOCK).unwrap(),
            EventFd::new(EFD_NONBLOCK).unwrap(),
        ];
        let call = EventFd::new(EFD_NONBLOCK).unwrap();
        let calls = if kind.shared_call {
            [call.try_clone().unwrap(), call]
        } else {
            [call, EventFd::new(EFD_NONBLOCK).unwrap()]
        };
        let mut guest = Guest {
            frontend,
            kind,
            eventq,
            statusq,
            kicks,
            calls,
            host,
            memory: file.try_clone().unwrap(),
            features,
            _backend_req: backend_req,
            probed_name: None,
            seen: 0,
            free: (0..size).rev().collect(),
        };
        if kind.probes_first {
            // The guest driver probes the device before it sets DRIVER_OK.
            guest.probed_name = Some(guest.config(1, 0));
        }
        guest.activate();
        guest
    }

    /// What a frontend sends at the driver's DRIVER_OK: owner (libkrun), features and memory in
    /// the frontend's order, then each ring from 0.
    pub fn activate(&mut self) {
        let kind = self.kind;
        if kind.owner_at_activation {
            self.frontend.set_owner().unwrap();
        }
        if kind.memory_before_features {
            self.set_memory();
            self.frontend.set_features(self.features).unwrap();
        } else {
            self.frontend.set_features(self.features).unwrap();
            self.set_memory();
        }
        for q in [EVENTQ, STATUSQ] {
            self.start_ring(q, 0);
        }
    }

    /// SET_MEM_TABLE again, as crosvm's wake sends it.
    pub fn set_memory_again(&mut self) {
        self.set_memory();
    }

    fn set_memory(&mut self) {
        let region = VhostUserMemoryRegionInfo {
            guest_phys_addr: 0,
            memory_size: MEM_SIZE as u64,
            userspace_addr: self.host,
            mmap_offset: 0,
            mmap_handle: self.memory.as_raw_fd(),
        };
        self.frontend.set_mem_table(&[region]).unwrap();
    }

    /// Sets ring `q` up and starts it at `base`, in the frontend's order, as a frontend does
    /// when the driver starts or the VM runs again (QMP `cont`).
    pub fn start_ring(&mut self, q: u16, base: u32) {
        let ring = if q == EVENTQ {
            &self.eventq
        } else {
            &self.statusq
        };
        let (desc, avail, used) = ring.layout();
        let (q, size, host) = (usize::from(q), self.kind.queue_size, self.host);
        let addr = VringConfigData {
            queue_max_size: size,
            queue_size: size,
            flags: 0,
            desc_table_addr: host + desc,
            used_ring_addr: host + used,
            avail_ring_addr: host + avail,
            log_addr: None,
        };
        let base = u16::try_from(base).unwrap();
        let frontend = &mut self.frontend;
        frontend.set_vring_num(q, size).unwrap();
        if self.kind.base_before_addr {
            frontend.set_vring_base(q, base).unwrap();
            frontend.set_vring_addr(q, &addr).unwrap();
            frontend.set_vring_kick(q, &self.kicks[q]).unwrap();
            frontend.set_vring_call(q, &self.calls[q]).unwrap();
        } else {
            frontend.set_vring_addr(q, &addr).unwrap();
            frontend.set_vring_base(q, base).unwrap();
            frontend.set_vring_call(q, &self.calls[q]).unwrap();
            frontend.set_vring_kick(q, &self.kicks[q]).unwrap();
        }
        frontend.set_vring_enable(q, true).unwrap();
    }

    /// crosvm's device reset (or sleep): each ring disabled and stopped; where each stood.
    pub fn reset_rings(&mut self) -> [u32; 2] {
        [EVENTQ, STATUSQ].map(|q| {
            let q = usize::from(q);
            self.frontend.set_vring_enable(q, false).unwrap();
            self.frontend.get_vring_base(q).unwrap()
        })
    }

    pub fn config(&mut self, select: u8, subsel: u8) -> Vec<u8> {
        if let Some(flags) = self.kind.config_per_access {
            // Each guest access on its own: Linux writes select and subsel, reads size, then
            // the bytes one at a time.
            let frontend = &mut self.frontend;
            frontend
                .set_config(0, VhostUserConfigFlags::empty(), &[select])
                .unwrap();
            frontend
                .set_config(1, VhostUserConfigFlags::empty(), &[subsel])
                .unwrap();
            let (_, size) = frontend.get_config(2, 1, flags, &[0]).unwrap();
            return (0..u32::from(size[0]))
                .map(|i| frontend.get_config(8 + i, 1, flags, &[0]).unwrap().1[0])
                .collect();
        }
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
    pub fn refill(&mut self) {
        while let Some(i) = self.free.pop() {
            self.eventq.offer_event_buffer(i);
        }
        self.kicks[usize::from(EVENTQ)].write(1).unwrap();
    }

    /// Waits until `count` more events are in the used ring and returns them.
    pub fn take_events(&mut self, count: u16) -> Vec<InputEvent> {
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
    pub fn stream_events(&mut self, count: u16) -> Vec<InputEvent> {
        let mut out = Vec::new();
        while out.len() < usize::from(count) {
            let n = (count - u16::try_from(out.len()).unwrap()).min(self.kind.queue_size);
            self.refill();
            out.extend(self.take_events(n));
        }
        out
    }

    pub fn send_status(&mut self, event: InputEvent) {
        let index = self.statusq.used_idx() % self.kind.queue_size;
        self.statusq.offer_status_buffer(index, event.to_le_bytes());
        self.kicks[usize::from(STATUSQ)].write(1).unwrap();
    }
}

pub fn connect_with_retry(socket: &Path) -> Frontend {
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

pub fn ev(kind: u16, code: u16, value: i32) -> InputEvent {
    InputEvent::new(kind, code, value)
}

pub fn syn() -> InputEvent {
    InputEvent::syn_report()
}

/// Guest memory shared as QEMU shares it: a memfd, and the mapping of it.
pub fn guest_memory() -> (File, GuestMemoryMmap) {
    let file = memfd(MEM_SIZE);
    let mem = GuestMemoryMmap::<()>::from_ranges_with_files([(
        GuestAddress(0),
        MEM_SIZE,
        Some(FileOffset::new(file.try_clone().unwrap(), 0)),
    )])
    .unwrap();
    (file, mem)
}
