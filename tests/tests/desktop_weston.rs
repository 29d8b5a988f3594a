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

use pvmouse_vmtest::desktop::{Head, Tour, VIRTUAL_1, virtual_2};
use pvmouse_vmtest::guest::Guest;

const WAIT: Duration = Duration::from_secs(60);
const RUNTIME: &str = "/run/user/0";
const SESSION: &str = "XDG_RUNTIME_DIR=/run/user/0 WAYLAND_DISPLAY=wayland-0";

/// What a failed step shows.
const LOGS: &str = "tail -n 25 /tmp/weston.log; tail -n 12 /tmp/guestd.log /tmp/session.log \
                    /tmp/reader.log /run/udev/rules.d/70-pvmouse-guestd.rules 2>&1";

/// A desktop guest whose pvmouse has `displays` displays, with Weston's runtime directory.
fn desktop(displays: u32, prepare: &str) -> Guest {
    let guest = Guest::desktop(displays, LOGS, WAIT);
    guest.sh(&format!(
        "mkdir -p {RUNTIME} && chmod 700 {RUNTIME}{prepare}"
    ));
    guest
}

/// Starts Weston with `outputs` (weston.ini's lines after its `[core]` section), and waits for
/// its socket.
fn weston(guest: &Guest, outputs: &str) {
    guest.sh(&format!(
        "printf '[core]\\nrequire-input=false\\nidle-time=0\\n{outputs}' >/tmp/weston.ini"
    ));
    guest.sh(&format!(
        "{SESSION} weston --tty=2 --backend=drm-backend.so --socket=wayland-0 \
         --config=/tmp/weston.ini >/tmp/weston.log 2>&1 &"
    ));
    guest.until(&format!("ls {RUNTIME}"), "wayland-0");
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
    [
        Step {
            name: "side by side",
            virtual2: "",
            heads: [VIRTUAL_1, virtual_2((0, 0, 1280, 1024), 0)],
        },
        Step {
            name: "scaled x2",
            virtual2: "scale=2\\n",
            heads: [VIRTUAL_1, virtual_2((0, 0, 640, 512), 0)],
        },
        Step {
            name: "rotate-90",
            virtual2: "transform=rotate-90\\n",
            heads: [VIRTUAL_1, virtual_2((0, 0, 1024, 1280), 1)],
        },
    ]
}

#[test]
fn weston_gets_one_pointer_per_output_and_each_lands_on_its_pixel() {
    let guest = desktop(2, " && modprobe uinput || true");
    // The bridge starts first, with no agent: desktop mode over DRM's layout.
    let mut ctl = guest.start_bridge("");
    let mut tour = Tour::default();
    for step in steps() {
        weston(
            &guest,
            &format!(
                "[output]\\nname=Virtual-1\\nmode=1024x768\\n\
                 [output]\\nname=Virtual-2\\nmode=1280x1024\\n{}",
                step.virtual2
            ),
        );
        guest.sh(&format!(
            "{SESSION} /opt/pvmouse-session >/tmp/session.log 2>&1 &"
        ));
        guest.session_agent_applied();
        guest.sh(&format!(
            "{SESSION} /opt/pvmouse-wl-reader >/tmp/reader.log 2>&1 &"
        ));
        let reader = guest.reader_ready();
        let listed = guest.sh("grep '^OUTPUT ' /tmp/reader.log");
        println!("{}: {}", step.name, listed.join(" | "));
        // Weston 10 names no output (wl_output 3, no xdg-output): tell them by their modes.
        let outputs = [
            reader.output_where(5, "1024"),
            reader.output_where(5, "1280"),
        ];
        guest.visit_layout(
            &reader,
            &mut ctl,
            step.name,
            &step.heads,
            &outputs,
            &mut tour,
        );
        let pointers = guest.sh("grep -h '^N: Name' /proc/bus/input/devices");
        println!("{}: input devices: {}", step.name, pointers.join(" | "));
        guest.sh(
            "pkill -x weston; for i in $(seq 50); do pgrep -x weston >/dev/null || break; sleep 0.1; done",
        );
    }
    tour.check("Weston", &|| guest.logs());
}

#[test]
fn with_one_display_the_raw_device_is_a_pointer_in_weston_without_the_bridge() {
    let guest = desktop(1, "");
    weston(
        &guest,
        "[output]\\nname=Virtual-1\\nmode=1280x1024\\n[output]\\nname=Virtual-2\\nmode=off\\n",
    );
    guest.sh(&format!(
        "{SESSION} /opt/pvmouse-wl-reader >/tmp/reader.log 2>&1 &"
    ));
    let reader = guest.reader_ready();
    guest.check_raw_pointer("Weston", &reader);
}
