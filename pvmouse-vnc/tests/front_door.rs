//! `pvmouse-vnc`, the binary, against hostile and careless use of its front door: silent
//! connections, too many viewers, a viewer that pins memory with a message it never finishes, a
//! listen path that is not a socket, heads files that never end, and a head the backend lacks.
//! The VNC server behind it is a small RFB server of the test's own that counts what reaches it.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vhost_user_pvmouse::testing::ControlBackend;

const BIN: &str = env!("CARGO_BIN_EXE_pvmouse-vnc");

/// An RFB server with no password that counts the connections it accepted, keeps each open
/// reading until its client goes, and keeps every encoding list it was sent.
struct Upstream {
    path: PathBuf,
    accepted: Arc<AtomicUsize>,
    encodings: Arc<Mutex<Vec<Vec<i32>>>>,
}

impl Upstream {
    fn start(dir: &Path) -> Self {
        let path = dir.join("upstream.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let encodings = Arc::new(Mutex::new(Vec::new()));
        let (count, lists) = (accepted.clone(), encodings.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let lists = lists.clone();
                std::thread::spawn(move || {
                    let mut version = [0u8; 12];
                    let mut one = [0u8; 1];
                    let _ = s.write_all(b"RFB 003.008\n");
                    let _ = s.read_exact(&mut version);
                    let _ = s.write_all(&[1, 1]);
                    let _ = s.read_exact(&mut one);
                    let _ = s.write_all(&0u32.to_be_bytes());
                    let _ = s.read_exact(&mut one);
                    let mut init = vec![2, 128, 1, 224, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255];
                    init.extend_from_slice(&[16, 8, 0, 0, 0, 0, 0, 0, 0, 4]);
                    init.extend_from_slice(b"fake");
                    let _ = s.write_all(&init);
                    // Answers each update request with an empty update; reads the rest.
                    let mut kind = [0u8; 1];
                    while s.read_exact(&mut kind).is_ok() {
                        let ok = match kind[0] {
                            2 => {
                                let mut head = [0u8; 3];
                                s.read_exact(&mut head).is_ok() && {
                                    let n = u16::from_be_bytes([head[1], head[2]]);
                                    let mut list = vec![0u8; usize::from(n) * 4];
                                    let ok = s.read_exact(&mut list).is_ok();
                                    lists.lock().unwrap().push(
                                        list.chunks_exact(4)
                                            .map(|e| i32::from_be_bytes(e.try_into().unwrap()))
                                            .collect(),
                                    );
                                    ok
                                }
                            }
                            3 => {
                                let mut rest = [0u8; 9];
                                s.read_exact(&mut rest).is_ok()
                                    && s.write_all(&[0, 0, 0, 0]).is_ok()
                            }
                            // A viewer's SetPixelFormat.
                            0 => {
                                let mut rest = [0u8; 19];
                                s.read_exact(&mut rest).is_ok()
                            }
                            _ => false,
                        };
                        if !ok {
                            let _ = std::io::copy(&mut s, &mut std::io::sink());
                        }
                    }
                });
            }
        });
        Self {
            path,
            accepted,
            encodings,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// `pvmouse-vnc` on one head, killed when dropped; its log is in `log`.
struct Front {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Front {
    fn start(dir: &Path, upstream: &Upstream, control: &Path, args: &[&str]) -> Self {
        let port = free_port();
        let log = dir.join(format!("pvmouse-vnc-{port}.log"));
        let child = Command::new(BIN)
            .arg("--control")
            .arg(control)
            .arg("--head")
            .arg(format!(
                "0=tcp:127.0.0.1:{port},unix:{}",
                upstream.path.display()
            ))
            .args(args)
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let front = Self { child, port, log };
        wait_until(
            "the head ready and watched",
            Duration::from_secs(10),
            || front.log().contains("following the head's size"),
        );
        front
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// A viewer through the whole handshake, up to and with `ServerInit`.
    fn viewer(&self) -> TcpStream {
        let mut s = self.connect();
        handshake(&mut s);
        s
    }
}

/// A viewer's side of the handshake through the proxy to [`Upstream`], up to and with
/// `ServerInit`.
fn handshake(s: &mut (impl Read + Write)) {
    let mut version = [0u8; 12];
    s.read_exact(&mut version).unwrap();
    s.write_all(b"RFB 003.008\n").unwrap();
    let mut types = [0u8; 2];
    s.read_exact(&mut types).unwrap();
    assert_eq!(types, [1, 1], "one security type, None");
    s.write_all(&[1]).unwrap();
    let mut result = [0u8; 4];
    s.read_exact(&mut result).unwrap();
    s.write_all(&[1]).unwrap();
    let mut init = [0u8; 28];
    s.read_exact(&mut init).unwrap();
    assert_eq!(&init[24..], b"fake");
}

/// The arguments for one head that listens on the Unix socket `listen`.
fn unix_head(control: &Path, listen: &Path, upstream: &Upstream) -> Vec<String> {
    vec![
        "--control".into(),
        control.display().to_string(),
        "--head".into(),
        format!(
            "0=unix:{},unix:{}",
            listen.display(),
            upstream.path.display()
        ),
    ]
}

fn setup() -> (tempfile::TempDir, Upstream, ControlBackend, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(dir.path());
    let control = dir.path().join("control.sock");
    let backend = ControlBackend::start(&control).unwrap();
    (dir, upstream, backend, control)
}

#[test]
fn silent_connections_reach_nothing_upstream_and_are_closed_at_the_deadline() {
    let (dir, upstream, _backend, control) = setup();
    let front = Front::start(dir.path(), &upstream, &control, &[]);
    // The watcher's own connection.
    assert_eq!(upstream.accepted(), 1);
    let start = Instant::now();
    let mut silent: Vec<TcpStream> = (0..20).map(|_| front.connect()).collect();
    // A viewer that speaks is served beside them.
    let mut viewer = front.viewer();
    assert_eq!(
        upstream.accepted(),
        2,
        "only the speaking viewer went upstream"
    );
    viewer.write_all(&[3, 0, 0, 0, 0, 0, 0, 1, 0, 1]).unwrap();
    // Each silent connection got the version, then nothing, then the end at the deadline.
    for s in &mut silent {
        let mut version = [0u8; 12];
        s.read_exact(&mut version).unwrap();
        let mut rest = [0u8; 1];
        assert!(matches!(s.read(&mut rest), Ok(0) | Err(_)));
    }
    let waited = start.elapsed();
    println!("20 silent connections closed after {waited:?}");
    assert!(
        (Duration::from_secs(9)..Duration::from_secs(15)).contains(&waited),
        "{waited:?}"
    );
    assert_eq!(upstream.accepted(), 2, "{}", front.log());
}

#[test]
fn the_viewer_after_the_last_place_is_told_why() {
    let (dir, upstream, _backend, control) = setup();
    let front = Front::start(dir.path(), &upstream, &control, &["--max-viewers", "2"]);
    let _served = [front.viewer(), front.viewer()];
    let mut third = front.connect();
    let mut version = [0u8; 12];
    third.read_exact(&mut version).unwrap();
    third.write_all(b"RFB 003.008\n").unwrap();
    let mut refusal = Vec::new();
    let _ = third.read_to_end(&mut refusal);
    assert_eq!(refusal.first(), Some(&0), "no security types: a refusal");
    let reason = String::from_utf8_lossy(&refusal[5..]).into_owned();
    println!("the third viewer was told: {reason}");
    assert!(reason.contains("at most 2 viewers"), "{reason}");
    assert_eq!(upstream.accepted(), 3, "the refused viewer went nowhere");
    // A place freed is a place taken.
    drop(_served);
    wait_until("a place to free", Duration::from_secs(10), || {
        std::panic::catch_unwind(|| front.viewer()).is_ok()
    });
}

#[test]
fn viewers_that_never_finish_a_long_message_pin_no_memory() {
    let (dir, upstream, _backend, control) = setup();
    let front = Front::start(dir.path(), &upstream, &control, &["--max-viewers", "200"]);
    let before = front.rss_kib();
    // Each claims 1 MiB of cut text and sends 8 bytes of it.
    let viewers: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut v = front.viewer();
            v.write_all(&[6, 0, 0, 0, 0, 0x10, 0, 0]).unwrap();
            v.write_all(b"12345678").unwrap();
            v
        })
        .collect();
    wait_until("every viewer upstream", Duration::from_secs(20), || {
        upstream.accepted() == 101
    });
    std::thread::sleep(Duration::from_millis(300));
    let after = front.rss_kib();
    println!("100 viewers, each 8 bytes into a 1 MiB cut text: RSS {before} KiB -> {after} KiB");
    assert!(
        after - before < 16 * 1024,
        "{} KiB for 100 viewers",
        after - before
    );
    drop(viewers);
}

#[test]
fn the_listen_path_must_be_a_socket_and_becomes_the_users_alone() {
    let (dir, upstream, _backend, control) = setup();
    let listen = dir.path().join("vnc.sock");
    std::fs::write(&listen, "precious").unwrap();
    let run = |umask: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask}; exec \"$0\" \"$@\""))
            .arg(BIN)
            .args(unix_head(&control, &listen, &upstream))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let out = run("000").wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    println!("{said}");
    assert!(!out.status.success());
    assert!(said.contains("not a socket"), "{said}");
    assert_eq!(std::fs::read_to_string(&listen).unwrap(), "precious");
    std::fs::remove_file(&listen).unwrap();
    let mut child = run("000");
    wait_until("the socket", Duration::from_secs(10), || listen.exists());
    let mode = std::fs::metadata(&listen).unwrap().permissions().mode() & 0o777;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(mode, 0o600, "under umask 000");
    assert!(
        UnixStream::connect(&listen).is_err(),
        "gone with its process"
    );
}

#[test]
fn a_heads_file_that_is_not_a_small_regular_file_is_refused_at_once() {
    let (dir, _upstream, _backend, control) = setup();
    let fifo = dir.path().join("heads.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let big = dir.path().join("big");
    std::fs::write(&big, "# x\n".repeat(20_000)).unwrap();
    for (file, why) in [
        (PathBuf::from("/dev/zero"), "not a regular file"),
        (fifo, "not a regular file"),
        (big, "larger than"),
    ] {
        let start = Instant::now();
        let out = Command::new(BIN)
            .arg("--control")
            .arg(&control)
            .arg("--heads-file")
            .arg(&file)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        println!("{}: {said}", file.display());
        assert_eq!(out.status.code(), Some(2));
        assert!(said.contains(why), "{said}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}

#[test]
fn a_head_whose_display_the_backend_lacks_is_refused_at_start() {
    let (dir, upstream, _backend, control) = setup();
    let out = Command::new(BIN)
        .arg("--control")
        .arg(&control)
        .arg("--head")
        .arg(format!(
            "5=tcp:127.0.0.1:{},unix:{}",
            free_port(),
            upstream.path.display()
        ))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    println!("{said}");
    assert_eq!(out.status.code(), Some(2));
    assert!(said.contains("backend has 2 display"), "{said}");
    drop(dir);
}

#[test]
fn a_hung_backend_never_stops_the_picture() {
    let (dir, upstream, _backend, _) = setup();
    // A control socket that accepts and never says a word: a backend hung or stopped.
    let hung = dir.path().join("hung.sock");
    let listener = UnixListener::bind(&hung).unwrap();
    let held = std::thread::spawn(move || {
        let mut kept = Vec::new();
        for s in listener.incoming().take(4) {
            kept.push(s);
        }
        kept
    });
    let front = Front::start(dir.path(), &upstream, &hung, &[]);
    let mut viewer = front.viewer();
    let mut reader = viewer.try_clone().unwrap();
    let start = Instant::now();
    // 20 pointer events, each followed by an update request, at 20 Hz.
    for i in 0..20u16 {
        viewer
            .write_all(&[5, 1, 0, 10, 0, u8::try_from(i).unwrap()])
            .unwrap();
        viewer.write_all(&[3, 1, 0, 0, 0, 0, 0, 1, 0, 1]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut updates = 0;
    let mut update = [0u8; 4];
    reader
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    while updates < 20 && reader.read_exact(&mut update).is_ok() {
        updates += 1;
    }
    let took = start.elapsed();
    println!("with the backend hung: {updates} of 20 updates in {took:?}");
    assert_eq!(updates, 20, "{}", front.log());
    assert!(took < Duration::from_secs(4), "{took:?}");
    drop(front);
    drop(held);
}

#[test]
fn seventy_viewers_pointing_leave_the_backend_to_its_other_clients() {
    let (dir, upstream, backend, control) = setup();
    let front = Front::start(dir.path(), &upstream, &control, &["--max-viewers", "100"]);
    // Each viewer moves, and presses and lets go of the left button.
    let viewers: Vec<TcpStream> = (0..70u8)
        .map(|i| {
            let mut v = front.viewer();
            v.write_all(&[5, 0, 0, i, 0, 7]).unwrap();
            v.write_all(&[5, 1, 0, i, 0, 7]).unwrap();
            v.write_all(&[5, 0, 0, i, 0, 7]).unwrap();
            v
        })
        .collect();
    // Every viewer's position is one of theirs; which is last depends on their threads.
    let theirs: Vec<Option<u16>> = (0..70)
        .map(|i| Some(pvmouse_spec::stream::pixel_centre(i, 640)))
        .collect();
    wait_until("the viewers' positions", Duration::from_secs(10), || {
        theirs.contains(&backend.pointer().1)
    });
    std::thread::sleep(Duration::from_millis(300));
    // The backend takes 64 connections: with one per viewer it would refuse this one.
    let mut client = pvmouse_client::Connection::connect(&control).unwrap();
    let status = client.status().unwrap();
    println!(
        "after 70 viewers pointed: a QMP client is served; the device saw {} commands",
        status.counters.commands
    );
    assert_eq!(backend.pointer().2, 0, "every press let go");
    drop(viewers);
}

#[test]
fn pvmouse_vnc_killed_under_a_drag_leaves_no_button_held() {
    let (dir, upstream, backend, control) = setup();
    let mut front = Front::start(dir.path(), &upstream, &control, &[]);
    let mut viewer = front.viewer();
    // Left and right down, and dragging.
    viewer.write_all(&[5, 0b101, 0, 10, 0, 10]).unwrap();
    viewer.write_all(&[5, 0b101, 0, 50, 0, 50]).unwrap();
    let held =
        pvmouse_spec::profile::Button::Left.bit() | pvmouse_spec::profile::Button::Right.bit();
    wait_until("the drag", Duration::from_secs(5), || {
        backend.pointer().2 == held
    });
    front.child.kill().unwrap();
    front.child.wait().unwrap();
    wait_until("the buttons let go", Duration::from_secs(5), || {
        backend.pointer().2 == 0
    });
    println!("pvmouse-vnc killed with SIGKILL mid-drag: the backend let go of left and right");
}

/// A viewer on `child`'s Unix socket at `listen` presses left; then `child` gets SIGTERM. It
/// must exit 0, remove its socket, and leave the backend with no button held.
fn hold_then_terminate(child: &mut Child, listen: &Path, backend: &ControlBackend) {
    wait_until("the socket", Duration::from_secs(10), || listen.exists());
    let mut v = UnixStream::connect(listen).unwrap();
    handshake(&mut v);
    v.write_all(&[5, 1, 0, 10, 0, 10]).unwrap();
    let left = pvmouse_spec::profile::Button::Left.bit();
    wait_until("the press", Duration::from_secs(5), || {
        backend.pointer().2 == left
    });
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let mut log = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        stderr.read_to_string(&mut log).unwrap();
    }
    assert!(status.success(), "{status}\n{log}");
    assert!(!listen.exists(), "the socket is left behind");
    wait_until("the release", Duration::from_secs(5), || {
        backend.pointer().2 == 0
    });
}

#[test]
fn sigterm_removes_the_listening_socket_and_lets_go_of_held_buttons() {
    let (dir, upstream, backend, control) = setup();
    let listen = dir.path().join("front.sock");
    let mut child = Command::new(BIN)
        .args(unix_head(&control, &listen, &upstream))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    hold_then_terminate(&mut child, &listen, &backend);
}

#[test]
fn it_runs_as_an_ordinary_user() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, upstream, backend, control) = setup();
    // SAFETY: geteuid cannot fail and touches no memory.
    let root = unsafe { libc::geteuid() } == 0;
    // The operator lets this user reach both sockets (the backend's --socket-group, say).
    for path in [dir.path(), control.as_path(), upstream.path.as_path()] {
        let mode = if path.is_dir() { 0o755 } else { 0o666 };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let own = dir.path().join("nobody");
    std::fs::create_dir(&own).unwrap();
    if root {
        std::os::unix::fs::chown(&own, Some(65_534), Some(65_534)).unwrap();
    }
    let listen = own.join("front.sock");
    let mut command = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN]);
        c
    } else {
        Command::new(BIN)
    };
    let mut child = command
        .args(unix_head(&control, &listen, &upstream))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    hold_then_terminate(&mut child, &listen, &backend);
    let uid = if root {
        65_534
    } else {
        // SAFETY: geteuid cannot fail and touches no memory.
        unsafe { libc::geteuid() }
    };
    println!("as uid {uid}: served a viewer, stopped cleanly");
}

/// Reads server messages until a pointer type change; its x: 1 absolute, 0 relative. Only the
/// empty updates [`Upstream`] sends and the proxy's own rectangles can come.
fn told(v: &mut TcpStream) -> u16 {
    loop {
        let mut head = [0u8; 4];
        v.read_exact(&mut head).unwrap();
        assert_eq!(head[0], 0, "a FramebufferUpdate");
        if u16::from_be_bytes([head[2], head[3]]) == 0 {
            continue;
        }
        let mut rect = [0u8; 12];
        v.read_exact(&mut rect).unwrap();
        let encoding = i32::from_be_bytes(rect[8..12].try_into().unwrap());
        assert_eq!(encoding, -257, "only pointer type changes: {rect:?}");
        assert_eq!(head[3], 1, "one rectangle");
        return u16::from_be_bytes([rect[0], rect[1]]);
    }
}

fn set_encodings(v: &mut TcpStream, encodings: &[i32]) {
    v.write_all(&pvmouse_vnc::rfb::set_encodings(0, encodings))
        .unwrap();
}

fn pointer_event(v: &mut TcpStream, mask: u8, x: u16, y: u16) {
    let (x, y) = (x.to_be_bytes(), y.to_be_bytes());
    v.write_all(&[5, mask, x[0], x[1], y[0], y[1]]).unwrap();
}

#[test]
fn a_viewer_that_asks_is_told_of_relative_mode_and_its_pointer_becomes_motion() {
    use pvmouse_spec::profile::{Button, PointerMode};
    let (dir, upstream, backend, control) = setup();
    let front = Front::start(dir.path(), &upstream, &control, &[]);
    let mut ctl = pvmouse_client::Connection::connect(&control).unwrap();
    let mut set_mode = |mode| {
        ctl.send(&pvmouse_client::command::PvmouseSetMode { mode })
            .unwrap();
    };
    // A viewer asks for Hextile first and for pointer type changes; one like noVNC does not
    // ask for them.
    use pvmouse_vnc::rfb::{DESKTOP_SIZE, POINTER_TYPE_CHANGE, RAW, TIGHT};
    const HEXTILE: i32 = 5;
    let mut asks = front.viewer();
    set_encodings(
        &mut asks,
        &[HEXTILE, TIGHT, RAW, POINTER_TYPE_CHANGE, DESKTOP_SIZE],
    );
    let mut plain = front.viewer();
    set_encodings(&mut plain, &[HEXTILE, TIGHT, RAW]);
    assert_eq!(told(&mut asks), 1, "told absolute at once, as QEMU does");
    // The watcher's, and the two viewers'.
    wait_until("three lists upstream", Duration::from_secs(5), || {
        upstream.encodings.lock().unwrap().len() == 3
    });
    let lists = upstream.encodings.lock().unwrap().clone();
    println!("upstream got {lists:?}");
    assert!(
        lists.contains(&vec![TIGHT, RAW, DESKTOP_SIZE]),
        "the asking viewer's list is cut to what the framing takes: {lists:?}"
    );
    assert!(
        lists.contains(&vec![HEXTILE, TIGHT, RAW]),
        "the other's is untouched: {lists:?}"
    );
    // An absolute position from the asking viewer lands as usual.
    pointer_event(&mut asks, 0, 10, 10);
    let at = pvmouse_spec::stream::pixel_centre(10, 640);
    wait_until("the position", Duration::from_secs(5), || {
        backend.pointer().1 == Some(at)
    });

    set_mode(PointerMode::Relative);
    assert_eq!(told(&mut asks), 0, "told relative");
    // Motion with the left button down: the button is pressed, and the position stays where it
    // was (read as a position, 0x7FFF + 7 would be the last pixel).
    pointer_event(&mut asks, 1, 0x7FFF + 7, 0x7FFF - 3);
    wait_until("the press", Duration::from_secs(5), || {
        backend.pointer().2 == Button::Left.bit()
    });
    pointer_event(&mut asks, 0, 0x7FFF + 2, 0x7FFF);
    wait_until("the release", Duration::from_secs(5), || {
        backend.pointer().2 == 0
    });
    assert_eq!(backend.pointer().1, Some(at), "no position was sent");
    assert!(
        !front.log().contains("refused"),
        "the motion was refused:\n{}",
        front.log()
    );

    // Back to absolute, while the viewer, not told yet, still moves with the button down: its
    // press applies, and the pointer stays absolute (whether the proxy read the event as
    // motion, which keeps the mode, or as a position outside the framebuffer).
    set_mode(PointerMode::Absolute);
    pointer_event(&mut asks, 1, 0x7FFF + 9, 0x7FFF);
    wait_until("the press", Duration::from_secs(5), || {
        backend.pointer().2 == Button::Left.bit()
    });
    let status = pvmouse_client::Connection::connect(&control)
        .unwrap()
        .status()
        .unwrap();
    assert_eq!(
        status.mode,
        PointerMode::Absolute,
        "the host's switch holds"
    );
    pointer_event(&mut asks, 0, 0x7FFF + 9, 0x7FFF);
    wait_until("the release", Duration::from_secs(5), || {
        backend.pointer().2 == 0
    });
    assert_eq!(told(&mut asks), 1, "told absolute");
    pointer_event(&mut asks, 0, 20, 20);
    let at = pvmouse_spec::stream::pixel_centre(20, 640);
    wait_until("the position", Duration::from_secs(5), || {
        backend.pointer().1 == Some(at)
    });
    // The viewer that did not ask was told nothing, and its stream is still QEMU's alone.
    plain
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut any = [0u8; 1];
    assert!(
        plain.read(&mut any).is_err(),
        "the plain viewer was sent {any:?}"
    );
}
