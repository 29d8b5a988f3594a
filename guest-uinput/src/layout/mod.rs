//! The guest's multi-monitor desktop: where each pvmouse display sits, in desktop pixels, and
//! how a normalised point on a display becomes a value of the uinput pointer's fixed range.
//!
//! The model is here. Where a layout comes from has a module each: [`parse`] reads the
//! operator's `--layout` and layout file, [`drm`] reads the kernel's modes, and [`resolve`]
//! decides which source wins. A new source gets a module beside them and a place in
//! [`resolve::Source`].

pub mod drm;
pub mod parse;
pub mod resolve;

use std::collections::BTreeMap;

use pvmouse_spec::profile::{AXIS_MAX, MAX_DISPLAYS};

/// The uinput pointer's ABS_X/ABS_Y range, fixed so a layout change never re-creates the device.
pub const OUTPUT_MAX: i32 = 65535;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    fn right(&self) -> i64 {
        i64::from(self.x) + i64::from(self.width)
    }

    fn bottom(&self) -> i64 {
        i64::from(self.y) + i64::from(self.height)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("layout file {file}, line {line}: {problem}")]
    File {
        file: String,
        line: usize,
        problem: String,
    },
    #[error("--layout {spec:?}: {problem}")]
    Spec { spec: String, problem: String },
}

/// Display id → its rectangle on the desktop. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    displays: BTreeMap<u8, Rect>,
    bounds: Rect,
}

impl Layout {
    /// Checks ids, sizes and overlap, and computes the desktop's bounding box.
    pub fn new(displays: BTreeMap<u8, Rect>) -> Result<Self, String> {
        if displays.is_empty() {
            return Err("no displays".into());
        }
        for (id, r) in &displays {
            if u32::from(*id) >= MAX_DISPLAYS {
                return Err(format!(
                    "display id {id} is beyond pvmouse's {MAX_DISPLAYS} displays"
                ));
            }
            if r.width == 0 || r.height == 0 {
                return Err(format!("display {id} has zero width or height"));
            }
        }
        let rects: Vec<(&u8, &Rect)> = displays.iter().collect();
        for (i, (a_id, a)) in rects.iter().enumerate() {
            for (b_id, b) in &rects[i + 1..] {
                let apart = a.right() <= i64::from(b.x)
                    || b.right() <= i64::from(a.x)
                    || a.bottom() <= i64::from(b.y)
                    || b.bottom() <= i64::from(a.y);
                if !apart {
                    return Err(format!("displays {a_id} and {b_id} overlap"));
                }
            }
        }
        let x = displays.values().map(|r| r.x).min().unwrap_or(0);
        let y = displays.values().map(|r| r.y).min().unwrap_or(0);
        let right = displays.values().map(Rect::right).max().unwrap_or(1);
        let bottom = displays.values().map(Rect::bottom).max().unwrap_or(1);
        let width =
            u32::try_from(right - i64::from(x)).map_err(|_| "desktop too wide".to_owned())?;
        let height =
            u32::try_from(bottom - i64::from(y)).map_err(|_| "desktop too tall".to_owned())?;
        Ok(Self {
            displays,
            bounds: Rect {
                x,
                y,
                width,
                height,
            },
        })
    }

    pub fn display(&self, id: u8) -> Option<&Rect> {
        self.displays.get(&id)
    }

    pub fn displays(&self) -> impl Iterator<Item = (u8, &Rect)> {
        self.displays.iter().map(|(id, r)| (*id, r))
    }

    pub fn bounds(&self) -> Rect {
        self.bounds
    }

    /// The desktop pixel for a point on `display` at pvmouse coordinates (0..=65535 each):
    /// `L + v/65535 · size`, clamped to the display so an edge never lands on a neighbour.
    pub fn to_desktop(&self, display: u8, x: i32, y: i32) -> Option<(f64, f64)> {
        let r = self.displays.get(&display)?;
        let axis = |origin: i32, size: u32, v: i32| {
            let n = f64::from(v.clamp(0, AXIS_MAX)) / f64::from(AXIS_MAX);
            let p = f64::from(origin) + n * f64::from(size);
            p.clamp(f64::from(origin), f64::from(origin) + f64::from(size) - 1.0)
        };
        Some((axis(r.x, r.width, x), axis(r.y, r.height, y)))
    }

    /// The uinput value for a desktop pixel: the bounding box's first pixel is 0 and its last
    /// is OUTPUT_MAX, which is how libinput maps an absolute device onto the whole desktop.
    pub fn to_output(&self, px: f64, py: f64) -> (i32, i32) {
        let axis = |p: f64, origin: i32, size: u32| {
            let span = f64::from(size.max(2) - 1);
            let v = (p - f64::from(origin)) / span * f64::from(OUTPUT_MAX);
            #[expect(
                clippy::cast_possible_truncation,
                reason = "rounded and clamped to 0..=OUTPUT_MAX"
            )]
            let v = v.round().clamp(0.0, f64::from(OUTPUT_MAX)) as i32;
            v
        };
        (
            axis(px, self.bounds.x, self.bounds.width),
            axis(py, self.bounds.y, self.bounds.height),
        )
    }

    /// pvmouse coordinates on a display straight to uinput values.
    pub fn map(&self, display: u8, x: i32, y: i32) -> Option<(i32, i32)> {
        self.to_desktop(display, x, y)
            .map(|(px, py)| self.to_output(px, py))
    }
}

/// The nearest integer, for expected values in tests.
#[cfg(test)]
#[expect(
    clippy::cast_possible_truncation,
    reason = "test values are far inside i32"
)]
pub(crate) fn nearest(v: f64) -> i32 {
    v.round() as i32
}

/// 1024x768 to the left of 1280x1024, the layout most tests use.
#[cfg(test)]
pub(crate) fn two() -> Layout {
    Layout::parse_spec("0=1024x768@0,0,1=1280x1024@1024,0").expect("a valid layout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounding_box_covers_every_display() {
        assert_eq!(
            two().bounds(),
            Rect {
                x: 0,
                y: 0,
                width: 2304,
                height: 1024
            }
        );
        let l = Layout::parse_spec("0=100x100@-100,-50,1=100x100@0,0").unwrap();
        assert_eq!(
            l.bounds(),
            Rect {
                x: -100,
                y: -50,
                width: 200,
                height: 150
            }
        );
    }

    #[test]
    fn points_map_by_the_formula_and_clamp_to_their_display() {
        let l = two();
        assert_eq!(l.to_desktop(0, 0, 0), Some((0.0, 0.0)));
        // Half-way across display 0 is pixel 512.
        assert_eq!(l.to_desktop(0, 32768, 0).map(|p| p.0.round()), Some(512.0));
        // The far edge of display 0 stays on display 0 (1023), not display 1's first pixel.
        assert_eq!(l.to_desktop(0, AXIS_MAX, AXIS_MAX), Some((1023.0, 767.0)));
        assert_eq!(l.to_desktop(1, 0, 0), Some((1024.0, 0.0)));
        assert_eq!(l.to_desktop(1, AXIS_MAX, AXIS_MAX), Some((2303.0, 1023.0)));
        assert_eq!(l.to_desktop(2, 0, 0), None, "unknown display");
        // Fractional coordinates stay fractional until the final rounding.
        let (px, _) = l.to_desktop(0, 1, 0).unwrap();
        assert!(px > 0.0 && px < 0.1);
    }

    #[test]
    fn output_values_span_the_bounding_box() {
        let l = two();
        assert_eq!(l.map(0, 0, 0), Some((0, 0)));
        assert_eq!(l.map(1, AXIS_MAX, AXIS_MAX), Some((OUTPUT_MAX, OUTPUT_MAX)));
        // Display 1's first pixel: 1024 of 0..=2303.
        let want = nearest(1024.0_f64 / 2303.0 * 65535.0);
        assert_eq!(l.map(1, 0, 0), Some((want, 0)));
        // Display 0's bottom edge is pixel 767 of 0..=1023 vertically.
        assert_eq!(
            l.map(0, 0, AXIS_MAX),
            Some((0, nearest(767.0_f64 / 1023.0 * 65535.0)))
        );
    }

    #[test]
    fn stacked_and_gapped_displays_and_a_single_one() {
        let stacked = Layout::parse_spec("0=800x600@0,0,1=800x600@0,600").unwrap();
        assert_eq!(
            stacked.map(1, 0, 0),
            Some((0, nearest(600.0_f64 / 1199.0 * 65535.0)))
        );
        let gap = Layout::parse_spec("0=100x100@0,0,1=100x100@200,0").unwrap();
        assert_eq!(gap.bounds().width, 300);
        assert_eq!(
            gap.map(1, 0, 0),
            Some((nearest(200.0_f64 / 299.0 * 65535.0), 0))
        );
        let single = Layout::parse_spec("0=1920x1080@0,0").unwrap();
        assert_eq!(single.map(0, AXIS_MAX, 0), Some((OUTPUT_MAX, 0)));
        // The centre: pixel 32768/65535·1920 of 0..=1919, then scaled to 0..=65535. libinput
        // maps 32785 back to pixel 960, the centre.
        let px = 32768.0_f64 / 65535.0 * 1920.0;
        let want = nearest(px / 1919.0 * 65535.0);
        assert_eq!(want, 32785);
        assert_eq!(single.map(0, 32768, 32768).map(|p| p.0), Some(want));
    }
}
