//! Relative mode in a real guest: the backend serves its relative device as a second
//! `vhost-user-input-pci`, and the host switches between absolute positions and relative motion
//! with no hot-plug. One boot of the desktop guest; sway first, then X.Org (xf86-input-libinput)
//! on the same devices. In each, with the flat acceleration profile (the profile asks for no
//! acceleration: spec/pvmouse.md §10): relative motion moves the pointer by exactly what was
//! sent, a position sent in relative mode moves nothing, a button held across both switches
//! stays held, and the switch back puts the pointer exactly where the host last said, even at
//! the very position the guest's absolute axes already hold. The backend runs as the product
//! does by default (a keeper and a worker), and a worker killed in relative mode is survived.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::time::Duration;

use pvmouse_vmtest::desktop::{Mutter, READER_LOG, Sway};
use pvmouse_vmtest::guest::Guest;
use pvmouse_vmtest::qmp::Qmp;
use pvmouse_vmtest::vm::VmConfig;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const WESTON_RUNTIME: &str = "/run/user/0";
const WESTON_SESSION: &str = "XDG_RUNTIME_DIR=/run/user/0 WAYLAND_DISPLAY=wayland-0";
const LOGS: &str = "tail -n 15 /tmp/sway.log /tmp/reader.log /tmp/xorg.log /tmp/grab.log \
                    /tmp/guestd.log /tmp/session.log 2>&1; \
                    grep -iE 'input|device|pointer' /tmp/weston.log | tail -n 20; \
                    grep -iE 'pvmouse|relative' /proc/bus/input/devices";

fn send(ctl: &mut Qmp, args: Value) {
    ctl.execute("pvmouse-send", args).unwrap();
}

fn mode(ctl: &mut Qmp) -> String {
    let status = ctl.execute("query-pvmouse", json!({})).unwrap();
    status["mode"].as_str().unwrap().to_owned()
}

/// The reader's log lines that start with `kind`.
fn reader_lines(guest: &Guest, kind: &str) -> Vec<Vec<f64>> {
    guest
        .sh(&format!("grep '^{kind}' {READER_LOG} || true"))
        .iter()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|f| f.parse().ok())
                .collect()
        })
        .collect()
}

/// A game in a Wayland compositor: `pvmouse-wl-reader --lock`, started by `run` in the
/// compositor's session, locks the pointer when it enters its surface. Relative motion must
/// reach it as deltas, exact (the flat profile: accelerated and unaccelerated agree), while
/// the compositor moves the pointer nowhere (no motion events once locked). Ends back in
/// absolute mode with the reader gone.
fn a_locked_pointer_gets_the_deltas(
    guest: &Guest,
    ctl: &mut Qmp,
    server: &str,
    entry: (f64, f64),
    run: &dyn Fn(&str),
) {
    guest.sh(&format!(
        "pkill -f ^/opt/pvmouse-wl-reader; rm -f {READER_LOG}; true"
    ));
    run(&format!(
        "/opt/pvmouse-wl-reader --lock >{READER_LOG} 2>&1 &"
    ));
    // The pointer moves onto the game's fullscreen surface, so the game locks it; what relative
    // motion the compositor derives from that move settles first. (Two moves: the device sends
    // nothing for the position it is at, where the last call may have left it.)
    guest.until(&format!("cat {READER_LOG}"), "READY");
    send(ctl, json!({"x": entry.0 - 0.05, "y": entry.1}));
    send(ctl, json!({"x": entry.0, "y": entry.1}));
    // Weston locks only for the surface last clicked, as a game's window is.
    guest.until(&format!("cat {READER_LOG}"), "ENTER");
    send(ctl, json!({"buttons": {"left": true}}));
    send(ctl, json!({"buttons": {"left": false}}));
    guest.until(&format!("cat {READER_LOG}"), "LOCKED");
    std::thread::sleep(Duration::from_millis(500));
    let motions = reader_lines(guest, "MOTION").len();
    let sum = || {
        reader_lines(guest, "RELATIVE")
            .iter()
            .fold((0.0, 0.0, 0.0, 0.0), |s, l| {
                (s.0 + l[0], s.1 + l[1], s.2 + l[2], s.3 + l[3])
            })
    };
    let before = sum();
    for _ in 0..4 {
        send(ctl, json!({"dx": 25, "dy": -15}));
    }
    let want = (
        before.0 + 100.0,
        before.1 - 60.0,
        before.2 + 100.0,
        before.3 - 60.0,
    );
    until(
        guest,
        &format!("{server}: deltas to the locked pointer"),
        want,
        sum,
    );
    assert_eq!(
        reader_lines(guest, "MOTION").len(),
        motions,
        "{server}: the locked pointer stays put"
    );
    ctl.execute("pvmouse-set-mode", json!({"mode": "absolute"}))
        .unwrap();
    guest.sh("pkill -f ^/opt/pvmouse-wl-reader; true");
}

/// Polls `read` until it gives `want` (the guest's input path is asynchronous), or fails with
/// what it last gave.
fn until<T: PartialEq + std::fmt::Debug>(guest: &Guest, what: &str, want: T, read: impl Fn() -> T) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = read();
        if got == want {
            return;
        }
        if std::time::Instant::now() > deadline {
            guest.fail(format!("{what}: want {want:?}, got {got:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_host_switches_between_absolute_and_relative_with_no_hot_plug() {
    let guest = Guest::boot(
        VmConfig {
            desktop: true,
            displays: 1,
            relative: true,
            // The product's default: a keeper holds both of QEMU's connections.
            restartable: true,
            ..VmConfig::default()
        },
        LOGS,
        WAIT,
    );
    let mut ctl = guest.control().unwrap_or_else(|e| guest.fail(e));
    // A second client, that only listens: it hears of the switch.
    let mut events = guest.control().unwrap_or_else(|e| guest.fail(e));

    // The guest sees two devices from the start: udev tags the relative one a mouse (so
    // libinput takes it), the other stays the absolute pointer.
    guest.sh("udevadm settle");
    let node = guest.sh(
        "for d in /sys/class/input/event*; do \
         [ \"$(cat $d/device/name)\" = 'pvmouse relative' ] && echo /dev/input/${d##*/}; done; true",
    );
    let node = node
        .first()
        .unwrap_or_else(|| guest.fail("no relative device in the guest"))
        .clone();
    let props = guest
        .sh(&format!("udevadm info -q property -n {node}"))
        .join(" ");
    assert!(props.contains("ID_INPUT_MOUSE=1"), "{props}");
    assert!(!props.contains("ID_INPUT_TABLET=1"), "{props}");
    let status = ctl.execute("query-pvmouse", json!({})).unwrap();
    assert_eq!(status["relative"]["driver-active"], json!(true), "{status}");
    assert_eq!(status["mode"], json!("absolute"));

    // sway, every pointer with the flat profile.
    Sway::start(
        &guest,
        "output Virtual-1 mode 1024x768 position 0 0\\noutput Virtual-2 disable\\n\
         input type:pointer accel_profile flat\\n",
    )
    .unwrap_or_else(|e| guest.fail(e));
    Sway::in_session(
        &guest,
        &format!("/opt/pvmouse-wl-reader >{READER_LOG} 2>&1 &"),
    )
    .unwrap_or_else(|e| guest.fail(e));
    let reader = guest.reader_ready();
    let at = || reader.position().map(|(_, x, y)| (x.round(), y.round()));
    // 0.5 of 1024x768 aims at the centre of pixel (512, 384).
    send(&mut ctl, json!({"x": 0.5, "y": 0.5}));
    until(&guest, "sway, absolute", Some((512.0, 384.0)), at);
    send(&mut ctl, json!({"buttons": {"left": true}}));
    until(&guest, "sway, press", Some(true), || {
        reader.button().map(|(_, _, down)| down)
    });

    // Relative motion switches the mode, and moves by exactly what was sent.
    send(&mut ctl, json!({"dx": 100, "dy": 50}));
    until(&guest, "sway, relative", Some((612.0, 434.0)), at);
    let event = events
        .wait_event("PVMOUSE_MODE_CHANGE", WAIT)
        .unwrap_or_else(|e| guest.fail(e));
    assert_eq!(event["data"]["mode"], json!("relative"), "{event}");
    assert_eq!(mode(&mut ctl), "relative");
    // A worker killed in relative mode: the next one carries the mode on, and the keeper
    // hands it the relative device's ring as well as the pointer's.
    let (worker, _) = guest
        .next_worker(None, WAIT)
        .unwrap_or_else(|e| guest.fail(e));
    // SAFETY: a signal to the backend's worker process, which this test started.
    unsafe { libc::kill(libc::pid_t::try_from(worker).unwrap(), libc::SIGKILL) };
    guest
        .next_worker(Some(worker), WAIT)
        .unwrap_or_else(|e| guest.fail(e));
    ctl = guest.control().unwrap_or_else(|e| guest.fail(e));
    assert_eq!(mode(&mut ctl), "relative", "the mode survives a worker");
    // QEMU's own relative events, as any QMP tool sends them.
    ctl.execute(
        "input-send-event",
        json!({"events": [
            {"type": "rel", "data": {"axis": "x", "value": -30}},
            {"type": "rel", "data": {"axis": "y", "value": 7}}
        ]}),
    )
    .unwrap();
    until(
        &guest,
        "sway, input-send-event rel",
        Some((582.0, 441.0)),
        at,
    );
    // A position in relative mode moves nothing; it is where the switch back goes.
    send(&mut ctl, json!({"x": 0.25, "y": 0.25}));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        at(),
        Some((582.0, 441.0)),
        "no absolute input in relative mode"
    );
    assert_eq!(
        reader.button().map(|(_, _, down)| down),
        Some(true),
        "held across the switch"
    );
    ctl.execute("pvmouse-set-mode", json!({"mode": "absolute"}))
        .unwrap();
    until(&guest, "sway, back to absolute", Some((256.0, 192.0)), at);
    // Relative again, then back to the very position the guest's axes already hold: the
    // renewal makes it land all the same.
    send(&mut ctl, json!({"dx": 40, "dy": 40}));
    until(&guest, "sway, relative again", Some((296.0, 232.0)), at);
    ctl.execute("pvmouse-set-mode", json!({"mode": "absolute"}))
        .unwrap();
    until(
        &guest,
        "sway, the same position renewed",
        Some((256.0, 192.0)),
        at,
    );
    send(&mut ctl, json!({"buttons": {"left": false}}));
    until(&guest, "sway, release", Some(false), || {
        reader.button().map(|(_, _, down)| down)
    });
    a_locked_pointer_gets_the_deltas(&guest, &mut ctl, "sway", (0.4, 0.6), &|command| {
        Sway::in_session(&guest, command).unwrap_or_else(|e| guest.fail(e));
    });

    // Weston, with the bridge in per-display mode (its session agent reports Weston): the
    // bridge drives the absolute pointer through uinput, while relative motion reaches Weston
    // straight from the relative device. The flat profile from Weston's own configuration.
    guest.sh("pkill -x sway; pkill -x seatd; sleep 1; modprobe uinput || true");
    let _bridge = guest.start_bridge("");
    guest.sh(&format!(
        "mkdir -p {WESTON_RUNTIME} && chmod 700 {WESTON_RUNTIME}"
    ));
    guest.sh(
        "printf '[core]\\nrequire-input=false\\nidle-time=0\\n[libinput]\\n\
         accel-profile=flat\\n[output]\\nname=Virtual-1\\nmode=1024x768\\n[output]\\n\
         name=Virtual-2\\nmode=off\\n' >/tmp/weston.ini",
    );
    guest.sh(&format!(
        "{WESTON_SESSION} weston --tty=2 --backend=drm-backend.so --socket=wayland-0 \
         --config=/tmp/weston.ini >/tmp/weston.log 2>&1 &"
    ));
    guest.until(&format!("ls {WESTON_RUNTIME}"), "wayland-0");
    guest.sh(&format!(
        "{WESTON_SESSION} /opt/pvmouse-session >/tmp/session.log 2>&1 &"
    ));
    guest.session_agent_applied();
    guest.until("cat /tmp/guestd.log", "mode=PerDisplay");
    guest.sh(&format!(
        "{WESTON_SESSION} /opt/pvmouse-wl-reader >{READER_LOG} 2>&1 &"
    ));
    let reader = guest.reader_ready();
    let at = || reader.position().map(|(_, x, y)| (x.round(), y.round()));
    send(&mut ctl, json!({"x": 0.5, "y": 0.5}));
    until(&guest, "Weston, absolute", Some((512.0, 384.0)), at);
    send(&mut ctl, json!({"dx": 30, "dy": 20}));
    until(&guest, "Weston, relative", Some((542.0, 404.0)), at);
    ctl.execute("pvmouse-set-mode", json!({"mode": "absolute"}))
        .unwrap();
    until(
        &guest,
        "Weston, renewed through the bridge",
        Some((512.0, 384.0)),
        at,
    );
    a_locked_pointer_gets_the_deltas(&guest, &mut ctl, "Weston", (0.4, 0.6), &|command| {
        guest.sh(&format!("{WESTON_SESSION} {command}"));
    });
    guest.sh("pkill -x pvmouse-session; pkill -x pvmouse-guestd; pkill -x weston; sleep 1; true");

    // X.Org on the same two devices, the position read from the server.
    guest.sh("Xorg :0 vt1 -nolisten tcp -noreset >/tmp/xorg.log 2>&1 &");
    guest.until("DISPLAY=:0 xrandr --listmonitors", "Monitors:");
    guest.sh("DISPLAY=:0 xinput set-prop 'pvmouse relative' 'libinput Accel Profile Enabled' 0 1");
    let screen = guest.sh("DISPLAY=:0 xrandr | head -n 1").join(" ");
    let size = |after: &str| -> Option<f64> {
        let rest = screen.split_once("current ")?.1;
        let field = if after == "w" {
            rest.split(" x ").next()?
        } else {
            rest.split(" x ").nth(1)?.split(',').next()?
        };
        field.trim().parse().ok()
    };
    let (w, h) = size("w")
        .zip(size("h"))
        .unwrap_or_else(|| guest.fail(format!("X screen size: {screen}")));
    let x_at = || {
        let line = guest.sh("DISPLAY=:0 xdotool getmouselocation").join(" ");
        let field = |name: &str| -> Option<f64> {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name))
                .and_then(|v| v.parse().ok())
        };
        field("x:").zip(field("y:"))
    };
    // Not sway's last position, which the device would not send again.
    let before = x_at();
    send(&mut ctl, json!({"x": 0.75, "y": 0.75}));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let start = loop {
        let now = x_at();
        if now != before {
            break now.unwrap_or_else(|| guest.fail("no X pointer position"));
        }
        if std::time::Instant::now() > deadline {
            guest.fail(format!(
                "X.Org: an absolute position did not move the pointer ({before:?})"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        (start.0 - w * 0.75).abs() <= 1.0 && (start.1 - h * 0.75).abs() <= 1.0,
        "X.Org: 0.75 of {w}x{h} at {start:?}"
    );
    send(&mut ctl, json!({"dx": -100, "dy": 60}));
    until(
        &guest,
        "X.Org, relative",
        Some((start.0 - 100.0, start.1 + 60.0)),
        x_at,
    );
    assert_eq!(mode(&mut ctl), "relative");
    ctl.execute("pvmouse-set-mode", json!({"mode": "absolute"}))
        .unwrap();
    until(&guest, "X.Org, renewed", Some(start), x_at);

    // An X11 game: a grab, XI2 raw motion, the pointer warped back to the centre each time.
    guest.sh("DISPLAY=:0 /opt/pvmouse-x11-grab >/tmp/grab.log 2>&1 &");
    guest.until("cat /tmp/grab.log", "GRABBED");
    let id = guest
        .sh("DISPLAY=:0 xinput list --id-only 'pvmouse relative'")
        .join("");
    let raw = || -> (f64, f64, f64, f64) {
        guest
            .sh(&format!("grep '^RAW {id} ' /tmp/grab.log || true"))
            .iter()
            .map(|l| {
                l.split_whitespace()
                    .skip(2)
                    .filter_map(|f| f.parse::<f64>().ok())
                    .collect::<Vec<_>>()
            })
            .fold((0.0, 0.0, 0.0, 0.0), |s, v| {
                (s.0 + v[0], s.1 + v[1], s.2 + v[2], s.3 + v[3])
            })
    };
    let before = raw();
    for _ in 0..4 {
        send(&mut ctl, json!({"dx": 25, "dy": -15}));
    }
    until(
        &guest,
        "X.Org: raw motion to the grabbing game",
        (
            before.0 + 100.0,
            before.1 - 60.0,
            before.2 + 100.0,
            before.3 - 60.0,
        ),
        raw,
    );
    let centre = ((w / 2.0).floor(), (h / 2.0).floor());
    until(
        &guest,
        "X.Org: the game keeps the pointer at the centre",
        Some(centre),
        x_at,
    );
    ctl.execute("pvmouse-set-mode", json!({"mode": "absolute"}))
        .unwrap();
}

/// mutter runs only in a logind session, so it has a boot of its own (systemd as init), as in
/// desktop_mutter: relative motion exact with GNOME's flat profile, the switch back renewed,
/// and a game's pointer lock.
#[test]
fn mutter_takes_relative_motion_and_locks_the_pointer() {
    const AS_PVM: &str = Mutter::AS_PVM;
    let guest = Guest::boot(
        VmConfig {
            desktop: true,
            displays: 1,
            relative: true,
            restartable: true,
            kernel_args: vec!["pvmouse.systemd=1".to_owned()],
            ..VmConfig::default()
        },
        "journalctl -u pvmouse-mutter --no-pager | tail -n 25; tail -n 12 /tmp/reader.log",
        WAIT,
    );
    let mut ctl = guest.control().unwrap_or_else(|e| guest.fail(e));
    // The flat profile for mice.
    Mutter::start(
        &guest,
        "[org/gnome/desktop/peripherals/mouse]\\naccel-profile=\\047flat\\047\\n",
    )
    .unwrap_or_else(|e| guest.fail(e));
    guest.sh(&format!(
        "{AS_PVM} sh -c '/opt/pvmouse-wl-reader >{READER_LOG} 2>&1 &'"
    ));
    let reader = guest.reader_ready();
    let at = || reader.position().map(|(i, x, y)| (i, x.round(), y.round()));
    // mutter lays out Virtual-2 (5120x2160 at scale 2) at 0,0 and Virtual-1 (1280x800) to its
    // right, and maps the device onto the whole box: this is on Virtual-1, whose scale is 1.
    // (On a scale-2 monitor mutter doubles relative motion, in its physical layout mode.)
    send(&mut ctl, json!({"x": 0.9, "y": 0.1}));
    let deadline = std::time::Instant::now() + WAIT;
    let start = loop {
        if let Some(p) = at() {
            break p;
        }
        if std::time::Instant::now() > deadline {
            guest.fail("mutter: the pointer never entered a surface");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let scale = guest
        .sh(&format!("grep '^OUTPUT {} ' {READER_LOG}", start.0))
        .join("");
    assert!(
        scale.ends_with(" 1"),
        "mutter: the pointer is on a scale-1 output: {scale}"
    );
    send(&mut ctl, json!({"dx": 40, "dy": 30}));
    until(
        &guest,
        "mutter, relative",
        Some((start.0, start.1 + 40.0, start.2 + 30.0)),
        at,
    );
    assert_eq!(mode(&mut ctl), "relative");
    ctl.execute("pvmouse-set-mode", json!({"mode": "absolute"}))
        .unwrap();
    until(&guest, "mutter, renewed", Some(start), at);
    a_locked_pointer_gets_the_deltas(&guest, &mut ctl, "mutter", (0.9, 0.1), &|command| {
        guest.sh(&format!("{AS_PVM} sh -c '{command}'"));
    });
}
