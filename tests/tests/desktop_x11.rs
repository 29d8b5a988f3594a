//! The pointer in a real X server: the desktop guest runs Xorg with xf86-input-libinput on a
//! two-output virtio-gpu, laid out with xrandr (side by side, stacked, scaled by 2, 1.5 and
//! 1.25, rotated) while
//! the guest bridge runs, in desktop mode, with its layout from the session agent. The
//! pointer's position is read from the X server itself (`xdotool getmouselocation`), never from
//! the bridge, and a screendump checks which way X turns a rotated monitor.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::time::{Duration, Instant};

use pvmouse_vmtest::desktop::{
    Head, POINTS, VIRTUAL_1, assert_origin_drawn, virtual_2, wait_for_coordinates,
};
use pvmouse_vmtest::guest::Guest;
use pvmouse_vmtest::{Qmp, wait};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);
/// The session agent runs as the session's user, as it would from its autostart entry.
const AS_PVM: &str = "setpriv --reuid=pvm --regid=pvm --init-groups env HOME=/home/pvm sh -c";

/// What a failed step shows.
const LOGS: &str = "tail -n 20 /tmp/xorg.log /tmp/guestd.log /tmp/session.log 2>&1";

/// Waits up to `limit` for the X server's pointer to reach `want`; returns where it is.
fn pointer_reaches(guest: &Guest, want: (i32, i32), limit: Duration) -> (i32, i32) {
    // Each check is a process in the guest, which shares its CPUs with the X server.
    wait::until_every("X's pointer", limit, Duration::from_millis(50), || {
        wait::when(x_pointer(guest), |got| *got == want)
    })
    .unwrap_or_else(|_| x_pointer(guest))
}

/// Sends `(x, y)` on `display`, at least once, until X's pointer reaches `want` or `limit`
/// passes; returns where it is. Each try first moves the pointer elsewhere when `detour`: a position the
/// device already holds is no motion. A try that X has not followed within `window` is sent
/// again: the server may have taken the device, or the bridge a new layout, only after it.
fn point(
    guest: &Guest,
    ctl: &mut Qmp,
    display: usize,
    (x, y): (f64, f64),
    want: (i32, i32),
    (detour, window, limit): (bool, Duration, Duration),
) -> (i32, i32) {
    let start = Instant::now();
    loop {
        let moves: &[(f64, f64)] = if detour {
            &[(0.3, 0.3), (x, y)]
        } else {
            &[(x, y)]
        };
        for &(px, py) in moves {
            ctl.execute(
                "pvmouse-send",
                json!({"display": display, "x": px, "y": py}),
            )
            .unwrap();
        }
        let got = pointer_reaches(guest, want, window);
        if got == want || start.elapsed() >= limit {
            return got;
        }
    }
}

/// How many left-button presses and releases X has reported for the bridge's pointer.
fn xinput_buttons(guest: &Guest) -> (usize, usize) {
    let count = |what: &str| -> usize {
        guest
            .sh(&format!(
                "grep -c 'button {what} *1 *$' /tmp/xinput.log || true"
            ))
            .first()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    };
    (count("press"), count("release"))
}

/// Where the X server has its pointer.
fn x_pointer(guest: &Guest) -> (i32, i32) {
    let out = guest.sh("DISPLAY=:0 xdotool getmouselocation");
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
    Head::plain(rect.0, rect.1, rect.2, rect.3).expected_x_pixel(x, y)
}

/// A desktop guest whose pvmouse has `displays` displays, running Xorg with the monitors laid
/// out by `xrandr ARGS`, once xrandr lists `monitors`.
fn xorg(displays: u32, xrandr_args: &str, monitors: &str) -> Guest {
    let guest = Guest::desktop(displays, LOGS, WAIT);
    guest.sh("Xorg :0 vt1 -nolisten tcp -noreset >/tmp/xorg.log 2>&1 &");
    guest.until("DISPLAY=:0 xrandr --listmonitors", "Monitors:");
    guest.sh(&format!("DISPLAY=:0 xrandr {xrandr_args}"));
    guest.until_within(
        "DISPLAY=:0 xrandr --listmonitors",
        monitors,
        Duration::from_secs(10),
    );
    guest
}

/// A 64x64 root-window tile with a red 8x8 square at its top-left: with every monitor at a
/// multiple of 64, each monitor's logical origin is red, and a screendump shows where X drew it.
fn marker_tile() -> String {
    let mut bits = Vec::new();
    for row in 0..64 {
        for byte in 0..8 {
            bits.push(if row < 8 && byte == 0 { "0xff" } else { "0x00" });
        }
    }
    format!(
        "#define m_width 64\\n#define m_height 64\\nstatic unsigned char m_bits[] = {{\\n{}\\n}};\\n",
        bits.join(",\\n")
    )
}

/// One layout of the test: the xrandr arguments, and the heads as X then has them.
struct Step {
    name: &'static str,
    xrandr: &'static str,
    heads: [Head; 2],
}

fn steps() -> [Step; 6] {
    [
        Step {
            name: "side by side",
            xrandr: "--output Virtual-2 --pos 1024x0",
            heads: [VIRTUAL_1, virtual_2((1024, 0, 1280, 1024), 0)],
        },
        Step {
            name: "stacked",
            xrandr: "--output Virtual-2 --pos 0x768",
            heads: [VIRTUAL_1, virtual_2((0, 768, 1280, 1024), 0)],
        },
        Step {
            name: "scaled 2x2",
            xrandr: "--output Virtual-2 --pos 1024x0 --scale 2x2",
            heads: [VIRTUAL_1, virtual_2((1024, 0, 2560, 2048), 0)],
        },
        // Fractional scales: 1.5 and 1.25 screen pixels per framebuffer pixel.
        Step {
            name: "scaled 1.5",
            xrandr: "--output Virtual-2 --pos 1024x0 --scale 1.5x1.5",
            heads: [VIRTUAL_1, virtual_2((1024, 0, 1920, 1536), 0)],
        },
        Step {
            name: "scaled 1.25",
            xrandr: "--output Virtual-2 --pos 1024x0 --scale 1.25x1.25",
            heads: [VIRTUAL_1, virtual_2((1024, 0, 1600, 1280), 0)],
        },
        // RandR turns counter-clockwise, as wl_output does: "left" is transform 1 (90).
        Step {
            name: "rotated left",
            xrandr: "--output Virtual-2 --scale 1x1 --rotate left",
            heads: [VIRTUAL_1, virtual_2((1024, 0, 1024, 1280), 1)],
        },
    ]
}

#[test]
fn xorg_puts_the_pointer_on_the_exact_pixel_of_the_right_monitor_in_every_layout() {
    let guest = xorg(
        2,
        "--output Virtual-1 --mode 1024x768 --pos 0x0 --output Virtual-2 --mode 1280x1024 --pos 1024x0",
        "1280/",
    );
    guest.sh(&format!(
        "printf '{}' >/tmp/mark.xbm && DISPLAY=:0 xsetroot -bitmap /tmp/mark.xbm -fg red -bg grey \
         && DISPLAY=:0 xhost +",
        marker_tile()
    ));
    // No layout of its own: the session agent, running as the session's user, supplies X's.
    let mut ctl = guest.start_bridge("--session-user pvm");
    guest.sh(&format!(
        "{AS_PVM} 'DISPLAY=:0 /opt/pvmouse-session >/tmp/session.log 2>&1 &'"
    ));
    guest.session_agent_applied();

    // Another user's agent is refused, and says so.
    let (rc, out) = guest
        .probe
        .run(
            "setpriv --reuid=1001 --regid=1001 --clear-groups env DISPLAY=:0 \
             timeout 20 /opt/pvmouse-session 2>&1",
            WAIT,
        )
        .unwrap();
    println!("another user's agent: exit {rc}: {}", out.join(" | "));
    assert_eq!(rc, 3, "another user's agent was not refused: {out:?}");
    assert!(
        out.iter()
            .any(|l| l.contains("uid 1001 may not set the layout")),
        "{out:?}"
    );

    let mut qemu = guest.qemu_qmp().unwrap();
    let mut rows = Vec::new();
    let mut clicks = Vec::new();
    guest.sh("DISPLAY=:0 stdbuf -oL xinput test 'pvmouse' >/tmp/xinput.log 2>&1 &");
    for step in steps() {
        guest.sh(&format!("DISPLAY=:0 xrandr {}", step.xrandr));
        for (display, head) in step.heads.iter().enumerate() {
            for point_at in POINTS {
                let want = head.expected_x_pixel(point_at.0, point_at.1);
                // A layout change reaches the bridge a moment after xrandr returns: retry.
                let got = point(
                    &guest,
                    &mut ctl,
                    display,
                    point_at,
                    want,
                    (true, Duration::from_secs(2), Duration::from_secs(20)),
                );
                rows.push((step.name, display, point_at.0, point_at.1, want, got));
            }
            // A left click in the middle of the head: X sees it from the pvmouse device itself
            // (`xinput test`), with its pointer on the head's middle pixel.
            let before = xinput_buttons(&guest);
            for down in [true, false] {
                ctl.execute(
                    "pvmouse-send",
                    json!({"display": display, "x": 0.5, "y": 0.5, "buttons": {"left": down}}),
                )
                .unwrap();
            }
            let clicked = (before.0 + 1, before.1 + 1);
            let after = wait::until_every(
                "X to report the click",
                Duration::from_secs(5),
                Duration::from_millis(50),
                || wait::when(xinput_buttons(&guest), |seen| *seen == clicked),
            )
            .unwrap_or_else(|_| xinput_buttons(&guest));
            clicks.push((
                step.name,
                display,
                (after.0 - before.0, after.1 - before.1),
                x_pointer(&guest),
                head.expected_x_pixel(0.5, 0.5),
            ));
        }
        // The device mapped, and X read it directly: no guest process handled an event.
        wait_for_coordinates(&mut ctl, "desktop", Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{}: {e}", step.name));
        // Where X drew head 1's logical origin (the root tile's red square).
        assert_origin_drawn(&mut qemu, 1, &step.heads[1], "X", step.name);
    }
    println!("layout        display  x         y         expected      X server");
    for (step, d, x, y, want, got) in &rows {
        println!("{step:<13} {d}        {x:<9.6} {y:<9.6} {want:?}  {got:?}");
    }
    println!(
        "clicks (layout, display, (presses, releases) X saw, X pointer, expected): {clicks:?}"
    );
    for (step, d, x, y, want, got) in &rows {
        assert_eq!(got, want, "{step}: display {d} ({x}, {y})");
    }
    for (step, d, seen, at, want) in &clicks {
        assert_eq!(
            *seen,
            (1, 1),
            "{step}: display {d}: X did not see one click"
        );
        assert_eq!(
            at, want,
            "{step}: display {d}: the click was not on the head's middle"
        );
    }
}

#[test]
fn with_one_display_the_raw_device_is_a_pointer_in_xorg_without_the_bridge() {
    let guest = xorg(
        1,
        "--output Virtual-1 --mode 1280x1024 --pos 0x0 --output Virtual-2 --off",
        "Monitors: 1",
    );
    let screen = (0, 0, 1280, 1024);
    let mut ctl = guest.control().unwrap();
    let mut rows = Vec::new();
    for (px, py) in [(640, 512), (0, 0), (1279, 1023), (1, 1022), (1000, 3)] {
        let x = (f64::from(px) + 0.5) / 1280.0;
        let y = (f64::from(py) + 0.5) / 1024.0;
        let want = expected_pixel(screen, x, y);
        assert_eq!(want, (px, py), "the spec's own rule");
        // The first point also waits for X to pick the device up.
        let got = point(
            &guest,
            &mut ctl,
            0,
            (x, y),
            want,
            (false, Duration::from_millis(400), WAIT),
        );
        rows.push((want, got));
    }
    println!("raw pvmouse device in Xorg, one 1280x1024 monitor (expected, X server): {rows:?}");
    for (want, got) in rows {
        assert_eq!(got, want);
    }
}
