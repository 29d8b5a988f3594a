//! The pointer in a real wlroots compositor: sway on a two-output virtio-gpu in the desktop
//! guest. The layout comes from sway itself, through the session agent (`pvmouse-session`,
//! running as the session's user), to the guest bridge in desktop mode; the layout is changed
//! with `swaymsg` while both run. The position is read from sway, by a Wayland client with a
//! fullscreen surface on each output (`tests/wayland-reader`), never from the bridge, and a
//! screendump checks which way sway really turns a rotated output.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::time::Duration;

use pvmouse_vmtest::desktop::{
    Head, ScaledHead, Sway, Tour, VIRTUAL_1, assert_origin_drawn, changed_box, screendump,
    virtual_2, wait_for_coordinates,
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

/// Framebuffer pixels of the scaled output that the fractional test aims at: the middle first
/// (it finds the cursor's image in the screendump), then every corner, their neighbours, and a
/// spread inside, the pixel of the bug report (402, 724) among them.
const AIMS: [(i32, i32); 11] = [
    (640, 512),
    (0, 0),
    (1279, 0),
    (0, 1023),
    (1279, 1023),
    (1, 1),
    (1278, 1022),
    (402, 724),
    (100, 900),
    (1100, 300),
    (853, 681),
];

/// One aim of the fractional test: the pixel it should land on, and where sway put it, by the
/// reader and by the screendump's cursor box.
#[derive(Debug)]
struct Aim {
    scale: &'static str,
    display: usize,
    aim: (i32, i32),
    want: (i32, i32),
    reader: Option<(i32, i32)>,
    /// The changed box's top-left corner in the screendump, and where it should be.
    cursor: Option<((usize, usize), (i64, i64))>,
}

/// Where the cursor image's top-left corner (the arrow's tip, beside its hot spot) should be
/// with the pointer on `want`, from the corner seen with it on `at`.
fn moved_corner(seen: (usize, usize), at: (i32, i32), want: (i32, i32)) -> (i64, i64) {
    let shift = |v: usize, from: i32, to: i32| i64::try_from(v).unwrap() + i64::from(to - from);
    (shift(seen.0, at.0, want.0), shift(seen.1, at.1, want.1))
}

#[test]
fn under_fractional_scales_sway_puts_the_pointer_on_the_exact_framebuffer_pixel() {
    // The scaled output beside an unscaled one, 200 pixels lower.
    let guest = sway(
        2,
        "output Virtual-1 mode 1024x768 position 0 0\\noutput Virtual-2 mode 1280x1024 position 1024 200 scale 1.5\\n",
    );
    let mut ctl = guest.start_bridge("--session-user pvm");
    in_session(&guest, "/opt/pvmouse-session >/tmp/session.log 2>&1 &");
    guest.session_agent_applied();
    in_session(&guest, "/opt/pvmouse-wl-reader >/tmp/reader.log 2>&1 &");
    let reader = guest.reader_ready();
    let outputs = [
        reader.output_where(2, "Virtual-1"),
        reader.output_where(2, "Virtual-2"),
    ];
    let mut qemu = guest.qemu_qmp().unwrap();
    let dump = std::env::temp_dir().join(format!("pvmouse-sway-frac-{}.ppm", std::process::id()));
    let plain = ScaledHead::truncated((1024, 768), (0, 0), (1, 1));
    let mut aims = Vec::new();
    for (scale, fraction) in [("1.5", (3, 2)), ("1.25", (5, 4))] {
        in_session(&guest, &format!("swaymsg output Virtual-2 scale {scale}"));
        let head = ScaledHead::truncated((1280, 1024), (1024, 200), fraction);
        let sent = guest.sh("grep -h 'layout changed' /tmp/session.log | tail -n 1");
        println!("scale {scale}: {head:?}; the agent: {}", sent.join(""));
        // Aims at `pixel` of `display` until the reader sees the pointer near its centre;
        // returns the pixel it should land on and the one sway has it on.
        let mut aim = |display: usize, head: &ScaledHead, pixel: (i32, i32)| {
            let want = head.reachable(pixel);
            let (w, h) = head.framebuffer;
            let host = (
                (f64::from(pixel.0) + 0.5) / f64::from(w),
                (f64::from(pixel.1) + 0.5) / f64::from(h),
            );
            let got = reader.point(
                &mut ctl,
                display,
                host,
                Some(outputs[display]),
                head.centre(want),
                Duration::from_secs(20),
            );
            (want, got.map(|(_, x, y)| head.drawn((x, y))))
        };
        // The unscaled output keeps its corners.
        for corner in [(0, 0), (1023, 767)] {
            let (want, reader) = aim(0, &plain, corner);
            aims.push(Aim {
                scale,
                display: 0,
                aim: corner,
                want,
                reader,
                cursor: None,
            });
        }
        // The scaled output's picture with the pointer away from it, in Virtual-1's middle.
        aim(0, &plain, (512, 384));
        let background = screendump(&mut qemu, 1, &dump).unwrap();
        let mut first: Option<((usize, usize), (i32, i32))> = None;
        for pixel in AIMS {
            let (want, seen) = aim(1, &head, pixel);
            let picture = screendump(&mut qemu, 1, &dump).unwrap();
            let cursor = changed_box(&background, &picture).map(|(left, top, _, _)| {
                let (from, at) = *first.get_or_insert(((left, top), want));
                ((left, top), moved_corner(from, at, want))
            });
            aims.push(Aim {
                scale,
                display: 1,
                aim: pixel,
                want,
                reader: seen,
                cursor,
            });
        }
    }
    let _ = std::fs::remove_file(&dump);
    println!("scale display aim          want         reader       cursor corner (seen, expected)");
    for a in &aims {
        println!(
            "{:<5} {}       {:<12} {:<12} {:<12} {:?}",
            format!("{}", a.scale),
            a.display,
            format!("{:?}", a.aim),
            format!("{:?}", a.want),
            format!("{:?}", a.reader),
            a.cursor
        );
    }
    for a in &aims {
        let at = format!("scale {}, display {}, aim {:?}", a.scale, a.display, a.aim);
        assert_eq!(
            a.reader,
            Some(a.want),
            "{at}: sway put the pointer elsewhere\n{}",
            guest.logs()
        );
        if a.display == 1 {
            let (seen, expected) = a
                .cursor
                .unwrap_or_else(|| panic!("{at}: no cursor in the screendump"));
            // Where the image's corner is off the picture, the picture cannot say (and sway
            // places an image cut by the output's edge differently); the reader has said.
            let seen = (
                i64::try_from(seen.0).unwrap(),
                i64::try_from(seen.1).unwrap(),
            );
            if expected.0 >= 0 {
                assert_eq!(
                    seen.0, expected.0,
                    "{at}: sway drew its cursor in another column"
                );
            }
            if expected.1 >= 0 {
                assert_eq!(
                    seen.1, expected.1,
                    "{at}: sway drew its cursor in another row"
                );
            }
        }
    }
}
