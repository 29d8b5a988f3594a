//! The device's state in the ledger, for a worker that replaces this one (`--restartable`).
//!
//! The state is one versioned snapshot type, [`Snapshot`], encoded with postcard. Postcard is
//! compact and allocation-free to write, but not self-describing: the bytes of a format are its
//! field order and types. So any change to what a snapshot holds (a field added to it, or to a
//! type it holds) is a new format: [`FORMAT`] goes up, the previous snapshot type is kept under
//! its number, and a `From` conversion gives the new fields their defaults. A worker reads every
//! format it knows and carries the pending frames across. `ledger-format-N.bin` in
//! `tests/fixtures/` pins each format's bytes, so a change that forgets this fails a test.
//!
//! Format 1 was a hand-written codec; [`format1`] reads it. Format 2 had no exact scale per
//! display; [`format2`] reads it. Format 3 had no relative mode; [`format3`] reads it.

mod format1;
mod format2;
mod format3;

use std::borrow::Cow;
use std::sync::Arc;

use pvmouse_spec::control::reply::Counters;
use pvmouse_spec::profile::{MAX_PENDING_FRAMES, PointerMode};
use serde::{Deserialize, Serialize};

use super::link::DriverLink;
use super::{Core, PvMouse};
use crate::coordinates::Coordinates;
use crate::identity::Identity;
use crate::ledger::{Ledger, Written};
use crate::notice::NoticeBoard;
use crate::pending::PendingFrames;
use crate::pointer::PointerState;
use crate::virtqueue::RingPosition;

/// The format this build writes.
pub(crate) const FORMAT: u16 = 4;

/// Everything a replacement worker carries on from: the pointer, the coordinates in force,
/// where the driver stands, the counters and every frame still waiting for the guest. The
/// guest bridge is heard again at its next heartbeat, so it is not kept. Written borrowed (no
/// copy on the hot path), read owned.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Snapshot<'a> {
    pub pointer: Cow<'a, PointerState>,
    pub coordinates: Cow<'a, Coordinates>,
    pub driver: Link,
    pub counters: Cow<'a, Counters>,
    pub pending: Cow<'a, PendingFrames>,
    pub mode: PointerMode,
    /// The relative device, if the worker that wrote this served one.
    pub relative: Option<RelativeSnapshot>,
}

/// Where the relative device's driver stood (its motion not yet delivered is in `pending`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RelativeSnapshot {
    pub driver: Link,
}

/// Where the driver stood: its queue object dies with the worker, its rings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Link {
    Inactive,
    Active(RingPosition),
    Paused(RingPosition),
}

impl From<&DriverLink> for Link {
    fn from(link: &DriverLink) -> Self {
        match link {
            DriverLink::Inactive => Link::Inactive,
            DriverLink::Active(q) => Link::Active(q.position()),
            DriverLink::Paused(p) => Link::Paused(*p),
            DriverLink::Restored(p) => Link::Active(*p),
        }
    }
}

impl From<Link> for DriverLink {
    /// An active driver comes back as [`DriverLink::Restored`]: its queue object died with the
    /// worker.
    fn from(link: Link) -> Self {
        match link {
            Link::Inactive => DriverLink::Inactive,
            Link::Active(p) => DriverLink::Restored(p),
            Link::Paused(p) => DriverLink::Paused(p),
        }
    }
}

impl Snapshot<'static> {
    /// A state an earlier worker wrote, in any format this build reads; `None` if it is not
    /// whole and well-formed. A worker trusts it no more than guest input.
    pub(crate) fn read(written: &Written) -> Option<Self> {
        match written.format {
            1 => format1::read(&written.bytes),
            2 => format2::read(&written.bytes),
            3 => format3::read(&written.bytes),
            FORMAT => match postcard::take_from_bytes::<Snapshot<'static>>(&written.bytes) {
                Ok((snapshot, [])) => Some(snapshot),
                Ok(_) | Err(_) => None,
            },
            _ => None,
        }
    }
}

impl Core {
    /// Writes the state to the ledger, if there is one. Called before every reply and every
    /// lock release that follows a change, so whatever was answered is on record.
    pub(super) fn persist(&mut self) {
        let Some(ledger) = &mut self.ledger else {
            return;
        };
        let snapshot = Snapshot {
            pointer: Cow::Borrowed(&self.state),
            coordinates: Cow::Borrowed(&self.coordinates),
            driver: Link::from(&self.driver),
            counters: Cow::Borrowed(&self.counters),
            pending: Cow::Borrowed(&self.pending),
            mode: self.state.mode,
            relative: self.relative.as_ref().map(|port| RelativeSnapshot {
                driver: Link::from(&port.driver),
            }),
        };
        if let Err(e) = ledger.write(FORMAT, &snapshot) {
            tracing::error!("cannot keep the device state for a restart: {e}");
        }
    }

    /// Takes over a snapshot; `None`, and nothing changed, if its pending frames do not fit.
    fn restore(&mut self, snapshot: Snapshot<'static>) -> Option<()> {
        let mut pending = snapshot.pending.into_owned().checked(MAX_PENDING_FRAMES)?;
        // A worker without the relative device takes over none of its link or motion (the
        // keeper's command line decides, so it is the same for every worker); one with it
        // starts its link fresh if the last worker had none.
        match (&mut self.relative, snapshot.relative) {
            (Some(port), Some(r)) => port.driver = r.driver.into(),
            (None, _) => pending.drop_relative(),
            (Some(_), None) => {}
        }
        // The bridge is heard again at its next heartbeat; until then the coordinates stay, and
        // its silence is timed from now.
        self.state = snapshot.pointer.into_owned();
        self.state.mode = if self.relative.is_some() {
            snapshot.mode
        } else {
            PointerMode::Absolute
        };
        self.coordinates = snapshot.coordinates.into_owned();
        self.driver = snapshot.driver.into();
        self.counters = snapshot.counters.into_owned();
        self.pending = pending;
        Some(())
    }
}

impl PvMouse {
    /// Takes over the state an earlier worker wrote, if it is whole and in a format this build
    /// reads; otherwise says so once and keeps the fresh state.
    pub(crate) fn take_over(&self, written: &Written) -> bool {
        let ok = Snapshot::read(written)
            .and_then(|s| self.core().restore(s))
            .is_some();
        if !ok {
            tracing::warn!(
                format = written.format,
                "the state an earlier worker left is not whole or not in a format this build \
                 reads; starting fresh"
            );
        }
        ok
    }

    /// A device that keeps its state in `ledger`, taking over what an earlier worker left there.
    /// Returns whether there was a state to take over.
    pub fn with_ledger(
        identity: Identity,
        notices: Arc<NoticeBoard>,
        ledger: Ledger,
    ) -> std::io::Result<(Self, bool)> {
        let device = Self::new(identity, notices)?;
        let restored = match ledger.read()? {
            Some(written) => device.take_over(&written),
            None => false,
        };
        let mut core = device.core();
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

    fn fixture(name: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    /// The ledger file this build writes for the fixture scenario, trailing zeros cut (they
    /// are what `Ledger::open` fills in again).
    fn scenario_ledger() -> Vec<u8> {
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
        let mut file = file;
        file.read_to_end(&mut bytes).unwrap();
        let end = bytes.iter().rposition(|b| *b != 0).unwrap() + 1;
        bytes.truncate(end);
        bytes
    }

    fn ledger_from(bytes: &[u8]) -> Ledger {
        let file = tempfile::tempfile().unwrap();
        file.write_all_at(bytes, 0).unwrap();
        Ledger::open(file).unwrap()
    }

    use std::os::unix::fs::FileExt;

    #[test]
    fn an_upgrade_from_every_earlier_format_carries_the_pending_frames_across() {
        let want = std::fs::read_to_string(fixture("ledger-continuation.expected")).unwrap();
        assert!(want.starts_with("pending 14\n"), "{want}");
        for format in 1..FORMAT {
            let bytes = std::fs::read(fixture(&format!("ledger-format-{format}.bin"))).unwrap();
            assert_eq!(
                ledger_from(&bytes).read().unwrap().unwrap().format,
                format,
                "the fixture of format {format}"
            );
            let got = fixture_continuation(ledger_from(&bytes));
            assert_eq!(got, want, "a worker taking over a format-{format} ledger");
        }
    }

    #[test]
    fn this_builds_format_is_the_one_its_fixture_pins() {
        let pinned = std::fs::read(fixture(&format!("ledger-format-{FORMAT}.bin"))).unwrap();
        assert!(
            scenario_ledger() == pinned,
            "the ledger's bytes changed: what a snapshot holds is format {FORMAT}'s. Keep \
             format {FORMAT}'s snapshot type for reading, make a new FORMAT with a From \
             conversion, and write its fixture (see write_ledger_fixture)"
        );
        let want = std::fs::read_to_string(fixture("ledger-continuation.expected")).unwrap();
        assert_eq!(fixture_continuation(ledger_from(&pinned)), want);
    }

    #[test]
    fn a_snapshot_that_is_not_whole_or_too_large_starts_fresh() {
        let pinned = std::fs::read(fixture(&format!("ledger-format-{FORMAT}.bin"))).unwrap();
        let written = ledger_from(&pinned).read().unwrap().unwrap();
        for cut in [1, written.bytes.len() / 2, written.bytes.len() - 1] {
            let short = Written {
                format: FORMAT,
                bytes: written.bytes[..cut].to_vec(),
            };
            assert!(Snapshot::read(&short).is_none(), "cut at {cut}");
        }
        let mut longer = written.clone();
        longer.bytes.push(0);
        assert!(Snapshot::read(&longer).is_none(), "a byte left over");
        let unknown = Written {
            format: FORMAT + 1,
            ..written
        };
        assert!(
            Snapshot::read(&unknown).is_none(),
            "a format from the future"
        );
        // More pending frames than the device holds: refused whole, not cut.
        let mut snapshot = Snapshot::read(&ledger_from(&pinned).read().unwrap().unwrap()).unwrap();
        let frame = snapshot.pending.frames[0];
        let pending = snapshot.pending.to_mut();
        pending.frames = std::iter::repeat_n(frame, MAX_PENDING_FRAMES + 3).collect();
        let identity = Identity::new("pvmouse", "s", 2).unwrap();
        let dev = PvMouse::new(identity, Arc::new(NoticeBoard::new().unwrap())).unwrap();
        assert!(dev.core().restore(snapshot).is_none());
        assert_eq!(dev.status().pending_frames, 0, "nothing taken over");
    }

    /// Writes this format's fixture (once, when a new format is made):
    /// `cargo test -p vhost-user-pvmouse -- --ignored write_ledger_fixture`. The continuation
    /// stays: every format must give the same.
    #[test]
    #[ignore = "writes tests/fixtures/"]
    fn write_ledger_fixture() {
        std::fs::write(
            fixture(&format!("ledger-format-{FORMAT}.bin")),
            scenario_ledger(),
        )
        .unwrap();
    }
}
