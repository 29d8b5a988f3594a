//! The pointer in a real wlroots compositor: sway on a two-output virtio-gpu in the desktop
//! guest. The layout comes from sway itself, through the session agent (`pvmouse-session`,
//! running as the session's user), to the guest bridge in desktop mode; the layout is changed
//! with `swaymsg` while both run. The position is read from sway, by a Wayland client with a
//! fullscreen surface on each output (`tests/wayland-reader`), never from the bridge, and a
//! screendump checks which way sway really turns a rotated output.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::time::Duration;

use pvmouse_vmtest::desktop::{
    Head, Sway, Tour, VIRTUAL_1, assert_origin_drawn, virtual_2, wait_for_coordinates,
};
use pvmouse_vmtest::guest::Guest;

const WAIT: Duration = Duration::from_secs(60);

/// What a failed step shows.
const LOGS: &str = "grep -vE 'Supported|extensions' /tmp/sway.log | cut -c1-200 | tail -n 20; \
                    tail -n 12 /tmp/seatd.log /tmp/guestd.log /tmp/session.log /tmp/reader.log 2>&1";

/// A command run in sway's session, as `pvm`.
fn in_session(guest: &Guest, command: &str) -> Vec<String> {
    Sway::in_session(guest, command).unwrap_or_else(|e| guest.fail(e))
}

/// One layout of the test: what sway is told, and the heads as sway then has them.
struct Step {
    name: &'static str,
    swaymsg: &'static str,
    heads: [Head; 2],
}

fn steps() -> [Step; 4] {
    [
        Step {
            name: "side by side",
            swaymsg: "output Virtual-2 position 1024 0",
            heads: [VIRTUAL_1, virtual_2((1024, 0, 1280, 1024), 0)],
        },
        Step {
            name: "stacked",
            swaymsg: "output Virtual-2 position 0 768",
            heads: [VIRTUAL_1, virtual_2((0, 768, 1280, 1024), 0)],
        },
        Step {
            name: "scaled x2",
            swaymsg: "output Virtual-2 position 1024 0 scale 2",
            heads: [VIRTUAL_1, virtual_2((1024, 0, 640, 512), 0)],
        },
        // sway's `transform 90` turns the picture clockwise, which wl_output calls 270.
        Step {
            name: "rotated 90 cw",
            swaymsg: "output Virtual-2 scale 1 transform 90",
            heads: [VIRTUAL_1, virtual_2((1024, 0, 1024, 1280), 3)],
        },
    ]
}

/// A desktop guest with sway running as `pvm`, its outputs set by `config` (sway's own
/// configuration lines).
fn sway(displays: u32, config: &str) -> Guest {
    let guest = Guest::desktop(displays, LOGS, WAIT);
    Sway::start(&guest, config).unwrap_or_else(|e| guest.fail(e));
    guest
}

#[test]
fn sway_puts_the_pointer_on_the_right_pixel_of_the_right_output_in_every_layout() {
    let guest = sway(
        2,
        "output Virtual-1 mode 1024x768 position 0 0\\noutput Virtual-2 mode 1280x1024 position 1024 0\\n",
    );
    // The bridge with no layout of its own: the session agent supplies sway's.
    let mut ctl = guest.start_bridge("--session-user pvm");
    in_session(&guest, "/opt/pvmouse-session >/tmp/session.log 2>&1 &");
    guest.session_agent_applied();
    in_session(&guest, "/opt/pvmouse-wl-reader >/tmp/reader.log 2>&1 &");
    let reader = guest.reader_ready();
    let listed = guest.sh("grep '^OUTPUT ' /tmp/reader.log");
    println!("{}", listed.join("\n"));
    // Which reader output is which sway output, by name (wlroots reports every wl_output at
    // 0,0: its position is in the layout, not in the protocol).
    let outputs = [
        reader.output_where(2, "Virtual-1"),
        reader.output_where(2, "Virtual-2"),
    ];
    let mut qemu = guest.qemu_qmp().unwrap();

    let mut tour = Tour::default();
    // The desktop pointer's event node: a layout change must not re-create the pointer.
    let node =
        "grep -A6 'Name=\"pvmouse desktop pointer\"' /proc/bus/input/devices | grep Handlers";
    let before = guest.sh(node);
    let steps = steps();
    let last = steps.len() - 1;
    let mut after = Vec::new();
    for (n, step) in steps.into_iter().enumerate() {
        if n == last {
            after = guest.sh(node);
            // The last layout through the bridge's own mapping: a restarted bridge that must
            // take the mapping back from the device it had handed it to.
            guest.sh("pkill -KILL -x pvmouse-guestd; sleep 0.5");
            guest.sh("/opt/pvmouse-guestd --session-user pvm --map-in-bridge \
                 >/tmp/guestd.log 2>&1 &");
        }
        in_session(&guest, &format!("swaymsg {}", step.swaymsg));
        let applied = guest.sh("grep -c 'applied the layout' /tmp/session.log || true");
        println!("{}: {} layouts applied so far", step.name, applied.join(""));
        reader.visit(&mut ctl, step.name, &step.heads, &outputs, &mut tour);
        // Who mapped: the device itself, with no guest process in the way, except for the
        // last layout.
        let mapped_by = if n == last { "per-display" } else { "desktop" };
        wait_for_coordinates(&mut ctl, mapped_by, Duration::from_secs(5))
            .unwrap_or_else(|e| guest.fail(format!("{}: {e}", step.name)));
        println!("{}: the guest got {mapped_by} coordinates", step.name);
        // Where sway drew the logical origin of head 1 (the reader's red square).
        assert_origin_drawn(&mut qemu, 1, &step.heads[1], "sway", step.name);
    }
    println!("desktop pointer before and after three layouts: {before:?} {after:?}");
    assert_eq!(
        before, after,
        "a layout change re-created the desktop pointer"
    );
    tour.check("sway", &|| guest.logs());
}

#[test]
fn with_one_display_the_raw_device_is_a_pointer_in_sway_without_the_bridge() {
    let guest = sway(
        1,
        "output Virtual-1 mode 1280x1024 position 0 0\\noutput Virtual-2 disable\\n",
    );
    in_session(&guest, "/opt/pvmouse-wl-reader >/tmp/reader.log 2>&1 &");
    let reader = guest.reader_ready();
    guest.check_raw_pointer("sway", &reader);
}
