//! Format 3: the snapshot before relative motion (no pointer mode, no relative device, frames
//! without relative motion or renewal). Kept so that an upgrade from such a worker carries its
//! state across; formats 2 and 3 share its frames. Read only; nothing writes it any more.

use std::borrow::Cow;
use std::collections::VecDeque;

use pvmouse_spec::control::reply::Counters;
use pvmouse_spec::profile::PointerMode;
use serde::Deserialize;

use super::{Link, Snapshot};
use crate::coordinates::Coordinates;
use crate::frame::{Frame, FrameEvents, WheelStep};
use crate::pending::PendingFrames;
use crate::pointer::PointerState;

/// [`Snapshot`] as format 3 has it.
#[derive(Deserialize)]
struct Format3 {
    pointer: PointerState,
    coordinates: Coordinates,
    driver: Link,
    counters: Counters,
    pending: Pending3,
}

/// [`PendingFrames`] as formats 2 and 3 serialise it, field for field.
#[derive(Deserialize)]
pub(super) struct Pending3 {
    frames: VecDeque<Frame3>,
    streaming: FrameEvents,
    streamed: usize,
    coalesced: u64,
    deliverable: Option<usize>,
}

/// [`Frame`] before relative motion and renewal.
#[derive(Deserialize)]
struct Frame3 {
    display: Option<u8>,
    x: Option<u16>,
    y: Option<u16>,
    buttons_set: u8,
    buttons_down: u8,
    wheel_vertical: WheelStep,
    wheel_horizontal: WheelStep,
    acknowledgement: Option<i32>,
}

impl From<Pending3> for PendingFrames {
    fn from(old: Pending3) -> Self {
        // The capacity and the bounds are checked when the snapshot is taken over.
        let mut p = PendingFrames::with_capacity(0);
        p.frames = old
            .frames
            .into_iter()
            .map(|f| Frame {
                display: f.display,
                x: f.x,
                y: f.y,
                buttons_set: f.buttons_set,
                buttons_down: f.buttons_down,
                wheel_vertical: f.wheel_vertical,
                wheel_horizontal: f.wheel_horizontal,
                acknowledgement: f.acknowledgement,
                ..Frame::default()
            })
            .collect();
        p.streaming = old.streaming;
        p.streamed = old.streamed;
        p.coalesced = old.coalesced;
        p.deliverable = old.deliverable;
        p
    }
}

/// The state in format 3; `None` if anything is malformed or left over.
pub(super) fn read(bytes: &[u8]) -> Option<Snapshot<'static>> {
    let (old, []) = postcard::take_from_bytes::<Format3>(bytes).ok()? else {
        return None;
    };
    Some(Snapshot {
        pointer: Cow::Owned(old.pointer),
        coordinates: Cow::Owned(old.coordinates),
        driver: old.driver,
        counters: Cow::Owned(old.counters),
        pending: Cow::Owned(old.pending.into()),
        mode: PointerMode::Absolute,
        relative: None,
    })
}
