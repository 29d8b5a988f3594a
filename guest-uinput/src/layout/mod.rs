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

    /// The desktop pixel a point on `display` at pvmouse coordinates (0..=65535 each) means,
    /// as spec/pvmouse.md defines it: the pixel that contains `L + v/65535 · size`, with the far
    /// edge (v = 65535) on the display's last pixel, so an edge never lands on a neighbour.
    /// Integer arithmetic: the same pixel on every machine.
    pub fn to_desktop(&self, display: u8, x: i32, y: i32) -> Option<(i64, i64)> {
        let r = self.displays.get(&display)?;
        let axis = |origin: i32, size: u32, v: i32| {
            let v = i64::from(v.clamp(0, AXIS_MAX));
            let size = i64::from(size);
            i64::from(origin) + (v * size / i64::from(AXIS_MAX)).min(size - 1)
        };
        Some((axis(r.x, r.width, x), axis(r.y, r.height, y)))
    }

    /// The uinput value that puts the pointer on a desktop pixel: the value at the pixel's
    /// centre, with the bounding box spread over 0..=OUTPUT_MAX. libinput and the display
    /// servers scale that range over the whole desktop; X then truncates to a pixel, and the
    /// Wayland compositors keep the fraction. Aiming at the centre lands on the pixel in both,
    /// whether a server divides by OUTPUT_MAX or OUTPUT_MAX + 1 (a difference of at most
    /// `width / 65536` of a pixel).
    pub fn to_output(&self, px: i64, py: i64) -> (i32, i32) {
        let axis = |p: i64, origin: i32, size: u32| {
            let size = i64::from(size.max(1));
            let offset = (p - i64::from(origin)).clamp(0, size - 1);
            let max = i64::from(OUTPUT_MAX);
            // (offset + ½) / size · max, rounded to nearest.
            let value = ((2 * offset + 1) * max + size) / (2 * size);
            i32::try_from(value.clamp(0, max)).unwrap_or(OUTPUT_MAX)
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
    fn a_position_means_the_pixel_that_contains_it() {
        let l = two();
        assert_eq!(l.to_desktop(0, 0, 0), Some((0, 0)));
        // 32768/65535 of 1024 is 512.0078: pixel 512.
        assert_eq!(l.to_desktop(0, 32768, 0), Some((512, 0)));
        // Just below 512.0 is still pixel 511.
        assert_eq!(l.to_desktop(0, 32767, 0), Some((511, 0)));
        // The far edge of display 0 stays on display 0 (1023), not display 1's first pixel.
        assert_eq!(l.to_desktop(0, AXIS_MAX, AXIS_MAX), Some((1023, 767)));
        assert_eq!(l.to_desktop(1, 0, 0), Some((1024, 0)));
        assert_eq!(l.to_desktop(1, AXIS_MAX, AXIS_MAX), Some((2303, 1023)));
        assert_eq!(l.to_desktop(2, 0, 0), None, "unknown display");
    }

    #[test]
    fn a_host_aiming_at_a_pixel_centre_gets_that_pixel() {
        // spec/pvmouse.md: to hit pixel P of a display S pixels wide, send (P + 0.5) / S.
        let l = two();
        for (display, size) in [(0u8, 1024i64), (1, 1280)] {
            for p in 0..size {
                let v = (p as f64 + 0.5) / size as f64;
                let a = nearest(v * f64::from(AXIS_MAX));
                let left = if display == 0 { 0 } else { 1024 };
                assert_eq!(l.to_desktop(display, a, 0).unwrap().0, left + p);
            }
        }
    }

    /// The pixel X puts the pointer on for a uinput value: libinput and X spread 0..=65535
    /// over the desktop's width, and X truncates. Both divisors seen in servers are tried.
    fn x_pixel(value: i32, width: u32, divisor: f64) -> i64 {
        i64::from(nearest(
            (f64::from(value) * f64::from(width) / divisor).floor(),
        ))
    }

    #[test]
    fn every_pixel_is_hit_exactly_by_a_truncating_server() {
        let l = two();
        for px in 0..2304 {
            let (u, _) = l.to_output(px, 0);
            for divisor in [65535.0, 65536.0] {
                assert_eq!(x_pixel(u, 2304, divisor), px, "pixel {px}, value {u}");
            }
        }
        for py in 0..1024 {
            let (_, v) = l.to_output(0, py);
            assert_eq!(x_pixel(v, 1024, 65535.0), py, "row {py}");
        }
    }

    #[test]
    fn stacked_gapped_and_single_layouts_aim_at_pixel_centres() {
        let stacked = Layout::parse_spec("0=800x600@0,0,1=800x600@0,600").unwrap();
        // Row 600 of 1200: its centre is 600.5 / 1200 of the range.
        assert_eq!(
            stacked.map(1, 0, 0),
            Some((
                nearest(0.5 / 800.0 * 65535.0),
                nearest(600.5 / 1200.0 * 65535.0)
            ))
        );
        let gap = Layout::parse_spec("0=100x100@0,0,1=100x100@200,0").unwrap();
        assert_eq!(gap.bounds().width, 300);
        assert_eq!(
            gap.map(1, 0, 0).unwrap().0,
            nearest(200.5 / 300.0 * 65535.0)
        );
        let single = Layout::parse_spec("0=1920x1080@0,0").unwrap();
        assert_eq!(
            single.map(0, AXIS_MAX, 0),
            Some((
                nearest(1919.5 / 1920.0 * 65535.0),
                nearest(0.5 / 1080.0 * 65535.0)
            ))
        );
        // Half-way is pixel 960: 32768/65535 of 1920 is 960.03.
        assert_eq!(
            single.map(0, 32768, 32768).unwrap().0,
            nearest(960.5 / 1920.0 * 65535.0)
        );
    }
}
