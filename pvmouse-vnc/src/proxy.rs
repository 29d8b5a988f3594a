//! The proxy: one listener per head, a thread pair per viewer, and the pvmouse control client
//! pointer events go to instead of upstream.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pvmouse_client::{Reconnecting, Sent};
use pvmouse_spec::profile::MAX_DISPLAYS;
use pvmouse_spec::stream::Record;

use crate::delivery::Delivery;
use crate::downstream::{self, ViewerLink};
use crate::mode::ModeWatch;
use crate::pointer::{HeadPointer, PointerRouter};
use crate::rfb::{self, ClientMessage, PixelFormat, RfbError, ServerFramer};

/// Where to listen or connect: `tcp:HOST:PORT` or `unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Tcp(String),
    Unix(PathBuf),
}

impl std::str::FromStr for Address {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(a) = s.strip_prefix("tcp:") {
            if a.rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
            {
                return Err(format!("{s:?}: expected tcp:HOST:PORT"));
            }
            Ok(Address::Tcp(a.to_owned()))
        } else if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(format!("{s:?}: expected unix:PATH"));
            }
            Ok(Address::Unix(PathBuf::from(p)))
        } else {
            Err(format!("{s:?}: expected tcp:HOST:PORT or unix:PATH"))
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "tcp:{a}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// One head: the display id pointer events go to, where viewers connect, and its QEMU VNC
/// server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub display: u8,
    pub listen: Address,
    pub upstream: Address,
}

impl std::str::FromStr for Head {
    type Err = String;

    /// `DISPLAY=LISTEN,UPSTREAM`, e.g. `1=tcp:127.0.0.1:5951,tcp:127.0.0.1:5901`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (display, rest) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected DISPLAY=LISTEN,UPSTREAM"))?;
        let display = display
            .parse::<u8>()
            .ok()
            .filter(|d| u32::from(*d) < MAX_DISPLAYS)
            .ok_or_else(|| {
                format!(
                    "{s:?}: the display is a number from 0 to {}",
                    MAX_DISPLAYS - 1
                )
            })?;
        let (listen, upstream) = rest
            .split_once(',')
            .ok_or_else(|| format!("{s:?}: expected DISPLAY=LISTEN,UPSTREAM"))?;
        Ok(Head {
            display,
            listen: listen.parse()?,
            upstream: upstream.parse()?,
        })
    }
}

/// A TCP or Unix stream, as both sides of the proxy may be either.
#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn connect(a: &Address) -> io::Result<Self> {
        Ok(match a {
            Address::Tcp(t) => {
                let s = TcpStream::connect(t)?;
                s.set_nodelay(true)?;
                Stream::Tcp(s)
            }
            Address::Unix(p) => Stream::Unix(UnixStream::connect(p)?),
        })
    }

    fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
        }
    }

    fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl std::os::fd::AsRawFd for Stream {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::Unix(s) => s.as_raw_fd(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
        }
    }
}

/// A read and a write half of one connection, so a message can be read whole before any of it
/// goes out elsewhere.
struct Duplex<'a> {
    r: &'a mut Stream,
    w: &'a mut Stream,
}

impl Read for Duplex<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.r.read(buf)
    }
}

impl Write for Duplex<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.w.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// pvmouse's control socket, as a head's viewers use it: a [`Reconnecting`] record stream, and
/// the log lines that tell an operator about refusals and outages, at most one every
/// [`LOG_EVERY`] for refusals and drops, with a count of the rest.
#[derive(Debug)]
pub struct Control {
    stream: Reconnecting,
    peer: String,
    /// The current outage has been reported, so that it is logged once, and its end.
    outage_logged: bool,
    /// Shared with the stream's reader thread, which reports refusals of motion as they come.
    quiet: Arc<Mutex<Quiet>>,
}

/// One log line per [`LOG_EVERY`], with a count of the lines not written.
#[derive(Debug, Default)]
struct Quiet {
    last_logged: Option<std::time::Instant>,
    unlogged: u64,
}

impl Quiet {
    fn warn(&mut self, peer: &str, what: std::fmt::Arguments<'_>) {
        if self.last_logged.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            self.unlogged += 1;
            return;
        }
        let more = std::mem::take(&mut self.unlogged);
        tracing::warn!(viewer = %peer, "{what} ({more} more since the last such line)");
        self.last_logged = Some(std::time::Instant::now());
    }
}

/// Refusals and drops are logged at most this often per viewer.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// How long a viewer's pointer event waits for the control socket to come back before it is
/// dropped (and counted in the log).
const CONTROL_WAIT: Duration = Duration::from_secs(5);

impl Control {
    pub fn new(path: &Path, peer: &str) -> Self {
        let quiet = Arc::new(Mutex::new(Quiet::default()));
        let (theirs, who) = (quiet.clone(), peer.to_owned());
        // Refusals of motion (records that ask for no answer) are told as they arrive.
        let hook: pvmouse_client::RefusalHook = Arc::new(move |event| {
            let data = &event["data"];
            theirs.lock().unwrap_or_else(|e| e.into_inner()).warn(
                &who,
                format_args!(
                    "pvmouse refused {} pointer events: {}",
                    data["refused"],
                    data["last"]["desc"].as_str().unwrap_or("")
                ),
            );
        });
        Self {
            stream: Reconnecting::new(path, CONTROL_WAIT).with_refusal_hook(hook),
            peer: peer.to_owned(),
            outage_logged: false,
            quiet,
        }
    }

    /// Logs `what` unless a line was logged less than [`LOG_EVERY`] ago; says how many were
    /// not.
    fn quietly(&mut self, what: std::fmt::Arguments<'_>) {
        self.quiet
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .warn(&self.peer, what);
    }

    /// Records the delivery queue dropped, being full.
    pub fn note_dropped(&mut self, n: u64) {
        self.quietly(format_args!(
            "{n} pointer events dropped: more than {} waited for the control socket",
            crate::delivery::MAX_WAITING
        ));
    }

    /// Sends a record; while the socket is away, waits for it (up to [`CONTROL_WAIT`]), and
    /// then drops the record with a log line. `state` is everything the viewer has set, this
    /// record included.
    pub fn send(&mut self, record: &Record, state: &Record) {
        let sent = self.stream.send(record, state);
        let (peer, path) = (&self.peer, self.stream.path());
        let waiting = |error: &pvmouse_client::Error| {
            tracing::warn!(viewer = %peer, "pvmouse control socket {}: {error}; pointer events wait for it", path.display());
        };
        match sent {
            Sent::Delivered {
                refused,
                state_refused,
                outage,
            } => {
                if let Some(outage) = outage {
                    if !self.outage_logged {
                        waiting(&outage.cause);
                    }
                    self.outage_logged = false;
                    tracing::info!(viewer = %peer, "pvmouse control socket back after {:?}", outage.lasted);
                }
                if let Some(error) = state_refused {
                    self.quietly(format_args!(
                        "pvmouse refused this viewer's pointer state: {error}"
                    ));
                }
                if let Some(error) = refused {
                    self.quietly(format_args!("pvmouse refused a pointer event: {error}"));
                }
            }
            Sent::Dropped {
                error,
                outage_began,
            } => {
                if outage_began || !self.outage_logged {
                    waiting(&error);
                    self.outage_logged = true;
                }
                self.quietly(format_args!(
                    "pointer event dropped after {CONTROL_WAIT:?} without the control socket"
                ));
            }
        }
    }
}

/// How long a new connection has to say its RFB version. Until it has, nothing is connected
/// upstream for it, so a silent connection costs a thread and a descriptor for this long.
pub const GREETING_DEADLINE: Duration = Duration::from_secs(10);
/// How long the rest of a viewer's handshake may take: a person may be typing a password.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(60);
/// Viewers served per head unless `--max-viewers` says otherwise.
pub const DEFAULT_MAX_VIEWERS: u16 = 16;
/// Connections per head that have not said their version yet; one more is closed unread. They
/// hold no upstream connection and no viewer's place, so silent connections can only delay new
/// viewers, and only while this many are kept open at once.
pub const MAX_GREETING: usize = 64;

/// What the viewers of one head share: the head's framebuffer size, as the proxy's own
/// connection to it (the watcher) last saw it; how many connections are waiting for their
/// greeting and how many viewers are served; and the head's pointer, which all its viewers
/// drive over one control connection, so that viewers never take the backend's connections
/// from its other clients; and pvmouse's pointer mode, which all heads share.
#[derive(Debug)]
pub struct HeadState {
    size: Mutex<Option<(u16, u16)>>,
    greeting: AtomicUsize,
    served: AtomicUsize,
    pointer: Mutex<HeadPointer>,
    delivery: Delivery,
    mode: Arc<ModeWatch>,
}

impl HeadState {
    fn new(head: &Head, control: &Path, mode: Arc<ModeWatch>) -> io::Result<Self> {
        Ok(Self {
            mode,
            size: Mutex::new(None),
            greeting: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            pointer: Mutex::new(HeadPointer::new(head.display)),
            delivery: Delivery::start(Control::new(
                control,
                &format!("the viewers of display {}", head.display),
            ))?,
        })
    }

    /// One viewer's record, through the head's pointer to its control connection.
    fn send(&self, record: Record) {
        let mut pointer = self.pointer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((record, state)) = pointer.merge(record) {
            // Under the lock, so that the viewers' records keep one order.
            self.delivery.send(record, state);
        }
    }

    fn size(&self) -> Option<(u16, u16)> {
        *self.size.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_size(&self, size: Option<(u16, u16)>) {
        *self.size.lock().unwrap_or_else(|e| e.into_inner()) = size;
    }
}

/// Counts one of a head's connections in a counter for as long as it holds it.
struct Counted<'a>(&'a AtomicUsize);

impl<'a> Counted<'a> {
    /// Takes a place if fewer than `max` are taken.
    fn take(counter: &'a AtomicUsize, max: usize) -> Option<Self> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(counter))
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one viewer until either side ends; every error ends this viewer only. `greeting` is
/// its place among the connections yet to greet, given up once it has.
fn serve_viewer(
    mut viewer: Stream,
    head: &Head,
    peer: &str,
    state: &HeadState,
    max_viewers: usize,
) {
    if let Err(e) = proxy(&mut viewer, head, peer, state, max_viewers) {
        tracing::info!(viewer = %peer, display = head.display, "viewer closed: {e}");
    }
    viewer.shutdown();
}

fn proxy(
    viewer: &mut Stream,
    head: &Head,
    peer: &str,
    state: &HeadState,
    max_viewers: usize,
) -> Result<(), RfbError> {
    let greeting = {
        // Released once the viewer has spoken, or has not in time.
        let Some(_waiting) = Counted::take(&state.greeting, MAX_GREETING) else {
            return Err(RfbError::Protocol(format!(
                "{MAX_GREETING} connections are already waiting to greet; closed unread"
            )));
        };
        viewer.set_read_timeout(Some(GREETING_DEADLINE))?;
        rfb::greet(viewer)?
    };
    let Some(_served) = Counted::take(&state.served, max_viewers) else {
        let reason = format!("pvmouse-vnc serves at most {max_viewers} viewers on this head");
        rfb::refuse(viewer, greeting, &reason)?;
        return Err(RfbError::Protocol(reason));
    };
    viewer.set_read_timeout(Some(HANDSHAKE_DEADLINE))?;
    let mut server = match Stream::connect(&head.upstream) {
        Ok(s) => s,
        Err(e) => {
            let reason = format!("cannot reach the VNC server {}: {e}", head.upstream);
            rfb::refuse(viewer, greeting, &reason)?;
            return Err(RfbError::Protocol(reason));
        }
    };
    server.set_read_timeout(Some(HANDSHAKE_DEADLINE))?;
    let init = {
        let (mut vr, mut vw) = (viewer.try_clone()?, viewer.try_clone()?);
        let (mut sr, mut sw) = (server.try_clone()?, server.try_clone()?);
        rfb::handshake(
            &mut Duplex {
                r: &mut vr,
                w: &mut vw,
            },
            greeting,
            &mut Duplex {
                r: &mut sr,
                w: &mut sw,
            },
        )?
    };
    viewer.set_read_timeout(None)?;
    server.set_read_timeout(None)?;
    tracing::info!(viewer = %peer, display = head.display, width = init.width, height = init.height, "viewer connected");

    // Server to viewer on its own thread: untouched, or framed for a viewer that asks to be
    // told of pointer type changes (see `downstream`).
    let link = Arc::new(ViewerLink::new(&state.mode)?);
    let down = {
        let (from, to) = (server.try_clone()?, viewer.try_clone()?);
        let (stop_viewer, stop_server) = (viewer.try_clone()?, server.try_clone()?);
        let (peer, link, mode, init) = (
            peer.to_owned(),
            link.clone(),
            state.mode.clone(),
            init.clone(),
        );
        std::thread::spawn(move || {
            let why = match downstream::relay(from, to, &init, &link, &mode) {
                Ok(()) => "it closed".to_owned(),
                Err(e) => e.to_string(),
            };
            tracing::info!(viewer = %peer, "VNC server side ended: {why}");
            stop_viewer.shutdown();
            stop_server.shutdown();
        })
    };

    // Viewer to server, here: pointer events go to pvmouse instead.
    let mut router = PointerRouter::new(head.display);
    let mut from = BufReader::new(viewer.try_clone()?);
    let own_size = (init.width, init.height);
    let mut told_dropped = false;
    let result = loop {
        let sent = match rfb::read_client_message(&mut from) {
            Ok(ClientMessage::Pointer { mask, x, y }) => {
                // The watcher follows the head's size; without it, the size this viewer was told.
                let size = state.size().unwrap_or(own_size);
                if link.relative() {
                    for record in router.motion(mask, x, y, size).into_iter().flatten() {
                        state.send(record);
                    }
                } else if link.asks() && (x >= size.0 || y >= size.1) {
                    state.send(router.buttons(mask));
                } else {
                    state.send(router.record(mask, x, y, size));
                }
                Ok(())
            }
            Ok(ClientMessage::SetEncodings { padding, encodings }) => {
                let kept = link.encodings(&encodings);
                if link.framed() && !told_dropped {
                    // Once per viewer: a viewer may send SetEncodings as often as it likes.
                    told_dropped = true;
                    let dropped: Vec<i32> = encodings
                        .iter()
                        .copied()
                        .filter(|e| !rfb::framable(*e))
                        .collect();
                    tracing::info!(viewer = %peer, ?dropped, "the viewer asks for pointer type changes, so its picture is framed: encodings the framing does not take are left out");
                }
                server
                    .write_all(&rfb::set_encodings(padding, &kept))
                    .map_err(RfbError::from)
            }
            Ok(ClientMessage::Forward { head, body }) => {
                // SetPixelFormat: the framer needs the pixel size from the next update on.
                if head.first() == Some(&0)
                    && let Ok(format) = PixelFormat::from_viewer(&head[4..])
                {
                    link.pixel_format(format);
                }
                server
                    .write_all(&head)
                    .map_err(RfbError::from)
                    .and_then(|()| rfb::copy_n(&mut from, &mut server, body))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            break Err(e);
        }
    };
    // A viewer gone mid-drag must not leave its buttons held for everyone else.
    if let Some(release) = router.release() {
        state.send(release);
    }
    server.shutdown();
    viewer.shutdown();
    let _ = down.join();
    result
}

/// The head's size, followed on a connection of the proxy's own for as long as the process
/// runs: most viewers' streams pass through unframed, so this is how a resize is seen. A server
/// that wants a password cannot be watched; its viewers' positions then follow the size each was
/// told when it connected.
fn watch(head: &Head, state: &HeadState) {
    let mut last_error = String::new();
    loop {
        let error = match watch_once(head, state) {
            Ok(never) => match never {},
            Err(e) => e.to_string(),
        };
        state.set_size(None);
        if error.contains("wants a password") {
            tracing::info!(
                display = head.display,
                "not following resizes of {}: {error}; positions use the size each viewer was told when it connected",
                head.upstream
            );
            return;
        }
        if error != last_error {
            tracing::info!(
                display = head.display,
                "watching {}: {error}; trying again every 2 s",
                head.upstream
            );
            last_error = error;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn watch_once(head: &Head, state: &HeadState) -> Result<std::convert::Infallible, RfbError> {
    let mut server = Stream::connect(&head.upstream)?;
    server.set_read_timeout(Some(HANDSHAKE_DEADLINE))?;
    let init = rfb::connect_as_client(&mut server)?;
    server.set_read_timeout(None)?;
    state.set_size(Some((init.width, init.height)));
    tracing::info!(
        display = head.display,
        width = init.width,
        height = init.height,
        "following the head's size"
    );
    server.write_all(&rfb::watch_requests())?;
    let mut from = BufReader::new(server.try_clone()?);
    let mut framer = ServerFramer::new(&init);
    loop {
        let mut kind = [0u8; 1];
        from.read_exact(&mut kind)?;
        if let Some(size) = framer.copy_message(kind[0], &mut from, &mut io::sink())? {
            tracing::info!(
                display = head.display,
                width = size.0,
                height = size.1,
                "framebuffer size changed"
            );
            state.set_size(Some(size));
        }
        server.write_all(&rfb::update_request())?;
    }
}

/// Binds a Unix listening socket as the backend binds its own: a stale socket from an earlier
/// run is replaced, a live one or anything that is not a socket is refused, and the socket is
/// the user's alone (the process's umask is 0177, set at start).
fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_socket() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; not replacing it",
                    path.display()
                ),
            ));
        }
        Ok(_) if UnixStream::connect(path).is_ok() => {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("{} is in use by another process", path.display()),
            ));
        }
        Ok(_) => std::fs::remove_file(path)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(listener)
}

/// Accepts viewers on `head`'s listener for ever, each on its own thread: at most
/// [`MAX_GREETING`] waiting to say their version, and at most `max_viewers` served at once (one
/// more is told why not).
pub fn listen(
    head: Head,
    control: PathBuf,
    max_viewers: usize,
    mode: Arc<ModeWatch>,
) -> io::Result<std::thread::JoinHandle<()>> {
    enum Listener {
        Tcp(TcpListener),
        Unix(UnixListener),
    }
    let listener = match &head.listen {
        Address::Tcp(a) => Listener::Tcp(TcpListener::bind(a)?),
        Address::Unix(p) => Listener::Unix(bind_unix(p)?),
    };
    let state = Arc::new(HeadState::new(&head, &control, mode)?);
    {
        let (head, state) = (head.clone(), state.clone());
        std::thread::Builder::new()
            .name(format!("pvmouse-vnc-watch-{}", head.display))
            .spawn(move || watch(&head, &state))?;
    }
    tracing::info!(display = head.display, listen = %head.listen, upstream = %head.upstream, max_viewers, "head ready");
    std::thread::Builder::new()
        .name(format!("pvmouse-vnc-head-{}", head.display))
        .spawn(move || {
            loop {
                let accepted = match &listener {
                    Listener::Tcp(l) => l.accept().map(|(s, a)| {
                        let _ = s.set_nodelay(true);
                        (Stream::Tcp(s), a.to_string())
                    }),
                    Listener::Unix(l) => l
                        .accept()
                        .map(|(s, _)| (Stream::Unix(s), "unix".to_owned())),
                };
                match accepted {
                    Ok((viewer, peer)) => {
                        if state.greeting.load(Ordering::Acquire) >= MAX_GREETING {
                            // Too many silent at once even to start a thread: closed unread.
                            continue;
                        }
                        let (head, state) = (head.clone(), state.clone());
                        let head_display = head.display;
                        let peer = format!("{peer} on display {}", head.display);
                        // Out of threads is this viewer's failure, not the head's: log it, drop
                        // the connection, and keep accepting.
                        if let Err(e) = std::thread::Builder::new().spawn(move || {
                            serve_viewer(viewer, &head, &peer, &state, max_viewers);
                        }) {
                            tracing::warn!(
                                display = head_display,
                                "viewer refused: cannot start its thread: {e}"
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!(display = head.display, "accept: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvmouse_spec::profile::Button;
    use pvmouse_spec::stream::pixel_centre;
    use std::time::Instant;
    use vhost_user_pvmouse::testing::ControlBackend as Backend;

    #[test]
    fn heads_parse_and_bad_ones_say_why() {
        let h: Head = "1=tcp:127.0.0.1:5951,unix:/run/qemu/vnc1.sock"
            .parse()
            .unwrap();
        assert_eq!(h.display, 1);
        assert_eq!(h.listen, Address::Tcp("127.0.0.1:5951".into()));
        assert_eq!(h.upstream, Address::Unix("/run/qemu/vnc1.sock".into()));
        for bad in [
            "x=tcp:a:1,tcp:b:2",
            "16=tcp:a:1,tcp:b:2",
            "0=tcp:a,tcp:b:2",
            "0=tcp:a:1",
            "0=ftp:a:1,tcp:b:2",
        ] {
            assert!(bad.parse::<Head>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_pointer_event_waits_for_the_control_socket_to_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let late = path.clone();
        // The control socket appears 300 ms after the event is sent: a backend restarting.
        let server = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            Backend::start(&late).unwrap()
        });
        let mut control = Control::new(&path, "test viewer");
        let mut router = PointerRouter::new(1);
        let start = Instant::now();
        let record = router.record(0, 640, 512, (1280, 1024));
        control.send(&record, &router.state());
        let waited = start.elapsed();
        let backend = server.join().unwrap();
        assert_eq!(backend.pointer(), (1, Some(pixel_centre(640, 1280)), 0));
        assert!(
            waited >= Duration::from_millis(300) && waited < CONTROL_WAIT,
            "{waited:?}"
        );
    }

    #[test]
    fn a_backend_replaced_under_a_viewer_gets_the_viewers_state_before_anything_newer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let first = Backend::start(&path).unwrap();
        let mut control = Control::new(&path, "test viewer");
        let mut router = PointerRouter::new(1);
        let mut send = |mask, x| {
            let record = router.record(mask, x, 10, (1280, 1024));
            control.send(&record, &router.state());
        };
        send(0, 5);
        send(1, 6);
        assert_eq!(
            first.pointer(),
            (1, Some(pixel_centre(6, 1280)), Button::Left.bit())
        );
        // A new backend with none of the old one's state, as after a crash without a ledger.
        drop(first);
        let second = Backend::start(&path).unwrap();
        send(1, 7);
        assert_eq!(
            second.pointer(),
            (1, Some(pixel_centre(7, 1280)), Button::Left.bit()),
            "the held button is set again on the new backend"
        );
        send(0, 8);
        assert_eq!(second.pointer(), (1, Some(pixel_centre(8, 1280)), 0));
    }
}
