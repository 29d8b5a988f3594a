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
use crate::notice::NoticeBoard;
use crate::socket::{SocketAccess, SocketError, adopt_listener, bind_socket};

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

pub fn vhost_listener(socket: &VhostSocket, access: SocketAccess) -> Result<Listener, DaemonError> {
    let listener = match socket {
        VhostSocket::Path(path) => bind_socket(path, access)?,
        VhostSocket::Fd(fd) => adopt_listener(*fd)?,
    };
    Ok(Listener::from(listener))
}

/// Serves frontends on `listener` one after another, until a host error stops it.
pub fn serve(
    listener: &mut Listener,
    backend: Arc<PvMouseBackend>,
) -> Result<Infallible, DaemonError> {
    loop {
        let mut daemon = VhostUserDaemon::new(
            "vhost-user-pvmouse".into(),
            backend.clone(),
            GuestMemoryAtomic::new(GuestMemoryMmap::new()),
        )
        .map_err(vhost_error)?;
        for handler in daemon.get_epoll_handlers().iter().take(1) {
            for (fd, id) in backend.listeners() {
                handler
                    .register_listener(fd, EventSet::IN, u64::from(id))
                    .map_err(DaemonError::Setup)?;
            }
        }
        tracing::info!("waiting for a vhost-user frontend");
        daemon.start(listener).map_err(vhost_error)?;
        backend.device().frontend_connected();
        tracing::info!("vhost-user frontend connected");
        match daemon.wait() {
            Ok(()) => tracing::info!("vhost-user frontend disconnected"),
            Err(e) => tracing::info!("vhost-user frontend connection ended: {e}"),
        }
        backend.device().frontend_disconnected();
        // Dropping the daemon joins this connection's vring worker, told to end first. The
        // guest's memory goes with the connection: holding it would keep a dead VM's RAM
        // allocated until the next frontend arrives.
        if let Err(e) = backend.stop_worker() {
            return Err(DaemonError::Setup(e));
        }
        drop(daemon);
        backend.worker_stopped();
        backend.forget_memory();
    }
}

/// Everything `main` does after parsing: returns only on a host error.
pub fn run(config: Config) -> Result<Infallible, DaemonError> {
    let notices = Arc::new(NoticeBoard::new().map_err(DaemonError::Setup)?);
    let device = Arc::new(
        PvMouse::new(config.identity.clone(), notices.clone()).map_err(DaemonError::Setup)?,
    );
    let _control = match &config.control_socket {
        Some(path) => {
            let server = ControlServer::bind_with_access(
                path,
                config.socket_access,
                device.clone(),
                notices,
            )?;
            tracing::info!(path = %path.display(), "control socket ready");
            Some(server.spawn().map_err(DaemonError::Setup)?)
        }
        None => {
            tracing::warn!("no --control-socket: nothing can send pointer input to this device");
            None
        }
    };
    let backend = Arc::new(PvMouseBackend::new(device).map_err(DaemonError::Setup)?);
    let mut listener = vhost_listener(&config.vhost_socket, config.socket_access)?;
    tracing::info!(
        name = config.identity.name(),
        serial = config.identity.serial(),
        displays = config.identity.displays(),
        "vhost-user-pvmouse ready"
    );
    serve(&mut listener, backend)
}
