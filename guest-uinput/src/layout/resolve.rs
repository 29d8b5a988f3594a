//! Which layout the bridge uses: the first of its sources, in a fixed order, that has one.
//!
//! The operator's `--layout` comes first, then the display server's own layout as the session
//! agent reports it, then a layout file, then what the kernel's modes say (DRM), then one
//! 1920x1080 display with a warning, so the bridge always runs. A new source takes its place
//! in [`Source::ORDER`].

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Layout, LayoutError, ParseLayout, drm};

/// A layout file larger than this is refused: a layout lists at most 16 displays.
pub const MAX_LAYOUT_FILE_BYTES: u64 = 64 * 1024;

/// Where the bridge may find its layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--layout ID=WxH@X,Y,…`.
    CommandLine,
    /// The newest layout a connected session agent sent (`pvmouse-session`).
    Session,
    /// `--layout-file`, else the default file if it exists.
    File,
    /// The modes of the first DRM card with active outputs, left to right.
    Drm,
    /// One 1920x1080 display.
    Fallback,
}

impl Source {
    /// The order sources are tried in; the first that has a layout wins, and [`Source::Fallback`]
    /// serves when none has. An explicit `--layout` beats everything. Only the display server
    /// knows its logical layout (scale, rotation, arrangement), so while a session agent is
    /// connected its word beats a static file and the kernel's modes; without one (a text
    /// console, a login screen) the file and DRM serve as before.
    pub const ORDER: [Source; 4] = [
        Source::CommandLine,
        Source::Session,
        Source::File,
        Source::Drm,
    ];
}

/// What the bridge was told about its layout sources.
#[derive(Debug, Clone)]
pub struct Sources {
    pub spec: Option<String>,
    pub file: Option<PathBuf>,
    /// Used when it exists and no `file` was given.
    pub default_file: PathBuf,
    pub dri_dir: PathBuf,
    /// The connected session agent's layout, if any; the daemon keeps it current.
    pub session: Option<Layout>,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("cannot read layout file {0}: {1}")]
    Read(PathBuf, io::Error),
    #[error("layout file {0} is not a regular file")]
    NotAFile(PathBuf),
    #[error("layout file {0} is larger than {MAX_LAYOUT_FILE_BYTES} bytes")]
    TooLarge(PathBuf),
}

/// The layout from the first source that has one, and which source that was.
pub fn resolve(sources: &Sources) -> Result<(Layout, Source), ResolveError> {
    for source in Source::ORDER {
        if let Some(layout) = layout_from(source, sources)? {
            return Ok((layout, source));
        }
    }
    tracing::warn!(
        "no --layout, no layout file and no DRM outputs: assuming one 1920x1080 display"
    );
    Ok((Layout::parse_spec("0=1920x1080@0,0")?, Source::Fallback))
}

fn layout_from(source: Source, sources: &Sources) -> Result<Option<Layout>, ResolveError> {
    match source {
        Source::CommandLine => match &sources.spec {
            Some(spec) => Ok(Some(Layout::parse_spec(spec)?)),
            None => Ok(None),
        },
        Source::File => {
            let path = match &sources.file {
                Some(path) => path,
                None if sources.default_file.exists() => &sources.default_file,
                None => return Ok(None),
            };
            let text = read_layout_file(path)?;
            Ok(Some(Layout::parse_file(path, &text)?))
        }
        Source::Session => Ok(sources.session.clone()),
        Source::Drm => Ok(drm::detect(&sources.dri_dir)),
        Source::Fallback => Ok(None),
    }
}

/// Reads a layout file, refusing anything but a regular file of a sane size: `/dev/zero` would
/// be read until memory runs out, and a FIFO would block the bridge forever.
pub fn read_layout_file(path: &Path) -> Result<String, ResolveError> {
    let read_err = |e| ResolveError::Read(path.to_owned(), e);
    // Non-blocking, so that opening a FIFO with no writer returns at once.
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    let kind = meta.file_type();
    if !kind.is_file() || kind.is_fifo() {
        return Err(ResolveError::NotAFile(path.to_owned()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_LAYOUT_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_LAYOUT_FILE_BYTES {
        return Err(ResolveError::TooLarge(path.to_owned()));
    }
    String::from_utf8(bytes).map_err(|e| read_err(io::Error::new(io::ErrorKind::InvalidData, e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: &Path) -> Sources {
        Sources {
            spec: None,
            file: None,
            default_file: dir.join("absent.toml"),
            dri_dir: dir.join("no-dri"),
            session: None,
        }
    }

    #[test]
    fn sources_are_tried_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("layout.toml");
        std::fs::write(&file, "[[display]]\nid = 1\nwidth = 800\nheight = 600\n").unwrap();
        let mut s = sources(dir.path());
        assert_eq!(resolve(&s).unwrap().1, Source::Fallback);
        s.default_file = file.clone();
        let (layout, from) = resolve(&s).unwrap();
        assert_eq!(from, Source::File);
        assert!(layout.display(1).is_some());
        s.session = Some(Layout::parse_spec("0=20x20@0,0").unwrap());
        assert_eq!(resolve(&s).unwrap().1, Source::Session);
        s.spec = Some("0=10x10@0,0".into());
        assert_eq!(resolve(&s).unwrap().1, Source::CommandLine);
    }

    #[test]
    fn only_regular_files_of_a_sane_size_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_layout_file(Path::new("/dev/zero")).unwrap_err();
        assert!(matches!(err, ResolveError::NotAFile(_)), "{err}");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path that lives across the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let start = std::time::Instant::now();
        let err = read_layout_file(&fifo).unwrap_err();
        assert!(matches!(err, ResolveError::NotAFile(_)), "{err}");
        assert!(
            start.elapsed() < std::time::Duration::from_secs(1),
            "did not block"
        );
        assert!(read_layout_file(dir.path()).is_err(), "a directory");
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; 70_000]).unwrap();
        let err = read_layout_file(&big).unwrap_err();
        assert!(err.to_string().contains("larger than 65536 bytes"), "{err}");
    }
}
