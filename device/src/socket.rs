//! Listening sockets: created at operator-given paths without clobbering anything, or adopted
//! from an inherited descriptor; and the descriptor flags the device's own fds need.

use std::fs;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("{0} is a symbolic link; refusing to create a socket through it")]
    Symlink(PathBuf),
    #[error(
        "{link} is a symbolic link owned by uid {owner}, neither root nor us; refusing to create \
         a socket through it"
    )]
    UntrustedSymlink { link: PathBuf, owner: u32 },
    #[error("cannot create socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("--fd {fd}: {reason}")]
    BadFd { fd: RawFd, reason: &'static str },
}

/// Who may connect: the owner only (0600, the default), or also one group (0660).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketAccess {
    pub group: Option<u32>,
}

/// Binds a Unix socket at `path`, mode 0600 (or 0660 and owned by `access.group`). A stale
/// socket there is replaced. Any other file is refused, and so is a path that is itself a
/// symlink, or that goes through a symlink owned by someone other than root or us: whoever owns
/// such a link decides where the socket really goes.
pub fn bind_socket(path: &Path, access: SocketAccess) -> Result<UnixListener, SocketError> {
    let io_err = |source| SocketError::Io {
        path: path.to_owned(),
        source,
    };
    refuse_untrusted_links(path)?;
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(SocketError::Symlink(path.to_owned()));
        }
        Ok(meta) if meta.file_type().is_socket() => fs::remove_file(path).map_err(io_err)?,
        Ok(_) => return Err(SocketError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    // The binary sets umask 0177 at start, so the socket is born 0600 and nobody else can
    // connect before the chmod; the chmod covers library users that did not.
    let listener = UnixListener::bind(path).map_err(io_err)?;
    let mode = match access.group {
        Some(gid) => {
            std::os::unix::fs::chown(path, None, Some(gid)).map_err(io_err)?;
            0o660
        }
        None => 0o600,
    };
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err)?;
    Ok(listener)
}

fn refuse_untrusted_links(path: &Path) -> Result<(), SocketError> {
    // /proc/self belongs to our effective uid.
    let me = fs::metadata("/proc/self").map(|m| m.uid()).ok();
    for dir in path.ancestors().skip(1) {
        if dir.as_os_str().is_empty() {
            continue;
        }
        if let Ok(meta) = fs::symlink_metadata(dir) {
            if meta.file_type().is_symlink() && meta.uid() != 0 && Some(meta.uid()) != me {
                return Err(SocketError::UntrustedSymlink {
                    link: dir.to_owned(),
                    owner: meta.uid(),
                });
            }
        }
    }
    Ok(())
}

/// Takes ownership of an inherited listening socket (`--fd`), after checking that it is one.
pub fn adopt_listener(fd: RawFd) -> Result<UnixListener, SocketError> {
    let bad = |reason| SocketError::BadFd { fd, reason };
    // SAFETY: F_GETFD only reads the descriptor's flags; it touches no memory.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(bad("not an open file descriptor"));
    }
    // SAFETY: the descriptor is open (checked above) and was handed to this process through
    // --fd for it to own; nothing else in the process uses it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let listener = UnixListener::from(owned);
    listener
        .local_addr()
        .map_err(|_| bad("not a Unix domain socket"))?;
    Ok(listener)
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns, with integer arguments only; no memory is
    // passed to the kernel.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A group given by name (from /etc/group) or number.
pub fn resolve_group(group: &str) -> Option<u32> {
    if let Ok(gid) = group.parse() {
        return Some(gid);
    }
    let groups = fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut f = line.split(':');
        (f.next()? == group).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bind_private(path: &Path) -> Result<UnixListener, SocketError> {
        bind_socket(path, SocketAccess::default())
    }

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

    #[test]
    fn a_group_gets_0660_and_ownership() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("g.sock");
        // Another group than the one the socket is born with, where we may chown to one (root),
        // so a skipped chown shows.
        let ours = fs::metadata(dir.path()).unwrap().gid();
        let root = fs::metadata("/proc/self").unwrap().uid() == 0;
        let gid = if root { ours + 4242 } else { ours };
        drop(bind_socket(&sock, SocketAccess { group: Some(gid) }).unwrap());
        let meta = fs::metadata(&sock).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), gid);
    }

    #[test]
    fn our_own_directory_links_are_followed_and_foreign_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        fs::create_dir(&real).unwrap();
        let ours = dir.path().join("ours");
        std::os::unix::fs::symlink(&real, &ours).unwrap();
        drop(bind_private(&ours.join("s.sock")).unwrap());
        assert!(real.join("s.sock").exists());

        // A link owned by another user: only root can make one here, as the tests run.
        if fs::metadata("/proc/self").unwrap().uid() != 0 {
            return;
        }
        let foreign = dir.path().join("foreign");
        std::os::unix::fs::symlink(&real, &foreign).unwrap();
        std::os::unix::fs::lchown(&foreign, Some(4242), None).unwrap();
        let err = bind_private(&foreign.join("t.sock")).unwrap_err();
        assert!(
            matches!(err, SocketError::UntrustedSymlink { owner: 4242, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("owned by uid 4242"), "{err}");
        assert!(!real.join("t.sock").exists());
    }

    #[test]
    fn groups_resolve_by_number_and_name() {
        assert_eq!(resolve_group("27"), Some(27));
        assert_eq!(resolve_group("root"), Some(0));
        assert_eq!(resolve_group("no-such-group-pvmouse"), None);
    }
}
