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

/// How many framebuffer pixels one logical pixel spans, exactly: `framebuffer / logical`, a
/// fraction of 16-bit terms in lowest terms. A display server that scales by a fraction (HiDPI
/// "fractional scaling") draws at this scale, but may publish a logical size cut short by
/// rounding (sway at 1.5 gives a 1280x1024 output a logical size of 853x682, not 853⅓x682⅔),
/// so the ratio of the sizes is not the scale the server draws at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    pub framebuffer: u16,
    pub logical: u16,
}

impl Scale {
    /// `framebuffer / logical` in lowest terms; `None` if a term is 0.
    pub fn new(framebuffer: u16, logical: u16) -> Option<Self> {
        Self::fraction(u64::from(framebuffer), u64::from(logical))
    }

    /// `framebuffer / logical` in lowest terms, or the nearest fraction of 16-bit terms when
    /// the lowest terms do not fit; `None` if a term is 0.
    pub fn fraction(framebuffer: u64, logical: u64) -> Option<Self> {
        if framebuffer == 0 || logical == 0 {
            return None;
        }
        let g = gcd(framebuffer, logical);
        let (f, l) = (framebuffer / g, logical / g);
        match (u16::try_from(f), u16::try_from(l)) {
            (Ok(framebuffer), Ok(logical)) => Some(Self {
                framebuffer,
                logical,
            }),
            _ => Self::nearest(f, l),
        }
    }

    /// A display server's scale given as a floating-point number of framebuffer pixels per
    /// logical pixel (mutter's D-Bus API, a wl_fixed read as a number): the nearest fraction of
    /// 16-bit terms, which is the exact value for every such fraction.
    pub fn from_f64(scale: f64) -> Option<Self> {
        if !(scale.is_finite() && scale > 0.0) {
            return None;
        }
        // Every fraction of 16-bit terms is within 2^-33 relative of the closest multiple of
        // 2^-32 of it, far closer than two such fractions are to each other (2^-32).
        let den: u64 = 1 << 32;
        let num = (scale * 4_294_967_296.0).round();
        if !(1.0..1.8e19).contains(&num) {
            return None;
        }
        // A finite, positive value below 2^64: the cast keeps it whole.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Self::fraction(num as u64, den)
    }

    /// The best approximation of `num / den` with both terms at most 65535: the last
    /// convergent of its continued fraction that fits, or the largest semiconvergent after it
    /// that fits, whichever is nearer.
    fn nearest(num: u64, den: u64) -> Option<Self> {
        const MAX: u128 = u16::MAX as u128;
        let (x, y) = (u128::from(num), u128::from(den));
        // h/k is nearer to x/y than h'/k' when |h·y − x·k|·k' < |h'·y − x·k'|·k.
        let nearer = |(h, k): (u128, u128), (h2, k2): (u128, u128)| {
            (h * y).abs_diff(x * k) * k2 < (h2 * y).abs_diff(x * k2) * k
        };
        let (mut n, mut d) = (x, y);
        // The two latest convergents, starting from 0/1 and 1/0.
        let (mut before, mut last) = ((0u128, 1u128), (1u128, 0u128));
        while d != 0 {
            let a = n / d;
            let next = (a * last.0 + before.0, a * last.1 + before.1);
            if next.0 > MAX || next.1 > MAX {
                let room = |step: u128, from: u128| (MAX - from).checked_div(step).unwrap_or(MAX);
                let t = room(last.0, before.0).min(room(last.1, before.1));
                let semi = (t * last.0 + before.0, t * last.1 + before.1);
                if t > 0 && (last.1 == 0 || nearer(semi, last)) {
                    last = semi;
                }
                break;
            }
            (before, last) = (last, next);
            (n, d) = (d, n - a * d);
        }
        Some(Self {
            framebuffer: u16::try_from(last.0).ok().filter(|v| *v > 0)?,
            logical: u16::try_from(last.1).ok().filter(|v| *v > 0)?,
        })
    }

    /// Whether `framebuffer` pixels at this scale come within 2 logical pixels of `logical`:
    /// what a server's rounding of the logical size can account for.
    fn fits(self, framebuffer: u32, logical: u32) -> bool {
        let scaled = i64::from(framebuffer) * i64::from(self.logical);
        let published = i64::from(logical) * i64::from(self.framebuffer);
        (scaled - published).abs() < 2 * i64::from(self.framebuffer)
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
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
    /// The scale the server draws at, when it publishes it exactly. Without it, the scale is
    /// taken as the ratio of the framebuffer's size to the logical one, which is exact for
    /// integer scales, for X without `--scale`, and for mutter (whose fractional scales divide
    /// the mode exactly), but not for a server that rounds the logical size (wlroots).
    #[serde(default)]
    pub scale: Option<Scale>,
}

impl Display {
    /// The framebuffer's size as the logical output has it: turned by the transform.
    pub fn shown_size(&self) -> (u32, u32) {
        let (w, h) = self.framebuffer;
        if self.transform.swaps_axes() {
            (h, w)
        } else {
            (w, h)
        }
    }

    /// A display whose logical rectangle is its framebuffer, untransformed: what DRM, the
    /// command line and layout files describe.
    pub fn plain(rect: Rect) -> Self {
        Self {
            framebuffer: (rect.width, rect.height),
            logical: rect,
            transform: Transform::Normal,
            name: None,
            scale: None,
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

/// Where to aim on a logical axis for logical-output pixel `pixel` of `fb_size`, shown over
/// `logical_size` desktop pixels from `origin`, at `scale` (the ratio of the sizes when the
/// server publishes none). The pixel's span on the desktop is cut to the logical rectangle,
/// which is all the server lets the pointer reach; a pixel wholly beyond it (the last row of a
/// rectangle cut short by rounding) gives way to the nearest one that is not. The aim is the
/// centre of that span, moved into the middle half of the desktop pixel that contains it when
/// that keeps it within the span: a server that truncates (X) then lands on that desktop pixel,
/// and one that keeps fractions (Wayland) well inside the framebuffer pixel.
fn aim(origin: i32, logical_size: u32, pixel: i64, fb_size: i64, scale: Option<Scale>) -> Exact {
    let (f, l) = match scale {
        Some(s) => (i128::from(s.framebuffer), i128::from(s.logical)),
        None => (i128::from(fb_size.max(1)), i128::from(logical_size.max(1))),
    };
    // In units of 1/(8f) of a desktop pixel, framebuffer pixel u spans [8ul, 8(u+1)l).
    let unit = 8 * f;
    let reach = i128::from(logical_size) * unit;
    let span = 8 * l;
    let last = (reach + span - 1) / span - 1;
    let u = i128::from(pixel).min(last).max(0);
    let (start, end) = (u * span, ((u + 1) * span).min(reach));
    // Both ends are multiples of 8, so the centre is whole.
    let centre = (start + end) / 2;
    let whole = centre.div_euclid(unit) * unit;
    let (lower, upper) = ((whole + 2 * f).max(start), (whole + 6 * f).min(end));
    let at = if lower <= upper && lower < end {
        centre.clamp(lower, upper)
    } else {
        centre
    };
    Exact {
        num: i128::from(origin) * unit + at,
        den: unit,
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

    /// Checks ids, sizes, scales and overlap, and computes the desktop's bounding box. A scale
    /// equal to the ratio of the sizes is dropped: it changes no aim, and without it the layout
    /// travels in the message every device understands (spec/pvmouse.md §6.1).
    pub fn with_displays(mut displays: BTreeMap<u8, Display>) -> Result<Self, String> {
        if displays.is_empty() {
            return Err("no displays".into());
        }
        for (id, d) in &mut displays {
            if u32::from(*id) >= MAX_DISPLAYS {
                return Err(format!(
                    "display id {id} is beyond pvmouse's {MAX_DISPLAYS} displays"
                ));
            }
            let r = &d.logical;
            if r.width == 0 || r.height == 0 || d.framebuffer.0 == 0 || d.framebuffer.1 == 0 {
                return Err(format!("display {id} has zero width or height"));
            }
            if let Some(s) = d.scale {
                let (w, h) = d.shown_size();
                if s.framebuffer == 0
                    || s.logical == 0
                    || !s.fits(w, r.width)
                    || !s.fits(h, r.height)
                {
                    return Err(format!(
                        "display {id}: a scale of {}/{} does not make {w}x{h} pixels {}x{}",
                        s.framebuffer, s.logical, r.width, r.height
                    ));
                }
                let ratio = |fb: u32, logical: u32| {
                    u64::from(fb) * u64::from(s.logical)
                        == u64::from(logical) * u64::from(s.framebuffer)
                };
                if ratio(w, r.width) && ratio(h, r.height) {
                    d.scale = None;
                }
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
        Some((
            aim(r.x, r.width, u, tw, d.scale),
            aim(r.y, r.height, v, th, d.scale),
        ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::cast_precision_loss, reason = "compared, not computed with")]
    fn scales_are_kept_as_exact_fractions() {
        assert_eq!(Scale::from_f64(1.5), Scale::new(3, 2));
        assert_eq!(Scale::from_f64(1.25), Scale::new(5, 4));
        assert_eq!(Scale::from_f64(2.0), Scale::new(2, 1));
        // A wl_fixed scale is a fraction of 256.
        assert_eq!(Scale::from_f64(383.0 / 256.0), Scale::new(383, 256));
        // mutter's scales divide the mode: 1280/1025, given as a double.
        assert_eq!(Scale::from_f64(1280.0 / 1025.0), Scale::new(256, 205));
        assert_eq!(Scale::new(4, 2), Scale::new(2, 1), "lowest terms");
        assert_eq!(Scale::new(0, 2), None);
        assert_eq!(Scale::from_f64(0.0), None);
        assert_eq!(Scale::from_f64(f64::NAN), None);
        assert_eq!(Scale::from_f64(-1.5), None);
        // Terms too large for 16 bits: the nearest fraction that fits, checked against every
        // denominator.
        for (num, den) in [
            (1_000_003u64, 999_999u64),
            (65_536, 85_197),
            (123_456_789, 1 << 26),
        ] {
            let near = Scale::fraction(num, den).unwrap();
            let off = |h: u64, k: u64| (h * den).abs_diff(num * k) as f64 / k as f64;
            let got = off(near.framebuffer.into(), near.logical.into());
            for k in 1..=u64::from(u16::MAX) {
                let h = (num * k + den / 2) / den;
                if (1..=u64::from(u16::MAX)).contains(&h) {
                    assert!(got <= off(h, k), "{num}/{den}: {near:?} beaten by {h}/{k}");
                }
            }
        }
        let pi = Scale::from_f64(std::f64::consts::PI).unwrap();
        assert_eq!(
            pi,
            Scale::new(65_298, 20_785).unwrap(),
            "the nearest to π that fits"
        );
        assert_eq!(Scale::fraction(1 << 40, 1), Scale::new(u16::MAX, 1));
        assert_eq!(
            Scale::fraction(1, 1 << 40),
            None,
            "nearer to 0 than to any scale"
        );
    }

    /// sway 1.7's layout: Virtual-1 1024x768 at the origin, unscaled, and Virtual-2, a
    /// 1280x1024 framebuffer, at 1024,200 and `scale`, with the logical size sway publishes
    /// (the scaled size cut to whole pixels).
    fn sway(scale: Scale) -> Layout {
        let (f, l) = (u32::from(scale.framebuffer), u32::from(scale.logical));
        Layout::with_displays(BTreeMap::from([
            (
                0,
                Display::plain(Rect {
                    x: 0,
                    y: 0,
                    width: 1024,
                    height: 768,
                }),
            ),
            (
                1,
                Display {
                    logical: Rect {
                        x: 1024,
                        y: 200,
                        width: 1280 * l / f,
                        height: 1024 * l / f,
                    },
                    framebuffer: (1280, 1024),
                    transform: Transform::Normal,
                    name: None,
                    scale: Some(scale),
                },
            ),
        ]))
        .unwrap()
    }

    /// The framebuffer pixel wlroots draws the pointer on for a desktop value: libinput spreads
    /// 0 ..= 65535 over the layout's box dividing by 65535 + 1 (`divisor` says which), sway
    /// keeps the fraction, and the output draws the point (x − origin) · scale, truncated.
    fn wlroots_pixel(layout: &Layout, value: (i32, i32), divisor: f64, scale: f64) -> (i64, i64) {
        let b = layout.bounds();
        let lx = f64::from(b.x) + f64::from(value.0) * f64::from(b.width) / divisor;
        let ly = f64::from(b.y) + f64::from(value.1) * f64::from(b.height) / divisor;
        let d = layout.display(1).unwrap();
        // Whole pixel numbers far inside i64.
        #[allow(clippy::cast_possible_truncation)]
        let pixel = |v: f64, origin: i32| ((v - f64::from(origin)) * scale).floor() as i64;
        (pixel(lx, d.x), pixel(ly, d.y))
    }

    /// The value that aims at framebuffer pixel `p` of `size`: its centre (spec/pvmouse.md §3.1).
    fn centre(p: i64, size: i64) -> i32 {
        i32::try_from(((2 * p + 1) * 65535 + size) / (2 * size)).unwrap()
    }

    #[test]
    fn under_a_fractional_scale_every_reachable_pixel_is_hit_and_the_rest_give_way() {
        for (f, l) in [(3, 2), (5, 4), (7, 4), (6, 5), (2, 1), (3, 1)] {
            let scale = Scale::new(f, l).unwrap();
            let layout = sway(scale);
            let r = *layout.display(1).unwrap();
            let k = f64::from(f) / f64::from(l);
            // The last pixel whose span starts inside the published rectangle.
            let reach = |logical: u32, fb: i64| {
                let end = i64::from(logical) * i64::from(f);
                ((end + i64::from(l) - 1) / i64::from(l) - 1).min(fb - 1)
            };
            let (last_x, last_y) = (reach(r.width, 1280), reach(r.height, 1024));
            for divisor in [65535.0, 65536.0] {
                for p in 0..1280 {
                    let q = p * 1023 / 1279;
                    let value = layout.map(1, centre(p, 1280), centre(q, 1024)).unwrap();
                    assert_eq!(
                        wlroots_pixel(&layout, value, divisor, k),
                        (p.min(last_x), q.min(last_y)),
                        "scale {f}/{l}, pixel ({p}, {q}), divisor {divisor}"
                    );
                }
            }
            if (f, l) == (3, 2) {
                assert_eq!((last_x, last_y), (1279, 1022), "sway's 853x682");
            }
        }
    }

    #[test]
    fn the_ratio_of_the_sizes_misses_what_the_exact_scale_hits() {
        // The bug this fixes: with only sway's rounded sizes, row 724 landed on 723.
        let exact = sway(Scale::new(3, 2).unwrap());
        let mut displays: BTreeMap<u8, Display> =
            exact.displays().map(|(i, d)| (i, d.clone())).collect();
        if let Some(d) = displays.get_mut(&1) {
            d.scale = None;
        }
        let ratio = Layout::with_displays(displays).unwrap();
        let aim = (centre(402, 1280), centre(724, 1024));
        let hit = |l: &Layout| wlroots_pixel(l, l.map(1, aim.0, aim.1).unwrap(), 65536.0, 1.5);
        assert_eq!(hit(&exact), (402, 724));
        assert_eq!(hit(&ratio), (402, 723));
    }

    #[test]
    fn a_scale_that_does_not_fit_the_sizes_is_refused_and_a_redundant_one_dropped() {
        let display = |width, height, scale: (u16, u16)| Display {
            logical: Rect {
                x: 0,
                y: 0,
                width,
                height,
            },
            framebuffer: (1280, 1024),
            transform: Transform::Rotate90,
            name: None,
            scale: Scale::new(scale.0, scale.1),
        };
        let one = |d| Layout::with_displays(BTreeMap::from([(0, d)]));
        // Turned: the logical width is the framebuffer's height.
        assert!(one(display(682, 853, (3, 2))).is_ok());
        assert!(one(display(853, 682, (3, 2))).is_err(), "not turned");
        assert!(one(display(600, 853, (3, 2))).is_err());
        let halved = one(display(512, 640, (2, 1))).unwrap();
        assert_eq!(halved.displays().next().unwrap().1.scale, None);
    }
}
