//! The session socket against hostile and broken agents, in-process: the real listener and
//! connection threads, a stand-in for the main loop, and the DRM connectors given as data.
//! Another user's agent being refused is shown against the real kernel in
//! `tests/tests/desktop_x11.rs`, since it needs a second uid.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use pvmouse_guestd::layout::drm::Connector;
use pvmouse_guestd::session::{self, Access, SessionEvent};
use pvmouse_spec::session::{MAX_AGENTS, MAX_LINE_BYTES, PointerMode, Reply};

const GOOD: &str = r#"{"server":"test","mode":"desktop","outputs":[{"name":"Virtual-1","x":0,"y":0,"width":1024,"height":768,"mode_width":1024,"mode_height":768,"transform":0}]}"#;

/// A session socket whose main loop applies every layout; returns the socket and the events it
/// saw.
fn server(dir: &Path) -> (PathBuf, Receiver<String>) {
    let path = dir.join("session.sock");
    let listener = session::bind(&path).unwrap();
    let access = Access {
        user: Some(nix_uid()),
        seat_file: dir.join("no-seat"),
    };
    let connectors: Arc<session::ConnectorSource> = Arc::new(|| {
        vec![Connector {
            name: "Virtual-1".into(),
            id: 0,
            mode: Some((1024, 768)),
        }]
    });
    let (seen_tx, seen) = channel();
    std::thread::spawn(move || {
        session::serve(listener, access, connectors, move |event| {
            let note = match event {
                SessionEvent::Layout {
                    agent,
                    displays,
                    reply,
                    ..
                } => {
                    let _ = reply.send(Reply::Applied {
                        displays,
                        mode: PointerMode::Desktop,
                    });
                    format!("layout {agent}")
                }
                SessionEvent::Gone { agent } => format!("gone {agent}"),
            };
            seen_tx.send(note).is_ok()
        });
    });
    (path, seen)
}

fn nix_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(0, |m| std::os::unix::fs::MetadataExt::uid(&m))
}

struct Agent {
    write: UnixStream,
    read: BufReader<UnixStream>,
}

impl Agent {
    fn connect(path: &Path) -> Self {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Self {
            read: BufReader::new(s.try_clone().unwrap()),
            write: s,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.write.write_all(bytes).unwrap();
    }

    fn reply(&mut self) -> Option<Reply> {
        let mut line = String::new();
        match self.read.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(serde_json::from_str(&line).unwrap()),
        }
    }

    fn layout(&mut self) -> Option<Reply> {
        self.send(format!("{GOOD}\n").as_bytes());
        self.reply()
    }

    /// [`layout`](Self::layout) from an agent that may already have been refused and closed:
    /// a write the bridge no longer takes is no reply, not a failure.
    fn try_layout(&mut self) -> Option<Reply> {
        self.write.write_all(format!("{GOOD}\n").as_bytes()).ok()?;
        self.reply()
    }
}

fn applied(r: Option<Reply>) -> bool {
    matches!(r, Some(Reply::Applied { ref displays, .. }) if displays == &[Some(0)])
}

#[test]
fn a_layout_is_applied_and_a_departure_is_noticed() {
    let dir = tempfile::tempdir().unwrap();
    let (path, seen) = server(dir.path());
    let mut a = Agent::connect(&path);
    assert!(applied(a.layout()));
    drop(a);
    assert_eq!(
        seen.recv_timeout(Duration::from_secs(5)).unwrap(),
        "layout 1"
    );
    assert_eq!(seen.recv_timeout(Duration::from_secs(5)).unwrap(), "gone 1");
}

#[test]
fn bad_lines_get_an_error_and_the_agent_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _seen) = server(dir.path());
    let mut a = Agent::connect(&path);
    let bad: [&[u8]; 5] = [
        b"not json\n",
        b"{\"server\":\"x\"}\n",
        b"\xff\xfe\n",
        br#"{"server":"x","mode":"desktop","outputs":[{"name":"Virtual-1\", RUN+=\"/bin/sh","x":0,"y":0,"width":1,"height":1,"mode_width":1,"mode_height":1,"transform":0}]}
"#,
        br#"{"server":"x","mode":"desktop","outputs":[{"name":"HDMI-A-1","x":0,"y":0,"width":1,"height":1,"mode_width":1,"mode_height":1,"transform":0}]}
"#,
    ];
    for line in bad {
        a.send(line);
        let r = a.reply();
        assert!(matches!(r, Some(Reply::Error(_))), "{line:?}: {r:?}");
    }
    assert!(applied(a.layout()), "still served after five bad lines");
}

#[test]
fn an_overlong_line_closes_only_that_agent() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _seen) = server(dir.path());
    let mut good = Agent::connect(&path);
    let mut bad = Agent::connect(&path);
    // One byte over the limit: the bridge has read every byte when it answers and closes, so
    // the write cannot race the close.
    bad.send(&vec![b'x'; MAX_LINE_BYTES + 1]);
    assert!(matches!(bad.reply(), Some(Reply::Error(_))));
    assert!(bad.reply().is_none(), "closed after the error");
    assert!(applied(good.layout()));
}

#[test]
fn an_agent_stalled_mid_line_is_closed_and_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _seen) = server(dir.path());
    let mut idle = Agent::connect(&path);
    assert!(applied(idle.layout()));
    let mut stalled = Agent::connect(&path);
    stalled.send(b"{\"server\":");
    let start = Instant::now();
    assert!(stalled.reply().is_none(), "closed");
    let took = start.elapsed();
    println!("a stalled agent was closed after {took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    // The agent that was idle between whole lines for as long is still served.
    assert!(applied(idle.layout()));
}

#[test]
fn an_agent_trickling_a_line_is_closed_too() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _seen) = server(dir.path());
    let mut slow = Agent::connect(&path);
    let start = Instant::now();
    // One byte every 2 s never leaves the socket quiet for the whole timeout.
    let closed = loop {
        if slow.write.write_all(b" ").is_err() {
            break true;
        }
        if start.elapsed() > Duration::from_secs(16) {
            break false;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    let took = start.elapsed();
    println!("a trickling agent was closed after {took:?}");
    assert!(closed, "still open after {took:?}");
    assert!(matches!(slow.reply(), None | Some(Reply::Error(_))));
}

#[test]
fn agents_beyond_the_limit_are_refused_and_a_slot_frees_on_departure() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _seen) = server(dir.path());
    let mut agents: Vec<Agent> = (0..MAX_AGENTS).map(|_| Agent::connect(&path)).collect();
    for a in &mut agents {
        assert!(applied(a.layout()));
    }
    let mut extra = Agent::connect(&path);
    assert!(matches!(extra.reply(), Some(Reply::Refused(_))));
    drop(agents.pop());
    let start = Instant::now();
    loop {
        let mut again = Agent::connect(&path);
        // Until the slot is freed, the bridge refuses and closes, maybe before this writes.
        if applied(again.try_layout()) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "no slot freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_live_socket_is_not_taken_over_and_a_stale_one_is() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _seen) = server(dir.path());
    let err = session::bind(&path).unwrap_err();
    assert!(err.to_string().contains("another bridge"), "{err}");
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    session::bind(&stale).unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    assert!(
        session::bind(&file).is_err(),
        "a regular file is not removed"
    );
}
