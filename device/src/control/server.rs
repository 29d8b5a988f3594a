//! The control socket: one thread, one epoll, many clients.
//!
//! Each client's bytes go through its own [`Conversation`], which frames and executes them. A
//! client that stops reading its replies
//! is disconnected once [`MAX_UNREAD_BYTES`] are waiting for it. No client can block another.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use pvmouse_spec::control::{MAX_CLIENTS, MAX_UNREAD_BYTES};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::conversation::Conversation;
use super::events::notice_event;
use super::qmp::{self, QmpError};
use crate::device::PointerDevice;
use crate::notice::NoticeBoard;
use crate::socket::{SocketAccess, SocketError, bind_socket};

const LISTENER: u64 = 0;
const NOTICES: u64 = 1;
const STOP: u64 = 2;
const FIRST_CLIENT: u64 = 16;
/// 4 KiB reads per client per wake-up: 64 KiB, a full command at most.
const READS_PER_WAKE: usize = 16;

#[derive(Debug)]
struct Client {
    stream: UnixStream,
    conversation: Conversation,
    output: Vec<u8>,
    /// What epoll watches for this client now.
    interest: EventSet,
    /// The client closed its sending side: answer what it sent, then close.
    finished_sending: bool,
}

pub struct ControlServer {
    listener: UnixListener,
    device: Arc<dyn PointerDevice>,
    notices: Arc<NoticeBoard>,
    epoll: Epoll,
    stop: EventFd,
    clients: HashMap<u64, Client>,
    next_token: u64,
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

/// Stops the control thread when asked.
#[derive(Debug)]
pub struct ControlHandle {
    stop: EventFd,
    thread: JoinHandle<io::Result<()>>,
}

impl ControlHandle {
    pub fn stop(self) -> io::Result<()> {
        self.stop.write(1)?;
        self.thread
            .join()
            .map_err(|_| io::Error::other("control thread panicked"))?
    }
}

fn would_block(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}

impl ControlServer {
    /// Binds the control socket for the owner only (mode 0600).
    pub fn bind(
        path: &Path,
        device: Arc<dyn PointerDevice>,
        notices: Arc<NoticeBoard>,
    ) -> Result<Self, SocketError> {
        Self::bind_with_access(path, SocketAccess::default(), device, notices)
    }

    pub fn bind_with_access(
        path: &Path,
        access: SocketAccess,
        device: Arc<dyn PointerDevice>,
        notices: Arc<NoticeBoard>,
    ) -> Result<Self, SocketError> {
        let listener = bind_socket(path, access)?;
        let io_err = |source| SocketError::Io {
            path: path.to_owned(),
            source,
        };
        listener.set_nonblocking(true).map_err(io_err)?;
        let epoll = Epoll::new().map_err(io_err)?;
        let stop = EventFd::new(EFD_NONBLOCK).map_err(io_err)?;
        for (fd, token) in [
            (listener.as_raw_fd(), LISTENER),
            (notices.eventfd().as_raw_fd(), NOTICES),
            (stop.as_raw_fd(), STOP),
        ] {
            epoll
                .ctl(
                    ControlOperation::Add,
                    fd,
                    EpollEvent::new(EventSet::IN, token),
                )
                .map_err(io_err)?;
        }
        Ok(Self {
            listener,
            device,
            notices,
            epoll,
            stop,
            clients: HashMap::new(),
            next_token: FIRST_CLIENT,
        })
    }

    pub fn spawn(self) -> io::Result<ControlHandle> {
        let stop = self.stop.try_clone()?;
        let thread = std::thread::Builder::new()
            .name("pvmouse-control".into())
            .spawn(move || self.run())?;
        Ok(ControlHandle { stop, thread })
    }

    pub fn run(mut self) -> io::Result<()> {
        let mut events = vec![EpollEvent::default(); 64];
        loop {
            let n = match self.epoll.wait(-1, &mut events) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            for ev in &events[..n] {
                match ev.data() {
                    LISTENER => self.accept_all(),
                    NOTICES => self.broadcast_notices(),
                    STOP => return Ok(()),
                    token => self.service(token, ev.event_set()),
                }
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if would_block(&e) => return,
                Err(e) => {
                    tracing::warn!("control socket accept failed: {e}");
                    return;
                }
            };
            if self.clients.len() >= MAX_CLIENTS {
                let err = QmpError::generic(format!(
                    "too many control connections (limit {MAX_CLIENTS}); try again later"
                ));
                let _ = (&stream).write_all(&qmp::encode(&qmp::failure(&err, None)));
                continue;
            }
            if let Err(e) = stream.set_nonblocking(true) {
                tracing::warn!("cannot make control connection non-blocking: {e}");
                continue;
            }
            let token = self.next_token;
            self.next_token += 1;
            if let Err(e) = self.epoll.ctl(
                ControlOperation::Add,
                stream.as_raw_fd(),
                EpollEvent::new(EventSet::IN | EventSet::READ_HANG_UP, token),
            ) {
                tracing::warn!("cannot watch control connection: {e}");
                continue;
            }
            let mut client = Client {
                stream,
                conversation: Conversation::default(),
                output: qmp::encode(&qmp::greeting(env!("CARGO_PKG_VERSION"))),
                interest: EventSet::IN | EventSet::READ_HANG_UP,
                finished_sending: false,
            };
            tracing::debug!(client = token, "control client connected");
            let keep = Self::flush(&self.epoll, token, &mut client);
            if keep {
                self.clients.insert(token, client);
            }
        }
    }

    fn broadcast_notices(&mut self) {
        for notice in self.notices.drain() {
            let message = qmp::encode(&notice_event(notice));
            let tokens: Vec<u64> = self.clients.keys().copied().collect();
            for token in tokens {
                let Some(client) = self.clients.get_mut(&token) else {
                    continue;
                };
                if client.conversation.negotiated() {
                    client.output.extend_from_slice(&message);
                    if !Self::flush(&self.epoll, token, client) {
                        self.close(token);
                    }
                }
            }
        }
    }

    fn service(&mut self, token: u64, events: EventSet) {
        let Some(client) = self.clients.get_mut(&token) else {
            return;
        };
        let mut keep = true;
        if events.intersects(EventSet::IN | EventSet::READ_HANG_UP | EventSet::HANG_UP) {
            keep = Self::read_and_execute(self.device.as_ref(), client);
        }
        if events.contains(EventSet::ERROR) {
            keep = false;
        }
        keep = keep && Self::flush(&self.epoll, token, client);
        if client.finished_sending && client.output.is_empty() {
            keep = false;
        }
        if !keep {
            self.close(token);
        }
    }

    fn close(&mut self, token: u64) {
        if let Some(client) = self.clients.remove(&token) {
            let _ = self.epoll.ctl(
                ControlOperation::Delete,
                client.stream.as_raw_fd(),
                EpollEvent::default(),
            );
            tracing::debug!(client = token, "control client disconnected");
        }
    }

    /// Reads what is available and executes every complete command. False when the client is
    /// gone.
    ///
    /// At most [`READS_PER_WAKE`] chunks are taken per wake-up, so a client that writes without
    /// pause cannot starve the others; epoll reports it again while input is left.
    fn read_and_execute(device: &dyn PointerDevice, client: &mut Client) -> bool {
        let mut chunk = [0u8; 4096];
        for _ in 0..READS_PER_WAKE {
            match client.stream.read(&mut chunk) {
                Ok(0) => {
                    client.finished_sending = true;
                    return true;
                }
                Ok(n) => {
                    client
                        .conversation
                        .feed(device, &chunk[..n], &mut client.output);
                    if client.output.len() > MAX_UNREAD_BYTES {
                        // flush() disconnects it unless the socket takes the backlog now.
                        return true;
                    }
                }
                Err(e) if would_block(&e) => return true,
                Err(_) => return false,
            }
        }
        true
    }

    /// Writes what the socket takes now and watches for writability if more is left. False
    /// when the client is gone or has let too much output pile up.
    fn flush(epoll: &Epoll, token: u64, client: &mut Client) -> bool {
        while !client.output.is_empty() {
            match client.stream.write(&client.output) {
                Ok(0) => return false,
                Ok(n) => {
                    client.output.drain(..n);
                }
                Err(e) if would_block(&e) => break,
                Err(_) => return false,
            }
        }
        if client.output.len() > MAX_UNREAD_BYTES {
            tracing::info!(
                client = token,
                "disconnecting control client: it is not reading its replies"
            );
            return false;
        }
        // Once the client has stopped sending, a level-triggered hang-up would fire forever:
        // watch only for room to write what is left.
        let mut interest = if client.finished_sending {
            EventSet::empty()
        } else {
            EventSet::IN | EventSet::READ_HANG_UP
        };
        if !client.output.is_empty() {
            interest |= EventSet::OUT;
        }
        if interest != client.interest {
            if epoll
                .ctl(
                    ControlOperation::Modify,
                    client.stream.as_raw_fd(),
                    EpollEvent::new(interest, token),
                )
                .is_err()
            {
                return false;
            }
            client.interest = interest;
        }
        true
    }
}
