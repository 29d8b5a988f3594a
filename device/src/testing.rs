//! A mock guest for tests and benchmarks: guest memory plus a split virtqueue whose descriptor
//! table and rings can be written directly, malformed chains included.

use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::RawDescriptor;
use virtio_queue::desc::split::{Descriptor as SplitDescriptor, VirtqUsedElem};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

// virtio's descriptor flags are 1, 2 and 4: they fit the u16 flags field.
#[expect(clippy::cast_possible_truncation, reason = "a descriptor flag")]
pub const WRITE: u16 = VRING_DESC_F_WRITE as u16;
#[expect(clippy::cast_possible_truncation, reason = "a descriptor flag")]
pub const NEXT: u16 = VRING_DESC_F_NEXT as u16;
#[expect(clippy::cast_possible_truncation, reason = "a descriptor flag")]
pub const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;

/// Guest memory size; buffers live at [`BUFFERS`] and above, rings below.
pub const MEMORY_SIZE: usize = 0x10_0000;
pub const BUFFERS: u64 = 0x8_0000;

/// The descriptor a used entry gives back (queues here have at most 1024 entries).
pub fn descriptor_index(used: &VirtqUsedElem) -> u16 {
    u16::try_from(used.id()).expect("a descriptor index fits u16")
}

pub fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEMORY_SIZE)]).expect("mock guest memory")
}

pub fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
}

/// The address of the 8-byte event buffer a test gives to descriptor `index`.
pub fn buffer(index: u16) -> u64 {
    BUFFERS + u64::from(index) * 0x10
}

/// A split virtqueue laid out at guest address 0: descriptor table, avail ring, used ring.
///
/// virtio-queue 0.18's `MockSplitQueue` places the used ring `size` bytes after the avail ring's
/// start instead of after its end, so the two overlap; this lays them out by the spec.
#[derive(Debug)]
pub struct MockRing<'a> {
    mem: &'a GuestMemoryMmap,
    base: u64,
    size: u16,
    avail: u64,
    used: u64,
    offered: u16,
}

impl<'a> MockRing<'a> {
    pub fn new(mem: &'a GuestMemoryMmap, size: u16) -> Self {
        Self::at(mem, 0, size)
    }

    /// A ring whose descriptor table starts at `base`, with its buffers at `base + BUFFERS`.
    pub fn at(mem: &'a GuestMemoryMmap, base: u64, size: u16) -> Self {
        let avail = base + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size)).next_multiple_of(4);
        let end = used + 6 + 8 * u64::from(size);
        assert!(end <= base + BUFFERS, "rings must stay below the buffers");
        for addr in [avail, used] {
            mem.write_obj(0u32, GuestAddress(addr))
                .expect("ring in memory");
        }
        Self {
            mem,
            base,
            size,
            avail,
            used,
            offered: 0,
        }
    }

    pub fn queue(&self) -> Queue {
        let mut q = Queue::new(self.size).expect("queue size");
        q.set_size(self.size);
        let low = |addr: u64| u32::try_from(addr).ok();
        q.set_desc_table_address(low(self.base), Some(0));
        q.set_avail_ring_address(low(self.avail), Some(0));
        q.set_used_ring_address(low(self.used), Some(0));
        q.set_event_idx(false);
        q.set_ready(true);
        q
    }

    pub fn set_desc(&self, index: u16, d: RawDescriptor) {
        self.write_raw(self.base + 16 * u64::from(index), d);
    }

    /// Guest addresses of the descriptor table, avail ring and used ring.
    pub fn layout(&self) -> (u64, u64, u64) {
        (self.base, self.avail, self.used)
    }

    /// The address of this ring's 8-byte buffer for descriptor `index`.
    pub fn buffer(&self, index: u16) -> u64 {
        self.base + buffer(index)
    }

    /// The event the device wrote into the buffer of the `n`th used entry.
    pub fn used_event(&self, n: u16) -> [u8; 8] {
        let used = self.used(n);
        assert_eq!(used.len(), 8, "used entry {n} should carry one event");
        self.read_buffer(self.buffer(descriptor_index(&used)))
    }

    /// Writes a descriptor anywhere in guest memory, e.g. into an indirect table.
    pub fn write_raw(&self, addr: u64, d: RawDescriptor) {
        self.mem
            .write_obj(d, GuestAddress(addr))
            .expect("address in memory");
    }

    fn write_u16(&self, addr: u64, v: u16) {
        self.mem
            .write_obj(v.to_le(), GuestAddress(addr))
            .expect("ring in memory");
    }

    fn read_u16(&self, addr: u64) -> u16 {
        u16::from_le(
            self.mem
                .read_obj(GuestAddress(addr))
                .expect("ring in memory"),
        )
    }

    /// Puts `head` on the avail ring and publishes it.
    pub fn offer(&mut self, head: u16) {
        let slot = u64::from(self.offered % self.size);
        self.write_u16(self.avail + 4 + 2 * slot, head);
        self.offered = self.offered.wrapping_add(1);
        self.write_u16(self.avail + 2, self.offered);
    }

    /// Claims an avail index far beyond the queue size.
    pub fn corrupt_avail_idx(&self) {
        self.write_u16(self.avail + 2, self.offered.wrapping_add(0x8000));
    }

    /// Offers one device-writable 8-byte buffer at descriptor `index` (eventq style).
    pub fn offer_event_buffer(&mut self, index: u16) {
        self.set_desc(index, desc(self.buffer(index), 8, WRITE, 0));
        self.offer(index);
    }

    /// Offers device-writable 8-byte buffers at descriptors 0 to `count` − 1 (eventq style).
    pub fn offer_event_buffers(&mut self, count: u16) {
        for i in 0..count {
            self.offer_event_buffer(i);
        }
    }

    /// Offers one device-readable buffer holding `bytes` at descriptor `index` (statusq style).
    pub fn offer_status_buffer(&mut self, index: u16, bytes: [u8; 8]) {
        self.mem
            .write_slice(&bytes, GuestAddress(self.buffer(index)))
            .expect("buffer in memory");
        self.set_desc(index, desc(self.buffer(index), 8, 0, 0));
        self.offer(index);
    }

    pub fn used_idx(&self) -> u16 {
        self.read_u16(self.used + 2)
    }

    /// The `n`th used entry ever written (the ring wraps).
    pub fn used(&self, n: u16) -> VirtqUsedElem {
        let slot = u64::from(n % self.size);
        self.mem
            .read_obj(GuestAddress(self.used + 4 + 8 * slot))
            .expect("ring in memory")
    }

    pub fn read_buffer(&self, addr: u64) -> [u8; 8] {
        let mut out = [0u8; 8];
        self.mem
            .read_slice(&mut out, GuestAddress(addr))
            .expect("buffer in memory");
        out
    }
}

/// The device's view of a [`MockRing`]'s queue: what `PvMouse::activate` takes in tests.
/// Which queue took how many events, one entry per delivery, in the order they happened: how
/// a test that drives two queues sees the order across them.
pub type DeliveryLog = std::sync::Arc<std::sync::Mutex<Vec<(u8, usize)>>>;

#[derive(Debug)]
pub struct MockEventQueue {
    mem: GuestMemoryMmap,
    queue: std::sync::Mutex<Queue>,
    interrupts: std::sync::atomic::AtomicUsize,
    log: Option<(DeliveryLog, u8)>,
}

impl MockEventQueue {
    /// `mem` shares its regions with the memory the ring was built on.
    pub fn new(mem: &GuestMemoryMmap, ring: &MockRing) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            mem: mem.clone(),
            queue: std::sync::Mutex::new(ring.queue()),
            interrupts: std::sync::atomic::AtomicUsize::new(0),
            log: None,
        })
    }

    /// A queue that notes each delivery into it in `log`, as `tag`.
    pub fn logged(
        mem: &GuestMemoryMmap,
        ring: &MockRing,
        log: &DeliveryLog,
        tag: u8,
    ) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            mem: mem.clone(),
            queue: std::sync::Mutex::new(ring.queue()),
            interrupts: std::sync::atomic::AtomicUsize::new(0),
            log: Some((log.clone(), tag)),
        })
    }

    /// Guest interrupts the device asked for.
    pub fn interrupts(&self) -> usize {
        self.interrupts.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl crate::virtqueue::EventQueue for MockEventQueue {
    fn position(&self) -> crate::virtqueue::RingPosition {
        crate::virtqueue::RingPosition::of(&self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn fill(
        &self,
        fill: &mut dyn FnMut(&mut Queue, &GuestMemoryMmap) -> crate::virtqueue::QueueOutcome,
    ) -> crate::virtqueue::QueueOutcome {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let out = fill(&mut q, &self.mem);
        if let Some((log, tag)) = &self.log {
            if out.events > 0 {
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((*tag, out.events));
            }
        }
        if out.notify {
            self.interrupts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        out
    }
}

/// A real control server on a real Unix socket, in front of a real two-display [`PvMouse`]
/// with its relative device and no guest: input only changes its state. What a control client
/// meets, for the tests of the clients that live outside this crate (`pvmouse-client`,
/// `pvmouse-vnc`).
///
/// [`PvMouse`]: crate::device::PvMouse
#[derive(Debug)]
pub struct ControlBackend {
    device: std::sync::Arc<crate::device::PvMouse>,
    notices: std::sync::Arc<crate::notice::NoticeBoard>,
    handle: Option<crate::control::ControlHandle>,
}

impl ControlBackend {
    /// Binds `path` and serves it on its own thread until dropped.
    pub fn start(path: &std::path::Path) -> std::io::Result<Self> {
        use std::sync::Arc;
        let notices = Arc::new(crate::notice::NoticeBoard::new()?);
        let identity = crate::identity::Identity::new("pvmouse", "s", 2)
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .with_relative(true);
        let device = Arc::new(crate::device::PvMouse::new(identity, notices.clone())?);
        let handle = crate::control::ControlServer::bind(path, device.clone(), notices.clone())
            .map_err(|e| std::io::Error::other(e.to_string()))?
            .spawn()?;
        Ok(Self {
            device,
            notices,
            handle: Some(handle),
        })
    }

    pub fn device(&self) -> &std::sync::Arc<crate::device::PvMouse> {
        &self.device
    }

    pub fn notices(&self) -> &std::sync::Arc<crate::notice::NoticeBoard> {
        &self.notices
    }

    /// The pointer as the device holds it: display, x, and the buttons' bits.
    pub fn pointer(&self) -> (u8, Option<u16>, u8) {
        use crate::device::PointerDevice;
        let p = self.device.status().pointer;
        (p.display, p.x, p.buttons)
    }
}

impl Drop for ControlBackend {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            if let Err(e) = h.stop() {
                tracing::warn!("test control server: {e}");
            }
        }
    }
}

/// The committed corpus of one cargo-fuzz target (`fuzz/corpus/TARGET`), in name order, so
/// that `cargo test` replays every seed and every fixed crash through the target's function.
pub fn fuzz_corpus(target: &str) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    assert!(!entries.is_empty(), "no corpus in {}", dir.display());
    entries
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

/// The protocol cores, for the framing tests and the frame-path benchmark, which drive them
/// without a socket.
pub use crate::control::commands::parse_pvmouse_send;
pub use crate::control::conversation::Conversation;
pub use crate::control::qmp::parse_request;
