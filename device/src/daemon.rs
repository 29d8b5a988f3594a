//! Running the backend: the control socket, and the vhost-user listener that serves one
//! frontend at a time, forever. When a frontend goes away (QEMU exits, or restarts the
//! connection with its chardev `reconnect` option), the device keeps its pointer state and
//! listens again.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;

use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;

use crate::backend::PvMouseBackend;
use crate::cli::{Config, VhostSocket};
use crate::control::ControlServer;
use crate::device::PvMouse;
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
}

fn vhost_error(e: vhost_user_backend::Error) -> DaemonError {
    DaemonError::VhostUser(e.to_string())
}

/// The vhost-user listening socket, and the file to remove when the backend ends (none for an
/// inherited one: its owner decides).
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

/// One frontend connection's vhost-user daemon. However the connection ends, the vring worker
/// is told to stop before the daemon is dropped, because dropping it joins that worker: an
/// error path that skipped this would hang the process forever.
struct Connection<'a> {
    daemon: Option<VhostUserDaemon<Arc<PvMouseBackend>>>,
    backend: &'a PvMouseBackend,
}

impl Connection<'_> {
    fn daemon(&mut self) -> &mut VhostUserDaemon<Arc<PvMouseBackend>> {
        // Set at creation, taken only by drop.
        self.daemon.as_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Connection<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.backend.stop_worker() {
            // Nothing else can end the worker; joining it would never return.
            tracing::error!("cannot tell the vring worker to stop: {e}; exiting");
            std::process::exit(1);
        }
        drop(self.daemon.take());
        self.backend.worker_stopped();
        // The guest's memory goes with the connection: holding it would keep a dead VM's RAM
        // allocated until the next frontend arrives.
        self.backend.forget_memory();
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
        backend.device().frontend_connected();
        tracing::info!("vhost-user frontend connected");
        match connection.daemon().wait() {
            Ok(()) => tracing::info!("vhost-user frontend disconnected"),
            Err(e) => tracing::info!("vhost-user frontend connection ended: {e}"),
        }
        backend.device().frontend_disconnected();
        drop(connection);
    }
}

/// Everything `main` does after parsing: returns only on a host error, having stopped every
/// thread it started and removed the sockets it created.
pub fn run(config: Config) -> Result<Infallible, DaemonError> {
    // First, before this process opens any descriptor of its own: `--fd N` must name an
    // inherited one, never one of ours.
    let (mut listener, _vhost_file) = vhost_listener(&config.vhost_socket, config.socket_access)?;
    let notices = Arc::new(NoticeBoard::new().map_err(DaemonError::Setup)?);
    let device = match config.ledger_fd {
        Some(fd) => {
            crate::keeper::worker::enter();
            let ledger = Ledger::open(adopt_file(fd)?).map_err(DaemonError::Setup)?;
            let (device, restored) =
                PvMouse::with_ledger(config.identity.clone(), notices.clone(), ledger)
                    .map_err(DaemonError::Setup)?;
            if restored {
                tracing::info!("took over the device state an earlier worker left");
            }
            device
        }
        None => {
            PvMouse::new(config.identity.clone(), notices.clone()).map_err(DaemonError::Setup)?
        }
    };
    let device = Arc::new(device);
    let control = match (config.control_fd, &config.control_socket) {
        (Some(fd), _) => {
            let listener = adopt_listener(fd)?;
            let path = std::path::Path::new("(the keeper's control socket)");
            let server =
                ControlServer::from_listener(listener, None, path, device.clone(), notices)?;
            Some(server.spawn().map_err(DaemonError::Setup)?)
        }
        (None, Some(path)) => {
            let server = ControlServer::bind_with_access(
                path,
                config.socket_access,
                device.clone(),
                notices,
            )?;
            tracing::info!(path = %path.display(), "control socket ready");
            Some(server.spawn().map_err(DaemonError::Setup)?)
        }
        (None, None) => {
            tracing::warn!("no --control-socket: nothing can send pointer input to this device");
            None
        }
    };
    let backend = Arc::new(PvMouseBackend::new(device).map_err(DaemonError::Setup)?);
    tracing::info!(
        name = config.identity.name(),
        serial = config.identity.serial(),
        displays = config.identity.displays(),
        "vhost-user-pvmouse ready"
    );
    let error = match serve(&mut listener, backend) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    if let Some(control) = control {
        if let Err(e) = control.stop() {
            tracing::warn!("control thread: {e}");
        }
    }
    Err(error)
}
