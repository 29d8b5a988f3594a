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

mod bridge;
mod config;
mod layout;
mod link;
mod pacing;
mod relative;
mod snapshot;
#[cfg(test)]
mod test_support;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use pvmouse_spec::profile::{MAX_PENDING_FRAMES, PointerMode};
use pvmouse_spec::status::LayoutReceiver;

use crate::config_space::ConfigSpace;
use crate::coordinates::Coordinates;
use crate::guest_fault::GuestFaultLog;
use crate::identity::Identity;
use crate::ledger::Ledger;
use crate::notice::{Notice, NoticeBoard};
use crate::pending::{PendingFrames, QueueFull};
use crate::pointer::{PointerAction, PointerState};
use crate::presence::{BridgePresence, PresenceChange};
use crate::virtqueue::{EventQueue, QueueOutcome};

use link::DriverLink;
use relative::RelativePort;
pub use relative::RelativeStatus;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("display {display} is out of range: this device has {displays} displays (0..={})", displays - 1)]
    DisplayOutOfRange { display: u8, displays: u8 },
    #[error(transparent)]
    QueueFull(#[from] QueueFull),
    #[error(
        "this backend serves no relative device: start it with --relative-socket and attach \
         that socket as a second vhost-user-input device"
    )]
    NoRelativeDevice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitted {
    /// Frames the command produced (0 if it changed nothing).
    pub frames: usize,
    /// False when no driver is active: the state changed and will be sent on activation.
    pub queued: bool,
}

/// The device's counters are the ones `query-pvmouse` reports, field for field.
pub use pvmouse_spec::control::reply::Counters;

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
    pub mode: PointerMode,
    pub relative: Option<RelativeStatus>,
}

/// What the control server needs from a device; tests substitute a mock.
pub trait PointerDevice: Send + Sync {
    fn identity(&self) -> &Identity;
    /// Applies a whole command, or nothing of it.
    fn submit(&self, actions: &[PointerAction]) -> Result<Submitted, SubmitError>;
    fn status(&self) -> DeviceStatus;
    /// The buttons down now ([`Button::bit`](pvmouse_spec::profile::Button::bit)): what a click
    /// asks, so it must cost no more than a look.
    fn buttons(&self) -> u8 {
        self.status().pointer.buttons
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
    /// The relative device, when the backend serves one.
    relative: Option<RelativePort>,
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
                relative: identity
                    .relative()
                    .then(|| RelativePort::new(identity.clone())),
            }),
            identity,
            notices,
        })
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
}

impl PointerDevice for PvMouse {
    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn submit(&self, actions: &[PointerAction]) -> Result<Submitted, SubmitError> {
        let displays = self.identity.displays();
        for action in actions {
            match *action {
                PointerAction::Move {
                    display: Some(display),
                    ..
                } if display >= displays => {
                    return Err(SubmitError::DisplayOutOfRange { display, displays });
                }
                PointerAction::Motion { .. } | PointerAction::Mode(PointerMode::Relative)
                    if !self.identity.relative() =>
                {
                    return Err(SubmitError::NoRelativeDevice);
                }
                _ => {}
            }
        }
        let mut core = self.core();
        core.counters.commands += 1;
        let mode = core.state.mode;
        let active = !matches!(core.driver, DriverLink::Inactive);
        // Only button and wheel frames take a slot (motion folds into the tail), and a command
        // has at most one per action, so counting ahead is needed only when room is short.
        if active && actions.len() > core.pending.free() {
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
            relative,
            ..
        } = &mut *core;
        let takes_motion = relative.as_ref().is_some_and(|port| port.takes_motion());
        state.apply(actions, coordinates, |frame| {
            frames += 1;
            // Capacity was checked above for every held frame of the command. With no driver
            // the pointer's state changed, and the next driver gets it in full; relative motion
            // with no driver goes nowhere.
            if (frame.is_relative() && takes_motion) || (!frame.is_relative() && active) {
                let _ = pending.push(frame);
            }
        });
        let changed = core.state.mode != mode;
        if active {
            core.counters.frames += frames as u64;
        }
        core.deliver();
        // On record before the client hears "done": a worker that replaces this one delivers it.
        core.persist();
        let mode = core.state.mode;
        drop(core);
        if changed {
            self.post_mode(mode);
        }
        Ok(Submitted {
            frames,
            queued: active,
        })
    }

    fn buttons(&self) -> u8 {
        self.core().state.buttons
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
            mode: core.state.mode,
            relative: core.relative.as_ref().map(|port| RelativeStatus {
                frontend_connected: port.frontend_connected,
                driver_active: port.driver.is_active(),
                pending_frames: core.pending.relative_len(),
                events_delivered: port.events_delivered,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;
    use crate::pointer::WheelAxis;
    use crate::testing::{MockEventQueue, MockRing, guest_memory};
    use pvmouse_spec::InputEvent;
    use pvmouse_spec::evdev::{ABS_X, BTN_LEFT, EV_ABS, EV_KEY};
    use pvmouse_spec::profile::{Button, DISPLAY_AXIS};

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
}
