//! The pointer in a real X server: the desktop guest runs Xorg with xf86-input-libinput on a
//! two-output virtio-gpu, laid out with xrandr, and the guest bridge in desktop mode. The
//! pointer's position is read from the X server itself (`xdotool getmouselocation`), never from
//! the bridge.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::time::{Duration, Instant};

use pvmouse_vmtest::{Qmp, Vm, VmConfig};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// One VM at a time: the machine has two cores, and a desktop guest takes both.
static ONE_VM: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A shell command in the guest that must succeed.
fn sh(vm: &Vm, command: &str) -> Vec<String> {
    vm.probe
        .sh(command, WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(vm)))
}

/// A command retried until its output contains `want`.
fn until(vm: &Vm, command: &str, want: &str, limit: Duration) -> Vec<String> {
    vm.probe
        .sh_until(command, want, limit)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(vm)))
}

fn logs(vm: &Vm) -> String {
    let (_, out) = vm
        .probe
        .run("tail -n 20 /tmp/xorg.log /tmp/guestd.log 2>&1", WAIT)
        .unwrap_or_default();
    out.join("\n")
}

/// Waits up to 2 s for the X server's pointer to reach `want`; returns where it is.
fn pointer_reaches(vm: &Vm, want: (i32, i32)) -> (i32, i32) {
    let start = Instant::now();
    let mut got = x_pointer(vm);
    while got != want && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(100));
        got = x_pointer(vm);
    }
    got
}

/// Where the X server has its pointer.
fn x_pointer(vm: &Vm) -> (i32, i32) {
    let out = sh(vm, "DISPLAY=:0 xdotool getmouselocation");
    let line = out.first().unwrap();
    let field = |name: &str| -> i32 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .unwrap_or_else(|| panic!("{line}"))
            .parse()
            .unwrap()
    };
    (field("x:"), field("y:"))
}

/// The desktop pixel spec/pvmouse.md's mapping gives a normalised point on a display at
/// (left, top) of size (width, height): the device value a = round(v·65535) means the pixel
/// that contains `origin + a/65535·size`, the far edge on the display's last pixel.
fn expected_pixel(rect: (i32, i32, i32, i32), x: f64, y: f64) -> (i32, i32) {
    let (left, top, width, height) = rect;
    let axis = |origin: i32, size: i32, v: f64| {
        let a = (v * 65535.0).round();
        let p = (a * f64::from(size) / 65535.0).floor();
        origin + pvmouse_vmtest::round_to_i32(p).min(size - 1)
    };
    (axis(left, width, x), axis(top, height, y))
}

/// A desktop guest whose pvmouse has `displays` displays, running Xorg with the monitors laid
/// out by `xrandr ARGS`.
fn xorg(displays: u32, xrandr_args: &str) -> Vm {
    let vm = Vm::boot(VmConfig {
        desktop: true,
        displays,
        ..VmConfig::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    sh(
        &vm,
        "Xorg :0 vt1 -nolisten tcp -noreset >/tmp/xorg.log 2>&1 &",
    );
    until(&vm, "DISPLAY=:0 xrandr --listmonitors", "Monitors:", WAIT);
    sh(&vm, &format!("DISPLAY=:0 xrandr {xrandr_args}"));
    vm
}

#[test]
fn xorg_puts_the_pointer_on_the_exact_pixel_of_the_right_monitor() {
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let vm = xorg(
        2,
        "--output Virtual-1 --mode 1024x768 --pos 0x0 --output Virtual-2 --mode 1280x1024 --pos 1024x0",
    );
    let monitors = until(
        &vm,
        "DISPLAY=:0 xrandr --listmonitors",
        "1280/",
        Duration::from_secs(10),
    );
    println!("{}", monitors.join("\n"));
    let displays = [(0, 0, 1024, 768), (1024, 0, 1280, 1024)];
    sh(
        &vm,
        "/opt/pvmouse-guestd --layout 0=1024x768@0,0,1=1280x1024@1024,0 \
         >/tmp/guestd.log 2>&1 &",
    );
    let mut ctl: Qmp = vm.control().unwrap();
    let start = Instant::now();
    while ctl.execute("query-pvmouse", json!({})).unwrap()["bridge-present"] != true {
        assert!(start.elapsed() < WAIT, "the bridge never announced itself");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The X server picks the bridge's pointer up through udev; wait until it moves the cursor.
    ctl.execute("pvmouse-send", json!({"display": 1, "x": 0.5, "y": 0.5}))
        .unwrap();
    let start = Instant::now();
    while x_pointer(&vm) != expected_pixel(displays[1], 0.5, 0.5) {
        assert!(
            start.elapsed() < WAIT,
            "X never moved its pointer: at {:?}\n{}",
            x_pointer(&vm),
            logs(&vm)
        );
        ctl.execute("pvmouse-send", json!({"display": 0, "x": 0.25, "y": 0.25}))
            .unwrap();
        ctl.execute("pvmouse-send", json!({"display": 1, "x": 0.5, "y": 0.5}))
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }

    let points = [0.0, 0.1, 0.25, 0.5, 0.75, 0.999, 1.0];
    let mut rows = Vec::new();
    for (display, rect) in displays.iter().enumerate() {
        for (i, &x) in points.iter().enumerate() {
            let y = points[points.len() - 1 - i];
            ctl.execute("pvmouse-send", json!({"display": display, "x": x, "y": y}))
                .unwrap();
            let want = expected_pixel(*rect, x, y);
            let got = pointer_reaches(&vm, want);
            rows.push((display, x, y, want, got));
        }
    }
    // A host that aims at a pixel's centre, (P + 0.5) / size, gets pixel P.
    for (display, rect) in displays.iter().enumerate() {
        for (px, py) in [
            (0, 0),
            (1, 1),
            (rect.2 / 3, rect.3 / 2),
            (rect.2 - 2, rect.3 - 1),
        ] {
            let x = (f64::from(px) + 0.5) / f64::from(rect.2);
            let y = (f64::from(py) + 0.5) / f64::from(rect.3);
            ctl.execute("pvmouse-send", json!({"display": display, "x": x, "y": y}))
                .unwrap();
            let want = (rect.0 + px, rect.1 + py);
            assert_eq!(expected_pixel(*rect, x, y), want, "the spec's own rule");
            let got = pointer_reaches(&vm, want);
            rows.push((display, x, y, want, got));
        }
    }
    println!("display  x      y      expected      X server");
    for (d, x, y, want, got) in &rows {
        println!("{d}        {x:<6} {y:<6} {want:?}  {got:?}");
    }
    for (d, x, y, want, got) in &rows {
        let rect = displays[*d];
        let on_monitor = got.0 >= rect.0
            && got.0 < rect.0 + rect.2
            && got.1 >= rect.1
            && got.1 < rect.1 + rect.3;
        assert!(
            on_monitor,
            "display {d} ({x}, {y}): X has {got:?}, off the monitor"
        );
        assert_eq!(got, want, "display {d} ({x}, {y})");
    }
}

#[test]
fn with_one_display_the_raw_device_is_a_pointer_in_xorg_without_the_bridge() {
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let vm = xorg(
        1,
        "--output Virtual-1 --mode 1280x1024 --pos 0x0 --output Virtual-2 --off",
    );
    until(
        &vm,
        "DISPLAY=:0 xrandr --listmonitors",
        "Monitors: 1",
        Duration::from_secs(10),
    );
    let screen = (0, 0, 1280, 1024);
    let mut ctl: Qmp = vm.control().unwrap();
    let mut rows = Vec::new();
    for (px, py) in [(640, 512), (0, 0), (1279, 1023), (1, 1022), (1000, 3)] {
        let x = (f64::from(px) + 0.5) / 1280.0;
        let y = (f64::from(py) + 0.5) / 1024.0;
        let want = expected_pixel(screen, x, y);
        assert_eq!(want, (px, py), "the spec's own rule");
        let start = Instant::now();
        let mut got = (-1, -1);
        // The first point also waits for X to pick the device up.
        while got != want && start.elapsed() < WAIT {
            ctl.execute("pvmouse-send", json!({"display": 0, "x": x, "y": y}))
                .unwrap();
            std::thread::sleep(Duration::from_millis(200));
            got = x_pointer(&vm);
        }
        rows.push((want, got));
    }
    println!("raw pvmouse device in Xorg, one 1280x1024 monitor (expected, X server): {rows:?}");
    for (want, got) in rows {
        assert_eq!(got, want);
    }
}
