//! Whether a guest bridge is running, from its heartbeats on the status queue.

use std::time::{Duration, Instant};

use pvmouse_spec::InputEvent;
use pvmouse_spec::evdev::EV_MSC;
use pvmouse_spec::profile::STATUS_MSC_CODE;
use pvmouse_spec::status::{PRESENCE_TIMEOUT_MS, StatusMessage};

pub const PRESENCE_TIMEOUT: Duration = Duration::from_millis(PRESENCE_TIMEOUT_MS);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceChange {
    Appeared { version: u8 },
    Disappeared,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct BridgePresence {
    version: Option<u8>,
    last_heartbeat: Option<Instant>,
}

impl BridgePresence {
    pub fn present(&self) -> bool {
        self.version.is_some()
    }

    pub fn version(&self) -> Option<u8> {
        self.version
    }

    /// Feeds one status-queue event. Anything that is not a pvmouse status message is ignored.
    pub fn on_status(&mut self, event: InputEvent, now: Instant) -> Option<PresenceChange> {
        if event.kind != EV_MSC || event.code != STATUS_MSC_CODE {
            return None;
        }
        match StatusMessage::decode(event.value)? {
            StatusMessage::BridgePresent { version } => {
                self.last_heartbeat = Some(now);
                let was = self.version.replace(version);
                (was != Some(version)).then_some(PresenceChange::Appeared { version })
            }
            StatusMessage::BridgeGone => self.forget(),
            // Layout messages are the layout receiver's.
            StatusMessage::LayoutBegin { .. }
            | StatusMessage::LayoutEnd { .. }
            | StatusMessage::LayoutClear { .. }
            | StatusMessage::Released { .. } => None,
        }
    }

    /// When the silence timer should next fire, if a bridge is present.
    pub fn deadline(&self) -> Option<Instant> {
        self.last_heartbeat
            .filter(|_| self.present())
            .map(|t| t + PRESENCE_TIMEOUT)
    }

    /// Declares the bridge gone if it has been silent for too long.
    pub fn check(&mut self, now: Instant) -> Option<PresenceChange> {
        match self.deadline() {
            Some(deadline) if now >= deadline => self.forget(),
            _ => None,
        }
    }

    /// The bridge is gone, or can no longer be heard (frontend disconnected).
    pub fn forget(&mut self) -> Option<PresenceChange> {
        self.last_heartbeat = None;
        self.version.take().map(|_| PresenceChange::Disappeared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvmouse_spec::evdev::MSC_RAW;

    fn msg(m: StatusMessage) -> InputEvent {
        InputEvent::new(EV_MSC, MSC_RAW, m.encode())
    }

    #[test]
    fn heartbeat_appears_once_then_times_out() {
        let t0 = Instant::now();
        let mut p = BridgePresence::default();
        let hb = msg(StatusMessage::BridgePresent { version: 1 });
        assert_eq!(
            p.on_status(hb, t0),
            Some(PresenceChange::Appeared { version: 1 })
        );
        assert_eq!(p.on_status(hb, t0 + Duration::from_millis(500)), None);
        assert_eq!(p.check(t0 + Duration::from_millis(1900)), None);
        assert_eq!(
            p.check(t0 + Duration::from_millis(2000)),
            Some(PresenceChange::Disappeared)
        );
        assert!(!p.present());
        assert_eq!(p.check(t0 + Duration::from_secs(10)), None);
    }

    #[test]
    fn goodbye_is_immediate_and_foreign_status_is_ignored() {
        let t0 = Instant::now();
        let mut p = BridgePresence::default();
        assert_eq!(
            p.on_status(InputEvent::new(0x11, 0, 1), t0),
            None,
            "LED event"
        );
        assert_eq!(p.on_status(InputEvent::new(EV_MSC, MSC_RAW, 7), t0), None);
        p.on_status(msg(StatusMessage::BridgePresent { version: 1 }), t0);
        assert_eq!(
            p.on_status(msg(StatusMessage::BridgeGone), t0),
            Some(PresenceChange::Disappeared)
        );
        assert_eq!(p.deadline(), None);
    }
}
