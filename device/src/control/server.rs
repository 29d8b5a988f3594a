//! The control socket: one thread, one epoll, many clients.
//!
//! Each client's bytes go through its own [`Conversation`], which frames and executes them. A
//! client that stops reading its replies is disconnected once [`MAX_UNREAD_BYTES`] of replies
//! are waiting for it. Events never count towards that: while a client has output waiting,
//! its events are coalesced to the newest one of each kind, and written once the rest is out.
//! Guest-controlled events are rate-limited by [`EventThrottle`]. A client that has not
//! negotiated within [`NEGOTIATION_TIMEOUT_MS`] is closed. No client can block another.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pvmouse_spec::control::{MAX_CLIENTS, MAX_UNREAD_BYTES, NEGOTIATION_TIMEOUT_MS};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};
use vmm_sys_util::timerfd::TimerFd;

use super::conversation::Conversation;
use super::events::{EventThrottle, notice_event};
use super::qmp::{self, QmpError};
use crate::device::PointerDevice;
use crate::keeper::worker::Upgrade;
use crate::notice::{Latest, Notice, NoticeBoard};
use crate::socket::{SocketAccess, SocketError, SocketFile, bind_socket, set_nonblocking};

const LISTENER: u64 = 0;
const NOTICES: u64 = 1;
const STOP: u64 = 2;
const TIMER: u64 = 3;
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
    /// Events not yet in `output`, the newest of each kind, encoded.
    unsent_events: Latest<Vec<u8>>,
    connected_at: Instant,
}

const NEGOTIATION_TIMEOUT: Duration = Duration::from_millis(NEGOTIATION_TIMEOUT_MS);

impl Client {
    /// When the client must have negotiated by, while it has not.
    fn negotiation_deadline(&self) -> Option<Instant> {
        (!self.conversation.negotiated()).then_some(self.connected_at + NEGOTIATION_TIMEOUT)
    }
}

pub struct ControlServer {
    listener: UnixListener,
    /// Removes the socket file when the server ends.
    /// Removes the socket file on exit; `None` for a listener inherited from the keeper.
    _file: Option<SocketFile>,
    device: Arc<dyn PointerDevice>,
    notices: Arc<NoticeBoard>,
    epoll: Epoll,
    stop: EventFd,
    clients: HashMap<u64, Client>,
    next_token: u64,
    throttle: EventThrottle,
    /// Fires at the earliest of the throttle's deadline and the negotiation deadlines.
    timer: TimerFd,
    armed_for: Option<Instant>,
    /// Something that changes the next deadline happened since the timer was last set.
    deadlines_changed: bool,
    /// Given to every client's conversation, in a keeper's worker.
    upgrade: Option<Upgrade>,
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
        let (listener, file) = bind_socket(path, access)?;
        Self::from_listener(listener, Some(file), path, device, notices)
    }

    /// Serves on a listener already bound, such as the one a keeper hands its worker.
    pub fn from_listener(
        listener: UnixListener,
        file: Option<SocketFile>,
        path: &Path,
        device: Arc<dyn PointerDevice>,
        notices: Arc<NoticeBoard>,
    ) -> Result<Self, SocketError> {
        let io_err = |source| SocketError::Io {
            path: path.to_owned(),
            source,
        };
        listener.set_nonblocking(true).map_err(io_err)?;
        let epoll = Epoll::new().map_err(io_err)?;
        let stop = EventFd::new(EFD_NONBLOCK).map_err(io_err)?;
        let timer = TimerFd::new().map_err(io::Error::from).map_err(io_err)?;
        // Read after every expiry; nothing to read must not block the loop.
        set_nonblocking(timer.as_raw_fd()).map_err(io_err)?;
        for (fd, token) in [
            (listener.as_raw_fd(), LISTENER),
            (notices.eventfd().as_raw_fd(), NOTICES),
            (stop.as_raw_fd(), STOP),
            (timer.as_raw_fd(), TIMER),
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
            _file: file,
            device,
            notices,
            epoll,
            stop,
            clients: HashMap::new(),
            next_token: FIRST_CLIENT,
            throttle: EventThrottle::default(),
            timer,
            armed_for: None,
            deadlines_changed: false,
            upgrade: None,
        })
    }

    /// Lets clients end this worker for an upgrade (`pvmouse-upgrade`).
    pub fn with_upgrade(mut self, upgrade: Upgrade) -> Self {
        self.upgrade = Some(upgrade);
        self
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
                    NOTICES => self.on_notices(),
                    STOP => return Ok(()),
                    TIMER => self.on_timer(),
                    token => self.service(token, ev.event_set()),
                }
            }
            if std::mem::take(&mut self.deadlines_changed) {
                self.rearm_timer();
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.clients
            .values()
            .filter_map(Client::negotiation_deadline)
            .chain(self.throttle.deadline())
            .min()
    }

    fn rearm_timer(&mut self) {
        let next = self.next_deadline();
        if next == self.armed_for {
            return;
        }
        let result = match next {
            // A zero duration would disarm the timer instead of firing it.
            Some(at) => self.timer.reset(
                at.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
                None,
            ),
            None => self.timer.clear(),
        };
        match result {
            Ok(()) => self.armed_for = next,
            Err(e) => tracing::warn!("cannot arm the control socket's timer: {e}"),
        }
    }

    fn on_timer(&mut self) {
        // Non-blocking: nothing to read just means the timer was re-armed meanwhile.
        let _ = self.timer.wait();
        self.armed_for = None;
        self.deadlines_changed = true;
        let now = Instant::now();
        for notice in self.throttle.release_due(now) {
            self.broadcast(notice);
        }
        let expired: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| c.negotiation_deadline().is_some_and(|d| d <= now))
            .map(|(token, _)| *token)
            .collect();
        for token in expired {
            if let Some(client) = self.clients.get_mut(&token) {
                let err = QmpError::generic(format!(
                    "capabilities negotiation timed out: no 'qmp_capabilities' within {} s of \
                     connecting; closing",
                    NEGOTIATION_TIMEOUT.as_secs()
                ));
                client
                    .output
                    .extend_from_slice(&qmp::encode(&qmp::failure(&err, None)));
                let _ = Self::flush(&self.epoll, token, client);
                // The client itself is told why; at info level, a flood of idle connections
                // would become a flood of log lines.
                tracing::debug!(
                    client = token,
                    "closing a control client that never negotiated"
                );
            }
            self.close(token);
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
                conversation: Conversation::with_upgrade(self.upgrade.clone()),
                output: qmp::encode(&qmp::greeting(crate::VERSION)),
                interest: EventSet::IN | EventSet::READ_HANG_UP,
                finished_sending: false,
                unsent_events: Latest::default(),
                connected_at: Instant::now(),
            };
            tracing::debug!(client = token, "control client connected");
            let keep = Self::flush(&self.epoll, token, &mut client);
            if keep {
                self.clients.insert(token, client);
                self.deadlines_changed = true;
            }
        }
    }

    fn on_notices(&mut self) {
        let now = Instant::now();
        for notice in self.notices.drain() {
            match self.throttle.offer(notice, now) {
                Some(notice) => self.broadcast(notice),
                None => self.deadlines_changed = true,
            }
        }
    }

    /// Tells every negotiated client. A client with output still waiting gets the event later,
    /// in place of any older one of its kind that it has not been sent either.
    fn broadcast(&mut self, notice: Notice) {
        let message = qmp::encode(&notice_event(notice));
        let mut gone = Vec::new();
        for (token, client) in &mut self.clients {
            if !client.conversation.negotiated() {
                continue;
            }
            if !client.output.is_empty() {
                client.unsent_events.put(notice.kind(), message.clone());
                continue;
            }
            client.output.extend_from_slice(&message);
            if !Self::flush(&self.epoll, *token, client) {
                gone.push(*token);
            }
        }
        for token in gone {
            self.close(token);
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
        if let Some(mut client) = self.clients.remove(&token) {
            match client.conversation.release_held(self.device.as_ref()) {
                Ok(0) => {}
                Ok(held) => tracing::info!(
                    client = token,
                    buttons = held,
                    "a control client left holding buttons; released them"
                ),
                Err(e) => tracing::warn!(
                    client = token,
                    "a control client left holding buttons, and they could not be released: {e}"
                ),
            }
            let _ = self.epoll.ctl(
                ControlOperation::Delete,
                client.stream.as_raw_fd(),
                EpollEvent::default(),
            );
            tracing::debug!(client = token, "control client disconnected");
            self.deadlines_changed = true;
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
                    // A short read emptied the socket. Epoll is level-triggered and reports
                    // whatever comes next, so asking again would only cost a system call per
                    // command to hear "would block".
                    if n < chunk.len() {
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
        loop {
            if client.output.is_empty() {
                for event in client.unsent_events.take_in_order() {
                    client.output.extend_from_slice(&event);
                }
                if client.output.is_empty() {
                    break;
                }
            }
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
