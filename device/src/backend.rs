//! The vhost-user face of the device: features, config access and the vring worker's events.
//!
//! vhost-user-backend ends a worker's event loop when `handle_event` returns an error, and drops
//! the frontend connection when `set_config` does. Guest-caused trouble therefore never becomes
//! an `Err` here: it is logged through the guest-fault log and the worker carries on.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use pvmouse_spec::profile::{EVENTQ, MAX_QUEUE_SIZE, NUM_QUEUES, STATUSQ};
use vhost::vhost_user::message::{VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
use virtio_bindings::virtio_ring::{VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC};
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{EventConsumer, EventNotifier};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};
use vmm_sys_util::timerfd::TimerFd;

use crate::device::PvMouse;
use crate::socket::set_nonblocking;
use crate::virtqueue::{EventQueue, QueueOutcome, RingPosition};

/// The device's one timer (the bridge presence check, the end of a layout hold, a paced
/// backlog's next batch): worker event id past the queues and the library's own id.
pub const DEVICE_TIMER: u16 = NUM_QUEUES + 1;
/// Tells a connection's worker to end once its frontend is gone.
pub const STOP_WORKER: u16 = NUM_QUEUES + 2;

type Memory = GuestMemoryAtomic<GuestMemoryMmap>;

/// The eventq of one frontend connection, as the device delivers into it from any thread.
struct VringEventQueue {
    vring: VringRwLock,
    mem: Memory,
}

impl std::fmt::Debug for VringEventQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VringEventQueue").finish_non_exhaustive()
    }
}

impl EventQueue for VringEventQueue {
    fn position(&self) -> RingPosition {
        RingPosition::of(self.vring.get_ref().get_queue())
    }

    fn fill(
        &self,
        fill: &mut dyn FnMut(&mut Queue, &GuestMemoryMmap) -> QueueOutcome,
    ) -> QueueOutcome {
        // The frontend may have stopped or disabled the ring since activation.
        on_running_vring(&self.vring, &self.mem, "eventq", fill)
    }
}

/// Runs `work` on a vring the frontend has running (ready and enabled), then interrupts the
/// guest if `work` completed something that needs it. A ring that is not running is left alone.
fn on_running_vring(
    vring: &VringRwLock,
    mem: &Memory,
    queue_name: &str,
    work: &mut dyn FnMut(&mut Queue, &GuestMemoryMmap) -> QueueOutcome,
) -> QueueOutcome {
    let mem = mem.memory();
    let mut vring = vring.get_mut();
    if !vring.get_queue().ready() || !vring.is_enabled() {
        return QueueOutcome::default();
    }
    let out = work(vring.get_queue_mut(), &mem);
    if out.notify {
        if let Err(e) = vring.signal_used_queue() {
            tracing::warn!("cannot interrupt the guest for the {queue_name}: {e}");
        }
    }
    out
}

/// Which of the backend's two virtio-input devices a vhost-user connection serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// The pointer: absolute positions with a display, buttons, wheels, the guest bridge.
    Absolute,
    /// The relative device: relative motion in relative mode (`spec/pvmouse.md` §10).
    Relative,
}

#[derive(Debug)]
pub struct PvMouseBackend {
    device: Arc<PvMouse>,
    port: Port,
    mem: Mutex<Option<Memory>>,
    timer: Mutex<TimerFd>,
    stop_worker: EventFd,
}

impl PvMouseBackend {
    pub fn new(device: Arc<PvMouse>) -> io::Result<Self> {
        Self::for_port(device, Port::Absolute)
    }

    /// The backend of one of the device's two ports.
    pub fn for_port(device: Arc<PvMouse>, port: Port) -> io::Result<Self> {
        let timer = TimerFd::new()?;
        // The worker may see the timer reported and re-armed in one epoll batch; a blocking
        // read would then stall it until the new expiry.
        set_nonblocking(timer.as_raw_fd())?;
        Ok(Self {
            device,
            port,
            mem: Mutex::new(None),
            timer: Mutex::new(timer),
            stop_worker: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    /// The descriptors the worker must watch besides the queues, with their event ids.
    pub fn listeners(&self) -> [(RawFd, u16); 2] {
        [
            (self.timer().as_raw_fd(), DEVICE_TIMER),
            (self.stop_worker.as_raw_fd(), STOP_WORKER),
        ]
    }

    /// Ends the current connection's worker: call when its frontend is gone, before dropping
    /// the daemon, which joins the worker.
    pub fn stop_worker(&self) -> io::Result<()> {
        self.stop_worker.write(1)
    }

    /// Re-arms the stop event for the next connection's worker, once the last one has ended.
    pub fn worker_stopped(&self) {
        // Nonblocking: nothing to read is fine.
        let _ = self.stop_worker.read();
    }

    fn timer(&self) -> MutexGuard<'_, TimerFd> {
        self.timer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops the mapping of the guest's memory, when its frontend is gone.
    pub fn forget_memory(&self) {
        self.mem.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn memory(&self) -> Option<Memory> {
        self.mem.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A kick on the eventq, or the library starting it: the first one activates the driver,
    /// later ones bring buffers for frames still pending.
    pub fn port(&self) -> Port {
        self.port
    }

    /// The frontend connected to this port, or went away.
    pub fn frontend(&self, connected: bool) {
        match (self.port, connected) {
            (Port::Absolute, true) => self.device.frontend_connected(),
            (Port::Absolute, false) => self.device.frontend_disconnected(),
            (Port::Relative, _) => self.device.relative_frontend_connected(connected),
        }
    }

    fn process_relative_eventq(&self, vrings: &[VringRwLock]) {
        if self.device.relative_driver_active() {
            self.device.relative_refill();
            return;
        }
        let (Some(vring), Some(mem)) = (vrings.get(usize::from(EVENTQ)), self.memory()) else {
            return;
        };
        self.device.relative_activate(Arc::new(VringEventQueue {
            vring: vring.clone(),
            mem,
        }));
    }

    fn process_eventq(&self, vrings: &[VringRwLock]) {
        if self.port == Port::Relative {
            return self.process_relative_eventq(vrings);
        }
        if self.device.driver_active() {
            self.device.refill();
            if self.device.pacing() {
                // A paced backlog continues on the timer.
                self.arm_timer();
            }
            return;
        }
        let (Some(vring), Some(mem)) = (vrings.get(usize::from(EVENTQ)), self.memory()) else {
            return;
        };
        self.device.activate(Arc::new(VringEventQueue {
            vring: vring.clone(),
            mem,
        }));
    }

    fn process_statusq(&self, vrings: &[VringRwLock]) {
        let (Some(vring), Some(mem)) = (vrings.get(usize::from(STATUSQ)), self.memory()) else {
            return;
        };
        if self.port == Port::Relative {
            on_running_vring(vring, &mem, "statusq", &mut |queue, mem| {
                self.device.service_relative_statusq(queue, mem)
            });
            return;
        }
        let out = on_running_vring(vring, &mem, "statusq", &mut |queue, mem| {
            self.device.service_statusq(queue, mem)
        });
        if out.events > 0 {
            self.arm_timer();
        }
    }

    fn arm_timer(&self) {
        let Some(deadline) = self.device.next_deadline() else {
            return;
        };
        let wait = deadline.saturating_duration_since(Instant::now());
        // A zero duration would disarm the timer instead of firing it.
        let wait = wait.max(std::time::Duration::from_micros(1));
        if let Err(e) = self.timer().reset(wait, None) {
            tracing::warn!("cannot arm the device timer: {e}");
        }
    }

    fn on_timer(&self) {
        // Non-blocking: nothing to read just means the timer was re-armed meanwhile.
        let _ = self.timer().wait();
        self.device.on_timer();
        self.arm_timer();
    }
}

impl VhostUserBackend for PvMouseBackend {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        usize::from(NUM_QUEUES)
    }

    fn max_queue_size(&self) -> usize {
        usize::from(MAX_QUEUE_SIZE)
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_F_VERSION_1)
            | (1 << VIRTIO_RING_F_EVENT_IDX)
            | (1 << VIRTIO_RING_F_INDIRECT_DESC)
            | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    /// MQ is offered so that frontends which insist on asking how many queues there are
    /// (StratoVirt refuses a backend without it) may: the answer is always the profile's two.
    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::CONFIG
            | VhostUserProtocolFeatures::REPLY_ACK
            | VhostUserProtocolFeatures::RESET_DEVICE
            | VhostUserProtocolFeatures::MQ
    }

    fn reset_device(&self) {
        match self.port {
            Port::Absolute => self.device.driver_reset(),
            Port::Relative => self.device.relative_driver_reset(),
        }
    }

    fn set_event_idx(&self, _enabled: bool) {
        // The library sets EVENT_IDX on each vring itself; the device logic does not depend on it.
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        match self.port {
            Port::Absolute => self.device.read_config(offset, size),
            Port::Relative => self.device.read_relative_config(offset, size),
        }
    }

    fn set_config(&self, offset: u32, buf: &[u8]) -> io::Result<()> {
        match self.port {
            Port::Absolute => self.device.write_config(offset, buf),
            Port::Relative => self.device.write_relative_config(offset, buf),
        }
        Ok(())
    }

    fn update_memory(&self, mem: Memory) -> io::Result<()> {
        *self.mem.lock().unwrap_or_else(|e| e.into_inner()) = Some(mem);
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        // vhost-user-backend 0.24 registers the consumer with `into_raw_fd` and never closes it:
        // one descriptor lost per frontend connection. Workers are ended through STOP_WORKER
        // instead.
        None
    }

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        if queue_index == u32::from(EVENTQ) {
            match self.port {
                Port::Absolute => self.device.queue_stopped(),
                Port::Relative => self.device.relative_queue_stopped(),
            }
        }
        Ok(())
    }

    fn handle_event(
        &self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> io::Result<()> {
        match device_event {
            EVENTQ => self.process_eventq(vrings),
            STATUSQ => self.process_statusq(vrings),
            DEVICE_TIMER => self.on_timer(),
            // The only way to end a worker whose connection is over, short of the library's
            // exit event, which leaks a descriptor per connection in vhost-user-backend 0.24.
            STOP_WORKER => return Err(io::Error::other("frontend gone: worker stops")),
            other => tracing::debug!(event = other, "ignoring unknown worker event"),
        }
        Ok(())
    }
}
