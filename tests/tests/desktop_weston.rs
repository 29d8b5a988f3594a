//! The pointer in Weston, which maps an absolute pointer onto one output only: the session
//! agent tells the bridge so, and the bridge creates one pointer per display, each bound to
//! its output through udev's `WL_OUTPUT`. Weston runs on a two-output virtio-gpu with three
//! configurations in turn (side by side, one output scaled ×2, one rotated), restarted between
//! them while the bridge keeps running. Weston 10 has no output position setting (it lays
//! outputs out left to right), so a stacked layout cannot be made. The position is read from
//! Weston by a Wayland client with a fullscreen surface on each output. (No screendump check of
//! the rotation here: Weston applies its own transform to a pointer bound to an output, and
//! QEMU's screendump of Weston's second head came back black in two runs of three.)

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::time::{Duration, Instant};

use pvmouse_vmtest::desktop::Head;
use pvmouse_vmtest::{Qmp, Vm, VmConfig};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
const RUNTIME: &str = "/run/user/0";
const SESSION: &str = "XDG_RUNTIME_DIR=/run/user/0 WAYLAND_DISPLAY=wayland-0";

/// One VM at a time: the machine has two cores, and a desktop guest takes both.
static ONE_VM: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn sh(vm: &Vm, command: &str) -> Vec<String> {
    vm.probe
        .sh(command, WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(vm)))
}

fn logs(vm: &Vm) -> String {
    let (_, out) = vm
        .probe
        .run(
            "tail -n 25 /tmp/weston.log; tail -n 12 /tmp/guestd.log /tmp/session.log \
             /tmp/reader.log /run/udev/rules.d/70-pvmouse-guestd.rules 2>&1",
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

fn last_position(vm: &Vm) -> Option<(usize, f64, f64)> {
    let out = sh(vm, "grep -E '^(ENTER|MOTION) ' /tmp/reader.log | tail -n 1");
    let line = out.first()?;
    let f: Vec<&str> = line.split_whitespace().collect();
    Some((f[1].parse().ok()?, f[2].parse().ok()?, f[3].parse().ok()?))
}

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

struct Step {
    name: &'static str,
    /// weston.ini lines for Virtual-2 after its mode.
    virtual2: &'static str,
    /// The heads' framebuffer and logical sizes; positions do not matter to a pointer bound
    /// to its output.
    heads: [Head; 2],
}

fn steps() -> [Step; 3] {
    let left = Head::plain(0, 0, 1024, 768);
    [
        Step {
            name: "side by side",
            virtual2: "",
            heads: [left, Head::plain(0, 0, 1280, 1024)],
        },
        Step {
            name: "scaled x2",
            virtual2: "scale=2\\n",
            heads: [
                left,
                Head {
                    framebuffer: (1280, 1024),
                    logical: (0, 0, 640, 512),
                    transform: 0,
                },
            ],
        },
        Step {
            name: "rotate-90",
            virtual2: "transform=rotate-90\\n",
            heads: [
                left,
                Head {
                    framebuffer: (1280, 1024),
                    logical: (0, 0, 1024, 1280),
                    transform: 1,
                },
            ],
        },
    ]
}

#[test]
fn weston_gets_one_pointer_per_output_and_each_lands_on_its_pixel() {
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let vm = Vm::boot(VmConfig {
        desktop: true,
        ..VmConfig::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    sh(
        &vm,
        &format!("mkdir -p {RUNTIME} && chmod 700 {RUNTIME} && modprobe uinput || true"),
    );
    // The bridge starts first, with no agent: desktop mode over DRM's layout.
    sh(&vm, "/opt/pvmouse-guestd >/tmp/guestd.log 2>&1 &");
    let mut ctl: Qmp = vm.control().unwrap();
    let start = Instant::now();
    while ctl.execute("query-pvmouse", json!({})).unwrap()["bridge-present"] != true {
        assert!(start.elapsed() < WAIT, "no bridge\n{}", logs(&vm));
        std::thread::sleep(Duration::from_millis(100));
    }
    let points = [
        (0.0, 0.0),
        (1.0, 1.0),
        (0.5, 0.5),
        (0.1, 0.9),
        (0.999, 0.001),
        (1.5 / 1280.0, 2.5 / 1024.0),
    ];
    let mut rows = Vec::new();
    let mut clicks = Vec::new();
    for step in steps() {
        sh(
            &vm,
            &format!(
                "printf '[core]\\nrequire-input=false\\nidle-time=0\\n\
                 [output]\\nname=Virtual-1\\nmode=1024x768\\n\
                 [output]\\nname=Virtual-2\\nmode=1280x1024\\n{}' >/tmp/weston.ini",
                step.virtual2
            ),
        );
        sh(
            &vm,
            &format!(
                "{SESSION} weston --tty=2 --backend=drm-backend.so --socket=wayland-0 \
                 --config=/tmp/weston.ini >/tmp/weston.log 2>&1 &"
            ),
        );
        until(&vm, &format!("ls {RUNTIME}"), "wayland-0", WAIT);
        sh(
            &vm,
            &format!("{SESSION} /opt/pvmouse-session >/tmp/session.log 2>&1 &"),
        );
        until(&vm, "cat /tmp/session.log", "applied the layout", WAIT);
        sh(
            &vm,
            &format!("{SESSION} /opt/pvmouse-wl-reader >/tmp/reader.log 2>&1 &"),
        );
        until(&vm, "cat /tmp/reader.log", "READY", WAIT);
        let listed = sh(&vm, "grep '^OUTPUT ' /tmp/reader.log");
        println!("{}: {}", step.name, listed.join(" | "));
        // Weston 10 names no output (wl_output 3, no xdg-output): tell them by their modes.
        let index_of = |width: i32| -> usize {
            listed
                .iter()
                .find_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f[5] == width.to_string()).then(|| f[1].parse().ok())?
                })
                .unwrap_or_else(|| panic!("no output {width} wide: {listed:?}"))
        };
        let outputs = [index_of(1024), index_of(1280)];
        println!(
            "{}: {}",
            step.name,
            sh(&vm, "grep -h 'applied' /tmp/session.log | tail -n 1").join("")
        );
        for (display, head) in step.heads.iter().enumerate() {
            for &(x, y) in &points {
                let want = head.expected_local(x, y);
                let start = Instant::now();
                let mut got = None;
                while start.elapsed() < Duration::from_secs(20) {
                    // A new pointer that has never moved gives the reader no ENTER: move it
                    // off the point first, so the point itself is motion.
                    if got.is_none() {
                        ctl.execute(
                            "pvmouse-send",
                            json!({"display": display, "x": 0.3, "y": 0.3}),
                        )
                        .unwrap();
                    }
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
            for down in [true, false] {
                ctl.execute(
                    "pvmouse-send",
                    json!({"display": display, "x": 0.5, "y": 0.5, "buttons": {"left": down}}),
                )
                .unwrap();
                clicks.push((
                    step.name,
                    display,
                    outputs[display],
                    down,
                    button_seen(&vm, outputs[display], down),
                ));
            }
        }
        let pointers = sh(&vm, "grep -h '^N: Name' /proc/bus/input/devices");
        println!("{}: input devices: {}", step.name, pointers.join(" | "));
        sh(
            &vm,
            "pkill -x weston; for i in $(seq 50); do pgrep -x weston >/dev/null || break; sleep 0.1; done",
        );
    }
    println!(
        "layout        display  x         y         expected (output, x, y)   weston (output, x, y)"
    );
    for (step, d, x, y, o, want, got) in &rows {
        println!(
            "{step:<13} {d}        {x:<9.6} {y:<9.6} ({o}, {:.2}, {:.2})   {got:?}",
            want.0, want.1
        );
    }
    println!("clicks (layout, display, output, pressed, reader's last BUTTON): {clicks:?}");
    for (step, d, x, y, o, want, got) in &rows {
        let (go, gx, gy) = got.unwrap_or_else(|| panic!("no pointer report\n{}", logs(&vm)));
        assert_eq!(
            go, *o,
            "{step}: display {d} ({x}, {y}): on the wrong output"
        );
        assert!(
            (gx - want.0).abs() <= 0.5 && (gy - want.1).abs() <= 0.5,
            "{step}: display {d} ({x}, {y}): Weston has ({gx}, {gy}), expected {want:?}"
        );
    }
    for (step, d, o, down, got) in &clicks {
        assert_eq!(
            *got,
            Some((*o, 272, *down)),
            "{step}: display {d}: the click was not seen on its output"
        );
    }
}

#[test]
fn with_one_display_the_raw_device_is_a_pointer_in_weston_without_the_bridge() {
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let vm = Vm::boot(VmConfig {
        desktop: true,
        displays: 1,
        ..VmConfig::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    sh(&vm, &format!("mkdir -p {RUNTIME} && chmod 700 {RUNTIME}"));
    sh(
        &vm,
        "printf '[core]\\nrequire-input=false\\nidle-time=0\\n\
         [output]\\nname=Virtual-1\\nmode=1280x1024\\n\
         [output]\\nname=Virtual-2\\nmode=off\\n' >/tmp/weston.ini",
    );
    sh(
        &vm,
        &format!(
            "{SESSION} weston --tty=2 --backend=drm-backend.so --socket=wayland-0 \
             --config=/tmp/weston.ini >/tmp/weston.log 2>&1 &"
        ),
    );
    until(&vm, &format!("ls {RUNTIME}"), "wayland-0", WAIT);
    sh(
        &vm,
        &format!("{SESSION} /opt/pvmouse-wl-reader >/tmp/reader.log 2>&1 &"),
    );
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
    println!("raw pvmouse device in Weston, one 1280x1024 output (expected, Weston): {rows:?}");
    for (want, got) in rows {
        let (_, gx, gy) = got.unwrap_or_else(|| panic!("no pointer report\n{}", logs(&vm)));
        assert!(
            (gx - want.0).abs() <= 0.5 && (gy - want.1).abs() <= 0.5,
            "Weston has ({gx}, {gy}), expected {want:?}"
        );
    }
}
