//! What the desktop tests expect, and how they look at the screen.
//!
//! The expectations follow spec/pvmouse.md §3.1 (which framebuffer pixel a position means)
//! and spec/session.md (how a display server's transform and scale carry that pixel onto its
//! logical desktop). A screendump ([`screendump`]) checks the transform's direction against
//! what the display server really draws, so the tests do not take the spec's word for it.

use std::path::Path;

use serde_json::json;

use crate::qmp::Qmp;

/// One head as a display server has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The scanout's size: what the host sees.
    pub framebuffer: (i32, i32),
    /// The logical rectangle: x, y, width, height.
    pub logical: (i32, i32, i32, i32),
    /// `wl_output.transform`, 0 … 7.
    pub transform: u8,
}

impl Head {
    /// A head shown as it is: no scale, no transform.
    pub fn plain(x: i32, y: i32, width: i32, height: i32) -> Self {
        Self {
            framebuffer: (width, height),
            logical: (x, y, width, height),
            transform: 0,
        }
    }

    /// The logical pixel of the untransformed output that framebuffer pixel (p, q) shows:
    /// `wl_output.transform` turns the picture counter-clockwise, so with 1 (90) the logical
    /// top-left is drawn at the framebuffer's bottom-left, and with 3 (270) at its top-right
    /// (the sway test's screendump checks it).
    pub fn logical_pixel(&self, p: i32, q: i32) -> (i32, i32) {
        let (w, h) = self.framebuffer;
        match self.transform {
            1 => (h - 1 - q, p),
            2 => (w - 1 - p, h - 1 - q),
            3 => (q, w - 1 - p),
            4 => (w - 1 - p, q),
            5 => (q, p),
            6 => (p, h - 1 - q),
            7 => (h - 1 - q, w - 1 - p),
            _ => (p, q),
        }
    }

    /// The framebuffer pixel that shows logical-output pixel (u, v): the inverse of
    /// [`Head::logical_pixel`].
    pub fn framebuffer_pixel_of(&self, u: i32, v: i32) -> (i32, i32) {
        let (w, h) = self.framebuffer;
        (0..w)
            .flat_map(|p| [(p, 0), (p, h - 1)])
            .chain((0..h).flat_map(|q| [(0, q), (w - 1, q)]))
            .find(|&(p, q)| self.logical_pixel(p, q) == (u, v))
            .unwrap_or((-1, -1))
    }

    /// Where a host position (0 … 1 on each axis) lands, in logical coordinates relative to the
    /// output's origin: the centre of the framebuffer pixel it means, through the transform
    /// and scale.
    pub fn expected_local(&self, x: f64, y: f64) -> (f64, f64) {
        let p = pixel(self.framebuffer.0, x);
        let q = pixel(self.framebuffer.1, y);
        let (u, v) = self.logical_pixel(p, q);
        let (tw, th) = if self.transform % 2 == 1 {
            (self.framebuffer.1, self.framebuffer.0)
        } else {
            self.framebuffer
        };
        let (_, _, lw, lh) = self.logical;
        (
            (f64::from(u) + 0.5) * f64::from(lw) / f64::from(tw),
            (f64::from(v) + 0.5) * f64::from(lh) / f64::from(th),
        )
    }

    /// The desktop pixel an X server puts the pointer on: the one that contains
    /// [`Head::expected_local`], offset by the output's position.
    pub fn expected_x_pixel(&self, x: f64, y: f64) -> (i32, i32) {
        let (lx, ly) = self.expected_local(x, y);
        (
            self.logical.0 + crate::round_to_i32(lx.floor()),
            self.logical.1 + crate::round_to_i32(ly.floor()),
        )
    }
}

/// spec/pvmouse.md §3.1: the pixel a normalised position means on an axis `size` pixels long.
pub fn pixel(size: i32, v: f64) -> i32 {
    let a = (v * 65535.0).round();
    crate::round_to_i32((a * f64::from(size) / 65535.0).floor()).min(size - 1)
}

/// A screendump: width, height and RGB bytes.
#[derive(Debug)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

impl Picture {
    pub fn at(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// The bounding box (left, top, right, bottom, inclusive) of the pure red pixels.
    pub fn red_box(&self) -> Option<(usize, usize, usize, usize)> {
        let mut b: Option<(usize, usize, usize, usize)> = None;
        for y in 0..self.height {
            for x in 0..self.width {
                if self.at(x, y) == [0xff, 0, 0] {
                    b = Some(match b {
                        None => (x, y, x, y),
                        Some((l, t, r, bo)) => (l.min(x), t.min(y), r.max(x), bo.max(y)),
                    });
                }
            }
        }
        b
    }
}

/// The desktop guest's virtio-gpu, as `VmConfig::desktop` adds it.
pub const GPU_ID: &str = "gpu0";

/// QMP `screendump` of one head of the desktop guest's virtio-gpu, read back from its PPM file.
pub fn screendump(qemu: &mut Qmp, head: u32, file: &Path) -> std::io::Result<Picture> {
    let name = file
        .to_str()
        .ok_or_else(|| std::io::Error::other("a screendump path must be UTF-8"))?;
    qemu.execute(
        "screendump",
        json!({"filename": name, "device": GPU_ID, "head": head}),
    )?;
    read_ppm(&std::fs::read(file)?)
}

/// Heads side by side, tops aligned, on a dark background, as one PNG: what the monitors of a
/// desktop laid out left to right show.
pub fn write_side_by_side(pictures: &[Picture], path: &Path) -> std::io::Result<()> {
    let width: usize = pictures.iter().map(|p| p.width).sum();
    let height = pictures.iter().map(|p| p.height).max().unwrap_or(0);
    let mut rgb = vec![0x20u8; width * height * 3];
    let mut left = 0;
    for p in pictures {
        for y in 0..p.height {
            let from = &p.rgb[y * p.width * 3..(y + 1) * p.width * 3];
            let at = (y * width + left) * 3;
            rgb[at..at + from.len()].copy_from_slice(from);
        }
        left += p.width;
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let to_u32 = |v: usize| u32::try_from(v).map_err(std::io::Error::other);
    let mut encoder = png::Encoder::new(file, to_u32(width)?, to_u32(height)?);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
    writer.write_image_data(&rgb).map_err(std::io::Error::other)
}

/// A binary PPM (P6, maxval 255), as QEMU writes it.
pub fn read_ppm(bytes: &[u8]) -> std::io::Result<Picture> {
    let bad = |why: &str| std::io::Error::other(format!("not a PPM QEMU writes: {why}"));
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while at < bytes.len() && !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if start == at {
            return Err(bad("short header"));
        }
        fields.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
    }
    at += 1;
    if fields[0] != "P6" || fields[3] != "255" {
        return Err(bad("not P6 with maxval 255"));
    }
    let width: usize = fields[1].parse().map_err(|_| bad("width"))?;
    let height: usize = fields[2].parse().map_err(|_| bad("height"))?;
    let rgb = bytes
        .get(at..at + width * height * 3)
        .ok_or_else(|| bad("short pixel data"))?
        .to_vec();
    Ok(Picture { width, height, rgb })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_are_inverted_exactly() {
        for t in 0..8 {
            let head = Head {
                framebuffer: (8, 6),
                logical: (0, 0, 8, 6),
                transform: t,
            };
            let (tw, th) = if t % 2 == 1 { (6, 8) } else { (8, 6) };
            for (u, v) in [(0, 0), (tw - 1, 0), (0, th - 1)] {
                let (p, q) = head.framebuffer_pixel_of(u, v);
                assert_eq!(head.logical_pixel(p, q), (u, v), "transform {t}");
            }
        }
    }

    #[test]
    fn a_scaled_head_halves_the_pixel_centre() {
        let head = Head {
            framebuffer: (1280, 1024),
            logical: (1024, 0, 640, 512),
            transform: 0,
        };
        assert_eq!(head.expected_local(0.0, 0.0), (0.25, 0.25));
        assert_eq!(head.expected_x_pixel(1.0, 1.0), (1024 + 639, 511));
    }
}
