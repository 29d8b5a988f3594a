//! The session socket: where `pvmouse-session` agents tell the bridge their display server's
//! layout (spec/session.md).
//!
//! Only the session's user may set the layout. The socket is open to every local user, and
//! each connection's peer is checked with `SO_PEERCRED`: root, the user logind says is active
//! on seat0, and the operator's `--session-user` are let in; anyone else gets one error line
//! and is closed before it holds a slot. Each agent has a thread; nothing an agent sends can
//! reach the event path, which only sees a validated [`Layout`] from the main loop.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pvmouse_spec::session::{
    MAX_AGENTS, MAX_LINE_BYTES, PARTIAL_LINE_TIMEOUT_MS, PointerMode, Reply, SessionLayout,
};

use crate::layout::drm::Connector;
use crate::layout::{self, Layout};

/// Where logind says who is in front of the machine.
pub const LOGIND_SEAT: &str = "/run/systemd/seats/seat0";

/// How long an agent waits for the main loop to apply its layout before it is told so.
const APPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// What the session socket tells the main loop.
#[derive(Debug)]
pub enum SessionEvent {
    /// A valid layout from an agent; the main loop applies it and answers on `reply`.
    Layout {
        agent: u64,
        server: String,
        layout: Layout,
        mode: PointerMode,
        displays: Vec<Option<u8>>,
        reply: Sender<Reply>,
    },
    /// The agent disconnected: its layout no longer holds.
    Gone { agent: u64 },
}

/// Who may set the layout.
#[derive(Debug, Clone)]
pub struct Access {
    /// `--session-user`, as a uid.
    pub user: Option<u32>,
    /// logind's seat file ([`LOGIND_SEAT`]), read at each connection so a user switch is
    /// followed.
    pub seat_file: PathBuf,
}

impl Access {
    fn session_uid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(&self.seat_file).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("ACTIVE_UID="))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Root, the operator's `--session-user`, or logind's active user on seat0.
    pub fn check(&self, uid: u32) -> Result<(), String> {
        let session = self.session_uid();
        if uid == 0 || Some(uid) == self.user || Some(uid) == session {
            return Ok(());
        }
        let who = match (self.user, session) {
            (Some(u), _) => format!("the session's user is uid {u} (--session-user)"),
            (None, Some(s)) => format!("the session's user is uid {s} (logind, seat0)"),
            (None, None) => {
                "no session user is known: no logind seat, and no --session-user".to_owned()
            }
        };
        Err(format!("uid {uid} may not set the layout: {who}"))
    }
}

/// The uid of the process at the other end.
fn peer_uid(stream: &UnixStream) -> io::Result<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = libc::socklen_t::try_from(size_of::<libc::ucred>())
        .map_err(|_| io::Error::from(ErrorKind::InvalidInput))?;
    // SAFETY: `cred` and `len` are live locals of the size passed, and the descriptor is open
    // for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::from_mut(&mut cred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Logs each kind of refusal at most once a minute.
#[derive(Debug, Default)]
struct Quiet(Mutex<HashMap<&'static str, Instant>>);

impl Quiet {
    fn warn(&self, kind: &'static str, message: &str) {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last
            .get(kind)
            .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            tracing::warn!("session socket: {message}");
            last.insert(kind, now);
        }
    }
}

fn send_reply(stream: &mut UnixStream, reply: &Reply) -> io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)
}

/// Binds the socket, open to every user (the peer check is the gate). A stale socket left by a
/// bridge that died is replaced; a live one is an error.
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(io::Error::new(
                ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(io::Error::new(
                ErrorKind::AddrInUse,
                format!("another bridge listens on {}", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// What an agent's output names are matched against: the DRM connectors, read afresh for each
/// layout (outputs come and go).
pub type ConnectorSource = dyn Fn() -> Vec<Connector> + Send + Sync;

/// Serves agents until the process exits. `send` hands events to the main loop and returns
/// false once it is gone.
pub fn serve<F>(listener: UnixListener, access: Access, connectors: Arc<ConnectorSource>, send: F)
where
    F: Fn(SessionEvent) -> bool + Send + Sync + 'static,
{
    let send = Arc::new(send);
    let quiet = Arc::new(Quiet::default());
    let open = Arc::new(AtomicUsize::new(0));
    let next_id = AtomicU64::new(1);
    for stream in listener.incoming() {
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                quiet.warn("accept", &format!("accept failed: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let refusal = match peer_uid(&stream) {
            Err(e) => Some(format!("cannot tell who is connecting: {e}")),
            Ok(uid) => access.check(uid).err(),
        };
        if let Some(why) = refusal {
            quiet.warn("refused", &why);
            let _ = send_reply(&mut stream, &Reply::Refused(why));
            continue;
        }
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_AGENTS {
            open.fetch_sub(1, Ordering::SeqCst);
            let why = format!("{MAX_AGENTS} agents are connected already");
            quiet.warn("full", &why);
            let _ = send_reply(&mut stream, &Reply::Refused(why));
            continue;
        }
        let agent = next_id.fetch_add(1, Ordering::Relaxed);
        let (send, quiet, open, connectors) = (
            send.clone(),
            quiet.clone(),
            open.clone(),
            connectors.clone(),
        );
        std::thread::spawn(move || {
            if let Err(e) = converse(agent, &mut stream, &*connectors, &*send, &quiet) {
                tracing::debug!(agent, "session agent connection ended: {e}");
            }
            send(SessionEvent::Gone { agent });
            open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Reads an agent's lines until it goes, answering each.
fn converse(
    agent: u64,
    stream: &mut UnixStream,
    connectors: &ConnectorSource,
    send: &(dyn Fn(SessionEvent) -> bool + Send + Sync),
    quiet: &Quiet,
) -> io::Result<()> {
    let timeout = Duration::from_millis(PARTIAL_LINE_TIMEOUT_MS);
    stream.set_read_timeout(Some(timeout))?;
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut partial_since: Option<Instant> = None;
    loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if partial_since.is_some_and(|t| t.elapsed() >= timeout) {
                    quiet.warn(
                        "stalled",
                        "an agent stalled in the middle of a line; closed",
                    );
                    return Ok(());
                }
                continue;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            let reply = handle_line(agent, &line[..end], connectors, send, quiet);
            send_reply(stream, &reply)?;
        }
        if buf.len() > MAX_LINE_BYTES {
            let why = format!("a line longer than {MAX_LINE_BYTES} bytes");
            quiet.warn("long", &why);
            send_reply(stream, &Reply::Error(why))?;
            return Ok(());
        }
        partial_since = if buf.is_empty() {
            None
        } else {
            partial_since.or_else(|| Some(Instant::now()))
        };
        // A line must be whole within the timeout of its first byte, however it trickles in.
        if partial_since.is_some_and(|t| t.elapsed() >= timeout) {
            quiet.warn("stalled", "an agent took too long over one line; closed");
            return Ok(());
        }
    }
}

fn handle_line(
    agent: u64,
    line: &[u8],
    connectors: &ConnectorSource,
    send: &(dyn Fn(SessionEvent) -> bool + Send + Sync),
    quiet: &Quiet,
) -> Reply {
    let message: SessionLayout = match serde_json::from_slice(line) {
        Ok(m) => m,
        Err(e) => {
            let why = format!("not a layout message: {e}");
            quiet.warn("malformed", &why);
            return Reply::Error(why);
        }
    };
    let (layout, displays) = match layout::session::layout(&message, &connectors()) {
        Ok(l) => l,
        Err(e) => {
            quiet.warn("invalid", &format!("layout refused: {e}"));
            return Reply::Error(e);
        }
    };
    let (tx, rx) = channel();
    let event = SessionEvent::Layout {
        agent,
        server: message.server.chars().take(64).collect(),
        layout,
        mode: message.mode,
        displays,
        reply: tx,
    };
    if !send(event) {
        return Reply::Error("the bridge is exiting".into());
    }
    rx.recv_timeout(APPLY_TIMEOUT)
        .unwrap_or_else(|_| Reply::Error("the bridge did not apply the layout in time".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_root_the_named_user_and_the_seats_active_user_may_set_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let seat = dir.path().join("seat0");
        let mut access = Access {
            user: None,
            seat_file: seat.clone(),
        };
        assert!(access.check(0).is_ok());
        let err = access.check(1000).unwrap_err();
        assert!(err.contains("no session user is known"), "{err}");
        std::fs::write(&seat, "IS_SEAT0=1\nACTIVE=c2\nACTIVE_UID=1000\n").unwrap();
        assert!(access.check(1000).is_ok());
        let err = access.check(1001).unwrap_err();
        assert!(err.contains("uid 1001 may not set the layout"), "{err}");
        assert!(err.contains("logind"), "{err}");
        access.user = Some(1002);
        assert!(access.check(1002).is_ok());
        assert!(access.check(1000).is_ok(), "logind's user too");
        assert!(access.check(1001).is_err());
    }
}
