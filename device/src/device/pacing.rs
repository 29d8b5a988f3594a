//! Backlog pacing: a large backlog reaches the guest in batches its readers can keep up with.

use std::time::{Duration, Instant};

use super::link::DriverLink;
use super::{Core, PvMouse};
use crate::virtqueue::{self, QueueOutcome};

/// A backlog above this many frames (a resumed VM's, or a guest that fell behind) is delivered
/// in paced batches: handed over as fast as the guest reposts buffers, it keeps a one-CPU
/// guest in its interrupt handler until its readers' own buffers overflow (SYN_DROPPED).
const PACE_ABOVE_FRAMES: usize = 32;
/// Events per paced batch, at most: half of the 128 a Linux evdev reader buffers. (With QEMU
/// 10's 4-entry queue a batch is what 4 buffers hold.)
const PACE_BATCH_EVENTS: usize = 64;
/// After a paced batch, this long per event in it before the next: time for the guest's
/// readers to drain. With QEMU's 4-entry queue a delivery is at most 4 events, so this sets
/// the flush rate: 10,000 events/s, three times a 1000 Hz mouse's, and 12.8 ms for a reader to
/// fall behind by a whole evdev buffer. (At 40,000 events/s, 3.2 ms, a test reader in a TCG
/// guest on a loaded host overflowed.)
const PACE_PER_EVENT: Duration = Duration::from_micros(100);

impl Core {
    /// Streams what is pending into the event queues there are, each its own frames, in the
    /// order they were made: the pointer's, then the relative device's, in turn, until neither
    /// can take more.
    pub(super) fn deliver(&mut self) -> QueueOutcome {
        if self.relative.is_none() {
            return self.deliver_pointer();
        }
        let mut total = QueueOutcome::default();
        loop {
            self.pending.for_port(Some(false));
            let pointer = self.deliver_pointer();
            self.pending.for_port(Some(true));
            let relative = self.deliver_relative();
            self.pending.for_port(None);
            let events = pointer.events + relative.events;
            total.events += events;
            total.completed += pointer.completed + relative.completed;
            total.notify |= pointer.notify || relative.notify;
            total.starved = pointer.starved || relative.starved;
            if events == 0 {
                return total;
            }
        }
    }

    /// Streams what is pending into the pointer's event queue, if there is one. A large backlog
    /// goes in paced batches; the timer ([`PvMouse::next_deadline`]) brings the next one.
    fn deliver_pointer(&mut self) -> QueueOutcome {
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

impl PvMouse {
    /// A backlog is being delivered in paced batches: the timer must bring the next.
    pub fn pacing(&self) -> bool {
        self.core().paced_until.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::device::PointerDevice;
    use crate::testing::{MockEventQueue, MockRing, guest_memory};
    use pvmouse_spec::evdev::EV_KEY;

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
}
