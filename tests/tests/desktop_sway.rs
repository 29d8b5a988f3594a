//! The pointer in a real wlroots compositor: sway on a two-output virtio-gpu in the desktop
//! guest. The layout comes from sway itself, through the session agent (`pvmouse-session`,
//! running as the session's user), to the guest bridge in desktop mode; the layout is changed
//! with `swaymsg` while both run. The position is read from sway, by a Wayland client with a
//! fullscreen surface on each output (`tests/wayland-reader`), never from the bridge, and a
//! screendump checks which way sway really turns a rotated output.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::time::Duration;

use pvmouse_vmtest::desktop::{
    Head, Reader, Sway, check_layout_rows, check_raw_rows, screendump, wait_for_bridge,
    wait_for_coordinates,
};
use pvmouse_vmtest::{Qmp, Vm, VmConfig};

const WAIT: Duration = Duration::from_secs(60);

/// One VM at a time: the machine has two cores, and a desktop guest takes both.
static ONE_VM: std::sync::Mutex<()> = std::sync::Mutex::new(());

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

/// A command run in sway's session, as `pvm`.
fn in_session(vm: &Vm, command: &str) -> Vec<String> {
    Sway::in_session(vm, command).unwrap_or_else(|e| panic!("{e}\n{}", logs(vm)))
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
    Sway::start(&vm, config).unwrap_or_else(|e| panic!("{e}\n{}", logs(&vm)));
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
    let reader = Reader { vm: &vm };
    wait_for_bridge(&mut ctl, WAIT).unwrap_or_else(|e| {
        panic!(
            "{e}
{}",
            logs(&vm)
        )
    });
    in_session(&vm, "/opt/pvmouse-session >/tmp/session.log 2>&1 &");
    until(&vm, "cat /tmp/session.log", "applied the layout", WAIT);
    in_session(&vm, "/opt/pvmouse-wl-reader >/tmp/reader.log 2>&1 &");
    until(&vm, "cat /tmp/reader.log", "READY", WAIT);
    let listed = sh(&vm, "grep '^OUTPUT ' /tmp/reader.log");
    println!("{}", listed.join("\n"));
    // Which reader output is which sway output, by name (wlroots reports every wl_output at
    // 0,0: its position is in the layout, not in the protocol).
    let outputs = [
        reader.output_where(2, "Virtual-1"),
        reader.output_where(2, "Virtual-2"),
    ];
    let mut qemu = vm.qemu_qmp().unwrap();

    let mut rows = Vec::new();
    let mut clicks = Vec::new();
    // The desktop pointer's event node: a layout change must not re-create the pointer.
    let node =
        "grep -A6 'Name=\"pvmouse desktop pointer\"' /proc/bus/input/devices | grep Handlers";
    let before = sh(&vm, node);
    let steps = steps();
    let last = steps.len() - 1;
    let mut after = Vec::new();
    for (n, step) in steps.into_iter().enumerate() {
        if n == last {
            after = sh(&vm, node);
            // The last layout through the bridge's own mapping: a restarted bridge that must
            // take the mapping back from the device it had handed it to.
            sh(&vm, "pkill -KILL -x pvmouse-guestd; sleep 0.5");
            sh(
                &vm,
                "/opt/pvmouse-guestd --session-user pvm --map-in-bridge \
                 >/tmp/guestd.log 2>&1 &",
            );
        }
        in_session(&vm, &format!("swaymsg {}", step.swaymsg));
        let applied = sh(&vm, "grep -c 'applied the layout' /tmp/session.log || true");
        println!("{}: {} layouts applied so far", step.name, applied.join(""));
        reader.visit(
            &mut ctl,
            step.name,
            &step.heads,
            &outputs,
            &mut rows,
            &mut clicks,
        );
        // Who mapped: the device itself, with no guest process in the way, except for the
        // last layout.
        let mapped_by = if n == last { "per-display" } else { "desktop" };
        wait_for_coordinates(&mut ctl, mapped_by, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{}: {e}\n{}", step.name, logs(&vm)));
        println!("{}: the guest got {mapped_by} coordinates", step.name);
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
    println!("desktop pointer before and after three layouts: {before:?} {after:?}");
    assert_eq!(
        before, after,
        "a layout change re-created the desktop pointer"
    );
    check_layout_rows("sway", &rows, &clicks, &|| logs(&vm));
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
    let rows = Reader { vm: &vm }.raw_device_rows(&mut ctl);
    check_raw_rows("sway", &rows, &|| logs(&vm));
}
