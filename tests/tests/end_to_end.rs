//! pvmouse on the real thing: stock QEMU 10, Debian's 6.1 kernel and its unmodified virtio_input
//! driver, real evdev and real udev in a booted guest. Missing QEMU or kernel is a failure.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::time::{Duration, Instant};

use pvmouse_spec::InputEvent;
use pvmouse_spec::evdev::*;
use pvmouse_spec::profile::{DISPLAY_AXIS, PRODUCT, VENDOR};
use pvmouse_vmtest::exclusive::boot;
use pvmouse_vmtest::{PVMOUSE_NAME, Vm, VmConfig, ev, frames, round_to_i32};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// Starts streaming pvmouse's events from the guest and waits until the device is open.
fn watch(vm: &Vm, name: &str) {
    vm.probe.watch(name, WAIT).unwrap();
}

/// Waits for `n` complete frames from `name` after `mark`.
fn take_frames(vm: &Vm, name: &str, mark: usize, n: usize) -> Vec<Vec<InputEvent>> {
    let evs = vm
        .probe
        .wait_events(name, mark, WAIT, |evs| frames(evs).len() >= n)
        .unwrap_or_else(|e| panic!("{e}\nconsole:\n{}", vm.console_tail(10)));
    frames(&evs)
}

fn caps(vm: &Vm, name: &str) -> Value {
    vm.probe.query("caps", name, WAIT).unwrap()
}

fn state(vm: &Vm, name: &str) -> Value {
    vm.probe.query("state", name, WAIT).unwrap()
}

/// Sends one control command and returns the frames the guest saw for it.
fn send(
    vm: &Vm,
    ctl: &mut pvmouse_vmtest::Qmp,
    cmd: &str,
    args: Value,
    frames_expected: usize,
) -> Vec<Vec<InputEvent>> {
    let mark = vm.probe.mark();
    ctl.execute(cmd, args.clone())
        .unwrap_or_else(|e| panic!("{cmd} {args}: {e}"));
    let got = take_frames(vm, PVMOUSE_NAME, mark, frames_expected);
    assert_eq!(got.len(), frames_expected, "{cmd} {args}: {got:?}");
    got
}

fn abs_event(axis: &str, value: i64) -> Value {
    json!({"type": "abs", "data": {"axis": axis, "value": value}})
}

fn btn(button: &str, down: bool) -> Value {
    json!({"type": "btn", "data": {"down": down, "button": button}})
}

#[test]
fn identity_motion_buttons_and_wheels_arrive_as_the_spec_says() {
    let vm = boot(VmConfig::default());

    // Identity, from the guest's own ioctls.
    let c = caps(&vm, PVMOUSE_NAME);
    assert_eq!(c["name"], "pvmouse");
    assert_eq!(c["uniq"], "pvmouse-0");
    assert_eq!(
        c["id"],
        json!({"bustype": BUS_VIRTUAL, "vendor": VENDOR, "product": PRODUCT, "version": 1})
    );
    assert_eq!(c["props"], json!([]));
    assert_eq!(
        c["bits"],
        json!({"ev": [0, 1, 2, 3, 4], "key": [272, 273, 274, 275, 276], "rel": [6, 8, 11, 12],
               "abs": [0, 1, 40], "msc": [3]})
    );
    for axis in ["0", "1"] {
        assert_eq!(
            c["absinfo"][axis],
            json!({"value": 0, "min": 0, "max": 65535, "fuzz": 0, "flat": 0, "res": 0})
        );
    }
    assert_eq!(
        c["absinfo"]["40"],
        json!({"value": 0, "min": 0, "max": 1, "fuzz": 0, "flat": 0, "res": 0})
    );

    // Real udev classifies it as a mouse, as it does usb-tablet.
    let (rc, out) = vm
        .probe
        .run(
            "for e in /sys/class/input/event*; do grep -qx pvmouse $e/device/name && \
             udevadm test-builtin input_id $e; done",
            WAIT,
        )
        .unwrap();
    assert_eq!(rc, 0, "{out:?}");
    assert!(out.contains(&"ID_INPUT_MOUSE=1".to_owned()), "{out:?}");
    for not in [
        "ID_INPUT_TABLET=1",
        "ID_INPUT_JOYSTICK=1",
        "ID_INPUT_TOUCHSCREEN=1",
        "ID_INPUT_ACCELEROMETER=1",
    ] {
        assert!(!out.contains(&not.to_owned()), "{not}: {out:?}");
    }

    watch(&vm, PVMOUSE_NAME);
    let mut ctl = vm.control().unwrap();

    // Motion with QEMU's command on display 0, then the same point on display 1.
    let f = send(
        &vm,
        &mut ctl,
        "input-send-event",
        json!({"events": [abs_event("x", 16384), abs_event("y", 8192)]}),
        1,
    );
    assert_eq!(f[0], [ev(EV_ABS, ABS_X, 32769), ev(EV_ABS, ABS_Y, 16384)]);
    let f = send(
        &vm,
        &mut ctl,
        "input-send-event",
        json!({"head": 1, "events": [abs_event("x", 16384), abs_event("y", 8192)]}),
        1,
    );
    assert_eq!(
        f[0],
        [ev(EV_ABS, DISPLAY_AXIS, 1)],
        "same point, other display: only the display changes"
    );

    // Full precision on display 1, then back to display 0.
    let f = send(
        &vm,
        &mut ctl,
        "pvmouse-send",
        json!({"display": 1, "x": 0.25, "y": 0.75}),
        1,
    );
    assert_eq!(f[0], [ev(EV_ABS, ABS_X, 16384), ev(EV_ABS, ABS_Y, 49151)]);
    let f = send(
        &vm,
        &mut ctl,
        "pvmouse-send",
        json!({"display": 0, "x": 1.0, "y": 0.0}),
        1,
    );
    assert_eq!(
        f[0],
        [
            ev(EV_ABS, DISPLAY_AXIS, 0),
            ev(EV_ABS, ABS_X, 65535),
            ev(EV_ABS, ABS_Y, 0)
        ]
    );

    // All five buttons, pressed and released through QEMU's command.
    for (name, code) in [
        ("left", BTN_LEFT),
        ("right", BTN_RIGHT),
        ("middle", BTN_MIDDLE),
        ("side", BTN_SIDE),
        ("extra", BTN_EXTRA),
    ] {
        let f = send(
            &vm,
            &mut ctl,
            "input-send-event",
            json!({"events": [btn(name, true), btn(name, false)]}),
            2,
        );
        assert_eq!(
            f,
            [vec![ev(EV_KEY, code, 1)], vec![ev(EV_KEY, code, 0)]],
            "{name}"
        );
    }

    // Wheels: QEMU's wheel buttons are one detent each, in both resolutions.
    for (name, code, hi, value) in [
        ("wheel-up", REL_WHEEL, REL_WHEEL_HI_RES, 1),
        ("wheel-down", REL_WHEEL, REL_WHEEL_HI_RES, -1),
        ("wheel-right", REL_HWHEEL, REL_HWHEEL_HI_RES, 1),
        ("wheel-left", REL_HWHEEL, REL_HWHEEL_HI_RES, -1),
    ] {
        let f = send(
            &vm,
            &mut ctl,
            "input-send-event",
            json!({"events": [btn(name, true), btn(name, false)]}),
            1,
        );
        let mut want = vec![ev(EV_REL, code, value), ev(EV_REL, hi, 120 * value)];
        want.sort_by_key(|e| e.code);
        assert_eq!(f[0], want, "{name}");
    }
    // Half detents: hi-res only, then the detent completes.
    let f = send(
        &vm,
        &mut ctl,
        "pvmouse-send",
        json!({"wheel": {"vertical": 60}}),
        1,
    );
    assert_eq!(f[0], [ev(EV_REL, REL_WHEEL_HI_RES, 60)]);
    let f = send(
        &vm,
        &mut ctl,
        "pvmouse-send",
        json!({"wheel": {"vertical": 60}}),
        1,
    );
    assert_eq!(
        f[0],
        [ev(EV_REL, REL_WHEEL, 1), ev(EV_REL, REL_WHEEL_HI_RES, 60)]
    );

    // The largest frame, 13 events against QEMU 10's 4 buffers, arrives whole and in order.
    let f = send(
        &vm,
        &mut ctl,
        "pvmouse-send",
        json!({
        "display": 1, "x": 0.5, "y": 0.5,
        "buttons": {"left": true, "right": true, "middle": true, "side": true, "extra": true},
        "wheel": {"vertical": 120, "horizontal": -120}}),
        1,
    );
    assert_eq!(
        f[0],
        [
            ev(EV_ABS, DISPLAY_AXIS, 1),
            ev(EV_ABS, ABS_X, 32768),
            ev(EV_ABS, ABS_Y, 32768),
            ev(EV_KEY, BTN_LEFT, 1),
            ev(EV_KEY, BTN_RIGHT, 1),
            ev(EV_KEY, BTN_MIDDLE, 1),
            ev(EV_KEY, BTN_SIDE, 1),
            ev(EV_KEY, BTN_EXTRA, 1),
            ev(EV_REL, REL_HWHEEL, -1),
            ev(EV_REL, REL_WHEEL, 1),
            ev(EV_REL, REL_WHEEL_HI_RES, 120),
            ev(EV_REL, REL_HWHEEL_HI_RES, -120),
        ]
    );
    let st = state(&vm, PVMOUSE_NAME);
    assert_eq!(st["keys"], json!([272, 273, 274, 275, 276]));
    assert_eq!(st["abs"], json!({"0": 32768, "1": 32768, "40": 1}));
}

#[test]
fn a_reprobed_driver_gets_the_full_state_and_a_paused_guest_loses_no_transition() {
    let vm = boot(VmConfig::default());
    watch(&vm, PVMOUSE_NAME);
    let mut ctl = vm.control().unwrap();
    ctl.execute(
        "pvmouse-send",
        json!({"display": 1, "x": 0.5, "y": 0.25, "buttons": {"left": true}}),
    )
    .unwrap();
    let st = state(&vm, PVMOUSE_NAME);
    assert_eq!(st["keys"], json!([272]));

    // Unbind and rebind the virtio driver: a new input device, which must start with the state.
    let before_rebind = vm.probe.mark();
    let (rc, out) = vm
        .probe
        .run(
            "d=$(for e in /sys/class/input/event*; do grep -qx pvmouse $e/device/name && \
           basename $(readlink -f $e/device/device); done); \
         echo $d > /sys/bus/virtio/drivers/virtio_input/unbind && \
         echo $d > /sys/bus/virtio/drivers/virtio_input/bind && echo rebound $d",
            WAIT,
        )
        .unwrap();
    assert_eq!(rc, 0, "{out:?}");
    // Events that reach the input core before a reader opens the new node are not replayed
    // to it, so nothing is sent until the probe has reopened the re-created device.
    let (gone, _) = vm
        .probe
        .wait_for(before_rebind, WAIT, |l| l.starts_with("GONE pvmouse"))
        .unwrap();
    vm.probe
        .wait_for(gone, WAIT, |l| l.starts_with("OPEN pvmouse"))
        .unwrap();
    let st = vm
        .probe
        .query_until(
            "state",
            PVMOUSE_NAME,
            "the held button restored after re-probe",
            WAIT,
            |st| st["keys"] == json!([272]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(st["abs"], json!({"0": 32768, "1": 16384, "40": 1}));
    // The event stream from the new device is live before the pause.
    let f = send(&vm, &mut ctl, "pvmouse-send", json!({"x": 0.125}), 1);
    assert_eq!(f[0], [ev(EV_ABS, ABS_X, 8192)]);
    let status = ctl.execute("query-pvmouse", json!({})).unwrap();
    assert!(
        status["counters"]["activations"].as_u64().unwrap() >= 2,
        "{status}"
    );
    assert_eq!(
        status["counters"]["resumes"], 0,
        "a re-probe is not a resume: {status}"
    );

    // The guest stops (vCPUs paused, queue stopped) for 2 s under a 1000 Hz stream of motion
    // and clicks. Afterwards every transition and the newest position must arrive.
    let rss_before = vm.backend_rss_kib().unwrap();
    let mut qemu = vm.qemu_qmp().unwrap();
    let mark = vm.probe.mark();
    qemu.execute("stop", json!({})).unwrap();
    let started = Instant::now();
    let mut transitions = Vec::new();
    let mut down = true; // left is held from before
    let mut i = 0u32;
    let mut last_x = 0.0;
    while started.elapsed() < Duration::from_secs(2) {
        i += 1;
        last_x = f64::from(i % 1000) / 1000.0;
        ctl.execute("pvmouse-send", json!({"x": last_x})).unwrap();
        if i % 10 == 0 {
            down = !down;
            ctl.execute("pvmouse-send", json!({"buttons": {"left": down}}))
                .unwrap();
            transitions.push(i32::from(down));
        }
        // Pacing, not waiting: one command a millisecond.
        let next = started + Duration::from_millis(u64::from(i));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let status = ctl.execute("query-pvmouse", json!({})).unwrap();
    assert_eq!(status["driver-paused"], true, "{status}");
    qemu.execute("cont", json!({})).unwrap();
    let want_x = round_to_i32(last_x * 65535.0);
    let evs = vm
        .probe
        .wait_events(PVMOUSE_NAME, mark, Duration::from_secs(60), |evs| {
            evs.iter().filter(|e| e.event.kind == EV_KEY).count() >= transitions.len()
                && evs
                    .iter()
                    .rev()
                    .find(|e| e.event.code == ABS_X && e.event.kind == EV_ABS)
                    .is_some_and(|e| e.event.value == want_x)
        })
        .unwrap_or_else(|e| {
            let status = ctl.execute("query-pvmouse", json!({})).unwrap();
            let lines = vm.probe.lines(mark.saturating_sub(5));
            panic!(
                "after cont: {e}\nstatus: {status}\nprobe lines: {lines:?}\nconsole:\n{}",
                vm.console_tail(15)
            )
        });
    assert!(
        !evs.iter()
            .any(|e| e.event.kind == EV_SYN && e.event.code == 3),
        "the guest's own evdev buffer overflowed (SYN_DROPPED): the reader, not the device, lost events"
    );
    let got: Vec<i32> = evs
        .iter()
        .filter(|e| e.event.kind == EV_KEY)
        .map(|e| e.event.value)
        .collect();
    assert_eq!(got, transitions, "every BTN_LEFT transition, in order");
    let status = ctl.execute("query-pvmouse", json!({})).unwrap();
    assert_eq!(status["counters"]["resumes"], 1, "{status}");
    assert!(
        status["coalesced-frames"].as_u64().unwrap() > 0,
        "motion was coalesced: {status}"
    );
    let rss_after = vm.backend_rss_kib().unwrap();
    println!(
        "sent {i} moves and {} clicks while stopped; backend RSS {rss_before} -> {rss_after} KiB",
        transitions.len()
    );
    assert!(
        rss_after < rss_before + 8 * 1024,
        "backend memory grew from {rss_before} to {rss_after} KiB"
    );
}

#[test]
fn pvmouse_and_qemus_virtio_tablet_coexist() {
    let vm = boot(VmConfig {
        extra_qemu_args: vec!["-device".into(), "virtio-tablet-pci,id=tablet0".into()],
        ..VmConfig::default()
    });
    let tablet = "QEMU Virtio Tablet";
    watch(&vm, PVMOUSE_NAME);
    watch(&vm, tablet);
    let mut ctl = vm.control().unwrap();
    let mut qemu = vm.qemu_qmp().unwrap();

    let mark = vm.probe.mark();
    qemu.execute(
        "input-send-event",
        json!({"events": [abs_event("x", 100), abs_event("y", 200)]}),
    )
    .unwrap();
    let t = vm
        .probe
        .wait_events(tablet, mark, WAIT, |e| !frames(e).is_empty())
        .unwrap();
    assert_eq!(
        frames(&t)[0],
        [ev(EV_ABS, ABS_X, 100), ev(EV_ABS, ABS_Y, 200)]
    );

    let mark2 = vm.probe.mark();
    ctl.execute("pvmouse-send", json!({"display": 1, "x": 0.5, "y": 0.5}))
        .unwrap();
    let p = take_frames(&vm, PVMOUSE_NAME, mark2, 1);
    assert_eq!(
        p[0],
        [
            ev(EV_ABS, DISPLAY_AXIS, 1),
            ev(EV_ABS, ABS_X, 32768),
            ev(EV_ABS, ABS_Y, 32768)
        ]
    );
    // Give stray events time to show, then check neither device saw the other's input: an
    // event that does not come has no signal to wait for.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        vm.probe.events(PVMOUSE_NAME, mark),
        vm.probe.events(PVMOUSE_NAME, mark2),
        "QEMU's input reached pvmouse"
    );
    assert_eq!(
        vm.probe.events(tablet, mark2),
        [],
        "pvmouse input reached the tablet"
    );
}
