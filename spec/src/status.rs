//! Guest→host messages on the status queue.
//!
//! The guest bridge writes `EV_MSC`/[`STATUS_MSC_CODE`](crate::profile::STATUS_MSC_CODE) events
//! into the pvmouse evdev node; Linux's virtio_input forwards them to the status queue. The value
//! carries a magic, a message kind and the bridge's protocol version. Any other status event is
//! consumed and ignored by the device. A desktop layout travels as a run of values, and the device
//! answers on the event queue ([`Acknowledgement`]); `spec/pvmouse.md` §6.1 has the protocol.

use std::collections::BTreeMap;

use crate::layout::{Display, Layout, Rect, Scale, Transform};
use crate::profile::MAX_DISPLAYS;

/// High 16 bits of every pvmouse status value: ASCII "PV".
pub const MAGIC: u16 = 0x5056;

/// The bridge protocol version this crate describes.
pub const BRIDGE_PROTOCOL_VERSION: u8 = 1;

/// The bridge sends [`StatusMessage::BridgePresent`] at least this often while it runs.
pub const HEARTBEAT_INTERVAL_MS: u64 = 500;

/// The device declares the bridge gone after this long without a heartbeat.
pub const PRESENCE_TIMEOUT_MS: u64 = 1500;

const KIND_GONE: u8 = 0x00;
const KIND_PRESENT: u8 = 0x01;
const KIND_LAYOUT: u8 = 0x02;
const KIND_LAYOUT_END: u8 = 0x03;
const KIND_LAYOUT_CLEAR: u8 = 0x04;
const KIND_RELEASED: u8 = 0x05;
const KIND_LAYOUT_SCALED: u8 = 0x06;
const KIND_APPLIED: u8 = 0x82;
const KIND_REFUSED: u8 = 0x83;
const KIND_CLEARED: u8 = 0x84;

/// A pvmouse status value: the magic, a kind and one byte of argument.
const fn word(kind: u8, arg: u8) -> i32 {
    let [magic_hi, magic_lo] = MAGIC.to_be_bytes();
    i32::from_be_bytes([magic_hi, magic_lo, kind, arg])
}

/// The kind and argument of a value that carries the magic.
const fn unword(value: i32) -> Option<(u8, u8)> {
    let [magic_hi, magic_lo, kind, arg] = value.to_be_bytes();
    if u16::from_be_bytes([magic_hi, magic_lo]) != MAGIC {
        return None;
    }
    Some((kind, arg))
}

/// A guest→device message that fits one status value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMessage {
    /// Heartbeat: a bridge has grabbed the device and is running.
    BridgePresent { version: u8 },
    /// The bridge is releasing the device and exiting.
    BridgeGone,
    /// A desktop layout of this many displays follows (§6.1): [`WORDS_PER_DISPLAY`] data values
    /// per display, or [`WORDS_PER_SCALED_DISPLAY`] when `scaled` (each display's exact scale
    /// follows its other fields), then [`StatusMessage::LayoutEnd`].
    LayoutBegin { displays: u8, scaled: bool },
    /// Ends a layout; the device answers [`Acknowledgement::Applied`] or
    /// [`Acknowledgement::Refused`] with the same tag.
    LayoutEnd { tag: u8 },
    /// Back to positions per display; answered by [`Acknowledgement::Cleared`].
    LayoutClear { tag: u8 },
    /// The bridge has let go of the device after [`Acknowledgement::Applied`]: the device may
    /// deliver again.
    Released { tag: u8 },
}

impl StatusMessage {
    pub const fn encode(self) -> i32 {
        let (kind, arg) = match self {
            StatusMessage::BridgePresent { version } => (KIND_PRESENT, version),
            StatusMessage::BridgeGone => (KIND_GONE, 0),
            StatusMessage::LayoutBegin {
                displays,
                scaled: false,
            } => (KIND_LAYOUT, displays),
            StatusMessage::LayoutBegin {
                displays,
                scaled: true,
            } => (KIND_LAYOUT_SCALED, displays),
            StatusMessage::LayoutEnd { tag } => (KIND_LAYOUT_END, tag),
            StatusMessage::LayoutClear { tag } => (KIND_LAYOUT_CLEAR, tag),
            StatusMessage::Released { tag } => (KIND_RELEASED, tag),
        };
        word(kind, arg)
    }

    /// Returns `None` for any value that is not a pvmouse status message.
    pub const fn decode(value: i32) -> Option<Self> {
        let Some((kind, arg)) = unword(value) else {
            return None;
        };
        match kind {
            KIND_PRESENT => Some(StatusMessage::BridgePresent { version: arg }),
            KIND_GONE => Some(StatusMessage::BridgeGone),
            KIND_LAYOUT => Some(StatusMessage::LayoutBegin {
                displays: arg,
                scaled: false,
            }),
            KIND_LAYOUT_SCALED => Some(StatusMessage::LayoutBegin {
                displays: arg,
                scaled: true,
            }),
            KIND_LAYOUT_END => Some(StatusMessage::LayoutEnd { tag: arg }),
            KIND_LAYOUT_CLEAR => Some(StatusMessage::LayoutClear { tag: arg }),
            KIND_RELEASED => Some(StatusMessage::Released { tag: arg }),
            _ => None,
        }
    }
}

/// The device's answer to a layout message. It travels the other way, as an `EV_MSC`/`MSC_RAW`
/// event on the event queue, last in its frame: everything before it in the stream is in the
/// old coordinates, everything after in the new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledgement {
    /// The layout is in force. The device delivers nothing more until the bridge sends
    /// [`StatusMessage::Released`], or [`RELEASE_TIMEOUT_MS`] pass.
    Applied { tag: u8 },
    /// The layout was malformed, incomplete or does not fit this device; nothing changed.
    Refused { tag: u8 },
    /// Positions are per display again.
    Cleared { tag: u8 },
}

impl Acknowledgement {
    pub const fn encode(self) -> i32 {
        let (kind, tag) = match self {
            Acknowledgement::Applied { tag } => (KIND_APPLIED, tag),
            Acknowledgement::Refused { tag } => (KIND_REFUSED, tag),
            Acknowledgement::Cleared { tag } => (KIND_CLEARED, tag),
        };
        word(kind, tag)
    }

    pub const fn decode(value: i32) -> Option<Self> {
        let Some((kind, tag)) = unword(value) else {
            return None;
        };
        match kind {
            KIND_APPLIED => Some(Acknowledgement::Applied { tag }),
            KIND_REFUSED => Some(Acknowledgement::Refused { tag }),
            KIND_CLEARED => Some(Acknowledgement::Cleared { tag }),
            _ => None,
        }
    }
}

/// How long the device holds input for a bridge that was told [`Acknowledgement::Applied`]
/// and has not yet said [`StatusMessage::Released`].
pub const RELEASE_TIMEOUT_MS: u64 = 250;

/// Data values that describe one display of a layout.
pub const WORDS_PER_DISPLAY: usize = 7;

/// Data values that describe one display of a layout with exact scales: the seven above, then
/// the scale's framebuffer and logical terms (both 0 for a display with no exact scale).
pub const WORDS_PER_SCALED_DISPLAY: usize = WORDS_PER_DISPLAY + 2;

/// The most data values a layout can have.
pub const MAX_LAYOUT_WORDS: usize = MAX_DISPLAYS as usize * WORDS_PER_SCALED_DISPLAY;

/// A data value: a zero top byte (so never the magic), its index in the message, and 16 bits.
fn data_word(index: usize, payload: u16) -> i32 {
    let [hi, lo] = payload.to_be_bytes();
    // MAX_LAYOUT_WORDS is below 256, so the index fits its byte.
    i32::from_be_bytes([0, u8::try_from(index).unwrap_or(u8::MAX), hi, lo])
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutWireError {
    #[error("display {0}: {1} does not fit the layout message")]
    DoesNotFit(u8, &'static str),
    #[error("a layout message has {0} displays; 1 to {MAX_DISPLAYS} fit")]
    Count(usize),
    #[error("the layout message ended early: values were lost on the way")]
    Incomplete,
    #[error("display entry {0} is malformed: {1}")]
    Malformed(usize, &'static str),
    #[error("{0}")]
    Invalid(String),
}

/// The whole message for `layout`, in the order to write it: begin, seven data values per
/// display (nine, and the scaled begin, when a display has an exact scale), end. A layout with
/// no exact scale is the message devices before exact scales understand. Fails for a layout the
/// message cannot carry (positions beyond ±32767, sizes beyond 65535); the bridge then maps
/// positions itself.
pub fn encode_layout(layout: &Layout, tag: u8) -> Result<Vec<i32>, LayoutWireError> {
    let count = layout.displays().count();
    let displays = u8::try_from(count)
        .ok()
        .filter(|n| (1..=MAX_DISPLAYS).contains(&u32::from(*n)))
        .ok_or(LayoutWireError::Count(count))?;
    let scaled = layout.displays().any(|(_, d)| d.scale.is_some());
    let mut payload = Vec::with_capacity(count * WORDS_PER_SCALED_DISPLAY);
    for (id, d) in layout.displays() {
        let size =
            |v: u32, what| u16::try_from(v).map_err(|_| LayoutWireError::DoesNotFit(id, what));
        let place = |v: i32, what| {
            i16::try_from(v)
                .map(|v| u16::from_be_bytes(v.to_be_bytes()))
                .map_err(|_| LayoutWireError::DoesNotFit(id, what))
        };
        payload.extend([
            u16::from_be_bytes([id, d.transform.to_wayland()]),
            size(d.framebuffer.0, "framebuffer width")?,
            size(d.framebuffer.1, "framebuffer height")?,
            place(d.logical.x, "x")?,
            place(d.logical.y, "y")?,
            size(d.logical.width, "width")?,
            size(d.logical.height, "height")?,
        ]);
        if scaled {
            let s = d.scale.map_or((0, 0), |s| (s.framebuffer, s.logical));
            payload.extend([s.0, s.1]);
        }
    }
    let mut out = Vec::with_capacity(payload.len() + 2);
    out.push(StatusMessage::LayoutBegin { displays, scaled }.encode());
    out.extend(payload.iter().enumerate().map(|(i, p)| data_word(i, *p)));
    out.push(StatusMessage::LayoutEnd { tag }.encode());
    Ok(out)
}

/// What a run of status values amounts to, once it is complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutEvent {
    Layout { layout: Layout, tag: u8 },
    Refused { tag: u8, why: LayoutWireError },
    Clear { tag: u8 },
    Released { tag: u8 },
}

/// Reassembles layout messages from status values, one value at a time, in fixed memory: the
/// device's parser for what the guest writes, so it takes any sequence of values without
/// panicking. Every data value carries its index, so a value lost or repeated on the way ends
/// the message (refused at its end), and a begin always starts afresh. Heartbeats may come in
/// between; any other pvmouse message abandons a message in progress.
#[derive(Debug, Clone)]
pub struct LayoutReceiver {
    /// Data values the message in progress has; 0 when none is.
    expected: usize,
    len: usize,
    /// A value was lost or out of order: the message will be refused at its end.
    broken: bool,
    /// The message in progress gives each display's exact scale.
    scaled: bool,
    payload: [u16; MAX_LAYOUT_WORDS],
}

impl Default for LayoutReceiver {
    fn default() -> Self {
        Self {
            expected: 0,
            len: 0,
            broken: false,
            scaled: false,
            payload: [0; MAX_LAYOUT_WORDS],
        }
    }
}

impl LayoutReceiver {
    /// Feeds one status value (the `MSC_RAW` event's value).
    pub fn feed(&mut self, value: i32) -> Option<LayoutEvent> {
        let [top, index, hi, lo] = value.to_be_bytes();
        if top == 0 {
            if self.expected > 0 && !self.broken && usize::from(index) == self.len {
                if let Some(slot) = self.payload.get_mut(self.len) {
                    *slot = u16::from_be_bytes([hi, lo]);
                    self.len += 1;
                    return None;
                }
            }
            self.broken = true;
            return None;
        }
        let message = StatusMessage::decode(value)?;
        let collecting = self.expected > 0;
        let event = match message {
            StatusMessage::BridgePresent { .. } => return None,
            StatusMessage::LayoutBegin { displays, scaled } => {
                let n = usize::from(displays);
                self.abandon();
                if (1..=MAX_DISPLAYS as usize).contains(&n) {
                    self.scaled = scaled;
                    self.expected = n * words_per_display(scaled);
                }
                return None;
            }
            StatusMessage::LayoutEnd { tag } if collecting => {
                let result = if self.broken || self.len != self.expected {
                    Err(LayoutWireError::Incomplete)
                } else {
                    decode_layout(
                        self.payload.get(..self.len).unwrap_or_default(),
                        self.scaled,
                    )
                };
                Some(match result {
                    Ok(layout) => LayoutEvent::Layout { layout, tag },
                    Err(why) => LayoutEvent::Refused { tag, why },
                })
            }
            StatusMessage::LayoutEnd { tag } => Some(LayoutEvent::Refused {
                tag,
                why: LayoutWireError::Incomplete,
            }),
            StatusMessage::LayoutClear { tag } => Some(LayoutEvent::Clear { tag }),
            StatusMessage::Released { tag } => Some(LayoutEvent::Released { tag }),
            StatusMessage::BridgeGone => None,
        };
        self.abandon();
        event
    }

    fn abandon(&mut self) {
        self.expected = 0;
        self.len = 0;
        self.broken = false;
        self.scaled = false;
    }
}

const fn words_per_display(scaled: bool) -> usize {
    if scaled {
        WORDS_PER_SCALED_DISPLAY
    } else {
        WORDS_PER_DISPLAY
    }
}

/// The data values of one whole message, in order.
fn decode_layout(payload: &[u16], scaled: bool) -> Result<Layout, LayoutWireError> {
    let mut displays = BTreeMap::new();
    for (i, entry) in payload.chunks_exact(words_per_display(scaled)).enumerate() {
        let (&[head, fw, fh, x, y, w, h], rest) = entry.split_at(WORDS_PER_DISPLAY) else {
            return Err(LayoutWireError::Incomplete);
        };
        let scale = match *rest {
            [] | [0, 0] => None,
            [f, l] => Some(Scale::new(f, l).ok_or(LayoutWireError::Malformed(i, "a zero scale"))?),
            _ => return Err(LayoutWireError::Incomplete),
        };
        let [id, transform] = head.to_be_bytes();
        let transform = Transform::from_wayland(transform)
            .ok_or(LayoutWireError::Malformed(i, "no such transform"))?;
        let signed = |v: u16| i32::from(i16::from_be_bytes(v.to_be_bytes()));
        let display = Display {
            logical: Rect {
                x: signed(x),
                y: signed(y),
                width: u32::from(w),
                height: u32::from(h),
            },
            framebuffer: (u32::from(fw), u32::from(fh)),
            transform,
            name: None,
            scale,
        };
        if displays.insert(id, display).is_some() {
            return Err(LayoutWireError::Malformed(i, "the display is given twice"));
        }
    }
    Layout::with_displays(displays).map_err(LayoutWireError::Invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_values() {
        for m in [
            StatusMessage::BridgePresent { version: 1 },
            StatusMessage::BridgePresent { version: 200 },
            StatusMessage::BridgeGone,
        ] {
            assert_eq!(StatusMessage::decode(m.encode()), Some(m));
        }
        assert_eq!(
            StatusMessage::BridgePresent { version: 1 }.encode(),
            0x5056_0101
        );
        assert_eq!(StatusMessage::decode(0), None);
        assert_eq!(StatusMessage::decode(0x5056_0701), None);
        assert_eq!(StatusMessage::decode(-1), None);
    }

    fn two() -> Layout {
        let d = |x, w, h, fb: (u32, u32), t| Display {
            logical: Rect {
                x,
                y: -5,
                width: w,
                height: h,
            },
            framebuffer: fb,
            transform: t,
            name: None,
            scale: None,
        };
        Layout::with_displays(BTreeMap::from([
            (0, d(0, 1024, 768, (1024, 768), Transform::Normal)),
            (3, d(1024, 512, 640, (1280, 1024), Transform::Rotate90)),
        ]))
        .unwrap()
    }

    fn receive(values: &[i32]) -> Vec<LayoutEvent> {
        let mut r = LayoutReceiver::default();
        values.iter().filter_map(|v| r.feed(*v)).collect()
    }

    #[test]
    fn a_layout_survives_the_trip_through_status_values() {
        let layout = two();
        let words = encode_layout(&layout, 7).unwrap();
        assert_eq!(words.len(), 2 * WORDS_PER_DISPLAY + 2);
        assert_eq!(
            receive(&words),
            vec![LayoutEvent::Layout { layout, tag: 7 }]
        );
        for t in 0..8 {
            assert_eq!(Transform::from_wayland(t).unwrap().to_wayland(), t);
        }
    }

    #[test]
    fn exact_scales_travel_after_a_scaled_begin_and_only_when_they_matter() {
        let mut displays: BTreeMap<u8, Display> =
            two().displays().map(|(id, d)| (id, d.clone())).collect();
        // Turned: a 1280x1024 framebuffer at 1.5 is 682x853 logical pixels.
        if let Some(d) = displays.get_mut(&3) {
            d.logical.width = 682;
            d.logical.height = 853;
            d.scale = Scale::new(3, 2);
        }
        let scaled = Layout::with_displays(displays).unwrap();
        let words = encode_layout(&scaled, 4).unwrap();
        assert_eq!(words.len(), 2 * WORDS_PER_SCALED_DISPLAY + 2);
        assert_eq!(
            StatusMessage::decode(words[0]),
            Some(StatusMessage::LayoutBegin {
                displays: 2,
                scaled: true
            })
        );
        assert_eq!(
            receive(&words),
            vec![LayoutEvent::Layout {
                layout: scaled,
                tag: 4
            }]
        );
        // A receiver that knows no scaled begin (format 1's) refuses the message at its end.
        let mut old = words.clone();
        old[0] = 0x5056_0601;
        assert!(matches!(
            receive(&old[1..]).as_slice(),
            [LayoutEvent::Refused { tag: 4, .. }]
        ));
        // A zero term is malformed: the second display's framebuffer term.
        let mut zero = words.clone();
        let at = WORDS_PER_SCALED_DISPLAY + WORDS_PER_DISPLAY;
        zero[1 + at] = data_word(at, 0);
        assert!(matches!(
            receive(&zero).as_slice(),
            [LayoutEvent::Refused { tag: 4, .. }]
        ));
        // Without a scale that differs from the ratio, the plain message.
        assert_eq!(
            StatusMessage::decode(encode_layout(&two(), 4).unwrap()[0]),
            Some(StatusMessage::LayoutBegin {
                displays: 2,
                scaled: false
            })
        );
    }

    #[test]
    fn a_lost_repeated_or_foreign_value_refuses_the_layout_and_the_next_one_works() {
        let words = encode_layout(&two(), 1).unwrap();
        let refused = |v: Vec<i32>| {
            let got = receive(&v);
            assert!(
                matches!(got.as_slice(), [LayoutEvent::Refused { tag: 1, .. }]),
                "{got:?}"
            );
        };
        for i in 1..words.len() - 1 {
            let mut lost = words.clone();
            lost.remove(i);
            refused(lost);
            let mut twice = words.clone();
            twice.insert(i, words[i]);
            refused(twice);
            let mut foreign = words.clone();
            foreign.insert(i, 0x0000_1234);
            refused(foreign);
            // A heartbeat in between is harmless.
            let mut beat = words.clone();
            beat.insert(i, StatusMessage::BridgePresent { version: 1 }.encode());
            assert!(matches!(
                receive(&beat).as_slice(),
                [LayoutEvent::Layout { tag: 1, .. }]
            ));
        }
        // Whatever came before, a whole message is understood.
        let mut r = LayoutReceiver::default();
        for v in [
            words[0],
            5,
            words[3],
            StatusMessage::LayoutBegin {
                displays: 200,
                scaled: false,
            }
            .encode(),
            -1,
        ] {
            r.feed(v);
        }
        let got: Vec<_> = words.iter().filter_map(|v| r.feed(*v)).collect();
        assert!(matches!(
            got.as_slice(),
            [LayoutEvent::Layout { tag: 1, .. }]
        ));
    }

    #[test]
    fn what_the_message_cannot_carry_is_an_error_not_a_wrap() {
        let far = Layout::new(BTreeMap::from([(
            0,
            Rect {
                x: 40000,
                y: 0,
                width: 10,
                height: 10,
            },
        )]))
        .unwrap();
        assert_eq!(
            encode_layout(&far, 0),
            Err(LayoutWireError::DoesNotFit(0, "x"))
        );
    }

    #[test]
    fn acknowledgements_round_trip_and_are_not_status_messages() {
        for a in [
            Acknowledgement::Applied { tag: 3 },
            Acknowledgement::Refused { tag: 255 },
            Acknowledgement::Cleared { tag: 0 },
        ] {
            assert_eq!(Acknowledgement::decode(a.encode()), Some(a));
            assert_eq!(StatusMessage::decode(a.encode()), None);
        }
        for m in [
            StatusMessage::LayoutBegin {
                displays: 2,
                scaled: false,
            },
            StatusMessage::LayoutBegin {
                displays: 2,
                scaled: true,
            },
            StatusMessage::LayoutEnd { tag: 9 },
            StatusMessage::LayoutClear { tag: 9 },
            StatusMessage::Released { tag: 9 },
        ] {
            assert_eq!(StatusMessage::decode(m.encode()), Some(m));
            assert_eq!(Acknowledgement::decode(m.encode()), None);
        }
    }
}
