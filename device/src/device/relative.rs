//! The relative device: the second virtio-input device this backend serves, for relative motion
//! while the host has the pointer in relative mode (`spec/pvmouse.md` §10).
//!
//! It shares the device lock, the pointer and the queue of pending frames with the absolute
//! device; it has its own config space and driver link. Relative motion is not state: while no
//! driver uses its queue, motion goes nowhere, as it would from a mouse nobody reads. Motion
//! queued in a row coalesces (deltas summed), so nothing is lost under backpressure.
//!
//! Order across the two devices: both take their frames from the head of the one queue, in
//! turn, and neither passes a frame of the other (`pending.rs`), so the guest gets positions,
//! clicks, motion and the renewal after a switch in the order the host made them.

use std::sync::Arc;

use super::link::DriverLink;
use super::{Core, PvMouse};
use crate::config_space::ConfigSpace;
use crate::guest_fault::GuestFault;
use crate::identity::Identity;
use crate::notice::Notice;
use crate::virtqueue::{self, EventQueue, QueueOutcome};

#[derive(Debug)]
pub(super) struct RelativePort {
    pub(super) config: ConfigSpace,
    pub(super) frontend_connected: bool,
    pub(super) driver: DriverLink,
    /// Events delivered into its queue, since start.
    pub(super) events_delivered: u64,
}

impl RelativePort {
    pub(super) fn new(identity: Identity) -> Self {
        Self {
            config: ConfigSpace::relative(identity),
            frontend_connected: false,
            driver: DriverLink::Inactive,
            events_delivered: 0,
        }
    }

    /// Whether relative motion is queued for a driver: one uses the queue, or will resume it.
    pub(super) fn takes_motion(&self) -> bool {
        !matches!(self.driver, DriverLink::Inactive)
    }
}

impl Core {
    /// Delivers the relative device's frames from the head of the queue (the caller has set
    /// the queue to give only those: [`Core::deliver`]).
    pub(super) fn deliver_relative(&mut self) -> QueueOutcome {
        let Core {
            relative: Some(port),
            pending,
            faults,
            ..
        } = self
        else {
            return QueueOutcome::default();
        };
        let DriverLink::Active(eventq) = &port.driver else {
            return QueueOutcome::default();
        };
        if pending.is_empty() {
            return QueueOutcome::default();
        }
        let out =
            eventq.fill(&mut |queue, mem| virtqueue::fill_eventq(queue, mem, pending, faults));
        port.events_delivered += out.events as u64;
        out
    }
}

/// What `query-pvmouse` reports of the relative device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelativeStatus {
    pub frontend_connected: bool,
    pub driver_active: bool,
    pub pending_frames: usize,
    pub events_delivered: u64,
}

impl PvMouse {
    fn with_port<T: Default>(&self, f: impl FnOnce(&mut Core) -> T) -> T {
        let mut core = self.core();
        if core.relative.is_none() {
            return T::default();
        }
        f(&mut core)
    }

    pub fn relative_frontend_connected(&self, connected: bool) {
        self.with_port(|core| {
            if let Some(port) = &mut core.relative {
                port.frontend_connected = connected;
                port.config.reset();
            }
        });
        if !connected {
            self.relative_driver_reset();
        }
    }

    /// The relative device was reset or its frontend is gone.
    pub fn relative_driver_reset(&self) {
        self.with_port(|core| {
            if let Some(port) = &mut core.relative {
                port.driver = DriverLink::Inactive;
            }
            core.pending.drop_relative();
            core.persist();
        });
    }

    /// The frontend stopped the relative device's queue: a paused VM, or a reset.
    pub fn relative_queue_stopped(&self) {
        self.with_port(|core| {
            let Some(port) = &mut core.relative else {
                return;
            };
            let DriverLink::Active(eventq) = &port.driver else {
                return;
            };
            let position = eventq.position();
            port.driver = if position.next_avail != 0 {
                DriverLink::Paused(position)
            } else {
                core.pending.drop_relative();
                DriverLink::Inactive
            };
            core.persist();
        });
    }

    pub fn relative_driver_active(&self) -> bool {
        self.with_port(|core| core.relative.as_ref().is_some_and(|p| p.driver.is_active()))
    }

    /// The driver started using the relative device's queue. One resuming where it stopped
    /// gets what was queued meanwhile; any other start is a new driver, and nothing old.
    pub fn relative_activate(&self, eventq: Arc<dyn EventQueue>) -> QueueOutcome {
        self.with_port(|core| {
            let Some(port) = &mut core.relative else {
                return QueueOutcome::default();
            };
            if !port.driver.is_active() && !port.driver.resumes_at(eventq.position()) {
                core.pending.drop_relative();
            }
            port.driver = DriverLink::Active(eventq);
            let out = core.deliver();
            core.persist();
            out
        })
    }

    /// The guest posted buffers to the relative device's queue.
    pub fn relative_refill(&self) -> QueueOutcome {
        self.with_port(|core| {
            let out = core.deliver();
            if out.events > 0 {
                core.persist();
            }
            out
        })
    }

    pub fn read_relative_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let mut core = self.core();
        let Some(port) = &mut core.relative else {
            return Vec::new();
        };
        match port.config.read(offset, size) {
            Ok(bytes) => bytes,
            Err(_) => {
                core.faults.record(GuestFault::ConfigOutOfBounds);
                Vec::new()
            }
        }
    }

    pub fn write_relative_config(&self, offset: u32, buf: &[u8]) {
        let mut core = self.core();
        let Some(port) = &mut core.relative else {
            return;
        };
        if port.config.write(offset, buf).is_err() {
            core.faults.record(GuestFault::ConfigOutOfBounds);
        }
    }

    /// The relative device's status queue: the guest has nothing to say there (the device has
    /// no LEDs and is no bridge), so buffers are returned and their events dropped, counted as
    /// faults only if malformed.
    pub fn service_relative_statusq<Q: virtio_queue::QueueT, M: vm_memory::GuestMemoryBackend>(
        &self,
        queue: &mut Q,
        mem: &M,
    ) -> QueueOutcome {
        let mut core = self.core();
        virtqueue::drain_statusq(queue, mem, &mut core.faults, |_| {})
    }

    pub(super) fn post_mode(&self, mode: pvmouse_spec::profile::PointerMode) {
        self.notices.post(Notice::Mode(mode));
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::device::{PointerDevice, SubmitError};
    use crate::notice::NoticeBoard;
    use crate::pointer::PointerAction;
    use crate::testing::{MockEventQueue, MockRing, guest_memory};
    use pvmouse_spec::InputEvent;
    use pvmouse_spec::evdev::{ABS_X, ABS_Y, BTN_LEFT, EV_ABS, EV_KEY, EV_REL, REL_X, REL_Y};
    use pvmouse_spec::profile::{DISPLAY_AXIS, PointerMode};

    fn two_devices() -> PvMouse {
        let identity = Identity::new("pvmouse", "s", 2)
            .unwrap()
            .with_relative(true);
        PvMouse::new(identity, Arc::new(NoticeBoard::new().unwrap())).unwrap()
    }

    /// Both devices, each with a driver that gave it 64 buffers; notices drained.
    fn both_active(mem: &vm_memory::GuestMemoryMmap) -> (PvMouse, MockRing<'_>, MockRing<'_>) {
        let dev = two_devices();
        let mut abs_ring = MockRing::new(mem, 64);
        let mut rel_ring = MockRing::at(mem, 0x4_0000, 64);
        abs_ring.offer_event_buffers(64);
        rel_ring.offer_event_buffers(64);
        dev.activate(MockEventQueue::new(mem, &abs_ring));
        dev.relative_activate(MockEventQueue::new(mem, &rel_ring));
        dev.notices().drain();
        (dev, abs_ring, rel_ring)
    }

    fn motion(dx: i32, dy: i32) -> [PointerAction; 1] {
        [PointerAction::Motion {
            dx,
            dy,
            keep_mode: false,
        }]
    }

    /// A guest that writes to the relative device's status queue (any root process can, through
    /// its evdev node), bridge messages and layouts included: the buffers come back, and
    /// nothing reaches the bridge's state, the coordinates or the pointer.
    #[test]
    fn the_relative_devices_status_queue_is_drained_and_ignored() {
        use pvmouse_spec::evdev::EV_MSC;
        use pvmouse_spec::profile::STATUS_MSC_CODE;
        use pvmouse_spec::status::encode_layout;
        let dev = two_devices();
        let mem = guest_memory();
        let mut ring = MockRing::at(&mem, 0x4_0000, 16);
        let mut queue = ring.queue();
        let before = dev.status();
        let mut values = vec![heartbeat()];
        values.extend(encode_layout(&side_by_side(), 9).unwrap());
        for (i, v) in values.iter().enumerate() {
            let event = InputEvent::new(EV_MSC, STATUS_MSC_CODE, *v);
            ring.offer_status_buffer(u16::try_from(i % 16).unwrap(), event.to_le_bytes());
            dev.service_relative_statusq(&mut queue, &mem);
        }
        assert_eq!(
            usize::from(ring.used_idx()),
            values.len(),
            "every buffer back"
        );
        let after = dev.status();
        assert_eq!(after.bridge_version, None, "no bridge heard");
        assert!(!after.desktop_coordinates, "no layout taken");
        assert_eq!(after.pointer, before.pointer);
        assert!(dev.notices().drain().is_empty());
    }

    #[test]
    fn relative_motion_needs_the_relative_device() {
        let dev = device();
        assert_eq!(
            dev.submit(&motion(1, 0)),
            Err(SubmitError::NoRelativeDevice)
        );
        assert_eq!(
            dev.submit(&[PointerAction::Mode(PointerMode::Relative)]),
            Err(SubmitError::NoRelativeDevice)
        );
        assert_eq!(dev.status().mode, PointerMode::Absolute);
        assert!(dev.status().relative.is_none());
        // Asking for absolute mode is always fine: it is the mode already.
        dev.submit(&[PointerAction::Mode(PointerMode::Absolute)])
            .unwrap();
    }

    #[test]
    fn a_switch_is_exact_in_the_stream_and_buttons_stay_on_the_pointer() {
        let mem = guest_memory();
        let (dev, abs_ring, rel_ring) = both_active(&mem);
        let first = abs_ring.used_idx();
        dev.submit(&move_to(1, 100, 200)).unwrap();
        dev.submit(&press(true)).unwrap();
        // Motion switches to relative mode; a position now only remembers where to return.
        dev.submit(&motion(5, -7)).unwrap();
        assert_eq!(dev.status().mode, PointerMode::Relative);
        assert_eq!(
            dev.notices().drain(),
            vec![Notice::Mode(PointerMode::Relative)]
        );
        dev.submit(&move_to(0, 300, 400)).unwrap();
        dev.submit(&motion(1, 1)).unwrap();
        dev.submit(&press(false)).unwrap();
        let abs_before_switch_back = abs_ring.used_idx();
        dev.submit(&[PointerAction::Mode(PointerMode::Absolute)])
            .unwrap();
        assert_eq!(
            dev.notices().drain(),
            vec![Notice::Mode(PointerMode::Absolute)]
        );

        let sent = events(&abs_ring, first);
        let in_relative = &sent[..usize::from(abs_before_switch_back - first)];
        let positions = |evs: &[InputEvent]| -> Vec<(u16, i32)> {
            evs.iter()
                .filter(|e| e.kind == EV_ABS)
                .map(|e| (e.code, e.value))
                .collect()
        };
        assert_eq!(
            positions(in_relative),
            [(DISPLAY_AXIS, 1), (ABS_X, 100), (ABS_Y, 200)],
            "nothing absolute after the switch to relative"
        );
        let buttons: Vec<i32> = sent
            .iter()
            .filter(|e| e.kind == EV_KEY && e.code == BTN_LEFT)
            .map(|e| e.value)
            .collect();
        assert_eq!(buttons, [1, 0], "both transitions, on the pointer");
        assert_eq!(
            positions(&sent[in_relative.len()..]),
            [
                (DISPLAY_AXIS, 0),
                (ABS_X, 300 ^ 1),
                (ABS_X, 300),
                (ABS_Y, 400 ^ 1),
                (ABS_Y, 400)
            ],
            "the position the host last gave, renewed"
        );
        let rel: Vec<(u16, i32)> = events(&rel_ring, 0)
            .iter()
            .filter(|e| !e.is_syn_report())
            .map(|e| {
                assert_eq!(e.kind, EV_REL);
                (e.code, e.value)
            })
            .collect();
        assert_eq!(rel, [(REL_X, 5), (REL_Y, -7), (REL_X, 1), (REL_Y, 1)]);
        // Back in absolute mode a position goes out as usual, not renewed.
        let idx = abs_ring.used_idx();
        dev.submit(&move_to(0, 301, 400)).unwrap();
        assert_eq!(
            events(&abs_ring, idx),
            [
                InputEvent::new(EV_ABS, ABS_X, 301),
                InputEvent::syn_report()
            ]
        );
    }

    /// A relay's motion keeps the mode: sent after the host switched back to absolute (the relay
    /// had not heard yet), it is dropped, its button still applies, and nothing switches.
    #[test]
    fn motion_that_keeps_the_mode_is_dropped_while_absolute() {
        let mem = guest_memory();
        let (dev, _abs_ring, rel_ring) = both_active(&mem);
        let kept = |dx, dy| PointerAction::Motion {
            dx,
            dy,
            keep_mode: true,
        };
        dev.submit(&[kept(4, 4), press(true)[0]]).unwrap();
        assert_eq!(dev.status().mode, PointerMode::Absolute, "no switch");
        assert!(dev.notices().drain().is_empty());
        assert_eq!(rel_ring.used_idx(), 0, "no motion");
        assert_eq!(
            dev.status().pointer.buttons,
            pvmouse_spec::profile::Button::Left.bit(),
            "the press applies"
        );
        // In relative mode it is motion like any other.
        dev.submit(&[PointerAction::Mode(PointerMode::Relative)])
            .unwrap();
        dev.submit(&[kept(2, -1)]).unwrap();
        assert_eq!(
            events(&rel_ring, 0),
            [
                InputEvent::new(EV_REL, REL_X, 2),
                InputEvent::new(EV_REL, REL_Y, -1),
                InputEvent::syn_report()
            ]
        );
    }

    #[test]
    fn relative_motion_waits_for_queued_positions_and_sums_meanwhile() {
        let dev = two_devices();
        let mem = guest_memory();
        let mut abs_ring = MockRing::new(&mem, 64);
        let mut rel_ring = MockRing::at(&mem, 0x4_0000, 64);
        abs_ring.offer_event_buffer(0);
        rel_ring.offer_event_buffers(64);
        dev.activate(MockEventQueue::new(&mem, &abs_ring));
        dev.relative_activate(MockEventQueue::new(&mem, &rel_ring));
        // The pointer's queue has one buffer: the position waits, and so does motion after it.
        dev.submit(&move_to(1, 10, 20)).unwrap();
        for _ in 0..100 {
            dev.submit(&motion(3, -2)).unwrap();
        }
        assert_eq!(rel_ring.used_idx(), 0, "motion waits for the position");
        assert_eq!(dev.status().relative.unwrap().pending_frames, 1, "summed");
        abs_ring.offer_event_buffers(64);
        dev.refill();
        assert_eq!(
            events(&rel_ring, 0),
            [
                InputEvent::new(EV_REL, REL_X, 300),
                InputEvent::new(EV_REL, REL_Y, -200),
                InputEvent::syn_report()
            ]
        );
    }

    #[test]
    fn motion_with_no_relative_driver_goes_nowhere_and_the_mode_survives_a_restart() {
        use crate::ledger::Ledger;
        let file = tempfile::tempfile().unwrap();
        let open = || {
            let ledger = Ledger::open(file.try_clone().unwrap()).unwrap();
            let identity = Identity::new("pvmouse", "s", 2)
                .unwrap()
                .with_relative(true);
            PvMouse::with_ledger(identity, Arc::new(NoticeBoard::new().unwrap()), ledger).unwrap()
        };
        let (dev, _) = open();
        dev.submit(&motion(4, 4)).unwrap();
        assert_eq!(dev.status().relative.unwrap().pending_frames, 0);
        dev.submit(&move_to(1, 7, 8)).unwrap();
        drop(dev);
        let (dev, restored) = open();
        assert!(restored);
        assert_eq!(dev.status().mode, PointerMode::Relative);
        // A new driver gets the buttons and display, but no position in relative mode.
        let mem = guest_memory();
        let mut ring = MockRing::new(&mem, 64);
        ring.offer_event_buffers(64);
        dev.activate(MockEventQueue::new(&mem, &ring));
        assert!(
            !events(&ring, 0)
                .iter()
                .any(|e| e.kind == EV_ABS && e.code != DISPLAY_AXIS)
        );
    }
}
