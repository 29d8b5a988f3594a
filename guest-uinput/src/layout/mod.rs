//! The guest's multi-monitor desktop: where each pvmouse display sits, and where its layout comes
//! from.
//!
//! The model and its arithmetic are [`pvmouse_spec::layout`], shared with the device, which maps
//! positions itself once it knows the layout. Where a layout comes from has a module each: [`parse`] reads the
//! operator's `--layout` and layout file, [`drm`] reads the kernel's modes, [`session`] takes
//! the display server's own layout from the session agent, and [`resolve`]
//! decides which source wins. A new source gets a module beside them and a place in
//! [`resolve::Source`].

pub mod drm;
pub mod parse;
pub mod resolve;
pub mod session;

pub use parse::ParseLayout;
pub use pvmouse_spec::layout::{Display, Layout, OUTPUT_MAX, Rect, Transform};

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
    use pvmouse_spec::profile::AXIS_MAX;

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
