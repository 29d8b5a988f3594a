//! `pvmouse-vnc` in front of a real QEMU's VNC servers, one per head of a two-output virtio-gpu
//! running sway, driven by a VNC client nobody here wrote (vncdotool, from PyPI): pointer events
//! reach the guest's pvmouse device on the right display with the exact values the spec's
//! rounding defines, through mode changes, with two viewers at once and one sending garbage,
//! through VNC password authentication, and while the backend's worker is killed under a viewer
//! holding a button; by an RFB client of the test's own that asks for pointer type changes, as
//! gtk-vnc's viewers do, which is told when pvmouse switches to relative mode and back, and whose
//! pointer events then reach the guest's relative device as motion, and by gtk-vnc itself (the
//! library virt-viewer and remote-viewer are built on) under Xvfb; then by a browser gateway,
//! Debian's noVNC behind websockify in headless Chromium, which must draw each head whole and
//! point on its exact pixels.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pvmouse_spec::InputEvent;
use pvmouse_spec::evdev::{ABS_X, ABS_Y, BTN_LEFT, EV_ABS, EV_KEY, EV_REL, REL_WHEEL};
use pvmouse_spec::profile::DISPLAY_AXIS;
use pvmouse_vmtest::desktop::Sway;
use pvmouse_vmtest::{
    PVMOUSE_NAME, Vm, VmConfig, ev, exclusive, input_frames, motion_sums, round_to_i32, wait,
};

const WAIT: Duration = Duration::from_secs(60);

/// Drives a viewer with vncdotool: `move:X:Y`, `down:B`, `up:B`, `sleep:S`, `capture:FILE`.
const VIEWER: &str = r#"
import os, sys, time
from vncdotool import api
c = api.connect(sys.argv[1], password=os.environ.get('VNC_PASSWORD'), timeout=20)
for step in sys.argv[2:]:
    op, *a = step.split(':', 1)
    a = a[0].split(':') if a else []
    if op == 'move': c.mouseMove(int(a[0]), int(a[1]))
    elif op == 'down': c.mouseDown(int(a[0]))
    elif op == 'up': c.mouseUp(int(a[0]))
    elif op == 'sleep': time.sleep(float(a[0]))
    elif op == 'capture': c.captureScreen(a[0])
c.disconnect()
api.shutdown()
"#;

fn viewer(port: u16, steps: &[String]) -> Child {
    viewer_with_password(port, None, steps)
}

fn viewer_with_password(port: u16, password: Option<&str>, steps: &[String]) -> Child {
    let mut cmd = Command::new("python3");
    if let Some(p) = password {
        cmd.env("VNC_PASSWORD", p);
    }
    cmd.arg("-c")
        .arg(VIEWER)
        .arg(format!("127.0.0.1::{port}"))
        .args(steps)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

fn run_viewer(port: u16, steps: &[String]) {
    let status = viewer(port, steps).wait().unwrap();
    assert!(status.success(), "vncdotool failed: {status}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The password of the third VNC server (VNC passwords are 8 characters at most).
const PASSWORD: &str = "pvm-pass";

/// Waits for a child for at most `limit`, killing it if it is still running then.
fn wait_at_most(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    wait::until("the viewer to exit", limit, || {
        child.try_wait().unwrap().ok_or("running")
    })
    .unwrap_or_else(|_| {
        let _ = child.kill();
        child.wait().unwrap()
    })
}

/// The value the spec says a host sends for pixel `p` of `size`: the pixel's centre.
fn value(p: u32, size: u32) -> i32 {
    round_to_i32((f64::from(p) + 0.5) / f64::from(size) * 65535.0)
}

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn proxy(bin: &Path, control: &Path, heads: &[(u8, u16, PathBuf)], log: &Path) -> Proxy {
    let mut cmd = Command::new(bin);
    cmd.arg("--control").arg(control);
    for (display, port, upstream) in heads {
        cmd.arg("--head").arg(format!(
            "{display}=tcp:127.0.0.1:{port},unix:{}",
            upstream.display()
        ));
    }
    cmd.stderr(std::fs::File::create(log).unwrap());
    let proxy = Proxy(cmd.spawn().unwrap());
    // Listening once the log says each head is ready.
    wait::until("pvmouse-vnc to start", WAIT, || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        wait::when(text, |t| t.matches("head ready").count() >= heads.len())
    })
    .unwrap_or_else(|e| panic!("{e}"));
    proxy
}

/// Waits until the guest has `n` input frames after `mark`.
fn frames_after(vm: &Vm, mark: usize, n: usize) -> Vec<Vec<InputEvent>> {
    let evs = vm
        .probe
        .wait_events(PVMOUSE_NAME, mark, WAIT, |e| input_frames(e).len() >= n)
        .unwrap();
    input_frames(&evs)
}

/// The `ABS_X` values of the input frames after `mark`, once there are at least `n`.
fn xs_after(vm: &Vm, mark: usize, n: usize) -> Vec<i32> {
    frames_after(vm, mark, n)
        .iter()
        .flatten()
        .filter(|e| e.kind == EV_ABS && e.code == ABS_X)
        .map(|e| e.value)
        .collect()
}

/// Waits until the guest has had `want` from pvmouse since `mark`.
fn wait_for_event(vm: &Vm, mark: usize, want: InputEvent, log: &dyn Fn() -> String) {
    vm.probe
        .wait_events(PVMOUSE_NAME, mark, WAIT, |e| {
            input_frames(e).concat().contains(&want)
        })
        .unwrap_or_else(|e| panic!("{want:?}: {e}\n{}", log()));
}

/// Checks that `seen` has each of `wants`, in that order, and exactly one press and one
/// release. The order of events is what is checked, not frames: the device may fold a move
/// into the button frame queued after it (spec §4).
fn assert_one_click_in_order(seen: &[InputEvent], wants: &[InputEvent], log: &dyn Fn() -> String) {
    let at: Vec<usize> = wants
        .iter()
        .map(|want| {
            seen.iter()
                .position(|e| e == want)
                .unwrap_or_else(|| panic!("{want:?} missing from {seen:?}\n{}", log()))
        })
        .collect();
    assert!(at.windows(2).all(|p| p[0] < p[1]), "out of order: {seen:?}");
    assert_eq!(
        seen.iter().filter(|e| e.kind == EV_KEY).count(),
        2,
        "one press and one release: {seen:?}"
    );
}

#[test]
fn vnc_viewers_point_through_pvmouse_on_the_right_head() {
    let dir = tempfile::tempdir().unwrap();
    let vnc = [dir.path().join("vnc0.sock"), dir.path().join("vnc1.sock")];
    let mut extra = Vec::new();
    for (head, path) in vnc.iter().enumerate() {
        extra.push("-vnc".to_owned());
        extra.push(format!(
            "unix:{},id=h{head},display={},head={head}",
            path.display(),
            pvmouse_vmtest::desktop::GPU_ID
        ));
    }
    // A third VNC server, on head 0, asks for a password.
    let locked = dir.path().join("vnc0-password.sock");
    extra.extend([
        "-object".to_owned(),
        format!("secret,id=vncpw,data={PASSWORD}"),
        "-vnc".to_owned(),
        format!(
            "unix:{},id=h0p,display={},head=0,password-secret=vncpw",
            locked.display(),
            pvmouse_vmtest::desktop::GPU_ID
        ),
    ]);
    // Restartable, so that the worker can be killed under a viewer (below).
    // With the relative device, for the viewer that asks for pointer type changes.
    let vm = exclusive::boot(VmConfig {
        desktop: true,
        displays: 2,
        restartable: true,
        relative: true,
        extra_qemu_args: extra,
        ..VmConfig::default()
    });
    Sway::start(
        &vm,
        "output Virtual-1 mode 1024x768 position 0 0\\noutput Virtual-2 mode 1280x1024 position 1024 0\\n",
    )
    .unwrap();
    // The heads have their modes once sway has set them: QEMU's VNC servers report those sizes.
    // Each check is two processes in the guest: a slower pace than a host query's.
    wait::until_every("sway's modes", WAIT, Duration::from_millis(200), || {
        Sway::in_session(&vm, "swaymsg -r -t get_outputs >/tmp/outputs.json").unwrap();
        let json = vm
            .probe
            .sh("cat /tmp/outputs.json", WAIT)
            .unwrap()
            .join("\n");
        let outputs: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        let modes: Vec<(u64, u64)> = outputs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| {
                let m = &o["current_mode"];
                Some((m["width"].as_u64()?, m["height"].as_u64()?))
            })
            .collect();
        wait::when(modes, |m| {
            m.contains(&(1024, 768)) && m.contains(&(1280, 1024))
        })
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let bin = pvmouse_vmtest::assets::build_binaries()
        .unwrap()
        .backend
        .with_file_name("pvmouse-vnc");
    let ports = [free_port(), free_port(), free_port()];
    let log = dir.path().join("pvmouse-vnc.log");
    let mut proxy = proxy(
        &bin,
        &vm.control_socket(),
        &[
            (0, ports[0], vnc[0].clone()),
            (1, ports[1], vnc[1].clone()),
            (0, ports[2], locked.clone()),
        ],
        &log,
    );
    vm.probe.watch(PVMOUSE_NAME, WAIT).unwrap();
    let dump_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // Moves, a click, a drag and a scroll on each head.
    for (display, (w, h)) in [(0u8, (1024u32, 768u32)), (1, (1280, 1024))] {
        let port = ports[usize::from(display)];
        let mark = vm.probe.mark();
        let (x1, y1, x2, y2) = (w - 1, 0, w / 3, h - 1);
        run_viewer(
            port,
            &[
                format!("move:{x1}:{y1}"),
                "down:1".into(),
                format!("move:{x2}:{y2}"),
                "up:1".into(),
                "down:4".into(),
                "up:4".into(),
            ],
        );
        wait_for_event(&vm, mark, ev(EV_REL, REL_WHEEL, 1), &dump_log);
        let seen: Vec<InputEvent> = input_frames(&vm.probe.events(PVMOUSE_NAME, mark)).concat();
        println!("display {display}: {seen:?}");
        let mut wants = Vec::new();
        if display == 1 {
            wants.push(ev(EV_ABS, DISPLAY_AXIS, 1));
        }
        wants.extend([
            ev(EV_ABS, ABS_X, value(x1, w)),
            ev(EV_ABS, ABS_Y, value(y1, h)),
            ev(EV_KEY, BTN_LEFT, 1),
            ev(EV_ABS, ABS_X, value(x2, w)),
            ev(EV_ABS, ABS_Y, value(y2, h)),
            ev(EV_KEY, BTN_LEFT, 0),
            ev(EV_REL, REL_WHEEL, 1),
        ]);
        assert_one_click_in_order(&seen, &wants, &dump_log);
    }

    // Head 1 changes mode under a connected viewer: the proxy follows the size the server
    // announces (DesktopSize), and positions stay exact.
    let mark = vm.probe.mark();
    let mut steady = viewer(
        ports[1],
        &[
            "move:100:100".into(),
            "sleep:6".into(),
            "move:799:599".into(),
            "move:400:300".into(),
        ],
    );
    // The mode changes while the viewer sleeps, once its first move is in.
    wait_for_event(&vm, mark, ev(EV_ABS, ABS_X, value(100, 1280)), &dump_log);
    Sway::in_session(&vm, "swaymsg output Virtual-2 mode 800x600").unwrap();
    assert!(steady.wait().unwrap().success());
    let f = frames_after(&vm, mark, 3);
    println!("across the mode change: {f:?}");
    assert!(
        f.iter()
            .any(|f| f.contains(&ev(EV_ABS, ABS_X, value(799, 800)))),
        "{f:?}\n{}",
        dump_log()
    );
    assert!(
        f.iter()
            .any(|f| f.contains(&ev(EV_ABS, ABS_X, value(400, 800)))),
        "{f:?}"
    );
    assert!(
        dump_log().contains("framebuffer size changed"),
        "{}",
        dump_log()
    );

    // The screen still updates through the proxy: what a viewer captures through it is what
    // QEMU itself shows of that head.
    let through = dir.path().join("through-proxy.png");
    run_viewer(ports[0], &[format!("capture:{}", through.display())]);
    let mut qemu = vm.qemu_qmp().unwrap();
    let direct =
        pvmouse_vmtest::desktop::screendump(&mut qemu, 0, &dir.path().join("direct.ppm")).unwrap();
    let share = same_pixels(&through, &direct);
    println!(
        "capture through the proxy matches QEMU's own screendump in {:.2}% of pixels",
        share * 100.0
    );
    assert!(share > 0.99, "{share}");

    // Two viewers at once, and a third that sends garbage: the two are unaffected.
    let mut garbage = TcpStream::connect(("127.0.0.1", ports[0])).unwrap();
    let mut version = [0u8; 12];
    garbage.read_exact(&mut version).unwrap();
    garbage.write_all(b"not RFB at all, just noise\n").unwrap();
    let mark = vm.probe.mark();
    let a = viewer(
        ports[0],
        &["move:10:20".into(), "sleep:0.5".into(), "move:11:21".into()],
    );
    // Staggered by a quarter second: moves that met in the device's queue would be folded into
    // one another (spec §4), and this checks each of them.
    let b = viewer(
        ports[1],
        &[
            "sleep:0.25".into(),
            "move:30:40".into(),
            "sleep:0.5".into(),
            "move:31:41".into(),
        ],
    );
    for mut v in [a, b] {
        assert!(v.wait().unwrap().success());
    }
    let mut rest = [0u8; 64];
    let closed = matches!(garbage.read(&mut rest), Ok(0) | Err(_));
    assert!(closed, "the garbage viewer was not closed");
    let xs = xs_after(&vm, mark, 4);
    for want in [
        value(10, 1024),
        value(11, 1024),
        value(30, 800),
        value(31, 800),
    ] {
        assert!(
            xs.contains(&want),
            "{want} missing from {xs:?}\n{}",
            dump_log()
        );
    }
    assert!(dump_log().contains("protocol error"), "{}", dump_log());

    // VNC authentication passes through the proxy: a wrong password gets nothing in, the right
    // one points.
    let mark = vm.probe.mark();
    let mut wrong = viewer_with_password(ports[2], Some("wrong-pw"), &["move:333:222".into()]);
    let status = wait_at_most(&mut wrong, WAIT);
    assert!(!status.success(), "a wrong password was let in");
    let mut right = viewer_with_password(ports[2], Some(PASSWORD), &["move:444:111".into()]);
    let status = wait_at_most(&mut right, WAIT);
    assert!(
        status.success(),
        "the right password: {status}\n{}",
        dump_log()
    );
    let xs = xs_after(&vm, mark, 1);
    println!("through VNC authentication: {xs:?}");
    assert!(xs.contains(&value(444, 1024)), "{xs:?}\n{}", dump_log());
    assert!(!xs.contains(&value(333, 1024)), "{xs:?}");

    // The backend's worker is killed while a viewer holds a button: the proxy reconnects, says
    // so in its log, sets the viewer's state again, and the drag goes on; nothing is lost.
    let worker = vm.worker_pid().expect("a restartable backend has a worker");
    let mark = vm.probe.mark();
    let mut held = viewer(
        ports[1],
        &[
            "move:50:50".into(),
            "down:1".into(),
            "sleep:3".into(),
            "move:60:60".into(),
            "up:1".into(),
            "move:70:70".into(),
        ],
    );
    // Killed while the viewer sleeps with the button held: once the press is in.
    wait_for_event(&vm, mark, ev(EV_KEY, BTN_LEFT, 1), &dump_log);
    let killed = Command::new("kill")
        .args(["-KILL", &worker.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    vm.next_worker(Some(worker), WAIT)
        .unwrap_or_else(|e| panic!("{e}"));
    let status = wait_at_most(&mut held, WAIT);
    assert!(status.success(), "{status}\n{}", dump_log());
    wait_for_event(&vm, mark, ev(EV_ABS, ABS_X, value(70, 800)), &dump_log);
    let seen: Vec<InputEvent> = input_frames(&vm.probe.events(PVMOUSE_NAME, mark)).concat();
    println!("across a killed worker: {seen:?}");
    assert_one_click_in_order(
        &seen,
        &[
            ev(EV_ABS, ABS_X, value(50, 800)),
            ev(EV_KEY, BTN_LEFT, 1),
            ev(EV_ABS, ABS_X, value(60, 800)),
            ev(EV_KEY, BTN_LEFT, 0),
            ev(EV_ABS, ABS_X, value(70, 800)),
        ],
        &dump_log,
    );
    let log_text = dump_log();
    assert!(
        log_text.contains("pointer events wait for it") && log_text.contains("back after"),
        "the outage is not in the log:\n{log_text}"
    );
    assert!(proxy.0.try_wait().unwrap().is_none(), "pvmouse-vnc exited");

    a_viewer_that_asks_is_told_of_relative_mode(&vm, ports[1], &dump_log);
    gtk_vnc_follows_relative_mode(&vm, &mut qemu, ports[1], &dump_log);

    // A browser gateway: Debian's noVNC and websockify in front of pvmouse-vnc, in headless
    // Chromium. noVNC keeps the encodings it asks for (Tight among them), draws each head whole,
    // and its pointer, click and wheel land on the exact pixels.
    let modules = pvmouse_vmtest::assets::ensure_browser_tools().unwrap();
    let script = pvmouse_vmtest::assets::workspace_root().join("tests/browser/novnc.js");
    for (display, (w, h)) in [(0u8, (1024u32, 768u32)), (1, (800, 600))] {
        let web = free_port();
        let gateway = Proxy(
            Command::new("websockify")
                .args(["--web", "/usr/share/novnc"])
                .arg(format!("127.0.0.1:{web}"))
                .arg(format!("127.0.0.1:{}", ports[usize::from(display)]))
                .stdout(Stdio::null())
                .stderr(
                    std::fs::File::create(dir.path().join(format!("websockify{display}.log")))
                        .unwrap(),
                )
                .spawn()
                .unwrap(),
        );
        let url = format!("http://127.0.0.1:{web}/vnc_lite.html?host=127.0.0.1&port={web}");
        let browse = |out: &Path, steps: &[String]| {
            let status = Command::new("node")
                .arg(&script)
                .arg(&url)
                .arg(out)
                .args(steps)
                .env("NODE_PATH", &modules)
                .stdin(Stdio::null())
                .status()
                .unwrap();
            assert!(
                status.success(),
                "noVNC in Chromium: {status}\n{}",
                dump_log()
            );
        };
        // The picture, once QEMU and the canvas agree: the screen may still change between a
        // screendump and the canvas's last update.
        let canvas = dir.path().join(format!("novnc{display}.png"));
        let share = wait::until_every(
            "noVNC's canvas to be the head's picture",
            WAIT,
            Duration::from_millis(500),
            || {
                browse(&canvas, &[]);
                let direct = pvmouse_vmtest::desktop::screendump(
                    &mut qemu,
                    u32::from(display),
                    &dir.path().join("direct.ppm"),
                )
                .unwrap();
                wait::when(same_pixels(&canvas, &direct), |s| *s == 1.0)
            },
        )
        .unwrap_or_else(|e| panic!("display {display}: {e}\n{}", dump_log()));
        println!(
            "display {display}: noVNC's canvas matches QEMU's screendump in {:.3}% of pixels",
            share * 100.0
        );
        // Pointer, click, drag and wheel, from the browser.
        let mark = vm.probe.mark();
        let (x1, y1, x2, y2) = (w - 1, 0, w / 3, h - 1);
        browse(
            Path::new("-"),
            &[
                format!("move:{x1}:{y1}"),
                "down".into(),
                format!("move:{x2}:{y2}"),
                "up".into(),
                "wheel:50".into(),
            ],
        );
        wait_for_event(&vm, mark, ev(EV_REL, REL_WHEEL, -1), &dump_log);
        let seen: Vec<InputEvent> = input_frames(&vm.probe.events(PVMOUSE_NAME, mark)).concat();
        println!("display {display} from noVNC: {seen:?}");
        assert_one_click_in_order(
            &seen,
            &[
                ev(EV_ABS, ABS_X, value(x1, w)),
                ev(EV_ABS, ABS_Y, value(y1, h)),
                ev(EV_KEY, BTN_LEFT, 1),
                ev(EV_ABS, ABS_X, value(x2, w)),
                ev(EV_ABS, ABS_Y, value(y2, h)),
                ev(EV_KEY, BTN_LEFT, 0),
                ev(EV_REL, REL_WHEEL, -1),
            ],
            &dump_log,
        );
        drop(gateway);
    }
}

/// The encodings the RFB client below frames, and one it asks for that the proxy must cut.
const RAW: i32 = 0;
const HEXTILE: i32 = 5;
const ZRLE: i32 = 16;
const DESKTOP_SIZE: i32 = -223;
const POINTER_TYPE_CHANGE: i32 = -257;

/// An RFB client of the test's own that asks for pointer type changes, as gtk-vnc's viewers do:
/// it asks for Hextile first (which the proxy cannot frame, so must cut), then ZRLE and Raw, and
/// frames what it gets in those two.
struct RawViewer {
    s: TcpStream,
    size: (u16, u16),
    bytes_per_pixel: u64,
}

impl RawViewer {
    fn connect(port: u16) -> Self {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        let mut version = [0u8; 12];
        s.read_exact(&mut version).unwrap();
        s.write_all(b"RFB 003.008\n").unwrap();
        let mut n = [0u8; 1];
        s.read_exact(&mut n).unwrap();
        let mut types = vec![0u8; usize::from(n[0])];
        s.read_exact(&mut types).unwrap();
        assert!(types.contains(&1), "security None: {types:?}");
        s.write_all(&[1]).unwrap();
        let mut result = [0u8; 4];
        s.read_exact(&mut result).unwrap();
        assert_eq!(result, [0; 4]);
        s.write_all(&[1]).unwrap();
        let mut init = [0u8; 24];
        s.read_exact(&mut init).unwrap();
        let mut name = vec![0u8; u32::from_be_bytes(init[20..24].try_into().unwrap()) as usize];
        s.read_exact(&mut name).unwrap();
        let mut m = vec![2, 0, 0, 5];
        for e in [HEXTILE, ZRLE, RAW, POINTER_TYPE_CHANGE, DESKTOP_SIZE] {
            m.extend_from_slice(&e.to_be_bytes());
        }
        s.write_all(&m).unwrap();
        Self {
            s,
            size: (
                u16::from_be_bytes([init[0], init[1]]),
                u16::from_be_bytes([init[2], init[3]]),
            ),
            bytes_per_pixel: u64::from(init[4] / 8),
        }
    }

    /// Asks for the whole screen, or for what changed in it.
    fn request(&mut self, incremental: bool) {
        let (w, h) = (self.size.0.to_be_bytes(), self.size.1.to_be_bytes());
        self.s
            .write_all(&[3, u8::from(incremental), 0, 0, 0, 0, w[0], w[1], h[0], h[1]])
            .unwrap();
    }

    fn pointer(&mut self, mask: u8, x: u16, y: u16) {
        let (x, y) = (x.to_be_bytes(), y.to_be_bytes());
        self.s
            .write_all(&[5, mask, x[0], x[1], y[0], y[1]])
            .unwrap();
    }

    /// The next message, which must be an update in the encodings asked for (Hextile left out):
    /// its rectangles' encodings, x and areas.
    fn update(&mut self) -> Vec<(i32, u16, u64)> {
        let mut head = [0u8; 4];
        self.s.read_exact(&mut head).unwrap();
        assert_eq!(head[0], 0, "a FramebufferUpdate, not {head:?}");
        let mut rects = Vec::new();
        for _ in 0..u16::from_be_bytes([head[2], head[3]]) {
            let mut r = [0u8; 12];
            self.s.read_exact(&mut r).unwrap();
            let (w, h) = (
                u16::from_be_bytes([r[4], r[5]]),
                u16::from_be_bytes([r[6], r[7]]),
            );
            let area = u64::from(w) * u64::from(h);
            let encoding = i32::from_be_bytes(r[8..12].try_into().unwrap());
            let skip = match encoding {
                RAW => area * self.bytes_per_pixel,
                ZRLE => {
                    let mut len = [0u8; 4];
                    self.s.read_exact(&mut len).unwrap();
                    u64::from(u32::from_be_bytes(len))
                }
                DESKTOP_SIZE => {
                    self.size = (w, h);
                    0
                }
                POINTER_TYPE_CHANGE => 0,
                other => {
                    panic!("an update in encoding {other}, which the proxy should have left out")
                }
            };
            std::io::copy(&mut (&mut self.s).take(skip), &mut std::io::sink()).unwrap();
            rects.push((encoding, u16::from_be_bytes([r[0], r[1]]), area));
        }
        rects
    }

    /// Reads updates until a pointer type change: true if it says absolute. Pixels on the way
    /// are asked for again, so that QEMU keeps sending.
    fn told(&mut self) -> bool {
        loop {
            for (encoding, x, _) in self.update() {
                if encoding == POINTER_TYPE_CHANGE {
                    return x == 1;
                }
            }
            self.request(true);
        }
    }
}

/// A gtk-vnc-like viewer is told pvmouse's mode: absolute when it asks, relative when the host
/// switches, and absolute again; in relative mode its pointer events arrive on the relative
/// device as the motion it sent, with its buttons on the pointer; and it gets QEMU's whole
/// picture in the encodings the proxy can frame.
fn a_viewer_that_asks_is_told_of_relative_mode(vm: &Vm, port: u16, log: &dyn Fn() -> String) {
    let relative = format!("{PVMOUSE_NAME} relative");
    vm.probe.watch(&relative, WAIT).unwrap();
    let mut v = RawViewer::connect(port);
    v.request(false);
    let mut area = 0;
    let mut told_absolute = None;
    while area < u64::from(v.size.0) * u64::from(v.size.1) || told_absolute.is_none() {
        for (encoding, x, a) in v.update() {
            match encoding {
                POINTER_TYPE_CHANGE => told_absolute = Some(x == 1),
                RAW | ZRLE => area += a,
                _ => {}
            }
        }
        v.request(true);
    }
    assert_eq!(told_absolute, Some(true), "told absolute first\n{}", log());
    println!(
        "a viewer asking for Hextile, ZRLE and pointer type changes got the whole {}x{} screen \
         without Hextile, and was told: absolute",
        v.size.0, v.size.1
    );
    let mut ctl = vm.control().unwrap();
    ctl.execute("pvmouse-set-mode", serde_json::json!({"mode": "relative"}))
        .unwrap();
    assert!(!v.told(), "told relative\n{}", log());
    let mark = vm.probe.mark();
    let origin = 0x7FFF_u16;
    for _ in 0..4 {
        v.pointer(0, origin + 25, origin - 15);
    }
    v.pointer(1, origin, origin);
    v.pointer(0, origin, origin);
    let got = vm
        .probe
        .wait_events(&relative, mark, WAIT, |e| motion_sums(e) == (100, -60))
        .unwrap_or_else(|e| panic!("the relative device: {e}\n{}", log()));
    println!("relative device: {:?}", motion_sums(&got));
    wait_for_event(vm, mark, ev(EV_KEY, BTN_LEFT, 0), log);
    let on_pointer: Vec<InputEvent> = input_frames(&vm.probe.events(PVMOUSE_NAME, mark)).concat();
    assert!(
        !on_pointer.iter().any(|e| e.kind == EV_ABS),
        "no position while relative: {on_pointer:?}"
    );
    ctl.execute("pvmouse-set-mode", serde_json::json!({"mode": "absolute"}))
        .unwrap();
    assert!(v.told(), "told absolute again\n{}", log());
    let mark = vm.probe.mark();
    v.pointer(0, 123, 45);
    wait_for_event(
        vm,
        mark,
        ev(EV_ABS, ABS_X, value(123, u32::from(v.size.0))),
        log,
    );
}

/// gtk-vnc's own widget (`tests/viewers/gtk_vnc.py`) under Xvfb, its lines read as they come.
struct GtkVncViewer {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl GtkVncViewer {
    fn start(port: u16) -> Self {
        pvmouse_vmtest::assets::ensure_gtk_vnc().unwrap();
        let script = pvmouse_vmtest::assets::workspace_root().join("tests/viewers/gtk_vnc.py");
        let mut child = Command::new("xvfb-run")
            .args(["-a", "-s", "-screen 0 1280x1024x24", "/usr/bin/python3"])
            .arg(script)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(out).map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    fn send(&mut self, command: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
    }

    /// Waits for the line `want`; the lines before it are passed over.
    fn expect(&self, want: &str, log: &dyn Fn() -> String) {
        let deadline = std::time::Instant::now() + WAIT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == want => return,
                Ok(line) => seen.push(line),
                Err(e) => panic!(
                    "gtk-vnc never said {want:?} ({e}); it said {seen:?}\n{}",
                    log()
                ),
            }
        }
    }
}

impl Drop for GtkVncViewer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// gtk-vnc, as virt-viewer and remote-viewer use it: it asks for pointer type changes, so the
/// proxy tells it pvmouse's mode; in absolute mode it points at pixels, in relative mode (with
/// the grab a click would take) the motion X gives it reaches the guest's relative device as
/// the deltas it computes, and back in absolute mode it points at pixels again.
fn gtk_vnc_follows_relative_mode(
    vm: &Vm,
    qemu: &mut pvmouse_vmtest::qmp::Qmp,
    port: u16,
    log: &dyn Fn() -> String,
) {
    let relative = format!("{PVMOUSE_NAME} relative");
    let (w, h) = (800u32, 600u32);
    // Connected in relative mode: gtk-vnc starts out absolute, so only the proxy's notice makes
    // it say relative.
    let mut ctl = vm.control().unwrap();
    let mut set_mode = |mode: &str| {
        ctl.execute("pvmouse-set-mode", serde_json::json!({ "mode": mode }))
            .unwrap();
    };
    set_mode("relative");
    let mut viewer = GtkVncViewer::start(port);
    viewer.expect("INIT", log);
    viewer.expect("MODE relative", log);
    set_mode("absolute");
    viewer.expect("MODE absolute", log);
    // Its stream is framed, in Tight (gtk-vnc's first choice): it draws the head exactly, once
    // gtk-vnc and QEMU agree (the screen may change between a screendump and an update).
    let dir = tempfile::tempdir().unwrap();
    let (shot, direct) = (
        dir.path().join("gtk-vnc.png"),
        dir.path().join("direct.ppm"),
    );
    let share = wait::until_every(
        "gtk-vnc's picture to be the head's",
        WAIT,
        Duration::from_millis(500),
        || {
            let _ = std::fs::remove_file(&shot);
            viewer.send(&format!("shot {}", shot.display()));
            viewer.expect("DONE shot", log);
            let direct = pvmouse_vmtest::desktop::screendump(qemu, 1, &direct).unwrap();
            wait::when(same_pixels(&shot, &direct), |s| *s == 1.0)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", log()));
    println!(
        "gtk-vnc through the framed stream matches QEMU's screendump in {:.3}% of pixels",
        share * 100.0
    );
    let mark = vm.probe.mark();
    viewer.send("abs 200 100");
    wait_for_event(vm, mark, ev(EV_ABS, ABS_X, value(200, w)), log);
    wait_for_event(vm, mark, ev(EV_ABS, ABS_Y, value(100, h)), log);

    set_mode("relative");
    viewer.expect("MODE relative", log);
    viewer.send("grab");
    viewer.send("to 300 300");
    // gtk-vnc sends motion from its second motion event on, and the first may carry a delta from
    // where it last was. Move until one move arrives alone: everything sent before it has
    // arrived (the path keeps order), so what comes after the mark below is the four moves.
    let mut alone = false;
    for _ in 0..20 {
        let mark = vm.probe.mark();
        viewer.send("move 0 7");
        if vm
            .probe
            .wait_events(&relative, mark, Duration::from_secs(1), |e| {
                motion_sums(e) == (0, 7)
            })
            .is_ok()
        {
            alone = true;
            break;
        }
    }
    assert!(alone, "gtk-vnc's moves never arrived alone\n{}", log());
    let mark = vm.probe.mark();
    for _ in 0..4 {
        viewer.send("move 25 -15");
    }
    let got = vm
        .probe
        .wait_events(&relative, mark, WAIT, |e| motion_sums(e) == (100, -60))
        .unwrap_or_else(|e| {
            panic!(
                "gtk-vnc's motion on the relative device: {e}; got {:?}\n{}",
                motion_sums(&vm.probe.events(&relative, mark)),
                log()
            )
        });
    println!(
        "gtk-vnc in relative mode: the relative device got {:?}",
        motion_sums(&got)
    );

    set_mode("absolute");
    viewer.expect("MODE absolute", log);
    let mark = vm.probe.mark();
    viewer.send("abs 123 45");
    wait_for_event(vm, mark, ev(EV_ABS, ABS_X, value(123, w)), log);
    viewer.send("quit");
}

/// The share of `direct`'s pixels that the PNG at `path` has the same.
fn same_pixels(path: &Path, direct: &pvmouse_vmtest::desktop::Picture) -> f64 {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    if (info.width as usize, info.height as usize) != (direct.width, direct.height) {
        return 0.0;
    }
    let channels = info.line_size / info.width as usize;
    let mut same = 0u32;
    for y in 0..direct.height {
        for x in 0..direct.width {
            let at = y * info.line_size + x * channels;
            if buf[at..at + 3] == direct.at(x, y) {
                same += 1;
            }
        }
    }
    f64::from(same) / f64::from(u32::try_from(direct.width * direct.height).unwrap())
}
