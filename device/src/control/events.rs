//! QMP events: what a client is told of the device's notices, shaped as QEMU shapes its own, and
//! how often.

use std::time::{Duration, Instant};

use pvmouse_spec::control::{GUEST_EVENT_INTERVAL_MS, event};
use serde_json::{Value, json};

use super::qmp;
use crate::notice::{Latest, Notice, NoticeKind};

pub fn notice_event(notice: Notice) -> Value {
    match notice {
        Notice::Frontend { connected } => {
            qmp::event(event::FRONTEND_CHANGE, json!({ "connected": connected }))
        }
        Notice::Driver { active } => qmp::event(event::DRIVER_CHANGE, json!({ "active": active })),
        Notice::Bridge {
            present: true,
            version,
        } => qmp::event(
            event::BRIDGE_CHANGE,
            json!({ "present": true, "version": version }),
        ),
        Notice::Bridge { present: false, .. } => {
            qmp::event(event::BRIDGE_CHANGE, json!({ "present": false }))
        }
        Notice::Mode(mode) => qmp::event(event::MODE_CHANGE, json!({ "mode": mode.name() })),
    }
}

/// How often clients hear of each event kind whose rate the guest controls, as QEMU's monitor
/// limits guest-triggerable events: the first change goes out at once, later ones within the
/// interval are held, and the newest held state goes out when the interval ends.
#[derive(Debug, Default)]
pub struct EventThrottle {
    /// When each kind was last sent, and what.
    sent: [Option<(Instant, Notice)>; NoticeKind::COUNT],
    held: Latest<Notice>,
}

impl EventThrottle {
    pub const INTERVAL: Duration = Duration::from_millis(GUEST_EVENT_INTERVAL_MS);

    /// Whether `notice` goes to clients now. A notice that only repeats what clients were last
    /// told is dropped, together with anything held of its kind: the newest state is known.
    pub fn offer(&mut self, notice: Notice, now: Instant) -> Option<Notice> {
        let kind = notice.kind();
        let last = self.sent[kind.index()];
        if last.is_some_and(|(_, told)| told == notice) {
            self.held.remove(kind);
            return None;
        }
        if kind.guest_controlled() && last.is_some_and(|(at, _)| now < at + Self::INTERVAL) {
            self.held.put(kind, notice);
            return None;
        }
        self.sent[kind.index()] = Some((now, notice));
        Some(notice)
    }

    /// Held notices whose interval has ended, oldest first.
    pub fn release_due(&mut self, now: Instant) -> Vec<Notice> {
        let mut due = Vec::new();
        for notice in self.held.take_in_order().collect::<Vec<_>>() {
            let kind = notice.kind();
            match self.sent[kind.index()] {
                Some((at, _)) if now < at + Self::INTERVAL => self.held.put(kind, notice),
                _ => {
                    self.sent[kind.index()] = Some((now, notice));
                    due.push(notice);
                }
            }
        }
        due
    }

    /// When the next held notice is due, if any is held.
    pub fn deadline(&self) -> Option<Instant> {
        self.held
            .iter()
            .filter_map(|notice| self.sent[notice.kind().index()])
            .map(|(at, _)| at + Self::INTERVAL)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge(present: bool) -> Notice {
        Notice::Bridge {
            present,
            version: 1,
        }
    }

    #[test]
    fn guest_controlled_kinds_go_out_once_per_interval_with_the_newest_state() {
        let t0 = Instant::now();
        let mut t = EventThrottle::default();
        assert_eq!(t.offer(bridge(true), t0), Some(bridge(true)));
        let mut now = t0;
        for i in 0..1000 {
            now += Duration::from_micros(500);
            assert_eq!(t.offer(bridge(i % 2 == 0), now), None, "held");
        }
        // The frontend is the host's: never held.
        let frontend = Notice::Frontend { connected: false };
        assert_eq!(t.offer(frontend, now), Some(frontend));
        assert_eq!(t.deadline(), Some(t0 + EventThrottle::INTERVAL));
        assert!(t.release_due(now).is_empty(), "not yet");
        let end = t0 + EventThrottle::INTERVAL;
        assert_eq!(t.release_due(end), [bridge(false)], "the newest state");
        assert_eq!(t.deadline(), None);
        // Back where clients last heard: nothing to say, and nothing left held.
        assert_eq!(t.offer(bridge(true), end), None);
        assert_eq!(t.offer(bridge(false), end), None, "repeats what was sent");
        assert_eq!(t.deadline(), None);
        let later = end + EventThrottle::INTERVAL;
        assert_eq!(t.offer(bridge(true), later), Some(bridge(true)));
    }
}
