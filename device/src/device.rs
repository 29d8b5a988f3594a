//! The pvmouse device: pointer state, pending frames, config space and link state, shared by the
//! control server and the vring worker.
//!
//! Input is delivered by whichever thread submits it, straight into the event queue, as QEMU's
//! in-process virtio-tablet does: no hand-off, so no wake-up, syscall or context switch per event.
//! The vring worker only acts on what the guest starts: a kick that brings buffers for frames
//! still pending, the status queue, the bridge presence timer. Both take the device lock, then the
//! vring lock, in that order.
//!
//! Input submitted while the guest driver is not using the event queue changes the state only.
//! When the driver (re)activates, the device sends one full-state frame instead of replaying
//! history, so a guest that boots, resets or resumes sees where the pointer is now and which
//! buttons are held, and nothing stale.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pvmouse_spec::evdev::EV_MSC;
use pvmouse_spec::profile::{MAX_PENDING_FRAMES, STATUS_MSC_CODE};
use pvmouse_spec::status::{Acknowledgement, LayoutEvent, LayoutReceiver, RELEASE_TIMEOUT_MS};
use virtio_queue::QueueT;
use vm_memory::GuestMemoryBackend;

use crate::config_space::ConfigSpace;
use crate::coordinates::Coordinates;
use crate::frame::Frame;
use crate::guest_fault::{GuestFault, GuestFaultLog};
use crate::identity::Identity;
use crate::ledger::{Ledger, Reader, Writer};
use crate::notice::{Notice, NoticeBoard};
use crate::pending::{PendingFrames, QueueFull};
use crate::pointer::{PointerAction, PointerState};
use crate::presence::{BridgePresence, PresenceChange};
use crate::virtqueue::{self, EventQueue, QueueOutcome, RingPosition};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("display {display} is out of range: this device has {displays} displays (0..={})", displays - 1)]
    DisplayOutOfRange { display: u8, displays: u8 },
    #[error(transparent)]
    QueueFull(#[from] QueueFull),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitted {
    /// Frames the command produced (0 if it changed nothing).
    pub frames: usize,
    /// False when no driver is active: the state changed and will be sent on activation.
    pub queued: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub commands: u64,
    pub frames: u64,
    pub events_delivered: u64,
    pub rejected_queue_full: u64,
    pub activations: u64,
    /// Activations that resumed a paused queue rather than starting a new driver.
    pub resumes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStatus {
    pub pointer: PointerState,
    pub frontend_connected: bool,
    pub driver_active: bool,
    /// The queue was stopped mid-use (a paused VM): input is still queued for its resumption.
    pub driver_paused: bool,
    pub bridge_version: Option<u8>,
    /// The guest bridge's desktop layout is in force: positions reach the guest over it.
    pub desktop_coordinates: bool,
    pub pending_frames: usize,
    pub coalesced_frames: u64,
    pub counters: Counters,
    pub guest_faults: Vec<(&'static str, u64)>,
}

/// What the control server needs from a device; tests substitute a mock.
pub trait PointerDevice: Send + Sync {
    fn identity(&self) -> &Identity;
    /// Applies a whole command, or nothing of it.
    fn submit(&self, actions: &[PointerAction]) -> Result<Submitted, SubmitError>;
    fn status(&self) -> DeviceStatus;
}

/// Where the guest driver stands with the event queue. One value, so that an active driver
/// without a queue, or a paused one that is also active, cannot be written.
#[derive(Debug, Default)]
enum DriverLink {
    /// No driver uses the event queue: input changes the state only, and the next activation
    /// sends one full-state frame.
    #[default]
    Inactive,
    /// The driver is using this queue: input is delivered into it as it comes.
    Active(Arc<dyn EventQueue>),
    /// The queue stopped at this position (a paused VM). Input is queued for the driver
    /// resuming there; a start anywhere else is a new driver.
    Paused(RingPosition),
    /// A worker that replaced a dead one found the driver active on these rings. The keeper
    /// replays the rings from where guest memory shows them, which may be a little behind where
    /// the dead worker had got: a start on the same rings at any index is the same driver.
    Restored(RingPosition),
}

impl DriverLink {
    fn is_active(&self) -> bool {
        matches!(self, DriverLink::Active(_))
    }

    /// Whether a queue starting at `at` is the driver this link was waiting for.
    fn resumes_at(&self, at: RingPosition) -> bool {
        match self {
            DriverLink::Paused(p) => *p == at,
            DriverLink::Restored(p) => {
                (p.desc_table, p.avail_ring, p.used_ring)
                    == (at.desc_table, at.avail_ring, at.used_ring)
            }
            DriverLink::Inactive | DriverLink::Active(_) => false,
        }
    }

    fn save(&self, w: &mut Writer<'_>) {
        let (tag, at) = match self {
            DriverLink::Inactive => (0, RingPosition::default()),
            DriverLink::Active(q) => (1, q.position()),
            DriverLink::Paused(p) => (2, *p),
            DriverLink::Restored(p) => (1, *p),
        };
        w.u8(tag);
        w.u16(at.next_avail);
        w.u64(at.desc_table);
        w.u64(at.avail_ring);
        w.u64(at.used_ring);
    }

    /// An active driver comes back as [`DriverLink::Restored`]: its queue object died with the
    /// worker.
    fn load(r: &mut Reader<'_>) -> Option<Self> {
        let tag = r.u8()?;
        let at = RingPosition {
            next_avail: r.u16()?,
            desc_table: r.u64()?,
            avail_ring: r.u64()?,
            used_ring: r.u64()?,
        };
        match tag {
            0 => Some(DriverLink::Inactive),
            1 => Some(DriverLink::Restored(at)),
            2 => Some(DriverLink::Paused(at)),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Core {
    state: PointerState,
    pending: PendingFrames,
    config: ConfigSpace,
    frontend_connected: bool,
    driver: DriverLink,
    bridge: BridgePresence,
    faults: GuestFaultLog,
    counters: Counters,
    coordinates: Coordinates,
    layouts: LayoutReceiver,
    /// Until when a hold after [`Acknowledgement::Applied`] lasts if the bridge never says it
    /// let go.
    hold_until: Option<Instant>,
    /// When the next paced batch of a backlog may go.
    paced_until: Option<Instant>,
    /// Where the state is kept for a worker that replaces this one (`--restartable`).
    ledger: Option<Ledger>,
}

/// A backlog above this many frames (a resumed VM's, or a guest that fell behind) is delivered
/// in paced batches: handed over as fast as the guest reposts buffers, it keeps a one-CPU
/// guest in its interrupt handler until its readers' own buffers overflow (SYN_DROPPED).
const PACE_ABOVE_FRAMES: usize = 32;
/// Events per paced batch, at most: half of the 128 a Linux evdev reader buffers. (With QEMU
/// 10's 4-entry queue a batch is what 4 buffers hold.)
const PACE_BATCH_EVENTS: usize = 64;
/// After a paced batch, this long per event in it before the next: time for the guest's
/// readers to drain. It caps a backlog's flush at 40,000 events/s, above any pointer's rate.
const PACE_PER_EVENT: Duration = Duration::from_micros(25);

impl Core {
    /// Writes the state to the ledger, if there is one. Called before every reply and every
    /// lock release that follows a change, so whatever was answered is on record.
    fn persist(&mut self) {
        let Some(mut ledger) = self.ledger.take() else {
            return;
        };
        if let Err(e) = ledger.write(|w| self.save(w)) {
            tracing::error!("cannot keep the device state for a restart: {e}");
        }
        self.ledger = Some(ledger);
    }

    fn save(&self, w: &mut Writer<'_>) {
        w.format();
        self.state.save(w);
        self.coordinates.save(w);
        self.driver.save(w);
        w.u8(u8::from(self.bridge.version().is_some()));
        w.u8(self.bridge.version().unwrap_or(0));
        let c = &self.counters;
        for v in [
            c.commands,
            c.frames,
            c.events_delivered,
            c.rejected_queue_full,
            c.activations,
            c.resumes,
        ] {
            w.u64(v);
        }
        self.pending.save(w);
    }

    /// Takes over what [`Core::save`] wrote; `None` if it is not whole and well-formed.
    fn restore(&mut self, bytes: &[u8]) -> Option<()> {
        let mut r = Reader::new(bytes);
        r.format()?;
        let state = PointerState::load(&mut r)?;
        let coordinates = Coordinates::load(&mut r)?;
        let driver = DriverLink::load(&mut r)?;
        let (has_bridge, _version) = (r.u8()?, r.u8()?);
        let mut c = Counters::default();
        for v in [
            &mut c.commands,
            &mut c.frames,
            &mut c.events_delivered,
            &mut c.rejected_queue_full,
            &mut c.activations,
            &mut c.resumes,
        ] {
            *v = r.u64()?;
        }
        let pending = PendingFrames::load(&mut r, MAX_PENDING_FRAMES)?;
        if !r.is_empty() || has_bridge > 1 {
            return None;
        }
        // The bridge is heard again at its next heartbeat; until then the coordinates stay, and
        // its silence is timed from now.
        (
            self.state,
            self.coordinates,
            self.driver,
            self.counters,
            self.pending,
        ) = (state, coordinates, driver, c, pending);
        Some(())
    }

    /// Queues a frame for the driver, if there is one. Only acknowledgements and position
    /// frames come here; a full queue loses an acknowledgement, which the bridge retries.
    fn queue(&mut self, frame: Frame) {
        if !matches!(self.driver, DriverLink::Inactive) {
            let _ = self.pending.push(frame);
        }
    }

    fn acknowledge(&mut self, ack: Acknowledgement) {
        self.queue(Frame {
            acknowledgement: Some(ack.encode()),
            ..Frame::default()
        });
    }

    /// Puts `coordinates` in force and moves the guest's pointer to where it is in them.
    fn recoordinate(&mut self, coordinates: Coordinates) {
        self.coordinates = coordinates;
        let frame = self.state.recoordinate(&self.coordinates);
        self.queue(frame);
    }

    fn end_hold(&mut self) {
        self.pending.release();
        self.hold_until = None;
    }

    /// Back to per-display positions: the driver or the bridge that knew the layout is gone.
    fn forget_layout(&mut self) {
        self.layouts = LayoutReceiver::default();
        self.end_hold();
        if self.coordinates.is_desktop() {
            self.recoordinate(Coordinates::PerDisplay);
        }
    }

    /// One complete message from the guest bridge about its layout (spec/pvmouse.md §6.1).
    fn on_layout(&mut self, event: LayoutEvent, displays: u8, now: Instant) {
        match event {
            LayoutEvent::Layout { layout, tag } => {
                let fits = layout.displays().all(|(id, _)| id < displays);
                if !fits || !self.bridge.present() {
                    self.faults.record(GuestFault::LayoutRefused);
                    self.acknowledge(Acknowledgement::Refused { tag });
                    return;
                }
                self.acknowledge(Acknowledgement::Applied { tag });
                // Nothing more reaches the bridge, which still holds the device, until it lets
                // go: the next frames are in coordinates it must not map.
                self.pending.hold();
                self.hold_until = Some(now + Duration::from_millis(RELEASE_TIMEOUT_MS));
                self.recoordinate(Coordinates::Desktop(layout));
            }
            LayoutEvent::Refused { tag, .. } => {
                self.faults.record(GuestFault::LayoutRefused);
                self.acknowledge(Acknowledgement::Refused { tag });
            }
            LayoutEvent::Clear { tag } => {
                self.end_hold();
                self.acknowledge(Acknowledgement::Cleared { tag });
                self.recoordinate(Coordinates::PerDisplay);
            }
            LayoutEvent::Released { .. } => self.end_hold(),
        }
    }

    /// Streams what is pending into the event queue, if there is one. A large backlog goes in
    /// paced batches; the timer ([`PvMouse::next_deadline`]) brings the next one.
    fn deliver(&mut self) -> QueueOutcome {
        let Core {
            driver,
            pending,
            faults,
            counters,
            paced_until,
            ..
        } = self;
        let DriverLink::Active(eventq) = driver else {
            return QueueOutcome::default();
        };
        if pending.is_empty() {
            *paced_until = None;
            return QueueOutcome::default();
        }
        // Only a backlog reads the clock: the common case stays a few loads.
        let backlog = (pending.len() > PACE_ABOVE_FRAMES).then(Instant::now);
        if let (Some(now), Some(t)) = (backlog, *paced_until) {
            if now < t {
                return QueueOutcome::default();
            }
        }
        pending.set_budget(backlog.map(|_| PACE_BATCH_EVENTS));
        let out =
            eventq.fill(&mut |queue, mem| virtqueue::fill_eventq(queue, mem, pending, faults));
        pending.set_budget(None);
        *paced_until = match backlog {
            Some(now) if !pending.is_empty() => {
                Some(now + PACE_PER_EVENT * u32::try_from(out.events).unwrap_or(u32::MAX))
            }
            _ => None,
        };
        counters.events_delivered += out.events as u64;
        out
    }
}

#[derive(Debug)]
pub struct PvMouse {
    identity: Identity,
    core: Mutex<Core>,
    notices: Arc<NoticeBoard>,
}

impl PvMouse {
    pub fn new(identity: Identity, notices: Arc<NoticeBoard>) -> std::io::Result<Self> {
        Ok(Self {
            core: Mutex::new(Core {
                state: PointerState::default(),
                pending: PendingFrames::with_capacity(MAX_PENDING_FRAMES),
                config: ConfigSpace::new(identity.clone()),
                frontend_connected: false,
                driver: DriverLink::Inactive,
                bridge: BridgePresence::default(),
                faults: GuestFaultLog::default(),
                counters: Counters::default(),
                coordinates: Coordinates::PerDisplay,
                layouts: LayoutReceiver::default(),
                hold_until: None,
                paced_until: None,
                ledger: None,
            }),
            identity,
            notices,
        })
    }

    /// A device that keeps its state in `ledger`, taking over what an earlier worker left there.
    /// Returns whether there was a state to take over.
    pub fn with_ledger(
        identity: Identity,
        notices: Arc<NoticeBoard>,
        ledger: Ledger,
    ) -> std::io::Result<(Self, bool)> {
        let device = Self::new(identity, notices)?;
        let mut core = device.core();
        let restored = match ledger.read()? {
            Some(bytes) => {
                let ok = core.restore(&bytes).is_some();
                if !ok {
                    tracing::warn!("the state an earlier worker left is not whole; starting fresh");
                }
                ok
            }
            None => false,
        };
        core.ledger = Some(ledger);
        core.persist();
        drop(core);
        Ok((device, restored))
    }

    /// A poisoned lock means a panic elsewhere; the state is still consistent frame by frame,
    /// so keep serving rather than turning one bug into a dead pointer.
    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn notices(&self) -> &Arc<NoticeBoard> {
        &self.notices
    }

    pub fn frontend_connected(&self) {
        let mut core = self.core();
        core.frontend_connected = true;
        core.config.reset();
        drop(core);
        self.notices.post(Notice::Frontend { connected: true });
    }

    /// The frontend went away. Pointer state is kept for the next one.
    pub fn frontend_disconnected(&self) {
        self.driver_reset();
        let mut core = self.core();
        core.frontend_connected = false;
        let gone = core.bridge.forget();
        core.forget_layout();
        core.persist();
        drop(core);
        self.post_presence(gone);
        self.notices.post(Notice::Frontend { connected: false });
    }

    /// The device was reset or its frontend is gone: this driver will never see anything more.
    pub fn driver_reset(&self) {
        let mut core = self.core();
        core.pending.clear();
        core.forget_layout();
        let was_active = std::mem::take(&mut core.driver).is_active();
        core.persist();
        drop(core);
        if was_active {
            self.notices.post(Notice::Driver { active: false });
        }
    }

    /// The frontend stopped the event queue (vhost-user `GET_VRING_BASE`). That is either a
    /// paused VM, whose driver resumes where it stopped, or a driver reset. Until the queue
    /// restarts and shows which, input keeps being queued (bounded, motion coalesced).
    pub fn queue_stopped(&self) {
        let mut core = self.core();
        let DriverLink::Active(eventq) = &core.driver else {
            return;
        };
        let position = eventq.position();
        // Nothing consumed yet looks exactly like a reset ring: treat it as one.
        core.driver = if position.next_avail != 0 {
            DriverLink::Paused(position)
        } else {
            core.pending.clear();
            core.forget_layout();
            DriverLink::Inactive
        };
        core.persist();
        drop(core);
        self.notices.post(Notice::Driver { active: false });
    }

    pub fn driver_active(&self) -> bool {
        self.core().driver.is_active()
    }

    /// The driver started using the event queue (the first kick after a start). A queue that
    /// resumes where it was stopped gets what was queued meanwhile, in order. Any other start
    /// is a new driver: it gets one full-state frame ahead of anything else.
    pub fn activate(&self, eventq: Arc<dyn EventQueue>) -> QueueOutcome {
        let mut core = self.core();
        let activated = !core.driver.is_active();
        if activated {
            core.counters.activations += 1;
            let resumed = core.driver.resumes_at(eventq.position());
            if resumed {
                core.counters.resumes += 1;
            } else {
                // A new driver: whatever bridge told us its layout is not running on it.
                core.pending.clear();
                core.forget_layout();
                core.coordinates = Coordinates::PerDisplay;
                let full = core.state.full_state_frame(&Coordinates::PerDisplay);
                // The queue was just cleared, so there is room.
                let _ = core.pending.push(full);
            }
        }
        core.driver = DriverLink::Active(eventq);
        let out = core.deliver();
        core.persist();
        drop(core);
        if activated {
            self.notices.post(Notice::Driver { active: true });
        }
        out
    }

    /// The guest posted buffers: deliver what is still pending.
    pub fn refill(&self) -> QueueOutcome {
        let mut core = self.core();
        let out = core.deliver();
        if out.events > 0 {
            core.persist();
        }
        out
    }

    /// A backlog is being delivered in paced batches: the timer must bring the next.
    pub fn pacing(&self) -> bool {
        self.core().paced_until.is_some()
    }

    pub fn service_statusq<Q: QueueT, M: GuestMemoryBackend>(
        &self,
        queue: &mut Q,
        mem: &M,
    ) -> QueueOutcome {
        let now = Instant::now();
        let displays = self.identity.displays();
        let mut core = self.core();
        let mut change = None;
        // Stays unallocated unless a layout message completes, which is rare.
        let mut messages = Vec::new();
        let Core {
            bridge,
            faults,
            layouts,
            ..
        } = &mut *core;
        let out = virtqueue::drain_statusq(queue, mem, faults, |event| {
            if let Some(c) = bridge.on_status(event, now) {
                change = Some(c);
            }
            if event.kind == EV_MSC && event.code == STATUS_MSC_CODE {
                messages.extend(layouts.feed(event.value));
            }
        });
        if change == Some(PresenceChange::Disappeared) {
            core.forget_layout();
        }
        for message in messages {
            core.on_layout(message, displays, now);
        }
        core.deliver();
        core.persist();
        drop(core);
        self.post_presence(change);
        out
    }

    /// When the timer should next fire: the bridge-silence check, the end of a hold, or the
    /// next paced batch of a backlog.
    pub fn next_deadline(&self) -> Option<Instant> {
        let core = self.core();
        [core.bridge.deadline(), core.hold_until, core.paced_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// The timer fired: a silent bridge is gone, a hold whose bridge never let go ends, and a
    /// paced backlog sends its next batch.
    pub fn on_timer(&self) {
        let now = Instant::now();
        let mut core = self.core();
        let change = core.bridge.check(now);
        if change == Some(PresenceChange::Disappeared) {
            core.forget_layout();
        }
        if core.hold_until.is_some_and(|t| now >= t) {
            core.end_hold();
        }
        core.deliver();
        core.persist();
        drop(core);
        self.post_presence(change);
    }

    fn post_presence(&self, change: Option<PresenceChange>) {
        let notice = match change {
            Some(PresenceChange::Appeared { version }) => Notice::Bridge {
                present: true,
                version,
            },
            Some(PresenceChange::Disappeared) => Notice::Bridge {
                present: false,
                version: 0,
            },
            None => return,
        };
        self.notices.post(notice);
    }

    /// Config reads at any offset and size: out-of-range ones get an empty answer, which the
    /// vhost-user layer reports to the frontend as a failed read.
    pub fn read_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let mut core = self.core();
        match core.config.read(offset, size) {
            Ok(bytes) => bytes,
            Err(_) => {
                core.faults.record(GuestFault::ConfigOutOfBounds);
                Vec::new()
            }
        }
    }

    /// Config writes at any offset and size. Out-of-range writes are ignored: failing them
    /// would make vhost-user drop the whole frontend connection.
    pub fn write_config(&self, offset: u32, data: &[u8]) {
        let mut core = self.core();
        if core.config.write(offset, data).is_err() {
            core.faults.record(GuestFault::ConfigOutOfBounds);
        }
    }
}

impl PointerDevice for PvMouse {
    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn submit(&self, actions: &[PointerAction]) -> Result<Submitted, SubmitError> {
        let displays = self.identity.displays();
        for action in actions {
            if let PointerAction::Move {
                display: Some(display),
                ..
            } = *action
            {
                if display >= displays {
                    return Err(SubmitError::DisplayOutOfRange { display, displays });
                }
            }
        }
        let mut core = self.core();
        core.counters.commands += 1;
        if matches!(core.driver, DriverLink::Inactive) {
            let needed = core.state.count_frames(actions, &core.coordinates);
            let Core {
                state, coordinates, ..
            } = &mut *core;
            state.apply(actions, coordinates, |_| {});
            core.persist();
            return Ok(Submitted {
                frames: needed.total,
                queued: false,
            });
        }
        // Only button and wheel frames take a slot (motion folds into the tail), and a command
        // has at most one per action, so counting ahead is needed only when room is short.
        if actions.len() > core.pending.free() {
            let needed = core.state.count_frames(actions, &core.coordinates);
            if needed.held > core.pending.free() {
                core.counters.rejected_queue_full += 1;
                return Err(QueueFull {
                    pending: core.pending.len(),
                }
                .into());
            }
        }
        let mut frames = 0;
        let Core {
            state,
            pending,
            coordinates,
            ..
        } = &mut *core;
        state.apply(actions, coordinates, |frame| {
            frames += 1;
            // Capacity was checked above for every held frame of the command.
            let _ = pending.push(frame);
        });
        core.counters.frames += frames as u64;
        core.deliver();
        // On record before the client hears "done": a worker that replaces this one delivers it.
        core.persist();
        Ok(Submitted {
            frames,
            queued: true,
        })
    }

    fn status(&self) -> DeviceStatus {
        let core = self.core();
        DeviceStatus {
            pointer: core.state,
            frontend_connected: core.frontend_connected,
            driver_active: core.driver.is_active(),
            driver_paused: matches!(core.driver, DriverLink::Paused(_) | DriverLink::Restored(_)),
            bridge_version: core.bridge.version(),
            desktop_coordinates: core.coordinates.is_desktop(),
            pending_frames: core.pending.len(),
            coalesced_frames: core.pending.coalesced(),
            counters: core.counters,
            guest_faults: core.faults.counts().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pointer::WheelAxis;
    use crate::testing::{MockEventQueue, MockRing, descriptor_index, guest_memory};
    use pvmouse_spec::InputEvent;
    use pvmouse_spec::evdev::{ABS_X, BTN_LEFT, EV_ABS, EV_KEY};
    use pvmouse_spec::profile::{Button, DISPLAY_AXIS};

    fn device() -> PvMouse {
        let identity = Identity::new("pvmouse", "s", 2).unwrap();
        PvMouse::new(identity, Arc::new(NoticeBoard::new().unwrap())).unwrap()
    }

    fn press(down: bool) -> [PointerAction; 1] {
        [PointerAction::Button {
            button: Button::Left,
            down,
        }]
    }

    fn events(ring: &MockRing, from: u16) -> Vec<InputEvent> {
        (from..ring.used_idx())
            .map(|n| InputEvent::from_le_bytes(ring.used_event(n)))
            .collect()
    }

    #[test]
    fn input_before_activation_changes_state_and_arrives_as_one_full_state_frame() {
        let dev = device();
        let s = dev
            .submit(&[PointerAction::Move {
                display: Some(1),
                x: Some(5),
                y: None,
            }])
            .unwrap();
        assert!(!s.queued);
        dev.submit(&press(true)).unwrap();
        dev.submit(&press(false)).unwrap();
        dev.submit(&press(true)).unwrap();
        assert_eq!(
            dev.status().pending_frames,
            0,
            "nothing is queued while inactive"
        );

        let mem = guest_memory();
        let mut ring = MockRing::new(&mem, 64);
        let eventq = MockEventQueue::new(&mem, &ring);
        ring.offer_event_buffers(64);
        let out = dev.refill();
        assert_eq!(out.events, 0, "buffers alone do not activate");
        let out = dev.activate(eventq.clone());
        assert_eq!(out.events, 8, "display, X (Y unknown), five buttons, SYN");
        let evs = events(&ring, 0);
        assert_eq!(evs[0], InputEvent::new(EV_ABS, DISPLAY_AXIS, 1));
        assert_eq!(evs[1], InputEvent::new(EV_ABS, ABS_X, 5));
        assert_eq!(evs[2], InputEvent::new(EV_KEY, BTN_LEFT, 1));
        assert!(evs[7].is_syn_report());
        assert!(dev.driver_active());
        assert_eq!(eventq.interrupts(), 1);
        assert_eq!(dev.notices().drain(), vec![Notice::Driver { active: true }]);
        // Input now goes straight to the queue from the submitting thread.
        dev.submit(&press(false)).unwrap();
        assert_eq!(
            events(&ring, 8),
            [
                InputEvent::new(EV_KEY, BTN_LEFT, 0),
                InputEvent::syn_report()
            ]
        );
        assert_eq!(eventq.interrupts(), 2);
    }

    #[test]
    fn a_stopped_driver_drops_the_queue_and_the_next_activation_resends_state() {
        let dev = device();
        let mem = guest_memory();
        let mut ring = MockRing::new(&mem, 4);
        let eventq = MockEventQueue::new(&mem, &ring);
        ring.offer_event_buffer(0);
        dev.activate(eventq.clone());
        for _ in 0..10 {
            dev.submit(&press(true)).unwrap();
            dev.submit(&press(false)).unwrap();
        }
        assert!(dev.status().pending_frames > 0);
        dev.driver_reset();
        assert_eq!(dev.status().pending_frames, 0);
        assert!(!dev.driver_active());
        let used = ring.used_idx();
        ring.offer_event_buffers(4);
        assert_eq!(dev.refill().events, 0, "a stopped driver gets nothing");
        dev.activate(eventq);
        let evs = events(&ring, used);
        assert_eq!(
            evs[0],
            InputEvent::new(EV_ABS, DISPLAY_AXIS, 0),
            "full state first"
        );
        assert_eq!(dev.status().counters.activations, 2);
    }

    #[test]
    fn a_full_queue_refuses_whole_commands_but_never_motion() {
        let dev = device();
        let mem = guest_memory();
        let mut ring = MockRing::new(&mem, 4);
        ring.offer_event_buffer(0);
        dev.activate(MockEventQueue::new(&mem, &ring));
        let mut accepted = 0;
        loop {
            match dev.submit(&press(accepted % 2 == 0)) {
                Ok(_) => accepted += 1,
                Err(SubmitError::QueueFull(_)) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(accepted, MAX_PENDING_FRAMES);
        let before = dev.status().pointer;
        // Press + wheel needs one slot: refused whole, state untouched.
        let both = [
            PointerAction::Button {
                button: Button::Right,
                down: true,
            },
            PointerAction::Wheel {
                axis: WheelAxis::Vertical,
                hi_res: 120,
            },
        ];
        assert!(dev.submit(&both).is_err());
        assert_eq!(dev.status().pointer, before);
        for x in 0..100 {
            dev.submit(&[PointerAction::Move {
                display: None,
                x: Some(x),
                y: None,
            }])
            .unwrap();
        }
        assert_eq!(dev.status().pending_frames, MAX_PENDING_FRAMES + 1);
        assert_eq!(dev.status().counters.rejected_queue_full, 2);
    }

    #[test]
    fn displays_out_of_range_are_refused_before_anything_changes() {
        let dev = device();
        let err = dev
            .submit(&[PointerAction::Move {
                display: Some(2),
                x: Some(1),
                y: None,
            }])
            .unwrap_err();
        assert_eq!(
            err,
            SubmitError::DisplayOutOfRange {
                display: 2,
                displays: 2
            }
        );
        assert_eq!(dev.status().pointer, PointerState::default());
    }

    #[test]
    fn config_access_out_of_bounds_is_counted_not_fatal() {
        let dev = device();
        assert!(dev.read_config(130, 10).is_empty());
        dev.write_config(4000, &[1, 2, 3]);
        assert_eq!(dev.read_config(0, 136).len(), 136);
        assert_eq!(dev.status().guest_faults, vec![("config-out-of-bounds", 2)]);
    }

    /// A guest driver's view of a small eventq: which buffers it owns, what it has read.
    struct Driver<'m> {
        ring: MockRing<'m>,
        free: Vec<u16>,
        seen: u16,
    }

    impl<'m> Driver<'m> {
        fn new(ring: MockRing<'m>, size: u16) -> Self {
            Driver {
                ring,
                free: (0..size).collect(),
                seen: 0,
            }
        }

        /// Everything the device sent since the last call, posting buffers until it stops.
        fn drain(&mut self, dev: &PvMouse) -> Vec<InputEvent> {
            let mut out = Vec::new();
            loop {
                let end = self.ring.used_idx();
                for n in self.seen..end {
                    self.free.push(descriptor_index(&self.ring.used(n)));
                    out.push(InputEvent::from_le_bytes(self.ring.used_event(n)));
                }
                let progressed = end != self.seen;
                self.seen = end;
                while let Some(i) = self.free.pop() {
                    self.ring.offer_event_buffer(i);
                }
                dev.refill();
                if !progressed && self.ring.used_idx() == end {
                    if !dev.pacing() {
                        return out;
                    }
                    // A paced backlog: the backend's timer would bring the next batch.
                    let at = dev.next_deadline().unwrap_or_else(Instant::now);
                    std::thread::sleep(at.saturating_duration_since(Instant::now()));
                    dev.on_timer();
                }
            }
        }
    }

    #[test]
    fn a_paused_queue_resumes_with_every_transition_made_meanwhile() {
        let dev = device();
        let mem = guest_memory();
        let mut driver = Driver::new(MockRing::new(&mem, 4), 4);
        let eventq = MockEventQueue::new(&mem, &driver.ring);
        dev.activate(eventq.clone());
        driver.drain(&dev);
        dev.submit(&press(true)).unwrap();
        // The VM stops: the frontend stops the queue where it stands.
        dev.queue_stopped();
        assert!(dev.status().driver_paused);
        for i in 0..50 {
            dev.submit(&press(i % 2 == 1)).unwrap();
            dev.submit(&[PointerAction::Move {
                display: None,
                x: Some(i),
                y: None,
            }])
            .unwrap();
        }
        // The VM continues: same rings, same position.
        dev.activate(eventq);
        let evs = driver.drain(&dev);
        let presses: Vec<i32> = evs
            .iter()
            .filter(|e| e.kind == EV_KEY)
            .map(|e| e.value)
            .collect();
        let want: Vec<i32> = std::iter::once(1).chain((0..50).map(|i| i % 2)).collect();
        assert_eq!(presses, want, "every transition, in order");
        assert!(
            !evs.iter()
                .any(|e| e.kind == EV_ABS && e.code == DISPLAY_AXIS),
            "a resume sends no full-state frame"
        );
        let x_values: Vec<i32> = evs
            .iter()
            .filter(|e| e.kind == EV_ABS && e.code == ABS_X)
            .map(|e| e.value)
            .collect();
        assert_eq!(x_values.last(), Some(&49), "newest position last");
        assert_eq!(evs.last().copied(), Some(InputEvent::syn_report()));
        assert_eq!(dev.status().counters.resumes, 1);
    }

    #[test]
    fn a_queue_restarted_elsewhere_is_a_new_driver_and_gets_full_state() {
        let dev = device();
        let mem = guest_memory();
        let mut driver = Driver::new(MockRing::new(&mem, 4), 4);
        dev.activate(MockEventQueue::new(&mem, &driver.ring));
        driver.drain(&dev);
        dev.submit(&press(true)).unwrap();
        driver.drain(&dev);
        dev.queue_stopped();
        dev.submit(&press(false)).unwrap();
        dev.submit(&press(true)).unwrap();
        // The driver reset: new rings, index 0.
        let mut driver = Driver::new(MockRing::at(&mem, 0x4_0000, 4), 4);
        dev.activate(MockEventQueue::new(&mem, &driver.ring));
        let evs = driver.drain(&dev);
        assert_eq!(evs.len(), 7, "only the full-state frame: {evs:?}");
        assert_eq!(evs[0], InputEvent::new(EV_ABS, DISPLAY_AXIS, 0));
        assert_eq!(evs[1], InputEvent::new(EV_KEY, BTN_LEFT, 1));
        assert_eq!(dev.status().counters.resumes, 0);
    }

    /// A guest bridge on the status queue, as the tests below drive it.
    struct StatusWriter<'m> {
        mem: &'m vm_memory::GuestMemoryMmap,
        ring: MockRing<'m>,
        queue: virtio_queue::Queue,
        next: u16,
    }

    impl<'m> StatusWriter<'m> {
        fn new(mem: &'m vm_memory::GuestMemoryMmap) -> Self {
            let ring = MockRing::at(mem, 0x4_0000, 16);
            let queue = ring.queue();
            Self {
                mem,
                ring,
                queue,
                next: 0,
            }
        }

        fn send(&mut self, dev: &PvMouse, values: &[i32]) {
            for v in values {
                let event = InputEvent::new(EV_MSC, STATUS_MSC_CODE, *v);
                self.ring
                    .offer_status_buffer(self.next % 16, event.to_le_bytes());
                self.next += 1;
                dev.service_statusq(&mut self.queue, self.mem);
            }
        }
    }

    fn move_to(display: u8, x: u16, y: u16) -> [PointerAction; 1] {
        [PointerAction::Move {
            display: Some(display),
            x: Some(x),
            y: Some(y),
        }]
    }

    fn side_by_side() -> pvmouse_spec::layout::Layout {
        use pvmouse_spec::layout::{Layout, Rect};
        let rect = |x, width, height| Rect {
            x,
            y: 0,
            width,
            height,
        };
        Layout::new(std::collections::BTreeMap::from([
            (0, rect(0, 1024, 768)),
            (1, rect(1024, 1280, 1024)),
        ]))
        .unwrap()
    }

    fn heartbeat() -> i32 {
        pvmouse_spec::status::StatusMessage::BridgePresent { version: 1 }.encode()
    }

    fn ack(a: Acknowledgement) -> [InputEvent; 2] {
        [
            InputEvent::new(EV_MSC, STATUS_MSC_CODE, a.encode()),
            InputEvent::syn_report(),
        ]
    }

    fn abs(code: u16, value: i32) -> InputEvent {
        InputEvent::new(EV_ABS, code, value)
    }

    #[test]
    fn a_layout_from_the_bridge_is_acknowledged_held_then_sent_over_the_desktop() {
        use pvmouse_spec::evdev::ABS_Y;
        use pvmouse_spec::status::{StatusMessage, encode_layout};
        let dev = device();
        let mem = guest_memory();
        let mut ring = MockRing::new(&mem, 64);
        ring.offer_event_buffers(64);
        dev.activate(MockEventQueue::new(&mem, &ring));
        dev.submit(&move_to(1, 0, 0)).unwrap();
        let mut seen = ring.used_idx();
        let mut status = StatusWriter::new(&mem);
        status.send(&dev, &[heartbeat()]);
        let layout = side_by_side();
        status.send(&dev, &encode_layout(&layout, 9).unwrap());
        assert_eq!(
            events(&ring, seen),
            ack(Acknowledgement::Applied { tag: 9 })
        );
        assert!(dev.status().desktop_coordinates);
        seen = ring.used_idx();
        // Held: nothing reaches the bridge that still holds the device.
        dev.submit(&move_to(0, 65535, 65535)).unwrap();
        dev.submit(&press(true)).unwrap();
        assert_eq!(ring.used_idx(), seen);
        status.send(&dev, &[StatusMessage::Released { tag: 9 }.encode()]);
        let (x, y) = layout.map(0, 65535, 65535).unwrap();
        assert_eq!(
            events(&ring, seen),
            [
                abs(DISPLAY_AXIS, 0),
                abs(ABS_X, x),
                abs(ABS_Y, y),
                InputEvent::new(EV_KEY, BTN_LEFT, 1),
                InputEvent::syn_report()
            ],
            "the held move and press, the move in desktop values"
        );
        seen = ring.used_idx();
        // Clearing goes back to per-display values, and says where in the stream.
        status.send(&dev, &[StatusMessage::LayoutClear { tag: 10 }.encode()]);
        let mut expected = ack(Acknowledgement::Cleared { tag: 10 }).to_vec();
        expected.extend([
            abs(ABS_X, 65535),
            abs(ABS_Y, 65535),
            InputEvent::syn_report(),
        ]);
        assert_eq!(events(&ring, seen), expected);
        assert!(!dev.status().desktop_coordinates);
    }

    #[test]
    fn a_hold_ends_by_itself_and_a_silent_bridge_takes_its_layout_with_it() {
        use pvmouse_spec::status::{PRESENCE_TIMEOUT_MS, encode_layout};
        let dev = device();
        let mem = guest_memory();
        let mut ring = MockRing::new(&mem, 64);
        ring.offer_event_buffers(64);
        dev.activate(MockEventQueue::new(&mem, &ring));
        dev.submit(&move_to(1, 100, 100)).unwrap();
        let mut status = StatusWriter::new(&mem);
        status.send(&dev, &[heartbeat()]);
        status.send(&dev, &encode_layout(&side_by_side(), 1).unwrap());
        let seen = ring.used_idx();
        let deadline = dev.next_deadline().unwrap();
        assert!(deadline <= Instant::now() + Duration::from_millis(RELEASE_TIMEOUT_MS));
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        dev.on_timer();
        assert!(ring.used_idx() > seen, "the hold ended without the bridge");
        std::thread::sleep(Duration::from_millis(PRESENCE_TIMEOUT_MS));
        let seen = ring.used_idx();
        dev.on_timer();
        assert!(!dev.status().desktop_coordinates);
        assert_eq!(
            events(&ring, seen),
            [
                abs(ABS_X, 100),
                abs(pvmouse_spec::evdev::ABS_Y, 100),
                InputEvent::syn_report()
            ],
            "back to where the host put it, per display"
        );
    }

    #[test]
    fn layouts_without_a_bridge_for_missing_displays_or_damaged_are_refused() {
        use pvmouse_spec::layout::{Layout, Rect};
        use pvmouse_spec::status::encode_layout;
        let dev = device();
        let mem = guest_memory();
        let mut ring = MockRing::new(&mem, 64);
        ring.offer_event_buffers(64);
        dev.activate(MockEventQueue::new(&mem, &ring));
        let mut status = StatusWriter::new(&mem);
        let words = encode_layout(&side_by_side(), 1).unwrap();
        let mut seen = ring.used_idx();
        status.send(&dev, &words);
        assert_eq!(
            events(&ring, seen),
            ack(Acknowledgement::Refused { tag: 1 }),
            "no bridge"
        );
        status.send(&dev, &[heartbeat()]);
        let third = Layout::new(std::collections::BTreeMap::from([(
            2,
            Rect {
                x: 0,
                y: 0,
                width: 10,
                height: 10,
            },
        )]))
        .unwrap();
        seen = ring.used_idx();
        status.send(&dev, &encode_layout(&third, 2).unwrap());
        assert_eq!(
            events(&ring, seen),
            ack(Acknowledgement::Refused { tag: 2 }),
            "display 2"
        );
        let mut lost = words.clone();
        lost.remove(5);
        seen = ring.used_idx();
        status.send(&dev, &lost);
        assert_eq!(
            events(&ring, seen),
            ack(Acknowledgement::Refused { tag: 1 }),
            "a value lost"
        );
        assert!(!dev.status().desktop_coordinates);
        assert_eq!(dev.status().guest_faults, vec![("layout-refused", 3)]);
    }

    #[test]
    fn a_resumed_backlog_goes_in_paced_batches_in_order() {
        let dev = device();
        let mem = guest_memory();
        let mut ring = MockRing::new(&mem, 256);
        let eventq = MockEventQueue::new(&mem, &ring);
        ring.offer_event_buffers(16);
        dev.activate(eventq.clone());
        dev.queue_stopped();
        // 100 click frames, 200 events: a backlog, and fewer events than buffers.
        for i in 0..100 {
            dev.submit(&press(i % 2 == 0)).unwrap();
        }
        let before = ring.used_idx();
        for i in 16..256 {
            ring.offer_event_buffer(i);
        }
        dev.activate(eventq);
        let first = ring.used_idx() - before;
        assert_eq!(
            usize::from(first),
            PACE_BATCH_EVENTS,
            "one batch, then a pause"
        );
        assert!(dev.pacing());
        assert_eq!(dev.refill().events, 0, "a kick during the pause waits");
        let mut batches = 1;
        while dev.pacing() {
            assert!(batches < 100, "pacing never ends");
            let at = dev.next_deadline().unwrap();
            std::thread::sleep(at.saturating_duration_since(Instant::now()));
            dev.on_timer();
            batches += 1;
        }
        let evs = events(&ring, before);
        let presses: Vec<i32> = evs
            .iter()
            .filter(|e| e.kind == EV_KEY)
            .map(|e| e.value)
            .collect();
        assert_eq!(presses.len(), 100, "every transition");
        assert!(
            presses
                .iter()
                .enumerate()
                .all(|(i, v)| *v == i32::from(i % 2 == 0))
        );
        println!("{} events in {batches} batches", evs.len());
        assert!(batches >= 2, "{batches}");
    }

    #[test]
    fn a_worker_on_the_same_ledger_carries_on_where_the_last_one_stopped() {
        use crate::ledger::Ledger;
        let file = tempfile::tempfile().unwrap();
        let open = || {
            let ledger = Ledger::open(file.try_clone().unwrap()).unwrap();
            let identity = Identity::new("pvmouse", "s", 2).unwrap();
            PvMouse::with_ledger(identity, Arc::new(NoticeBoard::new().unwrap()), ledger).unwrap()
        };
        let (dev, restored) = open();
        assert!(!restored, "a fresh ledger");
        let mem = guest_memory();
        let mut ring = MockRing::new(&mem, 64);
        ring.offer_event_buffer(0);
        dev.activate(MockEventQueue::new(&mem, &ring));
        dev.submit(&move_to(1, 100, 200)).unwrap();
        for i in 0..10 {
            dev.submit(&press(i % 2 == 0)).unwrap();
        }
        let before = dev.status();
        assert!(before.pending_frames > 0);
        drop(dev);

        // The next worker: same state, same frames waiting, and the driver on the same rings
        // (at whatever index the keeper replays) is the same driver.
        let (dev, restored) = open();
        assert!(restored);
        let after = dev.status();
        assert_eq!(after.pointer, before.pointer);
        assert_eq!(after.pending_frames, before.pending_frames);
        assert_eq!(after.counters, before.counters);
        let seen = ring.used_idx();
        for i in 1..64 {
            ring.offer_event_buffer(i);
        }
        dev.activate(MockEventQueue::new(&mem, &ring));
        assert_eq!(dev.status().counters.resumes, before.counters.resumes + 1);
        assert!(ring.used_idx() > seen);
        // From the first worker's first event to the second worker's last: the full-state
        // frame's release, then every click, once, and no second full-state frame.
        let left: Vec<i32> = events(&ring, 0)
            .iter()
            .filter(|e| e.kind == EV_KEY && e.code == BTN_LEFT)
            .map(|e| e.value)
            .collect();
        let want: Vec<i32> = std::iter::once(0)
            .chain((0..10).map(|i| i32::from(i % 2 == 0)))
            .collect();
        assert_eq!(left, want);
    }
    /// The scenario of the ledger fixtures in `tests/fixtures/`: a worker on a fresh ledger, a
    /// driver active on a 64-entry ring with one buffer, a bridge's desktop layout in force, and
    /// moves, clicks and scrolls waiting for buffers, one frame half sent.
    fn fixture_scenario(dev: &PvMouse, mem: &vm_memory::GuestMemoryMmap) {
        use pvmouse_spec::status::{StatusMessage, encode_layout};
        let mut ring = MockRing::new(mem, 64);
        ring.offer_event_buffer(0);
        dev.activate(MockEventQueue::new(mem, &ring));
        let mut status = StatusWriter::new(mem);
        status.send(dev, &[heartbeat()]);
        status.send(dev, &encode_layout(&side_by_side(), 9).unwrap());
        status.send(dev, &[StatusMessage::Released { tag: 9 }.encode()]);
        dev.submit(&move_to(1, 100, 200)).unwrap();
        for i in 0..10 {
            dev.submit(&press(i % 2 == 0)).unwrap();
        }
        dev.submit(&[PointerAction::Wheel {
            axis: WheelAxis::Vertical,
            hi_res: 180,
        }])
        .unwrap();
        dev.submit(&[PointerAction::Wheel {
            axis: WheelAxis::Horizontal,
            hi_res: -120,
        }])
        .unwrap();
        dev.submit(&move_to(0, 300, 400)).unwrap();
    }

    /// What a worker that takes over `ledger` on the fixture's rings sends, as text, after the
    /// pending frame count and the pointer.
    fn fixture_continuation(ledger: Ledger) -> String {
        use std::fmt::Write;
        let identity = Identity::new("pvmouse", "s", 2).unwrap();
        let (dev, restored) =
            PvMouse::with_ledger(identity, Arc::new(NoticeBoard::new().unwrap()), ledger).unwrap();
        assert!(restored);
        let status = dev.status();
        let mut out = String::new();
        let p = status.pointer;
        writeln!(out, "pending {}", status.pending_frames).unwrap();
        writeln!(
            out,
            "pointer {} {:?} {:?} {}",
            p.display, p.x, p.y, p.buttons
        )
        .unwrap();
        writeln!(out, "counters {:?}", status.counters).unwrap();
        let mem = guest_memory();
        let mut ring = MockRing::new(&mem, 64);
        ring.offer_event_buffers(64);
        dev.activate(MockEventQueue::new(&mem, &ring));
        assert_eq!(dev.status().counters.resumes, 1, "the same driver");
        for e in events(&ring, 0) {
            writeln!(out, "{} {} {}", e.kind, e.code, e.value).unwrap();
        }
        out
    }

    /// Writes the format-1 fixtures (run once, on the build that wrote format 1):
    /// `cargo test -p vhost-user-pvmouse -- --ignored write_ledger_fixture`.
    #[test]
    #[ignore = "writes tests/fixtures/"]
    fn write_ledger_fixture() {
        use std::io::Read;
        let file = tempfile::tempfile().unwrap();
        let identity = Identity::new("pvmouse", "s", 2).unwrap();
        let ledger = Ledger::open(file.try_clone().unwrap()).unwrap();
        let (dev, _) =
            PvMouse::with_ledger(identity, Arc::new(NoticeBoard::new().unwrap()), ledger).unwrap();
        let mem = guest_memory();
        fixture_scenario(&dev, &mem);
        drop(dev);
        let mut bytes = Vec::new();
        file.try_clone().unwrap().read_to_end(&mut bytes).unwrap();
        // The ledger's trailing zeros are what `Ledger::open` fills in again.
        let end = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
        bytes.truncate(end);
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ledger-format-1.bin"), &bytes).unwrap();
        let continuation = fixture_continuation(Ledger::open(file).unwrap());
        std::fs::write(dir.join("ledger-format-1.expected"), continuation).unwrap();
    }
}
