//! The pointer in GNOME's mutter (43, run bare as `mutter --wayland --display-server`, which
//! has GNOME's input mapping without GNOME Shell). mutter needs a logind session, so this
//! guest boots with systemd as init and starts mutter in a PAM session of the user `pvm` on
//! tty1. The layout is set over mutter's own D-Bus interface (`ApplyMonitorsConfig`) while the
//! bridge runs; the session agent, as `pvm`, is let in because logind says `pvm` is the active
//! user of seat0 (no `--session-user`). The position is read from mutter by a Wayland client
//! with a fullscreen surface on each output.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::time::Duration;

use pvmouse_vmtest::desktop::{
    Head, Mutter, ScaledHead, Tour, VIRTUAL_1, virtual_2, wait_for_coordinates,
};
use pvmouse_vmtest::guest::Guest;
use pvmouse_vmtest::{VmConfig, wait};

const WAIT: Duration = Duration::from_secs(90);
const AS_PVM: &str = Mutter::AS_PVM;

/// What a failed step shows.
const LOGS: &str = "journalctl -u pvmouse-mutter --no-pager | tail -n 25; \
                    cat /run/systemd/seats/seat0; \
                    tail -n 12 /tmp/guestd.log /tmp/session.log /tmp/reader.log 2>&1";

/// A method of mutter's `org.gnome.Mutter.DisplayConfig`, on its session bus, as `pvm`, with
/// `busctl` (systemd's; the image has no gdbus). The reply as busctl's JSON.
fn display_config(guest: &Guest, method: &str, signature_and_args: &str) -> serde_json::Value {
    let command = format!(
        "{AS_PVM} timeout 20 busctl --json=short --address=$(tr '\\0' '\\n' \
         </proc/$(pgrep -x mutter)/environ | sed -n 's/^DBUS_SESSION_BUS_ADDRESS=//p') \
         call org.gnome.Mutter.DisplayConfig /org/gnome/Mutter/DisplayConfig \
         org.gnome.Mutter.DisplayConfig {method} {signature_and_args}"
    );
    // mutter opens its Wayland socket before it takes its D-Bus name: retry a while, at the
    // pace of a process in the guest.
    let out = wait::until_every(
        &format!("mutter to answer {method}"),
        WAIT,
        Duration::from_millis(200),
        || match guest.probe.run(&command, WAIT).unwrap() {
            (0, out) => Ok(out.join("\n")),
            (_, out) => Err(out),
        },
    )
    .unwrap_or_else(|e| guest.fail(e));
    if out.trim().is_empty() {
        return serde_json::Value::Null;
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{method}: {e}: {out}"))
}

/// GetCurrentState's serial, and the id of `connector`'s mode of `width`x`height`.
fn current_state(guest: &Guest) -> (u64, serde_json::Value) {
    let state = display_config(guest, "GetCurrentState", "");
    (state["data"][0].as_u64().unwrap(), state["data"][1].clone())
}

fn mode_id(monitors: &serde_json::Value, connector: &str, width: i64, height: i64) -> String {
    monitors
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m[0][0] == connector)
        .flat_map(|m| m[1].as_array().unwrap().iter())
        .find(|mode| mode[1] == width && mode[2] == height)
        .and_then(|mode| mode[0].as_str())
        .unwrap_or_else(|| panic!("no {width}x{height} mode on {connector}: {monitors}"))
        .to_owned()
}

struct Step {
    name: &'static str,
    /// (x, y, scale, transform) of Virtual-2; Virtual-1 stays at 0,0.
    virtual2: (i32, i32, f64, u32),
    heads: [Head; 2],
}

fn steps() -> [Step; 3] {
    [
        Step {
            name: "side by side",
            virtual2: (1024, 0, 1.0, 0),
            heads: [VIRTUAL_1, virtual_2((1024, 0, 1280, 1024), 0)],
        },
        Step {
            name: "stacked",
            virtual2: (0, 768, 1.0, 0),
            heads: [VIRTUAL_1, virtual_2((0, 768, 1280, 1024), 0)],
        },
        Step {
            name: "rotated 90",
            virtual2: (1024, 0, 1.0, 1),
            heads: [VIRTUAL_1, virtual_2((1024, 0, 1024, 1280), 1)],
        },
    ]
}

/// A desktop guest booted with systemd, running mutter in a PAM session of `pvm` on tty1, with
/// fractional scaling on (GSettings from a key file: the image has no dconf).
fn mutter(displays: u32) -> Guest {
    mutter_with(displays, &[])
}

/// [`mutter`], with more kernel arguments.
fn mutter_with(displays: u32, kernel_args: &[&str]) -> Guest {
    let mut args = vec!["pvmouse.systemd=1".to_owned()];
    args.extend(kernel_args.iter().map(|a| (*a).to_owned()));
    let guest = Guest::boot(
        VmConfig {
            desktop: true,
            displays,
            kernel_args: args,
            ..VmConfig::default()
        },
        LOGS,
        WAIT,
    );
    Mutter::start(
        &guest,
        "[org/gnome/mutter]\\nexperimental-features=[\\047scale-monitor-framebuffer\\047]\\n",
    )
    .unwrap_or_else(|e| guest.fail(e));
    guest
}

/// Starts `pvmouse-wl-reader` in mutter's session, as `pvm`.
fn start_reader(guest: &Guest) {
    guest.sh(&format!(
        "{AS_PVM} sh -c '/opt/pvmouse-wl-reader >/tmp/reader.log 2>&1 &'"
    ));
}

#[test]
fn mutter_puts_the_pointer_on_the_right_pixel_of_the_right_output_in_every_layout() {
    let guest = mutter(2);
    println!(
        "seat: {}",
        guest.sh("cat /run/systemd/seats/seat0").join(" | ")
    );
    let (_, monitors) = current_state(&guest);
    let (m1, m2) = (
        mode_id(&monitors, "Virtual-1", 1024, 768),
        mode_id(&monitors, "Virtual-2", 1280, 1024),
    );
    println!("modes {m1} {m2}");
    // mutter offers only the scales it supports for a mode: say which, for the notes.
    let scales: Vec<String> = monitors
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m[1].as_array().unwrap().iter())
        .filter(|mode| mode[0] == m2.as_str())
        .map(|mode| mode[5].to_string())
        .collect();
    println!("scales mutter supports for {m2}: {scales:?}");

    let mut ctl = guest.start_bridge("");
    // Virtual-1 at 0,0 as the primary monitor, Virtual-2 as the step says; method 1 is
    // "temporary" (not written to monitors.xml).
    let apply = |(x, y, scale, transform): (i32, i32, f64, u32)| {
        let (serial, _) = current_state(&guest);
        display_config(
            &guest,
            "ApplyMonitorsConfig",
            &format!(
                "'uua(iiduba(ssa{{sv}}))a{{sv}}' {serial} 1 2 \
                 0 0 1.0 0 true 1 Virtual-1 '{m1}' 0 \
                 {x} {y} {scale} {transform} false 1 Virtual-2 '{m2}' 0 0"
            ),
        );
    };
    apply(steps()[0].virtual2);
    guest.sh(&format!(
        "{AS_PVM} sh -c '/opt/pvmouse-session >/tmp/session.log 2>&1 &'"
    ));
    guest.session_agent_applied();
    start_reader(&guest);
    let reader = guest.reader_ready();
    let listed = guest.sh("grep '^OUTPUT ' /tmp/reader.log");
    println!("{}", listed.join(" | "));
    // mutter 43's wl_output has no names (the agent takes them from xdg-output): tell the
    // reader's outputs apart by their modes.
    let outputs = [
        reader.output_where(5, "1024"),
        reader.output_where(5, "1280"),
    ];

    let mut tour = Tour::default();
    for step in steps() {
        apply(step.virtual2);
        guest.visit_layout(
            &reader,
            &mut ctl,
            step.name,
            &step.heads,
            &outputs,
            &mut tour,
        );
        // mutter read the device itself: the device mapped, no guest process handled an event.
        wait_for_coordinates(&mut ctl, "desktop", Duration::from_secs(5))
            .unwrap_or_else(|e| guest.fail(format!("{}: {e}", step.name)));
    }
    tour.check("mutter", &|| guest.logs());

    // Fractional scaling: the supported scale nearest 1.25. mutter offers only scales that
    // divide the mode, so its logical size is exact and the ratio of the sizes is the scale.
    let scale = monitors
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m[1].as_array().unwrap().iter())
        .filter(|mode| mode[0] == m2.as_str())
        .flat_map(|mode| mode[5].as_array().unwrap().iter())
        .filter_map(serde_json::Value::as_f64)
        .min_by(|a, b| (a - 1.25).abs().total_cmp(&(b - 1.25).abs()))
        .unwrap();
    apply((1024, 0, scale, 0));
    let logical = (1280.0 / scale).round();
    #[allow(clippy::cast_possible_truncation, reason = "a monitor's width")]
    let head = ScaledHead::truncated((1280, 1024), (1024, 0), (1280, logical as i32));
    println!("fractional: scale {scale}, {head:?}");
    let mut missed = Vec::new();
    for pixel in [
        (640, 512),
        (0, 0),
        (1279, 0),
        (0, 1023),
        (1279, 1023),
        (402, 724),
        (1, 1),
    ] {
        let want = head.reachable(pixel);
        let host = (
            (f64::from(pixel.0) + 0.5) / 1280.0,
            (f64::from(pixel.1) + 0.5) / 1024.0,
        );
        let got = reader.point(
            &mut ctl,
            1,
            host,
            Some(outputs[1]),
            head.centre(want),
            Duration::from_secs(20),
        );
        let on = got.map(|(_, x, y)| head.drawn((x, y)));
        println!("fractional: aim {pixel:?} want {want:?} mutter {got:?} = {on:?}");
        if on != Some(want) {
            missed.push((pixel, want, got));
        }
    }
    assert!(
        missed.is_empty(),
        "mutter at scale {scale} missed {missed:?}\n{}",
        guest.logs()
    );
}

#[test]
fn with_one_display_the_raw_device_is_a_pointer_in_mutter_without_the_bridge() {
    let guest = mutter(1);
    let (serial, monitors) = current_state(&guest);
    let mode = mode_id(&monitors, "Virtual-1", 1280, 1024);
    // Virtual-1 alone, at 1280x1024; Virtual-2 off.
    display_config(
        &guest,
        "ApplyMonitorsConfig",
        &format!(
            "'uua(iiduba(ssa{{sv}}))a{{sv}}' {serial} 1 1 0 0 1.0 0 true 1 Virtual-1 '{mode}' 0 0"
        ),
    );
    start_reader(&guest);
    let reader = guest.reader_ready();
    guest.check_raw_pointer("mutter", &reader);
}

/// A compositor's session target, as sway's and others' documentation has one: it binds
/// `graphical-session.target`, which user units of the session (the agent's) are wanted by.
const SESSION_TARGET: &str = "[Unit]\\nDescription=a compositor session (pvmouse test)\\n\
                              BindsTo=graphical-session.target\\n\
                              Wants=graphical-session-pre.target\\n\
                              After=graphical-session-pre.target\\n";

/// The pid of the one process named `name`, and its executable; fails if there are more.
fn only_process(guest: &Guest, name: &str) -> (String, String) {
    let pids = guest.sh(&format!("pgrep -x {name} || true"));
    assert_eq!(
        pids.len(),
        1,
        "one {name}, started by its unit: {pids:?}\n{}",
        guest.logs()
    );
    let exe = guest.sh(&format!("readlink /proc/{}/exe", pids[0]));
    (pids[0].clone(), exe.join(""))
}

/// The guest package, installed as a user installs it (`pvmouse.package=1`: dpkg, then
/// systemd as init), starts the guest side on its own: its udev rule and system unit start
/// `pvmouse-guestd`, and its user unit starts `pvmouse-session` when mutter's session starts
/// `graphical-session.target`. No step of this test starts either, and it fails if any process
/// of theirs is not the unit's, or runs from anywhere but the package's files.
#[test]
fn the_guest_package_starts_the_bridge_and_the_session_agent_in_a_real_session() {
    let guest = mutter_with(2, &["pvmouse.package=1"]);
    let status = guest.sh("dpkg-query -W -f '${Status} ${Version}' pvmouse-guest");
    println!("in the guest: {}", status.join(""));
    assert!(
        status.join("").starts_with("install ok installed"),
        "{status:?}"
    );

    // The bridge: started by systemd, from the package.
    guest.until(
        "systemctl is-active pvmouse-guestd && echo RUNNING",
        "RUNNING",
    );
    let (pid, exe) = only_process(&guest, "pvmouse-guestd");
    assert_eq!(exe, "/usr/bin/pvmouse-guestd");
    let main = guest.sh("systemctl show -p MainPID --value pvmouse-guestd");
    assert_eq!(main.join(""), pid, "the unit's own process");
    let mut ctl = guest.control().unwrap_or_else(|e| guest.fail(e));
    pvmouse_vmtest::desktop::wait_for_bridge(&mut ctl, WAIT).unwrap_or_else(|e| guest.fail(e));

    // The session agent: the compositor's session starts graphical-session.target.
    let user = format!("{AS_PVM} systemctl --user");
    guest.sh(&format!(
        "mkdir -p /etc/systemd/user && printf '{SESSION_TARGET}' \
         >/etc/systemd/user/pvmouse-test-session.target && {user} daemon-reload && \
         {user} set-environment WAYLAND_DISPLAY=wayland-0 XDG_SESSION_TYPE=wayland && \
         {user} start pvmouse-test-session.target"
    ));
    guest.until(
        "journalctl --no-pager -o cat _SYSTEMD_USER_UNIT=pvmouse-session.service",
        "applied the layout",
    );
    let (agent, exe) = only_process(&guest, "pvmouse-session");
    assert_eq!(exe, "/usr/bin/pvmouse-session");
    let main = guest.sh(&format!("{user} show -p MainPID --value pvmouse-session"));
    assert_eq!(main.join(""), agent, "the user unit's own process");
    // mutter's layout is in force: the device maps, mutter reads it.
    wait_for_coordinates(&mut ctl, "desktop", Duration::from_secs(20))
        .unwrap_or_else(|e| guest.fail(e));
    println!(
        "pvmouse-guestd {pid} (pvmouse-guestd.service) and pvmouse-session {agent} \
         (pvm's pvmouse-session.service), both from the package; mutter's layout applied"
    );
}
