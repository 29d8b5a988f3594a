//! Where the guest driver stands with the event queue.

use std::sync::Arc;

use crate::virtqueue::{EventQueue, RingPosition};

/// Where the guest driver stands with the event queue. One value, so that an active driver
/// without a queue, or a paused one that is also active, cannot be written.
#[derive(Debug, Default)]
pub(super) enum DriverLink {
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
    pub(super) fn is_active(&self) -> bool {
        matches!(self, DriverLink::Active(_))
    }

    /// Whether a queue starting at `at` is the driver this link was waiting for.
    pub(super) fn resumes_at(&self, at: RingPosition) -> bool {
        match self {
            DriverLink::Paused(p) => *p == at,
            DriverLink::Restored(p) => {
                (p.desc_table, p.avail_ring, p.used_ring)
                    == (at.desc_table, at.avail_ring, at.used_ring)
            }
            DriverLink::Inactive | DriverLink::Active(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use crate::device::{PointerDevice, PvMouse};
    use crate::pointer::PointerAction;
    use crate::testing::{MockEventQueue, MockRing, descriptor_index, guest_memory};
    use pvmouse_spec::InputEvent;
    use pvmouse_spec::evdev::{ABS_X, BTN_LEFT, EV_ABS, EV_KEY};
    use pvmouse_spec::profile::DISPLAY_AXIS;
    use std::time::Instant;

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
}
