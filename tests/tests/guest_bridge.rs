//! pvmouse-guestd in a real guest: the uinput pointer it creates is read back by the probe,
//! an independent reader of that device's own evdev node, and compared with the values the
//! layout implies, computed here from the spec's formula rather than with the bridge's code.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::time::{Duration, Instant};

use pvmouse_spec::InputEvent;
use pvmouse_spec::evdev::*;
use pvmouse_vmtest::desktop::wait_for_coordinates;
use pvmouse_vmtest::exclusive::{self, ExclusiveVm, SharedVm};
use pvmouse_vmtest::{
    PVMOUSE_NAME, Qmp, Vm, VmConfig, ev, frames, input_frames, round_to_i32, wait,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const POINTER: &str = "pvmouse desktop pointer";

/// (x, y, width, height) per display, and the bounding box, for the expected values.
struct Desk {
    displays: Vec<(i32, i32, u32, u32)>,
    bounds: (i32, i32, u32, u32),
}

impl Desk {
    /// 1024x768 to the left of 1280x1024.
    fn two() -> Self {
        Desk {
            displays: vec![(0, 0, 1024, 768), (1024, 0, 1280, 1024)],
            bounds: (0, 0, 2304, 1024),
        }
    }

    /// spec/pvmouse.md: the device value a = round(v·65535) means the pixel that contains
    /// L + a/65535·size, the far edge on the last pixel; the bridge aims at that pixel's centre
    /// over the bounding box: round((pixel − box + ½) / box size · 65535).
    fn expect(&self, display: usize, x: f64, y: f64) -> (i32, i32) {
        let (lx, ly, w, h) = self.displays[display];
        let (bx, by, bw, bh) = self.bounds;
        let axis = |v: f64, origin: i32, size: u32, box_origin: i32, box_size: u32| {
            let a = (v * 65535.0).round();
            let offset = (a * f64::from(size) / 65535.0)
                .floor()
                .min(f64::from(size) - 1.0);
            let pixel = f64::from(origin) + offset;
            round_to_i32((pixel - f64::from(box_origin) + 0.5) / f64::from(box_size) * 65535.0)
        };
        (axis(x, lx, w, bx, bw), axis(y, ly, h, by, bh))
    }
}

fn boot() -> ExclusiveVm {
    exclusive::boot(VmConfig::default())
}

/// A guest with QEMU's virtio tablet beside pvmouse, for the tests that only read the guest:
/// they share one boot.
static WITH_A_TABLET: SharedVm = SharedVm::new("a virtio tablet beside pvmouse", || VmConfig {
    extra_qemu_args: vec!["-device".into(), "virtio-tablet-pci".into()],
    ..VmConfig::default()
});

/// Waits until the guest bridge's pointer holds `keys` (EVIOCGKEY), as `what` says.
fn pointer_keys(vm: &Vm, what: &str, keys: &serde_json::Value) {
    vm.probe
        .query_until("state", POINTER, what, WAIT, |st| st["keys"] == *keys)
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The guest bridge's log.
fn bridge_log(vm: &Vm) -> String {
    vm.probe
        .run("cat /tmp/guestd.log", WAIT)
        .unwrap()
        .1
        .join("\n")
}

/// Waits until the guest bridge's log satisfies `done`; returns it.
fn bridge_log_until(vm: &Vm, what: &str, limit: Duration, done: impl Fn(&str) -> bool) -> String {
    // Each check is a process in the guest: a slower pace than a host query's.
    wait::until_every(what, limit, Duration::from_millis(100), || {
        wait::when(bridge_log(vm), |log| done(log))
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Presses the left button at (x, x) on display 0, and waits until the bridge's pointer has it.
fn press_left(vm: &Vm, ctl: &mut Qmp, x: f64) {
    let mark = vm.probe.mark();
    ctl.execute(
        "pvmouse-send",
        json!({"display": 0, "x": x, "y": x, "buttons": {"left": true}}),
    )
    .unwrap();
    vm.probe
        .wait_events(POINTER, mark, WAIT, |e| {
            e.iter().any(|e| e.event == ev(EV_KEY, BTN_LEFT, 1))
        })
        .unwrap();
}

/// Whether the guest bridge's pointer has gone away since the probe's line `from`.
fn pointer_gone_since(vm: &Vm, from: usize) -> bool {
    vm.probe
        .lines(from)
        .iter()
        .any(|l| l.starts_with(&format!("GONE {POINTER}")))
}

/// Starts the bridge in the background and waits for its pointer; returns when the probe has it
/// open and the host hears the bridge, so that the pointer's first placement is behind us.
fn start_bridge(vm: &Vm, args: &str) {
    let mark = vm.probe.mark();
    let (rc, out) = vm
        .probe
        .run(
            // The bridge's own mapping: these tests read its pointer.
            &format!("pvmouse-guestd --map-in-bridge {args} >> /tmp/guestd.log 2>&1 &"),
            WAIT,
        )
        .unwrap();
    assert_eq!(rc, 0, "{out:?}");
    vm.probe.send(&format!("watch {POINTER}")).unwrap();
    vm.probe
        .wait_for(mark, WAIT, |l| l.starts_with(&format!("OPEN {POINTER} ")))
        .unwrap_or_else(|e| panic!("{e}\n{:?}", vm.probe.run("cat /tmp/guestd.log", WAIT)));
    let mut ctl = vm.control().unwrap();
    wait::status(&mut ctl, "the host to hear the bridge", WAIT, |s| {
        s["bridge-present"] == true
    })
    .unwrap_or_else(|e| panic!("{e}"));
    // Its first placement goes through the probe's channel, racing the host's query; it has
    // no signal of its own, since a placement on the position the pointer already has (the
    // input core drops unchanged values) sends the guest nothing.
    std::thread::sleep(Duration::from_millis(200));
}

/// Sends a point and returns the pointer's frame.
fn point(vm: &Vm, ctl: &mut Qmp, display: usize, x: f64, y: f64) -> Vec<InputEvent> {
    let mark = vm.probe.mark();
    ctl.execute("pvmouse-send", json!({"display": display, "x": x, "y": y}))
        .unwrap();
    let evs = vm
        .probe
        .wait_events(POINTER, mark, WAIT, |e| !frames(e).is_empty())
        .unwrap_or_else(|e| panic!("{e}\n{:?}", vm.probe.run("cat /tmp/guestd.log", WAIT)));
    frames(&evs).remove(0)
}

fn abs_of(frame: &[InputEvent]) -> (Option<i32>, Option<i32>) {
    let get = |code| {
        frame
            .iter()
            .find(|e| e.kind == EV_ABS && e.code == code)
            .map(|e| e.value)
    };
    (get(ABS_X), get(ABS_Y))
}

#[test]
fn points_on_both_displays_land_on_the_values_the_layout_implies() {
    let vm = boot();
    let mut ctl = vm.control().unwrap();
    start_bridge(&vm, "--layout 0=1024x768@0,0,1=1280x1024@1024,0");
    let started = Instant::now();
    let e = ctl
        .wait_event("PVMOUSE_BRIDGE_CHANGE", Duration::from_secs(2))
        .unwrap();
    assert_eq!(e["data"], json!({"present": true, "version": 1}));
    println!(
        "bridge announced {:?} after its pointer appeared",
        started.elapsed()
    );
    assert_eq!(
        ctl.execute("query-pvmouse", json!({})).unwrap()["bridge-present"],
        true
    );

    // The pointer itself: what udev and libinput will see.
    let caps: serde_json::Value = {
        let l = vm
            .probe
            .request(&format!("caps {POINTER}"), "CAPS ", WAIT)
            .unwrap();
        serde_json::from_str(&l[format!("CAPS {POINTER} ").len()..]).unwrap()
    };
    assert_eq!(caps["bits"]["abs"], json!([0, 1]));
    assert_eq!(caps["bits"]["key"], json!([272, 273, 274, 275, 276]));
    assert_eq!(caps["bits"]["rel"], json!([6, 8, 11, 12]));
    assert_eq!(caps["absinfo"]["0"]["max"], 65535);
    let (rc, out) = vm
        .probe
        .run(&format!("for e in /sys/class/input/event*; do grep -qx '{POINTER}' $e/device/name && udevadm test-builtin input_id $e; done"), WAIT)
        .unwrap();
    assert_eq!(rc, 0);
    assert!(out.contains(&"ID_INPUT_MOUSE=1".to_owned()), "{out:?}");

    let desk = Desk::two();
    // The guest starts at (0, 0); the input core drops values that do not change, so the tour
    // starts elsewhere.
    for (display, x, y) in [
        (0, 0.5, 0.5),
        (0, 0.0, 0.0),
        (0, 0.25, 0.75),
        (0, 1.0, 1.0),
        (1, 0.0, 0.0),
        (1, 0.5, 0.25),
        (1, 1.0, 1.0),
        (0, 0.001, 0.999),
    ] {
        let f = point(&vm, &mut ctl, display, x, y);
        let (ux, uy) = abs_of(&f);
        let (wx, wy) = desk.expect(display, x, y);
        // The input core drops unchanged values, so a coordinate may be absent when equal.
        assert!(
            ux.is_none_or(|v| v == wx)
                && uy.is_none_or(|v| v == wy)
                && (ux.is_some() || uy.is_some()),
            "display {display} ({x}, {y}): got {f:?}, want X={wx} Y={wy}"
        );
    }
    let st = vm
        .probe
        .request(&format!("state {POINTER}"), "STATE ", WAIT)
        .unwrap();
    let (wx, wy) = desk.expect(0, 0.001, 0.999);
    assert!(
        st.contains(&format!("\"0\":{wx}")) && st.contains(&format!("\"1\":{wy}")),
        "{st}"
    );

    // Buttons and wheels pass through, one frame per pvmouse frame.
    let mark = vm.probe.mark();
    ctl.execute(
        "pvmouse-send",
        json!({"buttons": {"middle": true}, "wheel": {"vertical": -120}}),
    )
    .unwrap();
    let f = frames(
        &vm.probe
            .wait_events(POINTER, mark, WAIT, |e| !frames(e).is_empty())
            .unwrap(),
    )
    .remove(0);
    assert_eq!(
        f,
        [
            ev(EV_KEY, BTN_MIDDLE, 1),
            ev(EV_REL, REL_WHEEL, -1),
            ev(EV_REL, REL_WHEEL_HI_RES, -120)
        ]
    );

    // SIGTERM: held buttons are released on the pointer, and the host is told at once.
    let mark = vm.probe.mark();
    vm.probe.run("kill $(pidof pvmouse-guestd)", WAIT).unwrap();
    let evs = vm
        .probe
        .wait_events(POINTER, mark, WAIT, |e| {
            e.iter().any(|e| e.event.kind == EV_KEY)
        })
        .unwrap();
    assert!(
        evs.iter().any(|e| e.event == ev(EV_KEY, BTN_MIDDLE, 0)),
        "{evs:?}"
    );
    let e = ctl
        .wait_event("PVMOUSE_BRIDGE_CHANGE", Duration::from_secs(2))
        .unwrap();
    assert_eq!(e["data"], json!({"present": false}));
}

#[test]
fn a_sighup_layout_change_keeps_the_same_pointer_and_a_killed_bridge_is_noticed() {
    let vm = boot();
    let mut ctl = vm.control().unwrap();
    let write = |text: &str| {
        let (rc, out) = vm
            .probe
            .run(&format!("printf '{text}' > /etc/pvmouse/layout.toml"), WAIT)
            .unwrap();
        assert_eq!(rc, 0, "{out:?}");
    };
    write(
        "[[display]]\\nid = 0\\nwidth = 1024\\nheight = 768\\n[[display]]\\nid = 1\\nwidth = 1280\\nheight = 1024\\nx = 1024\\n",
    );
    start_bridge(&vm, "");
    let node_before = vm
        .probe
        .run("ls /sys/class/input/ | grep input", WAIT)
        .unwrap()
        .1;
    let desk = Desk::two();
    let f = point(&vm, &mut ctl, 1, 0.0, 0.5);
    assert_eq!(abs_of(&f).0, Some(desk.expect(1, 0.0, 0.5).0));

    // Display 1 moves to the left of display 0.
    write(
        "[[display]]\\nid = 1\\nwidth = 1280\\nheight = 1024\\n[[display]]\\nid = 0\\nwidth = 1024\\nheight = 768\\nx = 1280\\n",
    );
    let mark = vm.probe.mark();
    vm.probe
        .run("kill -HUP $(pidof pvmouse-guestd)", WAIT)
        .unwrap();
    let swapped = Desk {
        displays: vec![(1280, 0, 1024, 768), (0, 0, 1280, 1024)],
        bounds: (0, 0, 2304, 1024),
    };
    // The pointer is re-placed at once, on the same device.
    let evs = vm
        .probe
        .wait_events(POINTER, mark, WAIT, |e| !frames(e).is_empty())
        .unwrap();
    assert_eq!(
        abs_of(&frames(&evs)[0]).0,
        Some(swapped.expect(1, 0.0, 0.5).0)
    );
    let f = point(&vm, &mut ctl, 0, 0.0, 0.0);
    assert_eq!(abs_of(&f).0, Some(swapped.expect(0, 0.0, 0.0).0));
    assert!(!pointer_gone_since(&vm, 0), "the pointer was re-created");
    assert_eq!(
        vm.probe
            .run("ls /sys/class/input/ | grep input", WAIT)
            .unwrap()
            .1,
        node_before
    );

    // A bad layout file on reload is reported and the current layout kept.
    write("[[display]]\\nid = 0\\nwidth = 0\\nheight = 768\\n");
    vm.probe
        .run("kill -HUP $(pidof pvmouse-guestd)", WAIT)
        .unwrap();
    bridge_log_until(&vm, "the bad layout reported", WAIT, |log| {
        log.contains("layout file /etc/pvmouse/layout.toml, line 2: display 0 has zero width")
    });
    let f = point(&vm, &mut ctl, 0, 0.5, 0.0);
    assert_eq!(abs_of(&f).0, Some(swapped.expect(0, 0.5, 0.0).0));

    // SIGKILL says nothing: the host notices the silence within 2 s.
    let _ = ctl.wait_event("PVMOUSE_BRIDGE_CHANGE", Duration::from_millis(1));
    ctl.events.clear();
    vm.probe
        .run("kill -9 $(pidof pvmouse-guestd)", WAIT)
        .unwrap();
    let killed = Instant::now();
    let e = ctl
        .wait_event("PVMOUSE_BRIDGE_CHANGE", Duration::from_secs(3))
        .unwrap();
    assert_eq!(e["data"], json!({"present": false}));
    println!("killed bridge noticed after {:?}", killed.elapsed());
    assert!(
        killed.elapsed() <= Duration::from_secs(2),
        "took {:?}",
        killed.elapsed()
    );
}

#[test]
fn a_bridge_killed_mid_drag_leaves_no_stuck_button_and_the_drag_resumes() {
    let vm = boot();
    let mut ctl = vm.control().unwrap();
    start_bridge(&vm, "--layout 0=1000x1000@0,0,1=1000x1000@1000,0");
    press_left(&vm, &mut ctl, 0.1);

    // Killed outright: the kernel removes its uinput device, releasing what it held.
    let mark = vm.probe.mark();
    vm.probe
        .run("kill -9 $(pidof pvmouse-guestd)", WAIT)
        .unwrap();
    vm.probe
        .wait_for(mark, WAIT, |l| l.starts_with(&format!("GONE {POINTER}")))
        .unwrap();
    let released = vm.probe.events(POINTER, mark);
    assert!(
        released.iter().any(|e| e.event == ev(EV_KEY, BTN_LEFT, 0)),
        "left stuck: {released:?}"
    );

    // Restarted: the new pointer takes over the device's state, so the drag goes on.
    let mark = vm.probe.mark();
    vm.probe
        .run(
            "pvmouse-guestd --map-in-bridge --layout 0=1000x1000@0,0,1=1000x1000@1000,0 \
             >> /tmp/guestd.log 2>&1 &",
            WAIT,
        )
        .unwrap();
    vm.probe
        .wait_for(mark, WAIT, |l| l.starts_with(&format!("OPEN {POINTER} ")))
        .unwrap();
    pointer_keys(&vm, "the drag resumed", &json!([272]));
    let mark = vm.probe.mark();
    ctl.execute("pvmouse-send", json!({"display": 1, "x": 0.5, "y": 0.5}))
        .unwrap();
    ctl.execute("pvmouse-send", json!({"buttons": {"left": false}}))
        .unwrap();
    let evs = vm
        .probe
        .wait_events(POINTER, mark, WAIT, |e| frames(e).len() >= 2)
        .unwrap();
    let f = frames(&evs);
    let desk = Desk {
        displays: vec![(0, 0, 1000, 1000), (1000, 0, 1000, 1000)],
        bounds: (0, 0, 2000, 1000),
    };
    assert_eq!(abs_of(&f[0]).0, Some(desk.expect(1, 0.5, 0.5).0));
    assert_eq!(f[1], [ev(EV_KEY, BTN_LEFT, 0)]);
}

/// Waits until `query-pvmouse` reports `guest-coordinates` = `want`; returns how long it took.
fn coordinates_become(ctl: &mut Qmp, want: &str, limit: Duration) -> Duration {
    wait_for_coordinates(ctl, want, limit).unwrap_or_else(|e| panic!("{e}"))
}

/// Sends a point and returns the raw device's next frame, the bridge's heartbeats left out.
fn raw_point(vm: &Vm, ctl: &mut Qmp, display: usize, x: f64, y: f64) -> Vec<InputEvent> {
    let mark = vm.probe.mark();
    ctl.execute("pvmouse-send", json!({"display": display, "x": x, "y": y}))
        .unwrap();
    let evs = vm
        .probe
        .wait_events(PVMOUSE_NAME, mark, WAIT, |e| !input_frames(e).is_empty())
        .unwrap();
    input_frames(&evs).remove(0)
}

#[test]
fn in_desktop_mode_the_device_maps_and_the_bridge_steps_aside_until_it_goes() {
    let vm = boot();
    let mut ctl = vm.control().unwrap();
    let desk = Desk::two();
    let run = |c: &str| {
        let (rc, out) = vm.probe.run(c, WAIT).unwrap();
        assert_eq!(rc, 0, "{c}: {out:?}");
    };
    let mark = vm.probe.mark();
    vm.probe.send(&format!("watch {POINTER}")).unwrap();
    vm.probe.send(&format!("watch {PVMOUSE_NAME}")).unwrap();
    run("pvmouse-guestd --layout 0=1024x768@0,0,1=1280x1024@1024,0 >> /tmp/guestd.log 2>&1 &");
    vm.probe
        .wait_for(mark, WAIT, |l| l.starts_with(&format!("OPEN {POINTER} ")))
        .unwrap();
    let took = coordinates_become(&mut ctl, "desktop", WAIT);
    println!("the device maps {took:?} after the bridge's pointer appeared");

    // The raw device now carries the desktop values the bridge's own pointer would have.
    let after_handover = vm.probe.mark();
    for (display, x, y) in [
        (0, 0.0, 0.0),
        (1, 1.0, 1.0),
        (1, 0.25, 0.75),
        (0, 0.999, 0.5),
    ] {
        let frame = raw_point(&vm, &mut ctl, display, x, y);
        let (u, v) = desk.expect(display, x, y);
        println!("display {display} ({x}, {y}): raw device {frame:?}, expected X={u} Y={v}");
        assert_eq!(abs_of(&frame), (Some(u), Some(v)), "{frame:?}");
    }
    let bridged = vm.probe.events(POINTER, after_handover);
    assert!(
        bridged.iter().all(|e| e.event.kind != EV_ABS),
        "the bridge still mapped: {bridged:?}"
    );

    // Killed outright: no goodbye, so the device notices the silence and goes back to
    // per-display positions, sending the position again in them.
    let mark = vm.probe.mark();
    run("kill -9 $(pidof pvmouse-guestd)");
    let took = coordinates_become(&mut ctl, "per-display", Duration::from_secs(5));
    println!("back to per-display positions {took:?} after the bridge was killed");
    let evs = vm
        .probe
        .wait_events(PVMOUSE_NAME, mark, WAIT, |e| {
            e.iter()
                .any(|e| e.event == ev(EV_ABS, ABS_X, round_to_i32(0.999 * 65535.0)))
        })
        .unwrap();
    println!("the device re-sent: {:?}", frames(&evs));
    let frame = raw_point(&vm, &mut ctl, 1, 0.5, 0.25);
    assert_eq!(abs_of(&frame), (Some(32768), Some(16384)), "{frame:?}");

    // A new bridge takes the mapping over again; one that exits says so, and at once.
    run("pvmouse-guestd --layout 0=1024x768@0,0,1=1280x1024@1024,0 >> /tmp/guestd.log 2>&1 &");
    coordinates_become(&mut ctl, "desktop", WAIT);
    let frame = raw_point(&vm, &mut ctl, 0, 0.5, 0.5);
    assert_eq!(abs_of(&frame), {
        let (u, v) = desk.expect(0, 0.5, 0.5);
        (Some(u), Some(v))
    });
    run("kill $(pidof pvmouse-guestd)");
    let took = coordinates_become(&mut ctl, "per-display", Duration::from_secs(5));
    println!("back to per-display positions {took:?} after the bridge exited");
    assert!(
        took < Duration::from_millis(1500),
        "no goodbye heard: {took:?}"
    );
}

#[test]
fn the_bridge_refuses_to_start_with_clear_errors() {
    let vm = WITH_A_TABLET.get();
    let run = |cmd: &str| vm.probe.run(cmd, WAIT).unwrap();
    let (rc, out) = run(
        "printf '[[display]]\\nid = 0\\nwidth = ten\\n' > /tmp/bad.toml; pvmouse-guestd --layout-file /tmp/bad.toml",
    );
    assert_ne!(rc, 0);
    assert!(
        out.iter()
            .any(|l| l.contains("layout file /tmp/bad.toml, line 3")),
        "{out:?}"
    );
    let (rc, out) = run("rmmod uinput; pvmouse-guestd --layout 0=10x10@0,0");
    // uinput back, for the next test on this shared guest.
    let (back, _) = run("insmod /lib/modules/uinput.ko");
    assert_ne!(rc, 0);
    assert!(
        out.iter()
            .any(|l| l.contains("load the uinput kernel module")),
        "{out:?}"
    );
    assert_eq!(back, 0, "uinput could not be loaded again");
}

#[test]
fn with_no_layout_given_the_layout_comes_from_drm_outputs() {
    // A virtio-gpu with two outputs. QEMU enables only the first without a UI, so the guest
    // kernel forces the second on, with its own mode.
    let vm = exclusive::boot(VmConfig {
        extra_qemu_args: vec!["-device".into(), "virtio-gpu-pci,max_outputs=2".into()],
        kernel_args: vec![
            "video=Virtual-1:1024x768".into(),
            "video=Virtual-2:1280x1024e".into(),
        ],
        ..VmConfig::default()
    });
    let (_, modes) = vm
        .probe
        .run("for c in /sys/class/drm/card0-Virtual-*; do echo $(cat $c/status) $(cat $c/enabled); done", WAIT)
        .unwrap();
    assert_eq!(modes, ["connected enabled", "connected enabled"]);
    let mut ctl = vm.control().unwrap();
    start_bridge(&vm, "");
    let log = bridge_log(&vm);
    assert!(log.contains("layout detected from DRM"), "{log}");
    // Display 0 is Virtual-1 at 1024x768, display 1 Virtual-2 at 1280x1024 to its right.
    let desk = Desk::two();
    for (display, x, y) in [(1, 0.5, 0.5), (0, 0.25, 0.5), (1, 1.0, 1.0)] {
        let f = point(&vm, &mut ctl, display, x, y);
        let (wx, wy) = desk.expect(display, x, y);
        assert_eq!(
            abs_of(&f),
            (Some(wx), Some(wy)),
            "display {display} ({x}, {y})"
        );
    }

    // Output 2 unplugged. Without a QEMU UI the host cannot unplug it, so the guest forces the
    // connector off and emits the DRM change uevent a hot-plug would (a sysfs status write
    // alone emits none). The bridge re-reads the layout: display 0 alone, on the same pointer.
    let (rc, out) = vm
        .probe
        .run(
            "echo off > /sys/class/drm/card0-Virtual-2/status && echo change > /sys/class/drm/card0/uevent",
            WAIT,
        )
        .unwrap();
    assert_eq!(rc, 0, "{out:?}");
    let log = bridge_log_until(&vm, "a reload after the hot-plug", WAIT, |log| {
        log.contains("layout in force")
    });
    assert!(
        log.contains("bounds: Rect { x: 0, y: 0, width: 1024, height: 768 }"),
        "{log}"
    );
    let single = Desk {
        displays: vec![(0, 0, 1024, 768)],
        bounds: (0, 0, 1024, 768),
    };
    let f = point(&vm, &mut ctl, 0, 0.5, 0.5);
    let (wx, wy) = single.expect(0, 0.5, 0.5);
    assert_eq!(abs_of(&f), (Some(wx), Some(wy)));
    assert!(!pointer_gone_since(&vm, 0), "the pointer was re-created");
}

#[test]
fn the_shipped_udev_rule_asks_systemd_for_the_bridge_on_pvmouse_only() {
    let vm = WITH_A_TABLET.get();
    let test = |name: &str| {
        let (_, out) = vm
            .probe
            .run(
                &format!(
                    "mkdir -p /run/udev; for e in /sys/class/input/event*; do grep -qx '{name}' $e/device/name && \
                     udevadm test --action=add $e; done 2>&1"
                ),
                WAIT,
            )
            .unwrap();
        out
    };
    let pv = test(PVMOUSE_NAME);
    assert!(
        pv.iter()
            .any(|l| l == "SYSTEMD_WANTS=pvmouse-guestd.service"),
        "{pv:#?}"
    );
    assert!(pv.iter().any(|l| l == "PVMOUSE=1"), "{pv:#?}");
    let tablet = test("QEMU Virtio Tablet");
    assert!(
        tablet.iter().any(|l| l == "ACTION=add"),
        "udevadm ran: {tablet:#?}"
    );
    assert!(
        !tablet.iter().any(|l| l.contains("pvmouse-guestd")),
        "{tablet:#?}"
    );
}

#[test]
fn the_bridge_follows_pvmouse_being_unplugged_and_plugged_back() {
    let vm = exclusive::boot(VmConfig {
        pvmouse_bus: Some("rp1".into()),
        ..VmConfig::default()
    });
    let mut ctl = vm.control().unwrap();
    let mut qemu = vm.qemu_qmp().unwrap();
    start_bridge(&vm, "--layout 0=1000x1000@0,0,1=1000x1000@1000,0");
    ctl.wait_event("PVMOUSE_BRIDGE_CHANGE", WAIT).unwrap();
    press_left(&vm, &mut ctl, 0.5);

    // Unplug: the bridge lets go of the button; its pointer stays.
    let mark = vm.probe.mark();
    qemu.execute("device_del", json!({"id": "pvmouse0"}))
        .unwrap();
    let evs = vm
        .probe
        .wait_events(POINTER, mark, Duration::from_secs(60), |e| {
            e.iter().any(|e| e.event == ev(EV_KEY, BTN_LEFT, 0))
        })
        .unwrap();
    assert!(!evs.is_empty());
    // QEMU finishes the removal after the guest lets go.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let e = qemu
            .wait_event("DEVICE_DELETED", Duration::from_secs(60))
            .unwrap();
        if e["data"]["device"] == "pvmouse0" {
            break;
        }
        assert!(Instant::now() < deadline, "pvmouse0 never deleted");
    }
    // A vhost-user device re-plugged needs a fresh chardev: QEMU keeps the old connection
    // across device_del and would open a second session on it.
    qemu.execute("chardev-remove", json!({"id": "pvm"}))
        .unwrap();
    let path = vm.vhost_socket().display().to_string();
    qemu.execute(
        "chardev-add",
        json!({"id": "pvm2", "backend": {"type": "socket", "data": {
            "addr": {"type": "unix", "data": {"path": path}}, "server": false}}}),
    )
    .unwrap();
    qemu.execute(
        "device_add",
        json!({"driver": "vhost-user-input-pci", "chardev": "pvm2", "id": "pvmouse0", "bus": "rp1"}),
    )
    .unwrap();

    // Plugged back: the bridge grabs the new device, takes over its state (the button the
    // host still holds), and the host sees the bridge again.
    bridge_log_until(
        &vm,
        "the device picked up again",
        Duration::from_secs(60),
        |log| log.matches("bridging pvmouse device").count() >= 2,
    );
    wait::status(&mut ctl, "the host to see the bridge again", WAIT, |s| {
        s["bridge-present"] == true
    })
    .unwrap_or_else(|e| panic!("{e}"));
    pointer_keys(&vm, "the held button taken over", &json!([272]));
    let mark = vm.probe.mark();
    ctl.execute(
        "pvmouse-send",
        json!({"display": 1, "x": 0.5, "y": 0.5, "buttons": {"left": false}}),
    )
    .unwrap();
    let f = frames(
        &vm.probe
            .wait_events(POINTER, mark, WAIT, |e| !frames(e).is_empty())
            .unwrap(),
    )
    .remove(0);
    let desk = Desk {
        displays: vec![(0, 0, 1000, 1000), (1000, 0, 1000, 1000)],
        bounds: (0, 0, 2000, 1000),
    };
    assert_eq!(abs_of(&f).0, Some(desk.expect(1, 0.5, 0.5).0));
    assert!(f.contains(&ev(EV_KEY, BTN_LEFT, 0)), "{f:?}");
    assert!(
        !pointer_gone_since(&vm, 0),
        "the bridge's pointer was re-created"
    );
}
