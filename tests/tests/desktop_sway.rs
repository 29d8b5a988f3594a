//! The pointer in a real wlroots compositor: sway on a two-output virtio-gpu in the desktop
//! guest. The layout comes from sway itself, through the session agent (`pvmouse-session`,
//! running as the session's user), to the guest bridge in desktop mode; the layout is changed
//! with `swaymsg` while both run. The position is read from sway, by a Wayland client with a
//! fullscreen surface on each output (`tests/wayland-reader`), never from the bridge, and a
//! screendump checks which way sway really turns a rotated output.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::time::{Duration, Instant};

use pvmouse_vmtest::desktop::{Head, screendump};
use pvmouse_vmtest::{Qmp, Vm, VmConfig};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

/// One VM at a time: the machine has two cores, and a desktop guest takes both.
static ONE_VM: std::sync::Mutex<()> = std::sync::Mutex::new(());
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
            "grep -vE 'Supported|extensions' /tmp/sway.log | cut -c1-200 | tail -n 20; \
             tail -n 12 /tmp/seatd.log /tmp/guestd.log /tmp/session.log /tmp/reader.log 2>&1",
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

/// The reader's last button report: (output index, code, pressed).
fn last_button(vm: &Vm) -> Option<(usize, u32, bool)> {
    let out = sh(vm, "grep -E '^BUTTON ' /tmp/reader.log | tail -n 1");
    let f: Vec<String> = out.first()?.split_whitespace().map(str::to_owned).collect();
    Some((f[1].parse().ok()?, f[2].parse().ok()?, f[3] == "pressed"))
}

/// Waits up to 5 s for the reader's last button report to be BTN_LEFT (272) `down` on
/// `output`; returns the last report.
fn button_seen(vm: &Vm, output: usize, down: bool) -> Option<(usize, u32, bool)> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = last_button(vm);
        if got == Some((output, 272, down)) || Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One layout of the test: what sway is told, and the heads as sway then has them.
struct Step {
    name: &'static str,
    swaymsg: &'static str,
    heads: [Head; 2],
}

fn steps() -> [Step; 4] {
    let left = Head::plain(0, 0, 1024, 768);
    [
        Step {
            name: "side by side",
            swaymsg: "output Virtual-2 position 1024 0",
            heads: [left, Head::plain(1024, 0, 1280, 1024)],
        },
        Step {
            name: "stacked",
            swaymsg: "output Virtual-2 position 0 768",
            heads: [left, Head::plain(0, 768, 1280, 1024)],
        },
        Step {
            name: "scaled x2",
            swaymsg: "output Virtual-2 position 1024 0 scale 2",
            heads: [
                left,
                Head {
                    framebuffer: (1280, 1024),
                    logical: (1024, 0, 640, 512),
                    transform: 0,
                },
            ],
        },
        // sway's `transform 90` turns the picture clockwise, which wl_output calls 270.
        Step {
            name: "rotated 90 cw",
            swaymsg: "output Virtual-2 scale 1 transform 90",
            heads: [
                left,
                Head {
                    framebuffer: (1280, 1024),
                    logical: (1024, 0, 1024, 1280),
                    transform: 3,
                },
            ],
        },
    ]
}

/// A desktop guest with sway running as `pvm`, its outputs set by `config` (sway's own
/// configuration lines).
fn sway(displays: u32, config: &str) -> Vm {
    let vm = Vm::boot(VmConfig {
        desktop: true,
        displays,
        ..VmConfig::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    sh(&vm, "seatd -g video >/tmp/seatd.log 2>&1 &");
    sh(
        &vm,
        &format!("mkdir -p {RUNTIME} && chown pvm {RUNTIME} && chmod 700 {RUNTIME}"),
    );
    sh(&vm, &format!("printf '{config}' >/tmp/sway.config"));
    sh(
        &vm,
        &format!(
            "{AS_PVM} 'XDG_RUNTIME_DIR={RUNTIME} LIBSEAT_BACKEND=seatd WLR_LIBINPUT_NO_DEVICES=1 WLR_RENDERER=pixman \
             sway -d -c /tmp/sway.config >/tmp/sway.log 2>&1 &'"
        ),
    );
    until(&vm, &format!("ls {RUNTIME}"), "sway-ipc", WAIT);
    vm
}

#[test]
fn sway_puts_the_pointer_on_the_right_pixel_of_the_right_output_in_every_layout() {
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let vm = sway(
        2,
        "output Virtual-1 mode 1024x768 position 0 0\\noutput Virtual-2 mode 1280x1024 position 1024 0\\n",
    );
    // The bridge with no layout of its own: the session agent supplies sway's.
    sh(
        &vm,
        "/opt/pvmouse-guestd --session-user pvm >/tmp/guestd.log 2>&1 &",
    );
    let mut ctl: Qmp = vm.control().unwrap();
    let start = Instant::now();
    while ctl.execute("query-pvmouse", json!({})).unwrap()["bridge-present"] != true {
        assert!(start.elapsed() < WAIT, "no bridge\n{}", logs(&vm));
        std::thread::sleep(Duration::from_millis(100));
    }
    in_session(&vm, "/opt/pvmouse-session >/tmp/session.log 2>&1 &");
    until(&vm, "cat /tmp/session.log", "applied the layout", WAIT);
    in_session(&vm, "/opt/pvmouse-wl-reader >/tmp/reader.log 2>&1 &");
    until(&vm, "cat /tmp/reader.log", "READY", WAIT);
    let listed = sh(&vm, "grep '^OUTPUT ' /tmp/reader.log");
    println!("{}", listed.join("\n"));
    // Which reader output is which sway output, by name (wlroots reports every wl_output at
    // 0,0: its position is in the layout, not in the protocol).
    let index_of = |name: &str| -> usize {
        listed
            .iter()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[2] == name).then(|| f[1].parse().ok())?
            })
            .unwrap_or_else(|| panic!("no output {name}: {listed:?}"))
    };
    let outputs = [index_of("Virtual-1"), index_of("Virtual-2")];
    let mut qemu = vm.qemu_qmp().unwrap();

    let points = [
        (0.0, 0.0),
        (1.0, 1.0),
        (0.5, 0.5),
        (0.1, 0.9),
        (0.999, 0.001),
        // The centre of framebuffer pixel (1, 2) on a 1280x1024 head.
        (1.5 / 1280.0, 2.5 / 1024.0),
    ];
    let mut rows = Vec::new();
    let mut clicks = Vec::new();
    for step in steps() {
        in_session(&vm, &format!("swaymsg {}", step.swaymsg));
        let applied = sh(&vm, "grep -c 'applied the layout' /tmp/session.log || true");
        println!("{}: {} layouts applied so far", step.name, applied.join(""));
        for (display, head) in step.heads.iter().enumerate() {
            for &(x, y) in &points {
                let want = head.expected_local(x, y);
                let start = Instant::now();
                let mut got = None;
                // A layout change reaches the bridge a moment after swaymsg returns: retry.
                while start.elapsed() < Duration::from_secs(20) {
                    ctl.execute("pvmouse-send", json!({"display": display, "x": x, "y": y}))
                        .unwrap();
                    std::thread::sleep(Duration::from_millis(250));
                    got = last_position(&vm);
                    if got.is_some_and(|(o, gx, gy)| {
                        o == outputs[display]
                            && (gx - want.0).abs() <= 0.5
                            && (gy - want.1).abs() <= 0.5
                    }) {
                        break;
                    }
                }
                rows.push((step.name, display, x, y, outputs[display], want, got));
            }
            // A click in the middle of the head is seen on that head.
            for down in [true, false] {
                ctl.execute(
                    "pvmouse-send",
                    json!({"display": display, "x": 0.5, "y": 0.5, "buttons": {"left": down}}),
                )
                .unwrap();
                clicks.push((
                    step.name,
                    display,
                    down,
                    button_seen(&vm, outputs[display], down),
                ));
            }
        }
        // Where sway drew the logical origin of head 1 (the reader's red square).
        let dump = std::env::temp_dir().join(format!("pvmouse-sway-{}.ppm", std::process::id()));
        let picture = screendump(&mut qemu, 1, &dump).unwrap();
        let _ = std::fs::remove_file(&dump);
        let head = step.heads[1];
        let (p, q) = head.framebuffer_pixel_of(0, 0);
        println!(
            "{}: head 1 red square at {:?}; logical origin expected at framebuffer ({p}, {q})",
            step.name,
            picture.red_box()
        );
        assert_eq!(
            picture.at(usize::try_from(p).unwrap(), usize::try_from(q).unwrap()),
            [0xff, 0, 0],
            "{}: sway did not draw head 1's logical origin where the transform puts it; red at {:?}",
            step.name,
            picture.red_box()
        );
    }
    println!(
        "layout        display  x         y         expected (output, x, y)   sway (output, x, y)"
    );
    for (step, d, x, y, o, want, got) in &rows {
        println!(
            "{step:<13} {d}        {x:<9.6} {y:<9.6} ({o}, {:.2}, {:.2})   {got:?}",
            want.0, want.1
        );
    }
    println!("clicks (layout, display, pressed, reader's last BUTTON): {clicks:?}");
    for (step, d, x, y, o, want, got) in &rows {
        let (go, gx, gy) = got.unwrap_or_else(|| panic!("no pointer report\n{}", logs(&vm)));
        assert_eq!(
            go, *o,
            "{step}: display {d} ({x}, {y}): on the wrong output"
        );
        assert!(
            (gx - want.0).abs() <= 0.5 && (gy - want.1).abs() <= 0.5,
            "{step}: display {d} ({x}, {y}): sway has ({gx}, {gy}), expected {want:?}"
        );
    }
    for (step, d, down, got) in &clicks {
        // BTN_LEFT is 272.
        assert_eq!(
            *got,
            Some((outputs[*d], 272, *down)),
            "{step}: display {d}: the click was not seen on its output"
        );
    }
}

#[test]
fn with_one_display_the_raw_device_is_a_pointer_in_sway_without_the_bridge() {
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let vm = sway(
        1,
        "output Virtual-1 mode 1280x1024 position 0 0\\noutput Virtual-2 disable\\n",
    );
    in_session(&vm, "/opt/pvmouse-wl-reader >/tmp/reader.log 2>&1 &");
    until(&vm, "cat /tmp/reader.log", "READY", WAIT);
    let mut ctl: Qmp = vm.control().unwrap();
    let head = Head::plain(0, 0, 1280, 1024);
    let mut rows = Vec::new();
    for (px, py) in [(640, 512), (0, 0), (1279, 1023), (1, 1022), (1000, 3)] {
        let (x, y) = (
            (f64::from(px) + 0.5) / 1280.0,
            (f64::from(py) + 0.5) / 1024.0,
        );
        let want = head.expected_local(x, y);
        let start = Instant::now();
        let mut got = None;
        // The first point also waits for sway to pick the device up.
        while start.elapsed() < WAIT {
            ctl.execute("pvmouse-send", json!({"display": 0, "x": 0.3, "y": 0.3}))
                .unwrap();
            ctl.execute("pvmouse-send", json!({"display": 0, "x": x, "y": y}))
                .unwrap();
            std::thread::sleep(Duration::from_millis(300));
            got = last_position(&vm);
            if got
                .is_some_and(|(_, gx, gy)| (gx - want.0).abs() <= 0.5 && (gy - want.1).abs() <= 0.5)
            {
                break;
            }
        }
        rows.push((want, got));
    }
    println!("raw pvmouse device in sway, one 1280x1024 output (expected, sway): {rows:?}");
    for (want, got) in rows {
        let (_, gx, gy) = got.unwrap_or_else(|| panic!("no pointer report\n{}", logs(&vm)));
        assert!(
            (gx - want.0).abs() <= 0.5 && (gy - want.1).abs() <= 0.5,
            "sway has ({gx}, {gy}), expected {want:?}"
        );
    }
}
