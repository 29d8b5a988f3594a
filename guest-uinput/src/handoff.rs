//! The layout hand-off: who maps positions onto the desktop, the bridge or the device itself.
//!
//! In desktop mode the bridge tells each pvmouse device its layout over the status queue
//! (spec/pvmouse.md §6.1). Once the device answers that the layout is in force, the bridge lets
//! go of it: the display server reads the device directly and no guest process handles any
//! event. That is the whole point: the bridge was a second hop for every event.
//!
//! The handshake, for one device. Pure: it says what to do ([`Action`]) and the reader in
//! [`crate::daemon`] does it, so every path is tested here without a device.
//!
//! - The bridge starts by clearing: the device may still be in desktop coordinates from a
//!   bridge that died, so motion is dropped until the device confirms per-display positions.
//! - To hand the layout off, it sends it while it still holds the device and maps. The device's
//!   answer comes last in its frame, so everything before it was per display; after
//!   [`Acknowledgement::Applied`] the device holds everything back until the bridge, having
//!   released its buttons and the device, says [`StatusMessage::Released`]. Nothing is lost and
//!   nothing is mapped twice.
//! - A new layout after the hand-off is sent without grabbing: the display server keeps reading.
//! - To map again (per-display mode, or a layout the message cannot carry), the bridge grabs
//!   first, then clears, and drops motion until the device confirms.
//! - Answers that do not come are asked again [`ATTEMPTS`] times; then the bridge maps, as it
//!   must for a device that predates this protocol.

use std::time::{Duration, Instant};

use pvmouse_spec::evdev::EV_ABS;
use pvmouse_spec::layout::Layout;
use pvmouse_spec::status::{Acknowledgement, StatusMessage, encode_layout};

/// How long to wait for the device's answer before asking again.
pub const RETRY: Duration = Duration::from_millis(200);
/// How often to ask before giving up on the device answering.
pub const ATTEMPTS: u32 = 5;

/// What the bridge wants, the same for every device: set by the main loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// The device maps, over this layout.
    HandOff(Layout),
    /// The bridge maps (per-display mode, `--map-in-bridge`, or while exiting).
    Map,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for [`Acknowledgement::Cleared`]: positions may be in either coordinates, so
    /// motion is dropped. The bridge holds the device.
    Clearing,
    /// Per-display positions; the bridge holds the device and maps them.
    Mapping,
    /// A layout was offered. Held (`grabbed`): per-display positions, mapped, until the answer.
    /// Not held: the device is already in desktop coordinates and the bridge only listens.
    Offering { grabbed: bool },
    /// The device maps; the bridge has let go of it and reads nothing.
    HandedOff,
}

/// What to do with one event from the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Feed it to the mapper.
    Map,
    /// Motion in coordinates that are not known: drop it. Buttons and wheels still map.
    DropMotion,
    /// The display server reads the device itself: do nothing.
    Ignore,
}

impl Disposition {
    /// Whether an event of this type goes to the mapper.
    pub fn feeds(self, kind: u16) -> bool {
        match self {
            Disposition::Map => true,
            Disposition::DropMotion => kind != EV_ABS,
            Disposition::Ignore => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Grab,
    Ungrab,
    /// Write these status values into the device, in order.
    Send(Vec<i32>),
    /// Release the buttons the bridge's pointers hold: the display server is about to read the
    /// device itself.
    ReleaseButtons,
    /// Take the device's current state (EVIOCGABS, EVIOCGKEY) into the mapper: the positions are
    /// per display again.
    Sync,
}

#[derive(Debug)]
pub struct Handoff {
    phase: Phase,
    want: Want,
    /// The tag of the message whose answer is awaited.
    tag: u8,
    sent: Instant,
    attempts: u32,
    /// The device never answered: map, and stop asking until the bridge wants something new.
    unanswered: bool,
}

impl Handoff {
    /// A device just grabbed: clear first. Returns the handshake and what to send.
    pub fn attach(want: Want, now: Instant) -> (Self, Vec<Action>) {
        let mut o = Self {
            phase: Phase::Clearing,
            want,
            tag: 0,
            sent: now,
            attempts: 0,
            unanswered: false,
        };
        let actions = vec![o.ask_clear(now)];
        (o, actions)
    }

    pub fn disposition(&self) -> Disposition {
        match self.phase {
            Phase::Clearing => Disposition::DropMotion,
            Phase::Mapping | Phase::Offering { grabbed: true } => Disposition::Map,
            Phase::Offering { grabbed: false } | Phase::HandedOff => Disposition::Ignore,
        }
    }

    /// Whether the reader should stop reading: the device maps and nothing is awaited.
    pub fn parked(&self) -> bool {
        self.phase == Phase::HandedOff
    }

    /// When to ask again, if an answer is awaited.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Clearing | Phase::Offering { .. } => Some(self.sent + RETRY),
            Phase::Mapping | Phase::HandedOff => None,
        }
    }

    /// The bridge wants something (maybe new).
    pub fn steer(&mut self, want: Want, now: Instant) -> Vec<Action> {
        if want == self.want && matches!(self.phase, Phase::HandedOff | Phase::Mapping) {
            // A reload that changed nothing: no need to trouble the device.
            return Vec::new();
        }
        if want != self.want {
            self.unanswered = false;
        }
        self.want = want;
        self.attempts = 0;
        self.pursue(now)
    }

    /// Moves toward what is wanted from a settled phase. Mid-handshake, the answer decides.
    fn pursue(&mut self, now: Instant) -> Vec<Action> {
        match (&self.want, self.phase) {
            (Want::HandOff(_), Phase::Mapping) if !self.unanswered => self.offer(true, now),
            (Want::HandOff(_), Phase::HandedOff | Phase::Offering { grabbed: false }) => {
                self.offer(false, now)
            }
            (Want::Map, Phase::HandedOff | Phase::Offering { grabbed: false }) => {
                self.phase = Phase::Clearing;
                vec![Action::Grab, self.ask_clear(now)]
            }
            (Want::Map, Phase::Offering { grabbed: true }) => {
                // The offer may still be applied: clear it, whatever happens.
                self.phase = Phase::Clearing;
                vec![self.ask_clear(now)]
            }
            // Waiting for an answer; it will pursue again.
            (_, Phase::Clearing) => Vec::new(),
            (Want::HandOff(_), Phase::Offering { grabbed: true }) => self.offer(true, now),
            (Want::HandOff(_), Phase::Mapping) | (Want::Map, Phase::Mapping) => Vec::new(),
        }
    }

    fn next_tag(&mut self, now: Instant) -> u8 {
        self.tag = self.tag.wrapping_add(1);
        self.sent = now;
        self.attempts += 1;
        self.tag
    }

    fn ask_clear(&mut self, now: Instant) -> Action {
        let tag = self.next_tag(now);
        Action::Send(vec![StatusMessage::LayoutClear { tag }.encode()])
    }

    fn offer(&mut self, grabbed: bool, now: Instant) -> Vec<Action> {
        let Want::HandOff(layout) = &self.want else {
            return Vec::new();
        };
        let tag = self.tag.wrapping_add(1);
        match encode_layout(layout, tag) {
            Ok(values) => {
                self.next_tag(now);
                self.phase = Phase::Offering { grabbed };
                vec![Action::Send(values)]
            }
            Err(e) => {
                tracing::info!("the device cannot take this layout ({e}); the bridge maps");
                self.want = Want::Map;
                self.pursue(now)
            }
        }
    }

    /// The device answered (an `MSC_RAW` value from the event stream).
    pub fn on_answer(&mut self, ack: Acknowledgement, now: Instant) -> Vec<Action> {
        match (ack, self.phase) {
            (Acknowledgement::Applied { tag }, Phase::Offering { grabbed }) if tag == self.tag => {
                self.phase = Phase::HandedOff;
                let released = vec![Action::Send(vec![StatusMessage::Released { tag }.encode()])];
                if grabbed {
                    [vec![Action::ReleaseButtons, Action::Ungrab], released].concat()
                } else {
                    released
                }
            }
            (Acknowledgement::Refused { tag }, Phase::Offering { grabbed }) if tag == self.tag => {
                self.retry_offer(grabbed, now)
            }
            (Acknowledgement::Cleared { tag }, Phase::Clearing) if tag == self.tag => {
                self.phase = Phase::Mapping;
                self.attempts = 0;
                [vec![Action::Sync], self.pursue(now)].concat()
            }
            // An answer to an earlier attempt, or to nothing asked: the awaited one decides.
            _ => Vec::new(),
        }
    }

    fn retry_offer(&mut self, grabbed: bool, now: Instant) -> Vec<Action> {
        if self.attempts < ATTEMPTS {
            return self.offer(grabbed, now);
        }
        tracing::warn!(
            attempts = self.attempts,
            "the device does not take the layout; the bridge maps"
        );
        self.unanswered = true;
        if grabbed {
            // The device never applied it: it is still per display.
            self.phase = Phase::Mapping;
            Vec::new()
        } else {
            self.phase = Phase::Clearing;
            self.attempts = 0;
            vec![Action::Grab, self.ask_clear(now)]
        }
    }

    /// No answer in time: ask again, or give up.
    pub fn on_timeout(&mut self, now: Instant) -> Vec<Action> {
        if self.deadline().is_none_or(|d| now < d) {
            return Vec::new();
        }
        match self.phase {
            Phase::Clearing if self.attempts < ATTEMPTS => vec![self.ask_clear(now)],
            Phase::Clearing => {
                // A device that predates the protocol: it never left per-display positions.
                tracing::warn!("the device does not answer layout messages; the bridge maps");
                self.unanswered = true;
                self.phase = Phase::Mapping;
                self.attempts = 0;
                vec![Action::Sync]
            }
            Phase::Offering { grabbed } => self.retry_offer(grabbed, now),
            Phase::Mapping | Phase::HandedOff => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvmouse_spec::status::{LayoutEvent, LayoutReceiver};

    fn layout() -> Layout {
        use crate::layout::ParseLayout;
        Layout::parse_spec("0=1024x768@0,0,1=1280x1024@1024,0").unwrap()
    }

    /// Plays the device: what the actions send, through the real receiver.
    fn device_hears(actions: &[Action]) -> Vec<LayoutEvent> {
        let mut r = LayoutReceiver::default();
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(v) => Some(v.clone()),
                _ => None,
            })
            .flatten()
            .filter_map(|v| r.feed(v))
            .collect()
    }

    fn tag_of(events: &[LayoutEvent]) -> u8 {
        match events.last() {
            Some(
                LayoutEvent::Layout { tag, .. }
                | LayoutEvent::Clear { tag }
                | LayoutEvent::Released { tag }
                | LayoutEvent::Refused { tag, .. },
            ) => *tag,
            None => panic!("nothing sent"),
        }
    }

    #[test]
    fn attach_clears_then_offers_then_lets_go_only_after_the_answer() {
        let t = Instant::now();
        let (mut o, actions) = Handoff::attach(Want::HandOff(layout()), t);
        let heard = device_hears(&actions);
        assert!(matches!(heard.as_slice(), [LayoutEvent::Clear { .. }]));
        assert_eq!(o.disposition(), Disposition::DropMotion);
        let actions = o.on_answer(
            Acknowledgement::Cleared {
                tag: tag_of(&heard),
            },
            t,
        );
        assert_eq!(actions[0], Action::Sync);
        let heard = device_hears(&actions);
        assert!(matches!(heard.as_slice(), [LayoutEvent::Layout { .. }]));
        assert_eq!(
            o.disposition(),
            Disposition::Map,
            "mapping until the answer"
        );
        assert!(!o.parked());
        let tag = tag_of(&heard);
        assert!(
            o.on_answer(
                Acknowledgement::Applied {
                    tag: tag.wrapping_add(1)
                },
                t
            )
            .is_empty()
        );
        let actions = o.on_answer(Acknowledgement::Applied { tag }, t);
        assert_eq!(actions[..2], [Action::ReleaseButtons, Action::Ungrab]);
        assert_eq!(device_hears(&actions), [LayoutEvent::Released { tag }]);
        assert!(o.parked());
        assert_eq!(o.disposition(), Disposition::Ignore);
        assert_eq!(o.deadline(), None, "nothing awaited, nothing polled");
    }

    #[test]
    fn a_new_layout_while_handed_off_is_offered_without_grabbing_and_per_display_grabs_first() {
        let t = Instant::now();
        let (mut o, a) = Handoff::attach(Want::HandOff(layout()), t);
        let a = o.on_answer(
            Acknowledgement::Cleared {
                tag: tag_of(&device_hears(&a)),
            },
            t,
        );
        let tag = tag_of(&device_hears(&a));
        o.on_answer(Acknowledgement::Applied { tag }, t);
        use crate::layout::ParseLayout;
        let stacked = Layout::parse_spec("0=1024x768@0,0,1=1280x1024@0,768").unwrap();
        let a = o.steer(Want::HandOff(stacked.clone()), t);
        assert!(!a.contains(&Action::Grab));
        let heard = device_hears(&a);
        assert!(matches!(&heard[..], [LayoutEvent::Layout { layout, .. }] if *layout == stacked));
        assert_eq!(o.disposition(), Disposition::Ignore);
        assert!(!o.parked(), "listening for the answer");
        let a = o.on_answer(
            Acknowledgement::Applied {
                tag: tag_of(&heard),
            },
            t,
        );
        assert_eq!(a.len(), 1, "only the release message: {a:?}");
        assert!(o.parked());
        let a = o.steer(Want::Map, t);
        assert_eq!(
            a[0],
            Action::Grab,
            "grab before the device changes coordinates"
        );
        let heard = device_hears(&a);
        assert!(matches!(heard.as_slice(), [LayoutEvent::Clear { .. }]));
        assert_eq!(o.disposition(), Disposition::DropMotion);
        let a = o.on_answer(
            Acknowledgement::Cleared {
                tag: tag_of(&heard),
            },
            t,
        );
        assert_eq!(a, [Action::Sync]);
        assert_eq!(o.disposition(), Disposition::Map);
    }

    #[test]
    fn a_device_that_never_answers_is_mapped_by_the_bridge_after_the_retries() {
        let mut t = Instant::now();
        let (mut o, _) = Handoff::attach(Want::HandOff(layout()), t);
        let mut sent = 1;
        loop {
            t += RETRY;
            let a = o.on_timeout(t);
            if a == [Action::Sync] {
                break;
            }
            assert_eq!(device_hears(&a).len(), 1);
            sent += 1;
            assert!(sent <= ATTEMPTS, "gives up in time");
        }
        assert_eq!(o.disposition(), Disposition::Map);
        assert_eq!(o.deadline(), None, "and stops asking");
        assert!(o.on_timeout(t + RETRY * 10).is_empty());
    }

    #[test]
    fn refused_offers_are_retried_then_the_bridge_keeps_mapping() {
        let t = Instant::now();
        let (mut o, a) = Handoff::attach(Want::HandOff(layout()), t);
        let mut a = o.on_answer(
            Acknowledgement::Cleared {
                tag: tag_of(&device_hears(&a)),
            },
            t,
        );
        for _ in 0..ATTEMPTS {
            let tag = tag_of(&device_hears(&a));
            a = o.on_answer(Acknowledgement::Refused { tag }, t);
        }
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(o.disposition(), Disposition::Map);
        assert!(!o.parked());
        // Something new to offer is tried again.
        use crate::layout::ParseLayout;
        let other = Layout::parse_spec("0=800x600@0,0").unwrap();
        assert_eq!(device_hears(&o.steer(Want::HandOff(other), t)).len(), 1);
    }

    #[test]
    fn only_motion_is_dropped_while_clearing_and_nothing_is_fed_once_handed_off() {
        use pvmouse_spec::evdev::{EV_KEY, EV_REL, EV_SYN};
        for kind in [EV_SYN, EV_KEY, EV_REL, EV_ABS] {
            assert!(Disposition::Map.feeds(kind), "{kind}");
            assert_eq!(
                Disposition::DropMotion.feeds(kind),
                kind != EV_ABS,
                "{kind}"
            );
            assert!(!Disposition::Ignore.feeds(kind), "{kind}");
        }
    }

    #[test]
    fn a_layout_the_message_cannot_carry_is_mapped_by_the_bridge() {
        use crate::layout::ParseLayout;
        let far = Layout::parse_spec("0=100x100@40000,0").unwrap();
        let t = Instant::now();
        let (mut o, a) = Handoff::attach(Want::HandOff(far), t);
        let a = o.on_answer(
            Acknowledgement::Cleared {
                tag: tag_of(&device_hears(&a)),
            },
            t,
        );
        assert_eq!(a, [Action::Sync]);
        assert_eq!(o.disposition(), Disposition::Map);
    }
}
