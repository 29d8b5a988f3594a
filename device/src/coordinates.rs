//! What the guest's `ABS_X`/`ABS_Y` mean: a position within the display on `ABS_MISC` (the
//! profile's own meaning), or, once the guest bridge has told the device its desktop layout, a
//! point of the whole desktop that a display server can use as it is (spec/pvmouse.md §6.1).
//! Host clients never see the difference: they always speak per display.

use pvmouse_spec::layout::Layout;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
}
