//! What the guest's `ABS_X`/`ABS_Y` mean: a position within the display on `ABS_MISC` (the
//! profile's own meaning), or, once the guest bridge has told the device its desktop layout, a
//! point of the whole desktop that a display server can use as it is (spec/pvmouse.md §6.1).
//! Host clients never see the difference: they always speak per display.

use std::collections::BTreeMap;

use pvmouse_spec::layout::{Display, Layout, Rect, Transform};

use crate::ledger::{Reader, Writer};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Coordinates {
    /// Per display, as the host sent it.
    #[default]
    PerDisplay,
    /// Over the bounding box of this layout, aimed exactly as the guest bridge would aim.
    Desktop(Layout),
}

impl Coordinates {
    /// The `ABS_X`/`ABS_Y` values for a position, or `None` to leave the guest's as they are:
    /// a desktop point needs both coordinates and a display the layout has.
    pub fn wire(
        &self,
        display: u8,
        x: Option<u16>,
        y: Option<u16>,
    ) -> Option<(Option<u16>, Option<u16>)> {
        match self {
            Coordinates::PerDisplay => Some((x, y)),
            Coordinates::Desktop(layout) => {
                let (x, y) = (x?, y?);
                let (u, v) = layout.map(display, i32::from(x), i32::from(y))?;
                // `map` keeps its values within 0 ..= 65535.
                Some((u16::try_from(u).ok(), u16::try_from(v).ok()))
            }
        }
    }

    pub fn is_desktop(&self) -> bool {
        matches!(self, Coordinates::Desktop(_))
    }

    /// For the ledger: the number of displays (0 per display), then each as the status
    /// queue's layout message has it (spec/pvmouse.md §6.1).
    pub(crate) fn save(&self, w: &mut Writer<'_>) {
        let Coordinates::Desktop(layout) = self else {
            w.u8(0);
            return;
        };
        w.u8(u8::try_from(layout.displays().count()).unwrap_or(0));
        for (id, d) in layout.displays() {
            let signed = |v: i32| u16::from_le_bytes(i16::try_from(v).unwrap_or(0).to_le_bytes());
            let size = |v: u32| u16::try_from(v).unwrap_or(0);
            w.u16(u16::from_be_bytes([id, d.transform.to_wayland()]));
            w.u16(size(d.framebuffer.0));
            w.u16(size(d.framebuffer.1));
            w.u16(signed(d.logical.x));
            w.u16(signed(d.logical.y));
            w.u16(size(d.logical.width));
            w.u16(size(d.logical.height));
        }
    }

    pub(crate) fn load(r: &mut Reader<'_>) -> Option<Self> {
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
            };
            displays.insert(id, display);
        }
        Layout::with_displays(displays)
            .ok()
            .map(Coordinates::Desktop)
    }
}
