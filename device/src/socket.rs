//! Listening sockets: created at operator-given paths without clobbering anything, or adopted
//! from an inherited descriptor; and the descriptor flags the device's own fds need.

use std::fs;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error(
        "{0} is a socket that another process is listening on; refusing to take it over (stop \
         that process, or choose another path)"
    )]
    InUse(PathBuf),
    #[error("{0} is a symbolic link; refusing to create a socket through it")]
    Symlink(PathBuf),
    #[error(
        "{link} is a symbolic link owned by uid {owner}, neither root nor us; refusing to create \
         a socket through it"
    )]
    UntrustedSymlink { link: PathBuf, owner: u32 },
    #[error("cannot create socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("--fd {fd} (or the socket systemd handed over as {fd}): {reason}")]
    BadFd { fd: RawFd, reason: &'static str },
}

/// Who may connect: the owner only (0600, the default), or also one group (0660).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketAccess {
    pub group: Option<u32>,
}

/// The file of a socket this process bound. Dropping it removes the file, if it is still the
/// one we bound: a backend that exits leaves nothing behind, and never removes a socket that
/// someone else has since bound at the same path.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    fn of(path: &Path) -> io::Result<Self> {
        let meta = fs::symlink_metadata(path)?;
        Ok(Self {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

/// Binds a Unix socket at `path`, mode 0600 (or 0660 and owned by `access.group`).
///
/// A socket already there is replaced only if it is stale: one that refuses connections. A
/// socket that accepts one belongs to a running process (a second backend started on the same
/// paths would otherwise unlink it, leaving the first running and unreachable). Any other file
/// is refused, and so is a path that is itself a symlink, or that goes through a symlink owned
/// by someone other than root or us: whoever owns such a link decides where the socket really
/// goes.
pub fn bind_socket(
    path: &Path,
    access: SocketAccess,
) -> Result<(UnixListener, SocketFile), SocketError> {
    let io_err = |source| SocketError::Io {
        path: path.to_owned(),
        source,
    };
    refuse_untrusted_links(path)?;
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            return Err(SocketError::Symlink(path.to_owned()));
        }
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => return Err(SocketError::InUse(path.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                fs::remove_file(path).map_err(io_err)?
            }
            Err(e) => return Err(io_err(e)),
        },
        Ok(_) => return Err(SocketError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    // The binary sets umask 0177 at start, so the socket is born 0600 and nobody else can
    // connect before the chmod; the chmod covers library users that did not.
    let listener = UnixListener::bind(path).map_err(io_err)?;
    let file = SocketFile::of(path).map_err(io_err)?;
    let mode = match access.group {
        Some(gid) => {
            std::os::unix::fs::chown(path, None, Some(gid)).map_err(io_err)?;
            0o660
        }
        None => 0o600,
    };
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err)?;
    Ok((listener, file))
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

/// Takes ownership of an inherited listening socket (`--fd`), after checking that it is a
/// listening Unix stream socket, and makes it blocking.
///
/// Call it before the process opens any descriptor of its own: otherwise `--fd N` could name
/// one of those, for instance the control socket, and pass every check.
/// Takes an inherited descriptor that is a regular file or a memfd (the keeper's ledger).
pub fn adopt_file(fd: RawFd) -> Result<fs::File, SocketError> {
    let bad = |reason| SocketError::BadFd { fd, reason };
    // SAFETY: F_GETFD only reads the descriptor's flags; it touches no memory.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(bad("not an open file descriptor"));
    }
    // SAFETY: the descriptor is open (checked above) and was handed to this process for it to
    // own; nothing else in the process uses it.
    let file = fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    match file.metadata() {
        Ok(m) if m.is_file() => Ok(file),
        _ => Err(bad("not a regular file or memfd")),
    }
}

pub fn adopt_listener(fd: RawFd) -> Result<UnixListener, SocketError> {
    let bad = |reason| SocketError::BadFd { fd, reason };
    // SAFETY: F_GETFD only reads the descriptor's flags; it touches no memory.
    if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(bad("not an open file descriptor"));
    }
    let option = |name| socket_option(fd, name);
    match option(libc::SO_DOMAIN) {
        Ok(libc::AF_UNIX) => {}
        Ok(_) => return Err(bad("not a Unix domain socket")),
        Err(_) => return Err(bad("not a socket")),
    }
    if option(libc::SO_TYPE).ok() != Some(libc::SOCK_STREAM) {
        return Err(bad("not a stream socket (SOCK_STREAM)"));
    }
    if option(libc::SO_ACCEPTCONN).ok() != Some(1) {
        return Err(bad("not listening (a connected or unbound socket)"));
    }
    // SAFETY: the descriptor is open and a listening socket (checked above), and was handed to
    // this process through --fd for it to own; nothing else in the process uses it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // A non-blocking listener would make the vhost-user accept loop spin on EAGAIN.
    set_flag(fd, libc::O_NONBLOCK, false).map_err(|_| bad("cannot make it blocking"))?;
    // Ours alone: a child (a keeper's worker) gets only what the keeper hands it on purpose.
    close_on_exec(fd).map_err(|_| bad("cannot mark it close-on-exec"))?;
    Ok(UnixListener::from(owned))
}

fn socket_option(fd: RawFd, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = libc::socklen_t::try_from(size_of::<libc::c_int>())
        .map_err(|_| io::Error::other("socklen_t"))?;
    // SAFETY: getsockopt writes at most `len` bytes into `value`, a live c_int of that size,
    // and updates `len`; both pointers are valid for the call.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            std::ptr::from_mut(&mut value).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    set_flag(fd, libc::O_NONBLOCK, true)
}

fn set_flag(fd: RawFd, flag: libc::c_int, on: bool) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns, with integer arguments only; no memory is
    // passed to the kernel.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = if on { flags | flag } else { flags & !flag };
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn close_on_exec(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
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

    fn bind_private(path: &Path) -> Result<(UnixListener, SocketFile), SocketError> {
        bind_socket(path, SocketAccess::default())
    }

    #[test]
    fn creates_0600_replaces_stale_sockets_and_refuses_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s.sock");
        // A socket whose process is gone: the file stays, and refuses connections.
        drop(UnixListener::bind(&sock).unwrap());
        let bound = bind_private(&sock).unwrap();
        let mode = fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(bound);
        assert!(!sock.exists(), "our own socket file goes with us");

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
    fn a_live_socket_is_never_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("live.sock");
        let (live, _file) = bind_private(&sock).unwrap();
        let err = bind_private(&sock).unwrap_err();
        assert!(matches!(err, SocketError::InUse(_)), "{err}");
        assert!(
            err.to_string().contains("another process is listening"),
            "{err}"
        );
        // Still the first listener's socket: a client reaches it.
        UnixStream::connect(&sock).unwrap();
        assert!(live.accept().is_ok());
    }

    #[test]
    fn a_socket_file_someone_else_rebound_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("moved.sock");
        let (_ours, file) = bind_private(&sock).unwrap();
        fs::remove_file(&sock).unwrap();
        let _theirs = UnixListener::bind(&sock).unwrap();
        drop(file);
        assert!(sock.exists(), "not ours any more: kept");
    }

    #[test]
    fn only_listening_unix_stream_sockets_are_adopted() {
        use std::os::fd::IntoRawFd;
        use std::os::unix::net::UnixDatagram;
        let dir = tempfile::tempdir().unwrap();
        let datagram = UnixDatagram::bind(dir.path().join("d"))
            .unwrap()
            .into_raw_fd();
        let (a, b) = UnixStream::pair().unwrap();
        let file = fs::File::open("/proc/self/stat").unwrap().into_raw_fd();
        for (fd, want) in [
            (datagram, "not a stream socket"),
            (a.into_raw_fd(), "not listening"),
            (file, "not a socket"),
            (-1, "not an open file descriptor"),
            (987_654, "not an open file descriptor"),
        ] {
            let err = adopt_listener(fd).unwrap_err();
            assert!(err.to_string().contains(want), "fd {fd}: {err}");
        }
        drop(b);
        let listener = UnixListener::bind(dir.path().join("l")).unwrap();
        listener.set_nonblocking(true).unwrap();
        let adopted = adopt_listener(listener.into_raw_fd()).unwrap();
        // SAFETY: F_GETFL only reads the flags of a descriptor we own.
        let flags =
            unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&adopted), libc::F_GETFL) };
        assert_eq!(flags & libc::O_NONBLOCK, 0, "adopted listeners block");
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
        let _bound = bind_socket(&sock, SocketAccess { group: Some(gid) }).unwrap();
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
        let _bound = bind_private(&ours.join("s.sock")).unwrap();
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
