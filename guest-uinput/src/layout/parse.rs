//! The operator's layouts: the `--layout` spec string and the TOML layout file. Errors name
//! where the problem is (the spec, or the file and line) and what it is.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::{Layout, LayoutError, Rect};

/// The operator's two ways of writing a layout. A trait because the model lives in the spec
/// crate, and only the guest reads these.
pub trait ParseLayout: Sized {
    /// `ID=WxH@X,Y` entries separated by commas, e.g. `0=1024x768@0,0,1=1280x1024@1024,0`.
    /// Offsets may be negative.
    fn parse_spec(spec: &str) -> Result<Self, LayoutError>;

    /// A TOML layout file: one `[[display]]` table per display with `id`, `width`, `height`,
    /// `x` and `y`. Errors name the file, the line and the problem.
    fn parse_file(path: &Path, text: &str) -> Result<Self, LayoutError>;
}

impl ParseLayout for Layout {
    /// `ID=WxH@X,Y` entries separated by commas, e.g. `0=1024x768@0,0,1=1280x1024@1024,0`.
    /// Offsets may be negative.
    fn parse_spec(spec: &str) -> Result<Self, LayoutError> {
        let err = |problem: String| LayoutError::Spec {
            spec: spec.to_owned(),
            problem,
        };
        let mut displays = BTreeMap::new();
        // Split on commas that start a new `ID=` entry, not the one inside `@X,Y`.
        let mut entries: Vec<String> = Vec::new();
        for part in spec.split(',') {
            match entries.last_mut() {
                Some(last) if !part.contains('=') => {
                    last.push(',');
                    last.push_str(part);
                }
                _ => entries.push(part.to_owned()),
            }
        }
        for entry in entries {
            let entry = entry.trim();
            let (id, rect) = parse_entry(entry).map_err(err)?;
            if displays.insert(id, rect).is_some() {
                return Err(err(format!("display {id} is given twice")));
            }
        }
        Self::new(displays).map_err(err)
    }

    /// A TOML layout file: one `[[display]]` table per display with `id`, `width`, `height`,
    /// `x` and `y`. Errors name the file, the line and the problem.
    fn parse_file(path: &Path, text: &str) -> Result<Self, LayoutError> {
        let file = path.display().to_string();
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let doc: LayoutFile = toml::from_str(text).map_err(|e| LayoutError::File {
            file: file.clone(),
            line: e.span().map(|s| line_of(s.start)).unwrap_or(1),
            problem: e.message().to_owned(),
        })?;
        let mut displays = BTreeMap::new();
        for d in &doc.display {
            let at_line = |offset: usize| {
                let file = file.clone();
                move |problem: String| LayoutError::File {
                    file,
                    line: line_of(offset),
                    problem,
                }
            };
            let at = at_line(d.id.span().start);
            let id = fit("display id", d.id.get_ref(), u8::MIN, u8::MAX)
                .map_err(at_line(d.id.span().start))?;
            let offset = |v: &Option<toml::Spanned<i64>>, name| match v {
                Some(v) => {
                    fit(name, v.get_ref(), i32::MIN, i32::MAX).map_err(at_line(v.span().start))
                }
                None => Ok(0),
            };
            let size = |v: &toml::Spanned<i64>, name| {
                fit(name, v.get_ref(), u32::MIN, u32::MAX).map_err(at_line(v.span().start))
            };
            let rect = Rect {
                x: offset(&d.x, "x")?,
                y: offset(&d.y, "y")?,
                width: size(&d.width, "width")?,
                height: size(&d.height, "height")?,
            };
            if displays.insert(id, rect).is_some() {
                return Err(at(format!("display {id} is given twice")));
            }
            Self::new(BTreeMap::from([(id, displays[&id])])).map_err(at)?;
        }
        Self::new(displays).map_err(|problem| LayoutError::File {
            file,
            line: 1,
            problem,
        })
    }
}

/// One `ID=WxH@X,Y` entry. The shape is checked first, then each number, so that a number too
/// large for its field is reported as such, not as a malformed entry.
fn parse_entry(entry: &str) -> Result<(u8, Rect), String> {
    let shape = || -> Option<[&str; 5]> {
        let (id, rest) = entry.split_once('=')?;
        let (size, pos) = rest.split_once('@')?;
        let (w, h) = size.split_once('x')?;
        let (x, y) = pos.split_once(',')?;
        Some([id, w, h, x, y])
    };
    let [id, w, h, x, y] =
        shape().ok_or_else(|| format!("{entry:?} is not ID=WIDTHxHEIGHT@X,Y"))?;
    Ok((
        number("display id", id, u8::MIN, u8::MAX)?,
        Rect {
            x: number("x", x, i32::MIN, i32::MAX)?,
            y: number("y", y, i32::MIN, i32::MAX)?,
            width: number("width", w, u32::MIN, u32::MAX)?,
            height: number("height", h, u32::MIN, u32::MAX)?,
        },
    ))
}

/// A whole number for `field`, which must lie in `min..=max` (the range of its type).
fn number<T>(field: &str, text: &str, min: T, max: T) -> Result<T, String>
where
    T: TryFrom<i128> + Into<i128> + Copy,
{
    let text = text.trim();
    let value: i128 = text
        .parse()
        .map_err(|_| format!("{field} {text:?} is not a whole number"))?;
    fit(field, &value, min, max)
}

/// `value` as the type of `field`, whose range is `min..=max`.
fn fit<T, V>(field: &str, value: &V, min: T, max: T) -> Result<T, String>
where
    T: TryFrom<i128> + Into<i128> + Copy,
    V: Into<i128> + Copy,
{
    let value: i128 = (*value).into();
    T::try_from(value).map_err(|_| {
        format!(
            "{field} {value} is out of range ({}..={})",
            min.into(),
            max.into()
        )
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LayoutFile {
    #[serde(default)]
    display: Vec<DisplayEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisplayEntry {
    // As TOML has them (64-bit), so that a value too large for its field is reported as out of
    // range, on its own line, by `fit`.
    id: toml::Spanned<i64>,
    width: toml::Spanned<i64>,
    height: toml::Spanned<i64>,
    x: Option<toml::Spanned<i64>>,
    y: Option<toml::Spanned<i64>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::two;

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, want) in [
            ("", "is not ID="),
            ("0=100x100", "is not ID="),
            ("0=0x100@0,0", "zero width"),
            ("0=100x100@0,0,0=100x100@100,0", "given twice"),
            ("0=100x100@0,0,1=100x100@50,50", "overlap"),
            ("16=100x100@0,0", "beyond"),
            (
                "0=99999999999x768@0,0",
                "width 99999999999 is out of range (0..=4294967295)",
            ),
            ("0=10x10@-3000000000,0", "x -3000000000 is out of range"),
            ("300=10x10@0,0", "display id 300 is out of range (0..=255)"),
            ("0=tenx10@0,0", "width \"ten\" is not a whole number"),
        ] {
            let e = Layout::parse_spec(spec).unwrap_err().to_string();
            assert!(e.contains(want), "{spec:?}: {e}");
        }
    }

    #[test]
    fn layout_files_parse_and_errors_name_file_and_line() {
        let path = Path::new("/etc/pvmouse/layout.toml");
        let good = "[[display]]\nid = 0\nwidth = 1024\nheight = 768\n\n\
                    [[display]]\nid = 1\nwidth = 1280\nheight = 1024\nx = 1024\n";
        assert_eq!(Layout::parse_file(path, good).unwrap(), two());
        let cases = [
            (
                "[[display]]\nid = 0\nwidth = 10\n",
                1,
                "missing field `height`",
            ),
            (
                "[[display]]\nid = 0\nwidth = 10\nheight = 10\ncolour = 1\n",
                5,
                "unknown field",
            ),
            ("[[display]]\nid = 0\nwidth = -5\nheight = 10\n", 3, ""),
            (
                "[[display]]\nid = 0\nwidth = 99999999999\nheight = 10\n",
                3,
                "out of range",
            ),
            (
                "[[display]]\nid = 0\nwidth = 10\nheight = 10\n[[display]]\nid = 0\nwidth = 10\nheight = 10\nx = 10\n",
                6,
                "given twice",
            ),
            (
                "[[display]]\nid = 0\nwidth = 0\nheight = 10\n",
                2,
                "zero width",
            ),
            ("this is not toml", 1, ""),
        ];
        for (text, line, want) in cases {
            let e = Layout::parse_file(path, text).unwrap_err();
            let LayoutError::File {
                file,
                line: got,
                problem,
            } = &e
            else {
                panic!("{e}")
            };
            assert_eq!(file, "/etc/pvmouse/layout.toml");
            assert_eq!(*got, line, "{text:?}: {e}");
            assert!(problem.contains(want), "{text:?}: {e}");
        }
    }
}
