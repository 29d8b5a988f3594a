//! The multi-monitor desktop as the display server has it, and the exact arithmetic that turns a
//! pvmouse position (display, x, y) into a value of 0 ..= 65535 over the desktop's bounding box.
//!
//! Both sides use it: the guest bridge (`pvmouse-guestd`), which aims its own uinput pointer,
//! and the device, which sends desktop values itself once the bridge has told it the layout
//! (`spec/pvmouse.md` §6.1). One implementation, so the two can never disagree on a pixel.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::profile::{AXIS_MAX, MAX_DISPLAYS};

/// The range desktop values are spread over, the same as the device's own axes: a display server
/// maps 0 ..= `OUTPUT_MAX` onto the desktop's bounding box.
pub const OUTPUT_MAX: i32 = AXIS_MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// How the display server draws a logical output into its framebuffer: `wl_output.transform`
/// (X11 RandR rotations and reflections map onto the same eight values). As the protocol says
/// and display servers draw (a screendump in `tests/tests/desktop_sway.rs` checks it), the
/// picture is turned counter-clockwise: `Rotate90` draws the logical output's top-left corner
/// at the framebuffer's bottom-left, and `Rotate270` at its top-right. The flipped ones mirror
/// around the vertical axis first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Transform {
    #[default]
    Normal,
    Rotate90,
    Rotate180,
    Rotate270,
    Flipped,
    Flipped90,
    Flipped180,
    Flipped270,
}

impl Transform {
    const ALL: [Transform; 8] = [
        Transform::Normal,
        Transform::Rotate90,
        Transform::Rotate180,
        Transform::Rotate270,
        Transform::Flipped,
        Transform::Flipped90,
        Transform::Flipped180,
        Transform::Flipped270,
    ];

    /// The `wl_output.transform` value, 0 … 7.
    pub fn from_wayland(value: u8) -> Option<Self> {
        Self::ALL.get(usize::from(value)).copied()
    }

    /// The `wl_output.transform` value, 0 … 7.
    pub fn to_wayland(self) -> u8 {
        // Declared in `wl_output.transform` order.
        self as u8
    }

    /// Whether the framebuffer's width is the logical output's height.
    pub fn swaps_axes(self) -> bool {
        matches!(
            self,
            Transform::Rotate90
                | Transform::Rotate270
                | Transform::Flipped90
                | Transform::Flipped270
        )
    }

    /// The pixel of the untransformed logical output (before scaling) that the server shows at
    /// framebuffer pixel (p, q) of a `w`×`h` framebuffer. A transform permutes whole pixels, so
    /// a pixel's centre stays a pixel's centre.
    fn logical_pixel(self, p: i64, q: i64, w: i64, h: i64) -> (i64, i64) {
        match self {
            Transform::Normal => (p, q),
            Transform::Rotate90 => (h - 1 - q, p),
            Transform::Rotate180 => (w - 1 - p, h - 1 - q),
            Transform::Rotate270 => (q, w - 1 - p),
            Transform::Flipped => (w - 1 - p, q),
            Transform::Flipped90 => (q, p),
            Transform::Flipped180 => (p, h - 1 - q),
            Transform::Flipped270 => (h - 1 - q, w - 1 - p),
        }
    }
}

/// One pvmouse display as the desktop has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Display {
    /// Where the display sits in the display server's global (logical) space, after scale and
    /// transform.
    pub logical: Rect,
    /// The scanout's size in pixels: what the host sees, and what pvmouse positions divide.
    pub framebuffer: (u32, u32),
    pub transform: Transform,
    /// The output's (DRM connector's) name, when the source knows it: per-display pointers are
    /// bound to their output by it.
    pub name: Option<String>,
}

impl Display {
    /// A display whose logical rectangle is its framebuffer, untransformed: what DRM, the
    /// command line and layout files describe.
    pub fn plain(rect: Rect) -> Self {
        Self {
            framebuffer: (rect.width, rect.height),
            logical: rect,
            transform: Transform::Normal,
            name: None,
        }
    }
}

/// A point on one desktop axis, exactly: `num / den` desktop pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Exact {
    num: i128,
    den: i128,
}

impl Exact {
    fn pixel(self) -> i64 {
        i64::try_from(self.num.div_euclid(self.den)).unwrap_or(i64::MAX)
    }

    /// The value of 0 ..= OUTPUT_MAX at this point when the range spans `size` pixels from
    /// `origin`, rounded to nearest.
    fn value(self, origin: i32, size: u32) -> i32 {
        let max = i128::from(OUTPUT_MAX);
        let size = i128::from(size.max(1));
        let offset = self.num - i128::from(origin) * self.den;
        let value = (2 * offset * max + size * self.den).div_euclid(2 * size * self.den);
        i32::try_from(value.clamp(0, max)).unwrap_or(OUTPUT_MAX)
    }
}

/// The pixel a pvmouse value means on an axis `size` pixels long (spec/pvmouse.md §3.1): the one
/// that contains `v / 65535` of the way across, the far edge on the last pixel.
fn framebuffer_pixel(v: i32, size: u32) -> i64 {
    let v = i64::from(v.clamp(0, AXIS_MAX));
    let size = i64::from(size.max(1));
    (v * size / i64::from(AXIS_MAX)).min(size - 1)
}

/// Where to aim on a logical axis for the centre of logical-output pixel `pixel` of `fb_size`,
/// shown over `logical_size` desktop pixels from `origin`. The centre, mapped through the
/// scale, is the point; the aim is that point kept at least a quarter pixel inside the desktop
/// pixel that contains it, so a server that truncates (X) lands on that pixel and one that keeps
/// fractions (Wayland) is within a quarter pixel of the point.
fn aim(origin: i32, logical_size: u32, pixel: i64, fb_size: i64) -> Exact {
    let n = (2 * i128::from(pixel) + 1) * i128::from(logical_size);
    let d = 2 * i128::from(fb_size.max(1));
    let (whole, rest) = (n.div_euclid(d), n.rem_euclid(d));
    // In quarters of d: the fraction, clamped to [1/4, 3/4].
    let rest = (4 * rest).clamp(d, 3 * d);
    let den = 4 * d;
    Exact {
        num: (i128::from(origin) + whole) * den + rest,
        den,
    }
}

/// Display id → where it is on the desktop. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    displays: BTreeMap<u8, Display>,
    bounds: Rect,
}

/// As its displays: the bounding box follows from them.
impl Serialize for Layout {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.displays())
    }
}

/// Checked as [`Layout::with_displays`] checks, whoever wrote it.
impl<'de> Deserialize<'de> for Layout {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let displays = BTreeMap::<u8, Display>::deserialize(deserializer)?;
        Layout::with_displays(displays).map_err(serde::de::Error::custom)
    }
}

impl Layout {
    /// Plain displays (see [`Display::plain`]): checks ids, sizes and overlap.
    pub fn new(displays: BTreeMap<u8, Rect>) -> Result<Self, String> {
        Self::with_displays(
            displays
                .into_iter()
                .map(|(id, r)| (id, Display::plain(r)))
                .collect(),
        )
    }

    /// Checks ids, sizes and overlap, and computes the desktop's bounding box.
    pub fn with_displays(displays: BTreeMap<u8, Display>) -> Result<Self, String> {
        if displays.is_empty() {
            return Err("no displays".into());
        }
        for (id, d) in &displays {
            if u32::from(*id) >= MAX_DISPLAYS {
                return Err(format!(
                    "display id {id} is beyond pvmouse's {MAX_DISPLAYS} displays"
                ));
            }
            let r = &d.logical;
            if r.width == 0 || r.height == 0 || d.framebuffer.0 == 0 || d.framebuffer.1 == 0 {
                return Err(format!("display {id} has zero width or height"));
            }
        }
        let rects: Vec<(&u8, &Rect)> = displays.iter().map(|(id, d)| (id, &d.logical)).collect();
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
        let x = rects.iter().map(|(_, r)| r.x).min().unwrap_or(0);
        let y = rects.iter().map(|(_, r)| r.y).min().unwrap_or(0);
        let right = rects.iter().map(|(_, r)| r.right()).max().unwrap_or(1);
        let bottom = rects.iter().map(|(_, r)| r.bottom()).max().unwrap_or(1);
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

    /// The display's logical rectangle.
    pub fn display(&self, id: u8) -> Option<&Rect> {
        self.displays.get(&id).map(|d| &d.logical)
    }

    pub fn displays(&self) -> impl Iterator<Item = (u8, &Display)> {
        self.displays.iter().map(|(id, d)| (*id, d))
    }

    pub fn bounds(&self) -> Rect {
        self.bounds
    }

    /// The exact desktop point to aim at for a pvmouse position: the framebuffer pixel it means
    /// (spec/pvmouse.md §3.1), through the display's transform and scale onto the desktop.
    fn aim(&self, display: u8, x: i32, y: i32) -> Option<(Exact, Exact)> {
        let d = self.displays.get(&display)?;
        let (w, h) = (i64::from(d.framebuffer.0), i64::from(d.framebuffer.1));
        let (p, q) = (
            framebuffer_pixel(x, d.framebuffer.0),
            framebuffer_pixel(y, d.framebuffer.1),
        );
        let (u, v) = d.transform.logical_pixel(p, q, w, h);
        let (tw, th) = if d.transform.swaps_axes() {
            (h, w)
        } else {
            (w, h)
        };
        let r = &d.logical;
        Some((aim(r.x, r.width, u, tw), aim(r.y, r.height, v, th)))
    }

    /// The desktop pixel a pvmouse position on `display` (0..=65535 each) lands on: the pixel
    /// that contains the framebuffer pixel's centre, mapped onto the desktop. With no scale or
    /// transform, that is spec/pvmouse.md §3.1's pixel, offset by the display's position.
    pub fn to_desktop(&self, display: u8, x: i32, y: i32) -> Option<(i64, i64)> {
        self.aim(display, x, y)
            .map(|(ax, ay)| (ax.pixel(), ay.pixel()))
    }

    /// The uinput value that puts the pointer on a desktop pixel: the value at the pixel's
    /// centre, with the bounding box spread over 0..=OUTPUT_MAX. libinput and the display
    /// servers scale that range over the whole desktop; X then truncates to a pixel, and the
    /// Wayland compositors keep the fraction. Aiming at the centre lands on the pixel in both,
    /// whether a server divides by OUTPUT_MAX or OUTPUT_MAX + 1 (a difference of at most
    /// `width / 65536` of a pixel).
    pub fn to_output(&self, px: i64, py: i64) -> (i32, i32) {
        let centre = |p: i64| Exact {
            num: 2 * i128::from(p) + 1,
            den: 2,
        };
        (
            centre(px).value(self.bounds.x, self.bounds.width),
            centre(py).value(self.bounds.y, self.bounds.height),
        )
    }

    /// pvmouse coordinates on a display straight to the desktop pointer's values (one pointer
    /// over the bounding box).
    pub fn map(&self, display: u8, x: i32, y: i32) -> Option<(i32, i32)> {
        let b = self.bounds;
        self.aim(display, x, y)
            .map(|(ax, ay)| (ax.value(b.x, b.width), ay.value(b.y, b.height)))
    }

    /// pvmouse coordinates to the values of the display's own pointer (one pointer per display,
    /// its range over that display's framebuffer): the framebuffer pixel's centre. The server
    /// applies the output's transform and scale itself.
    pub fn map_on_display(&self, display: u8, x: i32, y: i32) -> Option<(i32, i32)> {
        let d = self.displays.get(&display)?;
        let (w, h) = d.framebuffer;
        let centre = |v: i32, size: u32| Exact {
            num: 2 * i128::from(framebuffer_pixel(v, size)) + 1,
            den: 2,
        };
        Some((centre(x, w).value(0, w), centre(y, h).value(0, h)))
    }
}
