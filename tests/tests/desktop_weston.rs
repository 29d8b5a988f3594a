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

use std::time::Duration;

use pvmouse_vmtest::desktop::{Head, Reader, check_layout_rows, check_raw_rows, wait_for_bridge};
use pvmouse_vmtest::{Qmp, Vm, VmConfig};

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
    let reader = Reader { vm: &vm };
    wait_for_bridge(&mut ctl, WAIT).unwrap_or_else(|e| {
        panic!(
            "{e}
{}",
            logs(&vm)
        )
    });
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
        let outputs = [
            reader.output_where(5, "1024"),
            reader.output_where(5, "1280"),
        ];
        println!(
            "{}: {}",
            step.name,
            sh(&vm, "grep -h 'applied' /tmp/session.log | tail -n 1").join("")
        );
        reader.visit(
            &mut ctl,
            step.name,
            &step.heads,
            &outputs,
            &mut rows,
            &mut clicks,
        );
        let pointers = sh(&vm, "grep -h '^N: Name' /proc/bus/input/devices");
        println!("{}: input devices: {}", step.name, pointers.join(" | "));
        sh(
            &vm,
            "pkill -x weston; for i in $(seq 50); do pgrep -x weston >/dev/null || break; sleep 0.1; done",
        );
    }
    check_layout_rows("Weston", &rows, &clicks, &|| logs(&vm));
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
    let rows = Reader { vm: &vm }.raw_device_rows(&mut ctl);
    check_raw_rows("Weston", &rows, &|| logs(&vm));
}
