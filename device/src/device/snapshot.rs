//! The device's state in the ledger, for a worker that replaces this one (`--restartable`).

use std::sync::Arc;

use pvmouse_spec::profile::MAX_PENDING_FRAMES;

use super::link::DriverLink;
use super::{Core, Counters, PvMouse};
use crate::coordinates::Coordinates;
use crate::identity::Identity;
use crate::ledger::{Ledger, Reader, Writer};
use crate::notice::NoticeBoard;
use crate::pending::PendingFrames;
use crate::pointer::PointerState;
use crate::virtqueue::RingPosition;

impl DriverLink {
    pub(super) fn save(&self, w: &mut Writer<'_>) {
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
    pub(super) fn load(r: &mut Reader<'_>) -> Option<Self> {
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

impl Core {
    /// Writes the state to the ledger, if there is one. Called before every reply and every
    /// lock release that follows a change, so whatever was answered is on record.
    pub(super) fn persist(&mut self) {
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
}

impl PvMouse {
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
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::device::PointerDevice;
    use crate::pointer::{PointerAction, WheelAxis};
    use crate::testing::{MockEventQueue, MockRing, guest_memory};
    use pvmouse_spec::evdev::{BTN_LEFT, EV_KEY};

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
