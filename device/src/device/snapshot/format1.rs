//! Format 1: the hand-written little-endian codec that workers before format 2 wrote. Kept so
//! that an upgrade from such a worker carries its state, pending frames included, across.
//! Read only; nothing writes it any more.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};

use pvmouse_spec::InputEvent;
use pvmouse_spec::control::reply::Counters;
use pvmouse_spec::layout::{Display, Layout, Rect, Transform};
use pvmouse_spec::profile::MAX_PENDING_FRAMES;

use super::{Link, Snapshot};
use crate::coordinates::Coordinates;
use crate::frame::{Frame, FrameEvents, WheelStep};
use crate::pending::PendingFrames;
use crate::pointer::PointerState;
use crate::virtqueue::RingPosition;

/// The state in format 1's field order, after the slot's format field; `None` if anything is
/// malformed or left over.
pub(super) fn read(bytes: &[u8]) -> Option<Snapshot<'static>> {
    let mut r = Reader(bytes);
    let pointer = pointer(&mut r)?;
    let coordinates = coordinates(&mut r)?;
    let driver = link(&mut r)?;
    // The bridge's presence and version, which a new worker learns again.
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
    let pending = pending(&mut r)?;
    if !r.0.is_empty() || has_bridge > 1 {
        return None;
    }
    Some(Snapshot {
        pointer: Cow::Owned(pointer),
        coordinates: Cow::Owned(coordinates),
        driver,
        counters: Cow::Owned(c),
        pending: Cow::Owned(pending),
        mode: pvmouse_spec::profile::PointerMode::Absolute,
        relative: None,
    })
}

fn pointer(r: &mut Reader<'_>) -> Option<PointerState> {
    Some(PointerState {
        display: r.u8()?,
        x: r.opt_u16()?,
        y: r.opt_u16()?,
        buttons: r.u8()?,
        wheel_remainder: [r.i32()?, r.i32()?],
        wire: (r.opt_u16()?, r.opt_u16()?),
        mode: pvmouse_spec::profile::PointerMode::Absolute,
        renew_pending: [false; 2],
    })
}

/// The number of displays (0 per display), then each as the status queue's layout message
/// has it (spec/pvmouse.md §6.1).
fn coordinates(r: &mut Reader<'_>) -> Option<Coordinates> {
    let n = r.u8()?;
    if n == 0 {
        return Some(Coordinates::PerDisplay);
    }
    let mut displays = BTreeMap::new();
    for _ in 0..n {
        let [id, transform] = r.u16()?.to_be_bytes();
        let (fw, fh) = (r.u16()?, r.u16()?);
        let signed = |v: u16| i32::from(i16::from_le_bytes(v.to_le_bytes()));
        let (x, y) = (signed(r.u16()?), signed(r.u16()?));
        let (w, h) = (r.u16()?, r.u16()?);
        let display = Display {
            logical: Rect {
                x,
                y,
                width: u32::from(w),
                height: u32::from(h),
            },
            framebuffer: (u32::from(fw), u32::from(fh)),
            transform: Transform::from_wayland(transform)?,
            name: None,
            scale: None,
        };
        displays.insert(id, display);
    }
    Layout::with_displays(displays)
        .ok()
        .map(Coordinates::Desktop)
}

fn link(r: &mut Reader<'_>) -> Option<Link> {
    let tag = r.u8()?;
    let at = RingPosition {
        next_avail: r.u16()?,
        desc_table: r.u64()?,
        avail_ring: r.u64()?,
        used_ring: r.u64()?,
    };
    match tag {
        0 => Some(Link::Inactive),
        1 => Some(Link::Active(at)),
        2 => Some(Link::Paused(at)),
        _ => None,
    }
}

fn pending(r: &mut Reader<'_>) -> Option<PendingFrames> {
    let n = usize::try_from(r.u32()?).ok()?;
    if n > MAX_PENDING_FRAMES + 2 {
        return None;
    }
    let mut frames = VecDeque::with_capacity(n);
    for _ in 0..n {
        frames.push_back(frame(r)?);
    }
    let streaming = frame_events(r)?;
    let streamed = usize::from(r.u8()?);
    let holding = r.u8()?;
    let deliverable = usize::try_from(r.u32()?).ok()?;
    let deliverable = match holding {
        0 => None,
        1 => Some(deliverable),
        _ => return None,
    };
    let coalesced = r.u64()?;
    // The capacity and the bounds are checked as for format 2, when the snapshot is taken over.
    let mut p = PendingFrames::with_capacity(0);
    p.frames = frames;
    p.streaming = streaming;
    p.streamed = streamed;
    p.deliverable = deliverable;
    p.coalesced = coalesced;
    Some(p)
}

fn frame(r: &mut Reader<'_>) -> Option<Frame> {
    let flags = r.u8()?;
    if flags > 0b1111 {
        return None;
    }
    let (display, x, y) = (r.u8()?, r.u16()?, r.u16()?);
    let (buttons_set, buttons_down) = (r.u8()?, r.u8()?);
    let mut step = || -> Option<WheelStep> {
        Some(WheelStep {
            detents: r.i32()?,
            hi_res: r.i32()?,
        })
    };
    let (wheel_vertical, wheel_horizontal) = (step()?, step()?);
    let ack = r.i32()?;
    let has = |bit: u8| flags & (1 << bit) != 0;
    Some(Frame {
        display: has(0).then_some(display),
        x: has(1).then_some(x),
        y: has(2).then_some(y),
        buttons_set,
        buttons_down,
        wheel_vertical,
        wheel_horizontal,
        acknowledgement: has(3).then_some(ack),
        ..Frame::default()
    })
}

fn frame_events(r: &mut Reader<'_>) -> Option<FrameEvents> {
    let len = r.u8()?;
    let events = (0..len)
        .map(|_| Some(InputEvent::new(r.u16()?, r.u16()?, r.i32()?)))
        .collect::<Option<Vec<_>>>()?;
    FrameEvents::try_from(events).ok()
}

/// Bounds-checked little-endian reads: anything short makes the whole state `None`.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    /// A presence byte, then the value, there or not.
    fn opt_u16(&mut self) -> Option<Option<u16>> {
        let present = self.u8()?;
        let v = self.u16()?;
        match present {
            0 => Some(None),
            1 => Some(Some(v)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_and_bad_options_are_refused() {
        assert_eq!(Reader(&[1, 2]).u32(), None);
        assert_eq!(Reader(&[2, 0, 0]).opt_u16(), None);
        assert!(read(&[]).is_none(), "nothing after the format field");
    }
}
