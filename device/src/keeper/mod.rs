//! The keeper: the part of a `--restartable` backend that does not restart.
//!
//! It owns what the frontend and the control clients are connected to, and nothing else:
//!
//! - the vhost-user socket, and the frontend's connection on it;
//! - the control socket's listener (each worker accepts on it, so a client that connects while
//!   no worker runs waits in the backlog instead of being refused);
//! - the ledger, a memfd where each worker keeps the device's state ([`crate::ledger`]);
//! - a private socket, with no name on disk, through which it talks vhost-user to the current
//!   worker ([`PrivateSocket`]).
//!
//! It starts a worker (this same binary, from its path on disk, so a new build on disk is what
//! the next worker runs), and starts another whenever one ends: killed, panicked, or asked to
//! upgrade (`pvmouse-upgrade`). It passes every frontend message to the worker and every answer
//! back, and keeps the messages that set the session up ([`session::Session`]). A new worker is
//! told them again, with each ring starting where guest memory shows the last worker got to,
//! then kicked, and the guest interrupted once; the frontend never sees the change.
//!
//! The decisions are apart from the processes and sockets, and unit-tested: when to start the
//! next worker ([`restarts`]), and what a new worker is told, in which order and how often
//! ([`relay`] over [`session`]). This module spawns, waits and moves bytes. The worker's own
//! side is [`worker`], and the command line that makes a process one is
//! [`crate::cli::Role`].
//!
//! The keeper parses only vhost-user headers and the few payload words it needs (ring index,
//! config offset, the memory table and the used ring's address), all bounds-checked and fuzzed
//! (`fuzz/fuzz_targets/keeper_messages.rs`).

pub mod message;
pub mod relay;
pub mod restarts;
pub mod session;
pub mod worker;

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use vhost::vhost_user::Listener;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use crate::cli::{Config, ControlSocket, Inherited};
use crate::daemon::{DaemonError, Ending, Stops};
use crate::keeper::worker::Stop;
use crate::ledger::LEDGER_BYTES;
use crate::socket::{adopt_listener, bind_socket};
use message::{Message, MessageError};
use relay::{Relay, WorkerLink};
use restarts::{Restarts, WorkerEnd};

/// Clears `FD_CLOEXEC`, so the worker inherits the descriptor.
fn inheritable(fd: RawFd) -> io::Result<()> {
    // vmm-sys-util has no wrapper for descriptor flags, and std none for inheritance.
    // SAFETY: F_GETFD/F_SETFD read and set one descriptor's flags; no memory is involved.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn memfd(name: &std::ffi::CStr) -> io::Result<OwnedFd> {
    // Neither std nor vmm-sys-util 0.15 creates a memfd.
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
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let base = std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        remove_abandoned(&base);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!("pvmouse-keeper-{}-{nanos}", std::process::id()));
        // Created with no access for others at all, then given its owner's search bit
        // explicitly: the process's umask (0177) would strip it, and without it no one but
        // root can bind the worker's socket inside.
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(Self(dir))
    }

    fn socket(&self) -> PathBuf {
        self.0.join("worker.sock")
    }
}

/// Removes what keepers of this user that were killed left in `base` (a keeper killed with
/// SIGKILL cannot clean up): directories named for a process that no longer runs.
fn remove_abandoned(base: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    // SAFETY: getuid cannot fail and touches no memory.
    let me = unsafe { libc::getuid() };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("pvmouse-keeper-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path();
        let mine = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == me);
        if mine && !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(dir = %path.display(), "removing what a killed keeper left");
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The socket the workers listen on, with no name on disk: it is bound in a [`PrivateDir`],
/// then the name and the directory are removed at once, so that a keeper killed with SIGKILL
/// leaves nothing behind. The keeper still reaches it, through an `O_PATH` descriptor of the
/// socket's inode (`/proc/self/fd/N`), which no other process has.
#[derive(Debug)]
struct PrivateSocket {
    listener: UnixListener,
    inode: std::fs::File,
}

impl PrivateSocket {
    fn new() -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = PrivateDir::new()?;
        let listener = UnixListener::bind(dir.socket())?;
        // O_PATH opens the socket file itself (reading it is not asked, and could not be).
        let inode = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(dir.socket())?;
        drop(dir);
        Ok(Self { listener, inode })
    }

    /// Where the keeper connects to reach whichever worker accepts.
    fn address(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.inode.as_raw_fd()))
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
        // The keeper is the service: a worker neither tells systemd anything nor takes its
        // sockets (their variables name the keeper's pid anyway).
        cmd.args(&self.args)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_FDNAMES");
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

/// The worker now running, for a keeper that is asked to stop: its pid (0 for none), and
/// whether the keeper is stopping, so that no other is started.
#[derive(Debug, Default)]
struct Current {
    pid: AtomicU32,
    stopping: AtomicBool,
}

/// Starts workers for as long as the keeper runs, one at a time, as [`Restarts`] says, until it
/// is stopping.
fn supervise(plan: &WorkerPlan, current: &Current) {
    let mut restarts = Restarts::default();
    while !current.stopping.load(Ordering::Acquire) {
        let started = Instant::now();
        let status = plan.spawn().and_then(|child| {
            tracing::info!(pid = child.id(), exe = %plan.exe.display(), "worker started");
            current.pid.store(child.id(), Ordering::Release);
            let status = wait_for(&child);
            current.pid.store(0, Ordering::Release);
            status
        });
        if current.stopping.load(Ordering::Acquire) {
            return;
        }
        match WorkerEnd::from(status) {
            WorkerEnd::Upgraded => tracing::info!("worker exited to be replaced (upgrade)"),
            WorkerEnd::Died(s) => tracing::warn!("worker ended ({s}); starting another"),
            WorkerEnd::NotStarted(e) => tracing::error!("cannot start a worker: {e}"),
        }
        let wait = restarts.ended(started.elapsed());
        if !wait.is_zero() {
            let quick = restarts.quick_deaths();
            tracing::error!(quick, "workers keep dying at once; waiting {wait:?}");
            std::thread::sleep(wait);
        }
    }
}

/// Waits for the worker to end. A worker that is stopped (SIGSTOP, SIGTSTP) serves nobody and
/// holds its clients: it is killed, and so replaced. One that runs again by the time the keeper
/// looks (the whole process group was stopped and continued) is left alone.
fn wait_for(child: &Child) -> io::Result<std::process::ExitStatus> {
    use std::os::unix::process::ExitStatusExt;
    let pid = libc::pid_t::try_from(child.id()).map_err(io::Error::other)?;
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes one int, `status`, which lives across the call. std's Child
        // is not waited on after this; dropping it does not wait.
        let r = unsafe { libc::waitpid(pid, &raw mut status, libc::WUNTRACED) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if libc::WIFSTOPPED(status) {
            if still_stopped(pid) {
                let signal = libc::WSTOPSIG(status);
                tracing::error!(
                    pid,
                    signal,
                    "worker stopped: it serves nobody; replacing it"
                );
                // SAFETY: a signal to the worker this keeper started and has not reaped.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            continue;
        }
        return Ok(std::process::ExitStatus::from_raw(status));
    }
}

/// Whether the process is in the stopped state now (`T` in /proc/PID/stat).
fn still_stopped(pid: libc::pid_t) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the command name, which is in parentheses and may hold any.
            let after = stat.rsplit_once(')')?.1;
            after.split_whitespace().next().map(|s| s == "T")
        })
        .unwrap_or(false)
}

const FRONTEND: u64 = 0;
const WORKER: u64 = 1;

/// The keeper's side of one worker connection, over the private socket, and the epoll that
/// watches it and the frontend's.
struct SocketLink {
    socket: PathBuf,
    stream: Option<UnixStream>,
    epoll: Epoll,
    current: Arc<Current>,
}

/// Which connections have something to read (or have closed).
#[derive(Debug, Default)]
struct Ready {
    frontend: bool,
    worker: bool,
}

/// Milliseconds from now to `deadline`, rounded up, for epoll and poll.
fn millis_until(deadline: Instant) -> i32 {
    let left = deadline.saturating_duration_since(Instant::now());
    i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
}

impl SocketLink {
    fn new(socket: &Path, frontend: &UnixStream, current: Arc<Current>) -> io::Result<Self> {
        let epoll = Epoll::new()?;
        epoll.ctl(
            ControlOperation::Add,
            frontend.as_raw_fd(),
            EpollEvent::new(EventSet::IN, FRONTEND),
        )?;
        Ok(Self {
            socket: socket.to_owned(),
            stream: None,
            epoll,
            current,
        })
    }

    fn stream(&self) -> Result<&UnixStream, MessageError> {
        self.stream.as_ref().ok_or(MessageError::Closed)
    }

    /// Waits until the frontend or the worker has something to read, or until `until`.
    fn wait(&self, until: Option<Instant>) -> io::Result<Ready> {
        let mut events = [EpollEvent::default(); 2];
        let timeout = until.map_or(-1, millis_until);
        let n = match self.epoll.wait(timeout, &mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(e) => return Err(e),
        };
        let mut ready = Ready::default();
        for event in events.iter().take(n) {
            match event.data() {
                FRONTEND => ready.frontend = true,
                _ => ready.worker = true,
            }
        }
        Ok(ready)
    }
}

/// A worker's answer may take this long to read once it has begun to arrive: it writes each
/// in one go, so only a worker stopped mid-write takes longer.
const READ_LIMIT: Duration = Duration::from_millis(100);

impl WorkerLink for SocketLink {
    fn connect(&mut self) -> Result<(), MessageError> {
        let stream = UnixStream::connect(&self.socket)?;
        stream.set_write_timeout(Some(relay::ANSWER_WAIT))?;
        stream.set_read_timeout(Some(READ_LIMIT))?;
        if let Some(old) = self.stream.take() {
            // Explicitly: a worker being forked may hold a copy of the old socket for a moment,
            // and epoll would report it until the copy is gone.
            let _ = self.epoll.ctl(
                ControlOperation::Delete,
                old.as_raw_fd(),
                EpollEvent::default(),
            );
        }
        self.epoll.ctl(
            ControlOperation::Add,
            stream.as_raw_fd(),
            EpollEvent::new(EventSet::IN, WORKER),
        )?;
        self.stream = Some(stream);
        Ok(())
    }

    fn send(&mut self, msg: &Message) -> Result<(), MessageError> {
        Ok(msg.send(self.stream()?)?)
    }

    fn recv_by(&mut self, deadline: Instant) -> Result<Option<Message>, MessageError> {
        let stream = self.stream()?;
        let mut fd = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: poll reads and writes the one pollfd it is given, which lives across the
            // call.
            let n = unsafe { libc::poll(&raw mut fd, 1, millis_until(deadline)) };
            if n > 0 {
                return Message::recv(stream).map(Some);
            }
            if n == 0 {
                return Ok(None);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e.into());
            }
        }
    }

    fn ring(&mut self, doorbell: &OwnedFd) {
        // An eventfd takes a count of 1. std writes it without the `unsafe` that wrapping a
        // descriptor the session owns in vmm-sys-util's EventFd would take.
        if let Ok(fd) = doorbell.try_clone() {
            let _ = std::fs::File::from(fd).write_all(&1u64.to_ne_bytes());
        }
    }

    fn worker_running(&self) -> bool {
        self.running()
    }

    fn kill_worker(&mut self) {
        let pid = self.current.pid.load(Ordering::Acquire);
        let Ok(raw) = libc::pid_t::try_from(pid) else {
            return;
        };
        if raw == 0 {
            return;
        }
        // SAFETY: a signal to the worker this keeper started; the supervisor has not reaped
        // it yet (it clears `pid` when it has).
        unsafe { libc::kill(raw, libc::SIGKILL) };
        // The supervisor reaps it at once; waiting for that is waiting until it is gone.
        let deadline = Instant::now() + KILL_WAIT;
        while self.current.pid.load(Ordering::Acquire) == pid && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl SocketLink {
    fn running(&self) -> bool {
        self.current.pid.load(Ordering::Acquire) != 0
    }
}

/// How long a killed worker may take to be gone.
const KILL_WAIT: Duration = Duration::from_millis(40);

/// Serves one frontend connection until it closes.
fn serve_frontend(
    frontend: &UnixStream,
    private: &Path,
    current: &Arc<Current>,
) -> Result<(), MessageError> {
    let mut relay = Relay::new(SocketLink::new(private, frontend, current.clone())?)?;
    loop {
        let ready = relay.link().wait(relay.check_at())?;
        if ready.frontend {
            let arrived = Instant::now();
            let msg = match Message::recv(frontend) {
                Ok(m) => m,
                Err(MessageError::Closed) => return Ok(()),
                Err(e) => return Err(e),
            };
            if let Some(reply) = relay.forward(&msg, arrived)? {
                reply.send(frontend)?;
            }
        } else if ready.worker {
            relay.worker_readable(Instant::now())?;
        }
        relay.check(Instant::now())?;
    }
}

/// Accepts frontends on `listener` one after another, relaying each to whichever worker runs
/// (through the private socket at `socket`), on a thread of its own; a host error ends the
/// keeper.
fn relay_frontends(
    name: &str,
    listener: Listener,
    socket: PathBuf,
    current: &Arc<Current>,
    stops: &Stops,
) -> io::Result<()> {
    let (failed, serving) = (stops.tx.clone(), current.clone());
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let error = loop {
                let frontend = match listener.accept() {
                    Ok(Some(frontend)) => frontend,
                    // A frontend that left before it was accepted (the listener blocks).
                    Ok(None) => continue,
                    Err(e) => break DaemonError::VhostUser(e.to_string()),
                };
                tracing::info!("vhost-user frontend connected to the keeper");
                match serve_frontend(&frontend, &socket, &serving) {
                    Ok(()) => tracing::info!("vhost-user frontend disconnected"),
                    Err(e) => tracing::warn!("vhost-user frontend connection ended: {e}"),
                }
            };
            let _ = failed.send(Stop::Failed(error));
        })
        .map(drop)
}

/// Runs the keeper on the vhost-user `listener`: binds the control socket, starts the workers,
/// and serves frontends one after another, as the backend itself does, until a host error or
/// until `stops` is told to stop; then stops its worker and removes what it made.
pub(crate) fn run(
    config: &Config,
    listeners: crate::daemon::Listeners,
    stops: Stops,
) -> Result<Ending, DaemonError> {
    let setup = DaemonError::Setup;
    let control = match &config.control_socket {
        Some(ControlSocket::Path(path)) => {
            let (listener, file) = bind_socket(path, config.socket_access)?;
            Some((listener, Some(file)))
        }
        Some(ControlSocket::Fd(fd)) => Some((adopt_listener(*fd)?, None)),
        None => None,
    };
    let ledger = memfd(c"pvmouse-ledger").map_err(setup)?;
    std::fs::File::from(ledger.try_clone().map_err(setup)?)
        .set_len(LEDGER_BYTES)
        .map_err(setup)?;
    let private_socket = PrivateSocket::new().map_err(setup)?;
    let private = &private_socket.listener;
    // The relative device's frontend is relayed to the worker over a socket of its own.
    let relative_private = match &listeners.relative {
        Some(_) => Some(PrivateSocket::new().map_err(setup)?),
        None => None,
    };

    let inherited = Inherited {
        ledger: ledger.as_raw_fd(),
        control: control.as_ref().map(|(l, _)| l.as_raw_fd()),
        relative: relative_private.as_ref().map(|p| p.listener.as_raw_fd()),
    };
    for fd in [
        Some(private.as_raw_fd()),
        Some(inherited.ledger),
        inherited.control,
        inherited.relative,
    ]
    .into_iter()
    .flatten()
    {
        inheritable(fd).map_err(setup)?;
    }
    let args = inherited.worker_args(private.as_raw_fd(), &config.identity);
    // This program's path, taken now, while it still names the file this process runs: an
    // upgrade replaces that file, and every worker runs whatever is there when it starts.
    let exe = std::env::current_exe().map_err(|e| {
        setup(io::Error::other(format!(
            "cannot tell this program's path: {e}"
        )))
    })?;
    let plan = WorkerPlan { exe, args };
    let current = Arc::new(Current::default());
    {
        let current = current.clone();
        std::thread::Builder::new()
            .name("pvmouse-keeper-supervisor".into())
            .spawn(move || supervise(&plan, &current))
            .map_err(setup)?;
    }
    tracing::info!("keeper ready: workers may come and go, the frontend stays");
    // Both sockets listen (a client that comes before the first worker waits in the backlog).
    crate::daemon::tell_service_manager(&[sd_notify::NotifyState::Ready]);
    // Frontends on threads of their own, so that this one can wait for a stop.
    relay_frontends(
        "pvmouse-keeper-frontends",
        listeners.listener,
        private_socket.address(),
        &current,
        &stops,
    )
    .map_err(setup)?;
    if let (Some(listener), Some(socket)) = (listeners.relative, &relative_private) {
        relay_frontends(
            "pvmouse-keeper-rel",
            listener,
            socket.address(),
            &current,
            &stops,
        )
        .map_err(setup)?;
    }
    drop(stops.tx);
    let stop = stops.rx.recv().map_err(|_| {
        setup(io::Error::other(
            "the keeper's threads ended without a word",
        ))
    })?;
    if matches!(stop, Stop::Terminate) {
        crate::daemon::tell_service_manager(&[sd_notify::NotifyState::Stopping]);
    }
    // Whatever ends the keeper ends its worker first: asked to stop, it lets go of the buttons
    // held. The control socket, the private socket and the vhost-user socket go when this
    // returns.
    current.stopping.store(true, Ordering::Release);
    stop_worker(&current);
    drop((control, private_socket, relative_private));
    match stop {
        Stop::Failed(e) => Err(e),
        Stop::Terminate | Stop::Upgrade => Ok(Ending::Terminated),
    }
}

/// How long a worker told to stop has before it is killed.
const WORKER_STOP_WAIT: Duration = Duration::from_secs(2);

/// Tells the current worker to stop (SIGTERM), and waits for it to go.
fn stop_worker(current: &Current) {
    let pid = current.pid.load(Ordering::Acquire);
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid == 0 {
        return;
    }
    // SAFETY: kill only sends a signal to the worker this keeper started and waits for.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + WORKER_STOP_WAIT;
    while current.pid.load(Ordering::Acquire) != 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}
