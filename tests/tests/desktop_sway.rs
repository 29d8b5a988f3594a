//! The pointer in a real wlroots compositor: sway on a two-output virtio-gpu in the desktop
//! guest, laid out with `swaymsg`, with the guest bridge in desktop mode. The position is read
//! from sway itself, by a Wayland client with a fullscreen surface on each output
//! (`tests/wayland-reader`), never from the bridge.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::time::{Duration, Instant};

use pvmouse_vmtest::{Qmp, Vm, VmConfig};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
/// sway refuses to run as root: it runs as the image's user `pvm`, with seatd handing it the
/// devices. `setpriv` rather than `su`, so that no PAM session ends under it.
const AS_PVM: &str = "setpriv --reuid=pvm --regid=pvm --init-groups env HOME=/home/pvm sh -c";
const RUNTIME: &str = "/run/user/1000";

/// A shell command in the guest that must succeed.
fn sh(vm: &Vm, command: &str) -> Vec<String> {
    vm.probe
        .sh(command, WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(vm)))
}

fn logs(vm: &Vm) -> String {
    let (_, out) = vm
        .probe
        .run(
            "grep -vE 'Supported|extensions' /tmp/sway.log | cut -c1-200 | tail -n 40; \
             tail -n 8 /tmp/seatd.log /tmp/guestd.log /tmp/reader.log 2>&1",
            WAIT,
        )
        .unwrap_or_default();
    out.join("\n")
}

fn until(vm: &Vm, command: &str, want: &str, limit: Duration) -> Vec<String> {
    vm.probe
        .sh_until(command, want, limit)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(vm)))
}

/// A command run in sway's session, as `pvm`, retried while sway is still starting up.
fn in_session(vm: &Vm, command: &str) -> Vec<String> {
    let full = format!(
        "{AS_PVM} 'export XDG_RUNTIME_DIR={RUNTIME} SWAYSOCK=$(ls {RUNTIME}/sway-ipc.*.sock) \
         WAYLAND_DISPLAY=$(cd {RUNTIME} && ls wayland-? | head -n1); {command}'"
    );
    let start = Instant::now();
    loop {
        let (rc, out) = vm.probe.run(&full, WAIT).unwrap();
        if rc == 0 {
            return out;
        }
        assert!(start.elapsed() < WAIT, "{command}: {out:?}\n{}", logs(vm));
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The reader's last report of the pointer: (output index, x, y) in surface coordinates.
fn last_position(vm: &Vm) -> Option<(usize, f64, f64)> {
    let out = sh(vm, "grep -E '^(ENTER|MOTION) ' /tmp/reader.log | tail -n 1");
    let line = out.first()?;
    let f: Vec<&str> = line.split_whitespace().collect();
    Some((f[1].parse().ok()?, f[2].parse().ok()?, f[3].parse().ok()?))
}

/// spec/pvmouse.md §3.1: the pixel a normalised point means on a display `size` pixels long.
fn pixel(size: i32, v: f64) -> f64 {
    let a = (v * 65535.0).round();
    (a * f64::from(size) / 65535.0)
        .floor()
        .min(f64::from(size) - 1.0)
}

#[test]
fn sway_puts_the_pointer_in_the_right_pixel_of_the_right_output() {
    let vm = Vm::boot(VmConfig {
        desktop: true,
        ..VmConfig::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    sh(&vm, "seatd -g video >/tmp/seatd.log 2>&1 &");
    sh(
        &vm,
        &format!("mkdir -p {RUNTIME} && chown pvm {RUNTIME} && chmod 700 {RUNTIME}"),
    );
    // The layout is sway's own configuration, applied at its first modeset.
    sh(
        &vm,
        "printf 'output Virtual-1 mode 1024x768 position 0 0\\n\
         output Virtual-2 mode 1280x1024 position 1024 0\\n' >/tmp/sway.config",
    );
    sh(
        &vm,
        &format!(
            "{AS_PVM} 'XDG_RUNTIME_DIR={RUNTIME} LIBSEAT_BACKEND=seatd WLR_LIBINPUT_NO_DEVICES=1 WLR_RENDERER=pixman \
             sway -d -c /tmp/sway.config >/tmp/sway.log 2>&1 &'"
        ),
    );
    until(&vm, &format!("ls {RUNTIME}"), "sway-ipc", WAIT);
    // Outputs: (name, left, top, width, height) in sway's layout, as the test set them.
    let outputs = [
        ("Virtual-1", 0, 0, 1024, 768),
        ("Virtual-2", 1024, 0, 1280, 1024),
    ];
    let report = in_session(&vm, "swaymsg -t get_outputs");
    println!("{}", report.join("\n"));
    sh(
        &vm,
        "/opt/pvmouse-guestd --layout 0=1024x768@0,0,1=1280x1024@1024,0 >/tmp/guestd.log 2>&1 &",
    );
    let mut ctl: Qmp = vm.control().unwrap();
    let start = Instant::now();
    while ctl.execute("query-pvmouse", json!({})).unwrap()["bridge-present"] != true {
        assert!(start.elapsed() < WAIT, "no bridge\n{}", logs(&vm));
        std::thread::sleep(Duration::from_millis(100));
    }
    in_session(&vm, "/opt/pvmouse-wl-reader >/tmp/reader.log 2>&1 &");
    until(&vm, "cat /tmp/reader.log", "READY", WAIT);
    // Which reader output is which sway output, by name (wlroots reports every wl_output at
    // 0,0: its position is in the layout, not in the protocol).
    let listed = sh(&vm, "grep '^OUTPUT ' /tmp/reader.log");
    println!("{}", listed.join("\n"));
    let index_of = |name: &str| -> usize {
        listed
            .iter()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[2] == name).then(|| f[1].parse().ok())?
            })
            .unwrap_or_else(|| panic!("no output {name}: {listed:?}"))
    };

    let points = [
        (0.0, 1.0),
        (0.1, 0.999),
        (0.5, 0.5),
        (0.999, 0.1),
        (1.0, 0.0),
    ];
    let mut rows = Vec::new();
    for (display, (name, _, top, width, height)) in outputs.iter().enumerate() {
        let want_output = index_of(name);
        for &(x, y) in &points {
            let want = (pixel(*width, x) + 0.5, pixel(*height, y) + 0.5);
            let start = Instant::now();
            let mut got = None;
            while start.elapsed() < Duration::from_secs(20) {
                ctl.execute("pvmouse-send", json!({"display": display, "x": x, "y": y}))
                    .unwrap();
                std::thread::sleep(Duration::from_millis(300));
                got = last_position(&vm);
                if got.is_some_and(|(o, gx, gy)| {
                    o == want_output && (gx - want.0).abs() <= 0.5 && (gy - want.1).abs() <= 0.5
                }) {
                    break;
                }
            }
            rows.push((display, x, y, want_output, want, got, *top));
        }
    }
    println!("display  x      y      expected (output, x, y)      sway (output, x, y)");
    for (d, x, y, o, want, got, _) in &rows {
        println!(
            "{d}        {x:<6} {y:<6} ({o}, {:.1}, {:.1})   {got:?}",
            want.0, want.1
        );
    }
    for (d, x, y, o, want, got, _) in &rows {
        let (go, gx, gy) = got.unwrap_or_else(|| panic!("no pointer report\n{}", logs(&vm)));
        assert_eq!(go, *o, "display {d} ({x}, {y}): on the wrong output");
        assert!(
            (gx - want.0).abs() <= 0.5 && (gy - want.1).abs() <= 0.5,
            "display {d} ({x}, {y}): sway has ({gx}, {gy}), the pixel's centre is {want:?}"
        );
    }
}
