//! The keeper: the part of a `--restartable` backend that does not restart.
//!
//! It owns what the frontend and the control clients are connected to, and nothing else:
//!
//! - the vhost-user socket, and the frontend's connection on it;
//! - the control socket's listener (each worker accepts on it, so a client that connects while
//!   no worker runs waits in the backlog instead of being refused);
//! - the ledger, a memfd where each worker keeps the device's state ([`crate::ledger`]);
//! - a private socket through which it talks vhost-user to the current worker.
//!
//! It starts a worker (this same binary, from its path on disk, so a new build on disk is what
//! the next worker runs), and starts another whenever one ends: killed, panicked, or asked to
//! upgrade (`pvmouse-upgrade`). It passes every frontend message to the worker and every answer
//! back, and keeps the messages that set the session up ([`session::Session`]). A new worker is
//! told them again, with each ring starting where guest memory shows the last worker got to,
//! then kicked, and the guest interrupted once; the frontend never sees the change.
//!
//! The keeper parses only vhost-user headers and the few payload words it needs (ring index,
//! config offset, the memory table and the used ring's address), all bounds-checked and fuzzed
//! (`fuzz/fuzz_targets/keeper_messages.rs`).

pub mod message;
pub mod session;
pub mod worker;

use std::convert::Infallible;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::cli::{Config, VhostSocket};
use crate::daemon::DaemonError;
use crate::ledger::LEDGER_BYTES;
use crate::socket::{adopt_listener, bind_socket};
use message::{Message, MessageError};
use session::Session;

/// How often a worker may die right after it started before the keeper waits between starts:
/// a worker that cannot start, again and again, must not turn the keeper into a fork loop.
const QUICK_DEATHS: u32 = 5;
/// A worker that lived less than this died "right after it started".
const QUICK: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A frontend message that every worker dies on is not the device's to keep alive.
const REPLAYS_PER_MESSAGE: u32 = 5;

/// Clears `FD_CLOEXEC`, so the worker inherits the descriptor.
fn inheritable(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD read and set one descriptor's flags; no memory is involved.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn memfd(name: &std::ffi::CStr) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a NUL-terminated string that outlives the call; the new descriptor is
    // owned by the returned OwnedFd and by nothing else.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create just returned this descriptor, open and unowned.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A directory only this user can enter, holding the socket the workers listen on.
#[derive(Debug)]
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn new() -> io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!("pvmouse-keeper-{}-{nanos}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Self(dir))
    }

    fn socket(&self) -> PathBuf {
        self.0.join("worker.sock")
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What every worker is started with.
#[derive(Debug)]
struct WorkerPlan {
    exe: PathBuf,
    args: Vec<String>,
}

impl WorkerPlan {
    fn spawn(&self) -> io::Result<Child> {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.args);
        // SAFETY: the closure runs in the child between fork and exec and only calls prctl,
        // which is async-signal-safe and touches no memory of ours. A worker must not outlive
        // its keeper: nothing else could ever talk to it.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        cmd.spawn()
    }
}

/// Starts workers for as long as the keeper runs, one at a time.
fn supervise(plan: WorkerPlan) {
    let mut quick = 0;
    let mut backoff = Duration::from_millis(100);
    loop {
        let started = Instant::now();
        let status = plan.spawn().and_then(|mut child| {
            tracing::info!(pid = child.id(), exe = %plan.exe.display(), "worker started");
            child.wait()
        });
        match status {
            Ok(s) if s.success() => tracing::info!("worker exited to be replaced (upgrade)"),
            Ok(s) => tracing::warn!("worker ended ({s}); starting another"),
            Err(e) => tracing::error!("cannot start a worker: {e}"),
        }
        if started.elapsed() < QUICK {
            quick += 1;
        } else {
            quick = 0;
            backoff = Duration::from_millis(100);
        }
        if quick >= QUICK_DEATHS {
            tracing::error!(quick, "workers keep dying at once; waiting {backoff:?}");
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// The keeper's side of one worker connection: messages out, answers back.
struct WorkerLink {
    socket: PathBuf,
    stream: UnixStream,
}

impl WorkerLink {
    /// Connects to whichever worker accepts next on the private socket.
    fn connect(socket: &Path) -> io::Result<Self> {
        Ok(Self {
            socket: socket.to_owned(),
            stream: UnixStream::connect(socket)?,
        })
    }

    /// A new worker has the listener; tell it the session again.
    fn reconnect(&mut self, session: &Session) -> Result<(), MessageError> {
        self.stream = UnixStream::connect(&self.socket)?;
        for m in session.replay()? {
            m.send(&self.stream)?;
            if m.wants_reply() {
                // The answer is for the keeper, not the frontend.
                Message::recv(&self.stream)?;
            }
        }
        for fd in session.doorbells() {
            if let Some(fd) = fd.fds.first() {
                // An eventfd takes a count of 1; a spurious kick or interrupt is harmless.
                let _ = ring_doorbell(fd.as_raw_fd());
            }
        }
        Ok(())
    }

    /// Passes `msg` to the worker and returns its answer, if it owes one; a worker that dies on
    /// the way is replaced and told the session again first.
    fn exchange(
        &mut self,
        msg: &Message,
        session: &Session,
    ) -> Result<Option<Message>, MessageError> {
        let mut tries = 0;
        loop {
            let attempt = (|| -> Result<Option<Message>, MessageError> {
                msg.duplicate()?.send(&self.stream)?;
                if msg.wants_reply() {
                    Ok(Some(Message::recv(&self.stream)?))
                } else {
                    Ok(None)
                }
            })();
            match attempt {
                Ok(reply) => return Ok(reply),
                Err(e) if tries < REPLAYS_PER_MESSAGE => {
                    tries += 1;
                    tracing::warn!("worker gone mid-message ({e}); replaying the session");
                    self.replace(session)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits for the next worker and replays; retried while workers keep going away.
    fn replace(&mut self, session: &Session) -> Result<(), MessageError> {
        let mut last = None;
        for _ in 0..REPLAYS_PER_MESSAGE {
            match self.reconnect(session) {
                Ok(()) => {
                    tracing::info!("a new worker took over the session");
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
        Err(last.unwrap_or(MessageError::Closed))
    }
}

/// Writes 1 to an eventfd.
fn ring_doorbell(fd: RawFd) -> io::Result<()> {
    let one = 1u64.to_ne_bytes();
    // SAFETY: `one` is a live 8-byte buffer for the call; `fd` is an open descriptor the keeper
    // owns (a duplicate kept in the session record).
    let n = unsafe { libc::write(fd, one.as_ptr().cast(), one.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until `a` or `b` has something to read; returns which.
fn readable(a: &UnixStream, b: &UnixStream) -> io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd {
            fd: a.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is a live local array of two pollfds, and both descriptors are borrowed
    // for the duration of the call.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok((false, false))
        } else {
            Err(e)
        };
    }
    Ok((fds[0].revents != 0, fds[1].revents != 0))
}

/// Serves one frontend connection until it closes.
fn serve_frontend(frontend: &UnixStream, private: &Path) -> Result<(), MessageError> {
    let mut session = Session::default();
    let mut link = WorkerLink::connect(private)?;
    loop {
        let (from_frontend, from_worker) = readable(frontend, &link.stream)?;
        if from_worker && !from_frontend {
            // The worker owes nothing unasked: this is its connection closing.
            tracing::warn!("worker gone between messages; replaying the session");
            link.replace(&session)?;
            continue;
        }
        if !from_frontend {
            continue;
        }
        let msg = match Message::recv(frontend) {
            Ok(m) => m,
            Err(MessageError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        session.record(&msg)?;
        if let Some(reply) = link.exchange(&msg, &session)? {
            reply.send(frontend)?;
        }
    }
}

/// Runs the keeper: binds the sockets, starts the workers, and serves frontends one after
/// another, as the backend itself does.
pub fn run(config: Config) -> Result<Infallible, DaemonError> {
    let setup = DaemonError::Setup;
    let (listener, _vhost_file) = match &config.vhost_socket {
        VhostSocket::Path(path) => {
            let (l, file) = bind_socket(path, config.socket_access)?;
            (l, Some(file))
        }
        VhostSocket::Fd(fd) => (adopt_listener(*fd)?, None),
    };
    let control = match &config.control_socket {
        Some(path) => {
            let (l, file) = bind_socket(path, config.socket_access)?;
            Some((l, file))
        }
        None => None,
    };
    let ledger = memfd(c"pvmouse-ledger").map_err(setup)?;
    std::fs::File::from(ledger.try_clone().map_err(setup)?)
        .set_len(LEDGER_BYTES)
        .map_err(setup)?;
    let dir = PrivateDir::new().map_err(setup)?;
    let private = UnixListener::bind(dir.socket()).map_err(setup)?;

    let mut args = vec![
        "--fd".to_owned(),
        private.as_raw_fd().to_string(),
        "--ledger-fd".to_owned(),
        ledger.as_raw_fd().to_string(),
        "--displays".to_owned(),
        config.identity.displays().to_string(),
        "--name".to_owned(),
        config.identity.name().to_owned(),
        "--serial".to_owned(),
        config.identity.serial().to_owned(),
    ];
    inheritable(private.as_raw_fd()).map_err(setup)?;
    inheritable(ledger.as_raw_fd()).map_err(setup)?;
    if let Some((l, _)) = &control {
        inheritable(l.as_raw_fd()).map_err(setup)?;
        args.extend(["--control-fd".to_owned(), l.as_raw_fd().to_string()]);
    }
    // This program's path, taken now, while it still names the file this process runs: an
    // upgrade replaces that file, and every worker runs whatever is there when it starts.
    let exe = std::env::current_exe().map_err(|e| {
        setup(io::Error::other(format!(
            "cannot tell this program's path: {e}"
        )))
    })?;
    let plan = WorkerPlan { exe, args };
    std::thread::Builder::new()
        .name("pvmouse-keeper-supervisor".into())
        .spawn(move || supervise(plan))
        .map_err(setup)?;
    tracing::info!("keeper ready: workers may come and go, the frontend stays");
    loop {
        let (frontend, _) = listener.accept().map_err(setup)?;
        tracing::info!("vhost-user frontend connected to the keeper");
        match serve_frontend(&frontend, &dir.socket()) {
            Ok(()) => tracing::info!("vhost-user frontend disconnected"),
            Err(e) => tracing::warn!("vhost-user frontend connection ended: {e}"),
        }
    }
}
