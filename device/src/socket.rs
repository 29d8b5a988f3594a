//! Creating listening sockets at operator-given paths without clobbering anything.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("{0} is a symbolic link; refusing to create a socket through it")]
    Symlink(PathBuf),
    #[error("cannot create socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Binds a Unix socket at `path` with mode 0600. A stale socket there is replaced; any other
/// file, or a symlink, is refused.
pub fn bind_private(path: &Path) -> Result<UnixListener, SocketError> {
    let io_err = |source| SocketError::Io {
        path: path.to_owned(),
        source,
    };
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(SocketError::Symlink(path.to_owned()));
        }
        Ok(meta) if meta.file_type().is_socket() => fs::remove_file(path).map_err(io_err)?,
        Ok(_) => return Err(SocketError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    // The binary sets umask 0177 at start, so the socket is born 0600; the chmod covers
    // library users that did not.
    let listener = UnixListener::bind(path).map_err(io_err)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_0600_replaces_stale_sockets_and_refuses_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        drop(bind_private(&sock).unwrap());
        let mode = fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // The old socket is still there, stale: replaced.
        bind_private(&sock).unwrap();

        let file = dir.path().join("file");
        fs::write(&file, b"keep me").unwrap();
        assert!(matches!(
            bind_private(&file),
            Err(SocketError::NotASocket(_))
        ));
        assert_eq!(fs::read(&file).unwrap(), b"keep me");

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        assert!(matches!(bind_private(&link), Err(SocketError::Symlink(_))));
    }
}
