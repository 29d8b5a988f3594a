//! The virtio-input configuration space, modelled per select/subsel.
//!
//! The driver writes `select` and `subsel`, then reads `size` and the union `u`. Each answer is a
//! typed value serialised on demand; every combination the profile does not define answers size 0.

use pvmouse_spec::evdev::{EV_ABS, EV_KEY, EV_MSC, EV_REL};
use pvmouse_spec::profile::{
    ABS_CODES, AXIS_MAX, AXIS_MIN, BUSTYPE, DISPLAY_AXIS, KEY_CODES, MAX_ID_STRING_LEN, MSC_CODES,
    POSITION_CODES, PRODUCT, REL_CODES, RELATIVE_PRODUCT, RELATIVE_REL_CODES,
    RELATIVE_SERIAL_SUFFIX, RELATIVE_SUFFIX, VENDOR, VERSION,
};
use virtio_bindings::virtio_input::{
    virtio_input_config_select_VIRTIO_INPUT_CFG_ABS_INFO as CFG_ABS_INFO,
    virtio_input_config_select_VIRTIO_INPUT_CFG_EV_BITS as CFG_EV_BITS,
    virtio_input_config_select_VIRTIO_INPUT_CFG_ID_DEVIDS as CFG_ID_DEVIDS,
    virtio_input_config_select_VIRTIO_INPUT_CFG_ID_NAME as CFG_ID_NAME,
    virtio_input_config_select_VIRTIO_INPUT_CFG_ID_SERIAL as CFG_ID_SERIAL,
    virtio_input_config_select_VIRTIO_INPUT_CFG_PROP_BITS as CFG_PROP_BITS,
};

use crate::identity::Identity;

/// `struct virtio_input_config`: select, subsel, size, 5 reserved bytes, 128-byte union.
pub const CONFIG_SIZE: usize = 136;
const OFFSET_SELECT: usize = 0;
const OFFSET_SUBSEL: usize = 1;
const OFFSET_SIZE: usize = 2;
const OFFSET_UNION: usize = 8;
const UNION_SIZE: usize = CONFIG_SIZE - OFFSET_UNION;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbsInfo {
    pub min: i32,
    pub max: i32,
    pub fuzz: i32,
    pub flat: i32,
    pub res: i32,
}

/// What the device answers for one select/subsel pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigAnswer<'a> {
    Empty,
    String(&'a str),
    DevIds(u16),
    Bitmap(&'static [u16]),
    AbsInfo(AbsInfo),
}

impl ConfigAnswer<'_> {
    /// Writes the union and returns the `size` field.
    fn serialise(&self, union: &mut [u8; UNION_SIZE]) -> u8 {
        let len = match *self {
            ConfigAnswer::Empty => 0,
            ConfigAnswer::String(s) => {
                // Identity strings are at most 63 bytes; the union holds 128.
                let n = s.len().min(UNION_SIZE);
                union[..n].copy_from_slice(&s.as_bytes()[..n]);
                n
            }
            ConfigAnswer::DevIds(product) => {
                for (i, v) in [BUSTYPE, VENDOR, product, VERSION].into_iter().enumerate() {
                    union[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
                }
                8
            }
            ConfigAnswer::Bitmap(codes) => {
                let mut len = 0;
                for &code in codes {
                    let byte = usize::from(code / 8);
                    union[byte] |= 1 << (code % 8);
                    len = len.max(byte + 1);
                }
                len
            }
            ConfigAnswer::AbsInfo(a) => {
                for (i, v) in [a.min, a.max, a.fuzz, a.flat, a.res]
                    .into_iter()
                    .enumerate()
                {
                    union[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
                }
                20
            }
        };
        // UNION_SIZE is 128, so every length fits the u8 size field.
        u8::try_from(len).unwrap_or(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "config access of {size} bytes at offset {offset} is outside the {CONFIG_SIZE}-byte config space"
)]
pub struct OutOfBounds {
    pub offset: u32,
    pub size: usize,
}

#[derive(Debug, Clone)]
pub struct ConfigSpace {
    identity: Identity,
    /// The relative device's space rather than the pointer's.
    relative: Option<RelativeIds>,
    select: u8,
    subsel: u8,
}

/// The relative device's name and serial: the pointer's, suffixed (cut to what Linux keeps).
#[derive(Debug, Clone)]
struct RelativeIds {
    name: String,
    serial: String,
}

fn suffixed(base: &str, suffix: &str) -> String {
    let keep = MAX_ID_STRING_LEN
        .saturating_sub(suffix.len())
        .min(base.len());
    // Identity strings are ASCII, so any byte index is a character boundary.
    format!("{}{suffix}", &base[..keep])
}

impl ConfigSpace {
    pub fn new(identity: Identity) -> Self {
        Self {
            identity,
            relative: None,
            select: 0,
            subsel: 0,
        }
    }

    /// The relative device's config space (`spec/pvmouse.md` §10).
    pub fn relative(identity: Identity) -> Self {
        let relative = RelativeIds {
            name: suffixed(identity.name(), RELATIVE_SUFFIX),
            serial: suffixed(identity.serial(), RELATIVE_SERIAL_SUFFIX),
        };
        Self {
            identity,
            relative: Some(relative),
            select: 0,
            subsel: 0,
        }
    }

    #[cfg(test)]
    pub fn select(&self) -> (u8, u8) {
        (self.select, self.subsel)
    }

    pub fn answer(&self) -> ConfigAnswer<'_> {
        let (select, subsel) = (u32::from(self.select), u16::from(self.subsel));
        if let Some(ids) = &self.relative {
            return match (select, subsel) {
                (CFG_ID_NAME, 0) => ConfigAnswer::String(&ids.name),
                (CFG_ID_SERIAL, 0) => ConfigAnswer::String(&ids.serial),
                (CFG_ID_DEVIDS, 0) => ConfigAnswer::DevIds(RELATIVE_PRODUCT),
                (CFG_EV_BITS, EV_KEY) => ConfigAnswer::Bitmap(&KEY_CODES),
                (CFG_EV_BITS, EV_REL) => ConfigAnswer::Bitmap(&RELATIVE_REL_CODES),
                _ => ConfigAnswer::Empty,
            };
        }
        match (select, subsel) {
            (CFG_ID_NAME, 0) => ConfigAnswer::String(self.identity.name()),
            (CFG_ID_SERIAL, 0) => ConfigAnswer::String(self.identity.serial()),
            (CFG_ID_DEVIDS, 0) => ConfigAnswer::DevIds(PRODUCT),
            (CFG_PROP_BITS, 0) => ConfigAnswer::Empty,
            (CFG_EV_BITS, EV_KEY) => ConfigAnswer::Bitmap(&KEY_CODES),
            (CFG_EV_BITS, EV_REL) => ConfigAnswer::Bitmap(&REL_CODES),
            (CFG_EV_BITS, EV_ABS) => ConfigAnswer::Bitmap(&ABS_CODES),
            (CFG_EV_BITS, EV_MSC) => ConfigAnswer::Bitmap(&MSC_CODES),
            (CFG_ABS_INFO, code) if POSITION_CODES.contains(&code) => {
                ConfigAnswer::AbsInfo(AbsInfo {
                    min: AXIS_MIN,
                    max: AXIS_MAX,
                    fuzz: 0,
                    flat: 0,
                    res: 0,
                })
            }
            (CFG_ABS_INFO, DISPLAY_AXIS) => ConfigAnswer::AbsInfo(AbsInfo {
                min: 0,
                max: i32::from(self.identity.displays()) - 1,
                fuzz: 0,
                flat: 0,
                res: 0,
            }),
            _ => ConfigAnswer::Empty,
        }
    }

    pub fn image(&self) -> [u8; CONFIG_SIZE] {
        let mut union = [0u8; UNION_SIZE];
        let size = self.answer().serialise(&mut union);
        let mut out = [0u8; CONFIG_SIZE];
        out[OFFSET_SELECT] = self.select;
        out[OFFSET_SUBSEL] = self.subsel;
        out[OFFSET_SIZE] = size;
        out[OFFSET_UNION..].copy_from_slice(&union);
        out
    }

    pub fn read(&self, offset: u32, size: u32) -> Result<Vec<u8>, OutOfBounds> {
        let range = Self::range(offset, size as usize)?;
        Ok(self.image()[range].to_vec())
    }

    /// Only `select` and `subsel` are writable. Frontends such as QEMU write back the whole
    /// image after every driver write, so bytes of the read-only fields are ignored.
    pub fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), OutOfBounds> {
        let range = Self::range(offset, data.len())?;
        for (pos, byte) in range.zip(data) {
            match pos {
                OFFSET_SELECT => self.select = *byte,
                OFFSET_SUBSEL => self.subsel = *byte,
                _ => {}
            }
        }
        Ok(())
    }

    pub fn reset(&mut self) {
        self.select = 0;
        self.subsel = 0;
    }

    fn range(offset: u32, size: usize) -> Result<std::ops::Range<usize>, OutOfBounds> {
        let start = offset as usize;
        match start.checked_add(size) {
            Some(end) if size > 0 && end <= CONFIG_SIZE => Ok(start..end),
            _ => Err(OutOfBounds { offset, size }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(displays: u32) -> ConfigSpace {
        ConfigSpace::new(Identity::new("pvmouse", "serial-7", displays).unwrap())
    }

    fn select(cs: &mut ConfigSpace, select: u8, subsel: u8) -> Vec<u8> {
        // As Linux does it: two separate one-byte writes, then read size and the union.
        cs.write(0, &[select]).unwrap();
        cs.write(1, &[subsel]).unwrap();
        let size = cs.read(2, 1).unwrap()[0] as usize;
        let union = cs.read(8, 128).unwrap();
        assert!(
            union[size..].iter().all(|b| *b == 0),
            "bytes past size must be 0"
        );
        union[..size].to_vec()
    }

    fn abs(min: i32, max: i32) -> Vec<u8> {
        [min, max, 0, 0, 0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    #[test]
    fn every_select_subsel_pair_answers_exactly_the_profile() {
        let mut cs = space(3);
        let mut key = vec![0u8; 35];
        key[34] = 0b1_1111;
        let expected = |sel: u32, sub: u16| -> Option<Vec<u8>> {
            Some(match (sel, sub) {
                (1, 0) => b"pvmouse".to_vec(),
                (2, 0) => b"serial-7".to_vec(),
                (3, 0) => vec![0x06, 0, 0x76, 0x70, 0x6f, 0x6d, 0x01, 0],
                (0x11, 1) => key.clone(),
                (0x11, 2) => vec![0b0100_0000, 0b0001_1001],
                (0x11, 3) => vec![0b11, 0, 0, 0, 0, 0b1],
                (0x11, 4) => vec![0b1000],
                (0x12, 0) | (0x12, 1) => abs(0, 65535),
                (0x12, 0x28) => abs(0, 2),
                _ => return None,
            })
        };
        let mut defined = 0;
        for sel in 0..=255u8 {
            for sub in 0..=255u8 {
                let got = select(&mut cs, sel, sub);
                match expected(u32::from(sel), u16::from(sub)) {
                    Some(want) => {
                        defined += 1;
                        assert_eq!(got, want, "select {sel:#x} subsel {sub:#x}");
                    }
                    None => assert!(got.is_empty(), "select {sel:#x} subsel {sub:#x}: {got:?}"),
                }
            }
        }
        assert_eq!(defined, 10);
    }

    #[test]
    fn the_relative_device_has_relative_axes_and_buttons_only() {
        let long = "n".repeat(MAX_ID_STRING_LEN);
        let mut cs = ConfigSpace::relative(Identity::new(&long, "serial-7", 3).unwrap());
        let mut key = vec![0u8; 35];
        key[34] = 0b1_1111;
        let mut defined = 0;
        for sel in 0..=255u8 {
            for sub in 0..=255u8 {
                let got = select(&mut cs, sel, sub);
                let want: Option<Vec<u8>> = match (sel, sub) {
                    (1, 0) => Some(format!("{} relative", &long[..54]).into_bytes()),
                    (2, 0) => Some(b"serial-7-rel".to_vec()),
                    (3, 0) => Some(vec![0x06, 0, 0x76, 0x70, 0x65, 0x72, 0x01, 0]),
                    (0x11, 1) => Some(key.clone()),
                    (0x11, 2) => Some(vec![0b11]),
                    _ => None,
                };
                match want {
                    Some(want) => {
                        defined += 1;
                        assert_eq!(got, want, "select {sel:#x} subsel {sub:#x}");
                    }
                    None => assert!(got.is_empty(), "select {sel:#x} subsel {sub:#x}: {got:?}"),
                }
            }
        }
        assert_eq!(defined, 5);
        assert_eq!(select(&mut cs, 1, 0).len(), MAX_ID_STRING_LEN);
    }

    #[test]
    fn prop_bits_and_autorepeat_are_empty() {
        let mut cs = space(1);
        assert!(select(&mut cs, 0x10, 0).is_empty());
        assert!(
            select(&mut cs, 0x11, 0x14).is_empty(),
            "EV_REP would enable autorepeat"
        );
        assert_eq!(select(&mut cs, 0x12, 0x28), abs(0, 0));
    }

    #[test]
    fn whole_image_write_back_only_changes_select_and_subsel() {
        let mut cs = space(2);
        cs.write(0, &[1]).unwrap();
        let mut image = cs.image();
        image[0] = 2;
        image[2] = 99;
        image[8] = b'X';
        cs.write(0, &image).unwrap();
        assert_eq!(cs.select(), (2, 0));
        assert_eq!(&cs.read(8, 8).unwrap(), b"serial-7");
    }

    #[test]
    fn out_of_bounds_access_is_refused_without_side_effects() {
        let mut cs = space(1);
        for (offset, size) in [
            (0, 0),
            (136, 1),
            (135, 2),
            (0, 137),
            (u32::MAX, 4),
            (4000, 96),
        ] {
            assert!(cs.read(offset, size).is_err(), "read {offset}+{size}");
            assert!(
                cs.write(offset, &vec![7; size as usize]).is_err(),
                "write {offset}+{size}"
            );
        }
        assert_eq!(cs.select(), (0, 0));
        assert_eq!(cs.read(0, 136).unwrap().len(), 136);
        assert_eq!(cs.read(135, 1).unwrap().len(), 1);
    }
}
