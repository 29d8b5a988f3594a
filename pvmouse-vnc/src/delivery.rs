//! A viewer's pointer records on their way to pvmouse, on a thread of their own, so that the
//! viewer's other messages (its framebuffer update requests above all) never wait for the
//! control socket: while the backend restarts, hangs or is stopped, the picture goes on.
//!
//! Records wait in a bounded queue. Motion is folded into the newest motion still waiting (a
//! newer position replaces an older one anyway; relative motion adds up); presses, releases
//! and scrolls keep their order. When the queue is full a record is dropped and counted, and
//! the next record that gets through is preceded by the viewer's whole state
//! (`pvmouse_client::Reconnecting`), so no button stays down that the viewer let go.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use pvmouse_spec::stream::Record;

use crate::proxy::Control;

/// Records that may wait for the control socket: a viewer clicking 200 times a second through
/// a 5 s outage.
pub const MAX_WAITING: usize = 1024;

#[derive(Debug, Default)]
struct Queue {
    /// Each record with the viewer's whole state after it.
    records: VecDeque<(Record, Record)>,
    /// Dropped because the queue was full, since the last log line.
    dropped: u64,
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending half: the viewer's thread puts records in and never waits for pvmouse.
#[derive(Debug)]
pub struct Delivery {
    shared: Arc<Shared>,
}

fn is_motion(r: &Record) -> bool {
    r.buttons_set == 0 && r.wheel_vertical == 0 && r.wheel_horizontal == 0
}

/// Folds `next` into `last` if both are motion of one kind: a newer position replaces an older
/// one; relative motion adds up, while the sum is motion the device takes in one record.
fn fold(last: &mut (Record, Record), next: &(Record, Record)) -> bool {
    let (a, b) = (&last.0, &next.0);
    if !is_motion(a) || !is_motion(b) {
        return false;
    }
    let relative = |r: &Record| r.dx != 0 || r.dy != 0;
    match (relative(a), relative(b)) {
        (false, false) => {
            *last = *next;
            true
        }
        (true, true) if a.keep_mode == b.keep_mode => {
            let (dx, dy) = (a.dx.saturating_add(b.dx), a.dy.saturating_add(b.dy));
            let limit = pvmouse_spec::control::MAX_REL_MOTION;
            if i64::from(dx).abs() > limit || i64::from(dy).abs() > limit {
                return false;
            }
            last.0.dx = dx;
            last.0.dy = dy;
            last.1 = next.1;
            true
        }
        _ => false,
    }
}

impl Delivery {
    /// Starts the thread that sends through `control`.
    pub fn start(mut control: Control) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let theirs = shared.clone();
        std::thread::Builder::new()
            .name("pvmouse-vnc-pointer".into())
            .spawn(move || {
                loop {
                    let (next, dropped) = {
                        let mut q = theirs.lock();
                        while q.records.is_empty() && !q.closed {
                            q = theirs.ready.wait(q).unwrap_or_else(|e| e.into_inner());
                        }
                        match q.records.pop_front() {
                            Some(next) => (next, std::mem::take(&mut q.dropped)),
                            None => return,
                        }
                    };
                    if dropped > 0 {
                        control.note_dropped(dropped);
                    }
                    control.send(&next.0, &next.1);
                }
            })?;
        Ok(Self { shared })
    }

    /// Queues a record; `state` is the viewer's whole state after it.
    pub fn send(&self, record: Record, state: Record) {
        let mut q = self.shared.lock();
        let next = (record, state);
        if q.records.back_mut().is_some_and(|last| fold(last, &next)) {
            // Folded into the newest record.
        } else if q.records.len() < MAX_WAITING {
            q.records.push_back(next);
        } else {
            q.dropped += 1;
            return;
        }
        drop(q);
        self.shared.ready.notify_one();
    }

    /// Records waiting, for tests.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.shared.lock().records.len()
    }
}

/// What is queued still goes; the thread ends once it has.
impl Drop for Delivery {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pointer::PointerRouter;
    use std::time::{Duration, Instant};

    #[test]
    fn with_the_backend_away_sending_never_waits_and_motion_folds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let delivery = Delivery::start(Control::new(&path, "test viewer")).unwrap();
        let mut router = PointerRouter::new(0);
        let start = Instant::now();
        for i in 0..10_000u16 {
            let r = router.record(0, i % 1000, 5, (1000, 1000));
            delivery.send(r, router.state());
        }
        for i in 0..2_000u16 {
            let r = router.record(u8::from(i % 2 == 0), 5, 5, (1000, 1000));
            delivery.send(r, router.state());
        }
        let took = start.elapsed();
        println!(
            "12,000 records queued in {took:?}, {} waiting",
            delivery.waiting()
        );
        assert!(took < Duration::from_millis(500), "{took:?}");
        assert!(delivery.waiting() <= MAX_WAITING, "bounded");
        drop(delivery);
    }

    #[test]
    fn relative_motion_folds_by_adding_up_and_never_into_a_position() {
        let motion = |dx, dy| {
            (
                Record {
                    dx,
                    dy,
                    ..Record::default()
                },
                Record::default(),
            )
        };
        let position = (
            Record {
                x: Some(5),
                y: Some(5),
                ..Record::default()
            },
            Record::default(),
        );
        let mut last = motion(3, -2);
        assert!(fold(&mut last, &motion(4, 1)));
        assert_eq!((last.0.dx, last.0.dy), (7, -1));
        assert!(!fold(&mut last, &position), "not motion of one kind");
        let mut last = position;
        assert!(!fold(&mut last, &motion(1, 1)));
        // A sum past what one record may carry is queued apart.
        let big = i32::try_from(pvmouse_spec::control::MAX_REL_MOTION).unwrap();
        let mut last = motion(big, 0);
        assert!(!fold(&mut last, &motion(1, 0)));
        // A press is never folded.
        let mut press = motion(1, 0);
        press.0.buttons_set = 1;
        let mut last = motion(1, 0);
        assert!(!fold(&mut last, &press));
    }
}
