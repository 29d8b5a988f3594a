//! Format 2: the first postcard snapshot, written before a display could carry an exact scale.
//! Kept so that an upgrade from such a worker carries its state, pending frames included,
//! across. Read only; nothing writes it any more.

use std::borrow::Cow;
use std::collections::BTreeMap;

use pvmouse_spec::control::reply::Counters;
use pvmouse_spec::layout::{Display, Layout, Rect, Transform};
use serde::Deserialize;

use pvmouse_spec::profile::PointerMode;

use super::format3::Pending3;
use super::{Link, Snapshot};
use crate::coordinates::Coordinates;
use crate::pointer::PointerState;

/// [`Snapshot`] as format 2 has it: field for field, but for the displays.
#[derive(Deserialize)]
struct Format2 {
    pointer: PointerState,
    coordinates: Coordinates2,
    driver: Link,
    counters: Counters,
    pending: Pending3,
}

/// [`Coordinates`], variant for variant.
#[derive(Deserialize)]
enum Coordinates2 {
    PerDisplay,
    Desktop(BTreeMap<u8, Display2>),
}

/// [`Display`] before its scale.
#[derive(Deserialize)]
struct Display2 {
    logical: Rect,
    framebuffer: (u32, u32),
    transform: Transform,
    name: Option<String>,
}

/// The state in format 2; `None` if anything is malformed, left over, or not a valid layout.
pub(super) fn read(bytes: &[u8]) -> Option<Snapshot<'static>> {
    let (old, []) = postcard::take_from_bytes::<Format2>(bytes).ok()? else {
        return None;
    };
    let coordinates = match old.coordinates {
        Coordinates2::PerDisplay => Coordinates::PerDisplay,
        Coordinates2::Desktop(displays) => Coordinates::Desktop(
            Layout::with_displays(
                displays
                    .into_iter()
                    .map(|(id, d)| {
                        let display = Display {
                            logical: d.logical,
                            framebuffer: d.framebuffer,
                            transform: d.transform,
                            name: d.name,
                            scale: None,
                        };
                        (id, display)
                    })
                    .collect(),
            )
            .ok()?,
        ),
    };
    Some(Snapshot {
        pointer: Cow::Owned(old.pointer),
        coordinates: Cow::Owned(coordinates),
        driver: old.driver,
        counters: Cow::Owned(old.counters),
        pending: Cow::Owned(old.pending.into()),
        mode: PointerMode::Absolute,
        relative: None,
    })
}
