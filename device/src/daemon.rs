//! Running the backend: the control socket, and the vhost-user listener that serves one
//! frontend at a time, forever. When a frontend goes away (QEMU exits, or restarts the
//! connection with its chardev `reconnect` option), the device keeps its pointer state and
//! listens again.

use std::convert::Infallible;
use std::io;
use std::sync::{Arc, mpsc};

use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;

use crate::backend::{Port, PvMouseBackend};
use crate::cli::{Config, ControlSocket, Inherited, Role, VhostSocket};
use crate::control::{ControlHandle, ControlServer};
use crate::device::PvMouse;
use crate::keeper;
use crate::keeper::worker::{Stop, Upgrade};
use crate::ledger::Ledger;
use crate::notice::NoticeBoard;
use crate::socket::{
    SocketAccess, SocketError, SocketFile, adopt_file, adopt_listener, bind_socket,
};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("cannot set up the device: {0}")]
    Setup(#[source] io::Error),
    /// vhost_user_backend::Error implements Display but not std::error::Error.
    #[error("vhost-user: {0}")]
    VhostUser(String),
    #[error("cannot tell the vring worker to stop: {0}; exiting")]
    StopWorker(#[source] io::Error),
}

fn vhost_error(e: vhost_user_backend::Error) -> DaemonError {
    DaemonError::VhostUser(e.to_string())
}

/// How a backend ends when no host error ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A worker answered `pvmouse-upgrade`: it ends, and its keeper starts the binary now on
    /// disk.
    Upgrade,
    /// It was asked to stop ([`Stopper::terminate`]): held buttons let go, sockets removed.
    Terminated,
}

/// What ends a running backend from outside: `main` calls [`terminate`](Self::terminate) on
/// SIGTERM or SIGINT. Cloned freely.
#[derive(Debug, Clone)]
pub struct Stopper(mpsc::Sender<Stop>);

impl Stopper {
    pub fn terminate(&self) {
        // Nobody left to receive it: the backend is ending already.
        let _ = self.0.send(Stop::Terminate);
    }
}

/// The receiving end of every reason to stop, [`run`]'s to wait on.
#[derive(Debug)]
pub struct Stops {
    pub(crate) tx: mpsc::Sender<Stop>,
    pub(crate) rx: mpsc::Receiver<Stop>,
}

/// A [`Stopper`] and the [`Stops`] it sends to.
pub fn stop_channel() -> (Stopper, Stops) {
    let (tx, rx) = mpsc::channel();
    (Stopper(tx.clone()), Stops { tx, rx })
}

/// How long a stopping backend gives the guest to take the release of held buttons.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Lets go of every button held, and waits (up to [`RELEASE_WAIT`]) for an active guest driver
/// to have taken it: a backend that stops must not leave the guest dragging.
fn release_buttons(device: &PvMouse) {
    use crate::device::PointerDevice;
    use crate::pointer::PointerAction;
    use pvmouse_spec::profile::Button;
    let held = device.buttons();
    let releases: Vec<PointerAction> = Button::ALL
        .into_iter()
        .filter(|b| held & b.bit() != 0)
        .map(|button| PointerAction::Button {
            button,
            down: false,
        })
        .collect();
    if releases.is_empty() {
        return;
    }
    if let Err(e) = device.submit(&releases) {
        tracing::warn!("stopping with buttons held, which cannot be released: {e}");
        return;
    }
    tracing::info!(buttons = held, "stopping: released the buttons held");
    let deadline = std::time::Instant::now() + RELEASE_WAIT;
    while device.status().driver_active
        && device.status().pending_frames > 0
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// The vhost-user listening socket, and the file to remove when the backend ends (none for an
/// inherited one: its owner decides). The keeper and the device both listen through this.
pub fn vhost_listener(
    socket: &VhostSocket,
    access: SocketAccess,
) -> Result<(Listener, Option<SocketFile>), DaemonError> {
    Ok(match socket {
        VhostSocket::Path(path) => {
            let (listener, file) = bind_socket(path, access)?;
            (Listener::from(listener), Some(file))
        }
        VhostSocket::Fd(fd) => (Listener::from(adopt_listener(*fd)?), None),
    })
}

/// The vhost-user socket, listening: what the process takes before anything else.
pub struct Listening {
    listener: Listener,
    /// Removed when the backend ends.
    file: Option<SocketFile>,
    /// The relative device's socket, when the backend serves one.
    relative: Option<(Listener, Option<SocketFile>)>,
}

impl std::fmt::Debug for Listening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listening")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// The first thing `main` does after parsing, before this process opens any descriptor of its
/// own (a signal watcher's included): `--fd N` must name an inherited one, never one of ours.
///
/// The relative device's socket is bound first: a frontend (or a script) that waits for the
/// pointer's socket to appear then finds both.
pub fn listen(config: &Config) -> Result<Listening, DaemonError> {
    let relative = match &config.relative_socket {
        Some(socket) => Some(vhost_listener(socket, config.socket_access)?),
        None => None,
    };
    let (listener, file) = vhost_listener(&config.vhost_socket, config.socket_access)?;
    Ok(Listening {
        listener,
        file,
        relative,
    })
}

/// One frontend connection's vhost-user daemon. However the connection ends, the vring worker
/// is told to stop before the daemon is dropped, because dropping it joins that worker: an
/// error path that skipped this would hang the process forever.
struct Connection<'a> {
    daemon: Option<VhostUserDaemon<Arc<PvMouseBackend>>>,
    backend: &'a PvMouseBackend,
}

impl Connection<'_> {
    fn daemon(&mut self) -> &mut VhostUserDaemon<Arc<PvMouseBackend>> {
        // Set at creation, taken only by `end`.
        self.daemon.as_mut().unwrap_or_else(|| unreachable!())
    }

    /// Ends the connection, reporting a vring worker that cannot be told to stop.
    fn close(mut self) -> Result<(), DaemonError> {
        self.end()
    }

    fn end(&mut self) -> Result<(), DaemonError> {
        let Some(daemon) = self.daemon.take() else {
            return Ok(());
        };
        if let Err(e) = self.backend.stop_worker() {
            // Nothing else can end the worker, and joining it would never return: it is left
            // running, and the error ends the backend.
            std::mem::forget(daemon);
            return Err(DaemonError::StopWorker(e));
        }
        drop(daemon);
        self.backend.worker_stopped();
        // The guest's memory goes with the connection: holding it would keep a dead VM's RAM
        // allocated until the next frontend arrives.
        self.backend.forget_memory();
        Ok(())
    }
}

impl Drop for Connection<'_> {
    /// Only error paths get here with the daemon still set: their own error is the one
    /// returned, so this one is logged.
    fn drop(&mut self) {
        if let Err(e) = self.end() {
            tracing::error!("{e}");
        }
    }
}

/// Serves frontends on `listener` one after another, until a host error stops it.
pub fn serve(
    listener: &mut Listener,
    backend: Arc<PvMouseBackend>,
) -> Result<Infallible, DaemonError> {
    loop {
        let daemon = VhostUserDaemon::new(
            "vhost-user-pvmouse".into(),
            backend.clone(),
            GuestMemoryAtomic::new(GuestMemoryMmap::new()),
        )
        .map_err(vhost_error)?;
        let mut connection = Connection {
            daemon: Some(daemon),
            backend: &backend,
        };
        for handler in connection.daemon().get_epoll_handlers().iter().take(1) {
            for (fd, id) in backend.listeners() {
                handler
                    .register_listener(fd, EventSet::IN, u64::from(id))
                    .map_err(DaemonError::Setup)?;
            }
        }
        tracing::info!("waiting for a vhost-user frontend");
        connection.daemon().start(listener).map_err(vhost_error)?;
        let port = backend.port();
        backend.frontend(true);
        tracing::info!(?port, "vhost-user frontend connected");
        match connection.daemon().wait() {
            Ok(()) => tracing::info!(?port, "vhost-user frontend disconnected"),
            Err(e) => tracing::info!(?port, "vhost-user frontend connection ended: {e}"),
        }
        backend.frontend(false);
        connection.close()?;
    }
}

/// Everything `main` does after [`listen`], in the role the command line chose. Returns only on
/// a host error, at a worker's upgrade, or once `stops` is told to stop ([`Ending`]), having
/// stopped the threads that could still write (the control thread) and removed the sockets it
/// created.
pub fn run(config: Config, listening: Listening, stops: Stops) -> Result<Ending, DaemonError> {
    let Listening {
        listener,
        file: _vhost_file,
        relative,
    } = listening;
    let (relative, _relative_file) = match relative {
        Some((listener, file)) => (Some(listener), file),
        None => (None, None),
    };
    let listeners = Listeners { listener, relative };
    match config.role {
        Role::Keeper => keeper::run(&config, listeners, stops),
        Role::Standalone => standalone(&config, listeners, stops),
        Role::Worker(inherited) => worker(&config, inherited, listeners, stops),
    }
}

/// The vhost-user listeners: the pointer's, and the relative device's if it is served.
pub(crate) struct Listeners {
    pub listener: Listener,
    pub relative: Option<Listener>,
}

/// Serves one port's frontends on a thread of its own; a host error ends the backend.
fn spawn_serving(
    name: &str,
    mut listener: Listener,
    backend: Arc<PvMouseBackend>,
    failed: mpsc::Sender<Stop>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let error = match serve(&mut listener, backend) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let _ = failed.send(Stop::Failed(error));
        })
        .map(drop)
}

/// Serves `backend` (and the relative device's, if any) on threads of their own, so that the
/// caller can wait on `stops`: the vhost-user loop waits on the frontend and cannot be
/// interrupted. Then acts on the first stop, having stopped the control thread.
fn serve_until_stopped(
    device: &Arc<PvMouse>,
    listeners: Listeners,
    backend: Arc<PvMouseBackend>,
    stops: Stops,
    control: Option<ControlHandle>,
) -> Result<Ending, DaemonError> {
    let relative = match listeners.relative {
        Some(listener) => PvMouseBackend::for_port(device.clone(), Port::Relative)
            .map(|backend| Some((listener, Arc::new(backend)))),
        None => Ok(None),
    };
    let spawned = relative.and_then(|relative| {
        if let Some((listener, backend)) = relative {
            spawn_serving("pvmouse-vhost-rel", listener, backend, stops.tx.clone())?;
        }
        spawn_serving(
            "pvmouse-vhost",
            listeners.listener,
            backend,
            stops.tx.clone(),
        )
    });
    drop(stops.tx);
    let stop = match spawned {
        // Senders live in the vhost-user thread until it reports, in the control thread, and
        // in main's signal thread.
        Ok(_) => stops.rx.recv().map_err(|_| {
            DaemonError::Setup(io::Error::other(
                "the vhost-user thread ended without a word",
            ))
        }),
        Err(e) => Err(DaemonError::Setup(e)),
    };
    if matches!(stop, Ok(Stop::Terminate)) {
        tell_service_manager(&[sd_notify::NotifyState::Stopping]);
        release_buttons(device);
    }
    stop_control(control);
    match stop? {
        Stop::Upgrade => {
            tracing::info!("worker exiting for an upgrade");
            Ok(Ending::Upgrade)
        }
        Stop::Terminate => {
            tracing::info!("stopping on request");
            Ok(Ending::Terminated)
        }
        Stop::Failed(e) => Err(e),
    }
}

/// The device on its own sockets, serving frontends until a host error or a stop.
fn standalone(config: &Config, listener: Listeners, stops: Stops) -> Result<Ending, DaemonError> {
    let notices = Arc::new(NoticeBoard::new().map_err(DaemonError::Setup)?);
    let device = Arc::new(
        PvMouse::new(config.identity.clone(), notices.clone()).map_err(DaemonError::Setup)?,
    );
    let control = match &config.control_socket {
        Some(ControlSocket::Path(path)) => {
            let server = ControlServer::bind_with_access(
                path,
                config.socket_access,
                device.clone(),
                notices,
            )?;
            tracing::info!(path = %path.display(), "control socket ready");
            Some(server)
        }
        Some(ControlSocket::Fd(fd)) => {
            let listener = adopt_listener(*fd)?;
            let label = std::path::Path::new("(the control socket systemd handed over)");
            Some(ControlServer::from_listener(
                listener,
                None,
                label,
                device.clone(),
                notices,
            )?)
        }
        None => None,
    };
    serve_device(config, device, listener, stops, control)
}

/// A keeper's worker: the device on the keeper's ledger and control listener, serving the
/// keeper's private socket until a host error or an upgrade.
fn worker(
    config: &Config,
    inherited: Inherited,
    listener: Listeners,
    stops: Stops,
) -> Result<Ending, DaemonError> {
    let notices = Arc::new(NoticeBoard::new().map_err(DaemonError::Setup)?);
    let ledger = Ledger::open(adopt_file(inherited.ledger)?).map_err(DaemonError::Setup)?;
    let (device, restored) = PvMouse::with_ledger(config.identity.clone(), notices.clone(), ledger)
        .map_err(DaemonError::Setup)?;
    if restored {
        tracing::info!("took over the device state an earlier worker left");
    }
    let device = Arc::new(device);
    let control = match inherited.control {
        Some(fd) => {
            let listener = adopt_listener(fd)?;
            let path = std::path::Path::new("(the keeper's control socket)");
            let server =
                ControlServer::from_listener(listener, None, path, device.clone(), notices)?
                    .with_upgrade(Upgrade::new(stops.tx.clone()));
            Some(server)
        }
        None => None,
    };
    serve_device(config, device, listener, stops, control)
}

/// Starts the control thread (if there is a control socket), says the backend is ready, and
/// serves the device until it is stopped.
fn serve_device(
    config: &Config,
    device: Arc<PvMouse>,
    listener: Listeners,
    stops: Stops,
    control: Option<ControlServer>,
) -> Result<Ending, DaemonError> {
    let control = match control {
        Some(server) => Some(server.spawn().map_err(DaemonError::Setup)?),
        None => {
            tracing::warn!("no --control-socket: nothing can send pointer input to this device");
            None
        }
    };
    let backend = Arc::new(PvMouseBackend::new(device.clone()).map_err(DaemonError::Setup)?);
    tracing::info!(
        name = config.identity.name(),
        serial = config.identity.serial(),
        displays = config.identity.displays(),
        "vhost-user-pvmouse ready"
    );
    if config.role == Role::Standalone {
        // A keeper's worker is not the service: the keeper says when it is ready.
        tell_service_manager(&[sd_notify::NotifyState::Ready]);
    }
    serve_until_stopped(&device, listener, backend, stops, control)
}

/// Tells systemd (`Type=notify`, `NOTIFY_SOCKET`) how the service stands: ready once both
/// sockets listen, stopping when asked to stop. Nothing to do without a service manager.
pub(crate) fn tell_service_manager(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot tell the service manager: {e}");
    }
}

/// Stops the control thread, which first finishes what it is writing.
fn stop_control(control: Option<ControlHandle>) {
    if let Some(control) = control {
        if let Err(e) = control.stop() {
            tracing::warn!("control thread: {e}");
        }
    }
}
