//! The proxy: one listener per head, a thread pair per viewer, and the pvmouse control client
//! pointer events go to instead of upstream.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pvmouse_client::{Reconnecting, Sent};
use pvmouse_spec::profile::MAX_DISPLAYS;
use pvmouse_spec::stream::Record;

use crate::pointer::PointerRouter;
use crate::rfb::{self, ClientMessage, RfbError};

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

    fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
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

/// pvmouse's control socket, as one viewer uses it: a [`Reconnecting`] record stream, and the
/// log lines that tell an operator about refusals and outages.
#[derive(Debug)]
pub struct Control {
    stream: Reconnecting,
    peer: String,
    /// The current outage has been reported, so that it is logged once, and its end.
    outage_logged: bool,
}

/// How long a viewer's pointer event waits for the control socket to come back before it is
/// dropped (and counted in the log).
const CONTROL_WAIT: Duration = Duration::from_secs(5);

impl Control {
    pub fn new(path: &Path, peer: &str) -> Self {
        Self {
            stream: Reconnecting::new(path, CONTROL_WAIT),
            peer: peer.to_owned(),
            outage_logged: false,
        }
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
                    tracing::warn!(viewer = %peer, "pvmouse refused this viewer's pointer state: {error}");
                }
                if let Some(error) = refused {
                    tracing::warn!(viewer = %peer, "pvmouse refused a pointer event: {error}");
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
                tracing::warn!(viewer = %peer, "pointer event dropped after {CONTROL_WAIT:?} without the control socket");
            }
        }
    }
}

/// Serves one viewer until either side ends; every error ends this viewer only.
pub fn serve_viewer(mut viewer: Stream, head: &Head, control: &Path, peer: String) {
    if let Err(e) = proxy(&mut viewer, head, control, &peer) {
        tracing::info!(viewer = %peer, display = head.display, "viewer closed: {e}");
    }
    viewer.shutdown();
}

fn proxy(viewer: &mut Stream, head: &Head, control: &Path, peer: &str) -> Result<(), RfbError> {
    let mut server = Stream::connect(&head.upstream).map_err(|e| {
        RfbError::Protocol(format!(
            "cannot reach the VNC server {}: {e}",
            head.upstream
        ))
    })?;
    let init = {
        let (mut vr, mut vw) = (viewer.try_clone()?, viewer.try_clone()?);
        let (mut sr, mut sw) = (server.try_clone()?, server.try_clone()?);
        rfb::handshake(
            &mut Duplex {
                r: &mut vr,
                w: &mut vw,
            },
            &mut Duplex {
                r: &mut sr,
                w: &mut sw,
            },
        )?
    };
    tracing::info!(viewer = %peer, display = head.display, width = init.width, height = init.height, "viewer connected");
    let size = Arc::new(Mutex::new((init.width, init.height)));
    let format = Arc::new(Mutex::new(init.format));

    // Server to viewer, framed, on its own thread.
    let down = {
        let (size, format) = (size.clone(), format.clone());
        let (mut from, to) = (server.try_clone()?, viewer.try_clone()?);
        let (stop_viewer, stop_server) = (viewer.try_clone()?, server.try_clone()?);
        let peer = peer.to_owned();
        std::thread::spawn(move || {
            let mut to = BufWriter::with_capacity(64 * 1024, to);
            loop {
                let f = *format.lock().unwrap_or_else(|e| e.into_inner());
                let result = rfb::pass_server_message(&mut from, &mut to, f)
                    .and_then(|s| to.flush().map(|()| s).map_err(RfbError::from));
                match result {
                    Ok(Some(new)) => {
                        tracing::info!(viewer = %peer, width = new.0, height = new.1, "framebuffer size changed");
                        *size.lock().unwrap_or_else(|e| e.into_inner()) = new;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::info!(viewer = %peer, "VNC server side closed: {e}");
                        stop_viewer.shutdown();
                        stop_server.shutdown();
                        return;
                    }
                }
            }
        })
    };

    // Viewer to server, here: pointer events go to pvmouse instead.
    let mut router = PointerRouter::new(head.display);
    let mut control = Control::new(control, peer);
    let mut from = BufReader::new(viewer.try_clone()?);
    let result = loop {
        match rfb::read_client_message(&mut from) {
            Ok(ClientMessage::Pointer { mask, x, y }) => {
                let s = *size.lock().unwrap_or_else(|e| e.into_inner());
                let record = router.record(mask, x, y, s);
                control.send(&record, &router.state());
            }
            Ok(ClientMessage::Forward { bytes, format: f }) => {
                if let Some(f) = f {
                    *format.lock().unwrap_or_else(|e| e.into_inner()) = f;
                }
                if let Err(e) = server.write_all(&bytes) {
                    break Err(e.into());
                }
            }
            Err(e) => break Err(e),
        }
    };
    // A viewer gone mid-drag must not leave its buttons held for everyone else.
    if let Some(release) = router.release() {
        control.send(&release, &router.state());
    }
    server.shutdown();
    viewer.shutdown();
    let _ = down.join();
    result
}

/// Accepts viewers on `head`'s listener for ever, each on its own thread.
pub fn listen(head: Head, control: PathBuf) -> io::Result<std::thread::JoinHandle<()>> {
    enum Listener {
        Tcp(TcpListener),
        Unix(UnixListener),
    }
    let listener = match &head.listen {
        Address::Tcp(a) => Listener::Tcp(TcpListener::bind(a)?),
        Address::Unix(p) => {
            if p.exists() && UnixStream::connect(p).is_err() {
                // A stale socket from an earlier run.
                let _ = std::fs::remove_file(p);
            }
            Listener::Unix(UnixListener::bind(p)?)
        }
    };
    tracing::info!(display = head.display, listen = %head.listen, upstream = %head.upstream, "head ready");
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
                        let (head, control) = (head.clone(), control.clone());
                        let head_display = head.display;
                        let peer = format!("{peer} on display {}", head.display);
                        // Out of threads is this viewer's failure, not the head's: log it, drop
                        // the connection, and keep accepting.
                        if let Err(e) = std::thread::Builder::new()
                            .spawn(move || serve_viewer(viewer, &head, &control, peer))
                        {
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
