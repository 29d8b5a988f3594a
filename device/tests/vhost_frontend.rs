//! Drives a running vhost-user-pvmouse the way QEMU does: the vhost crate's frontend over memfd
//! guest memory on one side, a QMP client on the control socket on the other. Asserts the exact
//! events in the used ring, the QMP events, and the full-state frame after a reconnect.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

#[path = "support/frontend.rs"]
mod frontend;

use std::path::Path;
use std::sync::Arc;

use frontend::*;
use pvmouse_spec::evdev::*;
use pvmouse_spec::profile::DISPLAY_AXIS;
use pvmouse_spec::status::StatusMessage;
use serde_json::json;
use vhost::VhostBackend;
use vhost::vhost_user::VhostUserFrontend;
use vhost_user_pvmouse::{
    ControlHandle, ControlServer, Identity, NoticeBoard, PvMouse, PvMouseBackend, SocketAccess,
    VhostSocket, serve, vhost_listener,
};

#[test]
fn drives_the_daemon_like_qemu_and_survives_a_frontend_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let (vhost_path, control_path, control) = serve_in_process(dir.path());

    let mut qmp = Qmp::connect(&control_path);
    let (file, mem) = guest_memory();

    // --- First connection: identity, activation, commands.
    let mut guest = Guest::connect(&vhost_path, &mem, &file);
    assert_eq!(
        qmp.wait_event("PVMOUSE_FRONTEND_CHANGE")["data"],
        json!({"connected": true})
    );
    assert_eq!(guest.config(1, 0), b"pvmouse-test");
    assert_eq!(guest.config(2, 0), b"serial-42");
    assert_eq!(guest.config(3, 0), [0x06, 0, 0x76, 0x70, 0x6f, 0x6d, 1, 0]);
    assert_eq!(guest.config(0x11, 3), [0b11, 0, 0, 0, 0, 1]);
    let misc: Vec<u8> = [0i32, 1, 0, 0, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!(guest.config(0x12, 0x28), misc);
    assert!(guest.config(0x11, 0x14).is_empty(), "no autorepeat");

    // Activation: a full-state frame (display, five buttons, SYN), streamed across refills.
    let full = guest.stream_events(7);
    assert_eq!(full[0], ev(EV_ABS, DISPLAY_AXIS, 0));
    for (i, code) in (BTN_LEFT..=BTN_EXTRA).enumerate() {
        assert_eq!(full[1 + i], ev(EV_KEY, code, 0));
    }
    assert_eq!(full[6], syn());
    assert_eq!(
        qmp.wait_event("PVMOUSE_DRIVER_CHANGE")["data"],
        json!({"active": true})
    );

    let ok = json!({"return": {}});
    let r = qmp.execute(
        "input-send-event",
        json!({"head": 1, "events": [
            {"type": "abs", "data": {"axis": "x", "value": 0x7fff}},
            {"type": "abs", "data": {"axis": "y", "value": 0}},
            {"type": "btn", "data": {"down": true, "button": "left"}}]}),
    );
    assert_eq!(r, ok);
    assert_eq!(
        guest.stream_events(5),
        [
            ev(EV_ABS, DISPLAY_AXIS, 1),
            ev(EV_ABS, ABS_X, 65535),
            ev(EV_ABS, ABS_Y, 0),
            ev(EV_KEY, BTN_LEFT, 1),
            syn()
        ],
        "Y=0 is sent: the position was not known before"
    );
    let r = qmp.execute(
        "pvmouse-send",
        json!({"x": 0.5, "y": 1.0, "wheel": {"vertical": 240}}),
    );
    assert_eq!(r, ok);
    let frame = guest.stream_events(5);
    assert_eq!(
        frame,
        [
            ev(EV_ABS, ABS_X, 32768),
            ev(EV_ABS, ABS_Y, 65535),
            ev(EV_REL, REL_WHEEL, 2),
            ev(EV_REL, REL_WHEEL_HI_RES, 240),
            syn()
        ]
    );

    // Bad input reaches no guest.
    let r = qmp.execute("pvmouse-send", json!({"display": 2, "x": 0.1}));
    assert_eq!(r["error"]["class"], "GenericError", "{r}");
    let r = qmp.execute(
        "input-send-event",
        json!({"events": [{"type": "rel", "data": {"axis": "x", "value": 1}}]}),
    );
    assert!(
        r["error"]["desc"]
            .as_str()
            .unwrap()
            .contains("serves no relative device"),
        "relative motion without the relative device: {r}"
    );

    // The guest bridge's heartbeat on the status queue.
    guest.send_status(ev(
        EV_MSC,
        MSC_RAW,
        StatusMessage::BridgePresent { version: 1 }.encode(),
    ));
    assert_eq!(
        qmp.wait_event("PVMOUSE_BRIDGE_CHANGE")["data"],
        json!({"present": true, "version": 1})
    );
    let status = qmp.execute("query-pvmouse", json!({}))["return"].clone();
    assert_eq!(status["bridge-present"], true);
    assert_eq!(status["driver-active"], true);
    assert_eq!(status["pointer"]["buttons"]["left"], true);
    assert_eq!(status["pointer"]["display"], 1);

    // --- Disconnect: state is kept; input meanwhile changes state only.
    drop(guest);
    assert_eq!(
        qmp.wait_event("PVMOUSE_FRONTEND_CHANGE")["data"],
        json!({"connected": false})
    );
    assert_eq!(
        qmp.wait_event("PVMOUSE_BRIDGE_CHANGE")["data"],
        json!({"present": false})
    );
    let r = qmp.execute("pvmouse-send", json!({"buttons": {"right": true}}));
    assert_eq!(r, ok);

    // --- Reconnect: the first thing the new driver gets is the full current state.
    let mut guest = Guest::connect(&vhost_path, &mem, &file);
    let full = guest.stream_events(9);
    assert_eq!(
        full,
        [
            ev(EV_ABS, DISPLAY_AXIS, 1),
            ev(EV_ABS, ABS_X, 32768),
            ev(EV_ABS, ABS_Y, 65535),
            ev(EV_KEY, BTN_LEFT, 1),
            ev(EV_KEY, BTN_RIGHT, 1),
            ev(EV_KEY, BTN_MIDDLE, 0),
            ev(EV_KEY, BTN_SIDE, 0),
            ev(EV_KEY, BTN_EXTRA, 0),
            syn()
        ]
    );
    let r = qmp.execute(
        "pvmouse-send",
        json!({"buttons": {"left": false, "right": false}}),
    );
    assert_eq!(r, ok);
    assert_eq!(
        guest.stream_events(3),
        [ev(EV_KEY, BTN_LEFT, 0), ev(EV_KEY, BTN_RIGHT, 0), syn()]
    );
    let counters = qmp.execute("query-pvmouse", json!({}))["return"]["counters"].clone();
    assert_eq!(counters["activations"], 2);
    drop(guest);
    control.stop().unwrap();
}

/// A backend served in-process on a fresh socket pair in `dir`: the vhost-user path, the
/// control path and the control thread's handle.
fn serve_in_process(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf, ControlHandle) {
    let vhost_path = dir.join("vhost.sock");
    let control_path = dir.join("control.sock");
    let identity = Identity::new("pvmouse-test", "serial-42", 2).unwrap();
    let notices = Arc::new(NoticeBoard::new().unwrap());
    let device = Arc::new(PvMouse::new(identity, notices.clone()).unwrap());
    let control = ControlServer::bind(&control_path, device.clone(), notices)
        .unwrap()
        .spawn()
        .unwrap();
    let backend = Arc::new(PvMouseBackend::new(device).unwrap());
    let (mut listener, socket_file) = vhost_listener(
        &VhostSocket::Path(vhost_path.clone()),
        SocketAccess::default(),
    )
    .unwrap();
    std::thread::spawn(move || {
        let _socket_file = socket_file;
        serve(&mut listener, backend)
    });
    (vhost_path, control_path, control)
}

/// A move with a click on display 1 arrives as its exact five events.
fn a_click_arrives(qmp: &mut Qmp, guest: &mut Guest<'_>, at: &str) {
    qmp.execute(
        "pvmouse-send",
        json!({"display": 1, "x": 0.25, "y": 0.75, "buttons": {"left": true}}),
    );
    let events = guest.stream_events(5);
    assert_eq!(
        events,
        [
            ev(EV_ABS, DISPLAY_AXIS, 1),
            ev(EV_ABS, ABS_X, 16384),
            ev(EV_ABS, ABS_Y, 49151),
            ev(EV_KEY, BTN_LEFT, 1),
            syn()
        ],
        "{at}"
    );
}

#[test]
fn other_frontends_negotiate_and_deliver_at_every_queue_size() {
    let sized = |kind: FrontendKind, queue_size| FrontendKind { queue_size, ..kind };
    let mut kinds = vec![QEMU, STRATOVIRT, CROSVM, LIBKRUN, sized(LIBKRUN, 256)];
    // Every power of two from QEMU's 4 to the device's most, under each frontend's sequence.
    for size in [8, 16, 32, 64, 128, 256, 512, 1024] {
        kinds.extend([sized(QEMU, size), sized(CROSVM, size), sized(LIBKRUN, size)]);
    }
    for kind in kinds {
        let dir = tempfile::tempdir().unwrap();
        let (vhost_path, control_path, _control) = serve_in_process(dir.path());
        let mut qmp = Qmp::connect(&control_path);
        let (file, mem) = guest_memory();
        let mut guest = Guest::connect_as(kind, &vhost_path, &mem, &file);
        let at = format!("{}, {} entries", kind.name, kind.queue_size);
        if kind.probes_first {
            assert_eq!(
                guest.probed_name.as_deref(),
                Some(&b"pvmouse-test"[..]),
                "{at}"
            );
        }
        assert_eq!(guest.config(1, 0), b"pvmouse-test", "{at}");
        assert_eq!(guest.config(0x11, 3), [0b11, 0, 0, 0, 0, 1], "{at}");
        // Activation's full-state frame, then a move with a click on display 1.
        let full = guest.stream_events(7);
        assert_eq!(full.last(), Some(&syn()), "{at}: {full:?}");
        a_click_arrives(&mut qmp, &mut guest, &at);
        // The status queue takes a bridge heartbeat at this size too.
        guest.send_status(ev(
            EV_MSC,
            MSC_RAW,
            StatusMessage::BridgePresent { version: 1 }.encode(),
        ));
        let bridge = qmp.wait_event("PVMOUSE_BRIDGE_CHANGE");
        assert_eq!(bridge["data"]["present"], true, "{at}");
        println!("{at}: negotiated, configured, activated, delivered");
    }
}

#[test]
fn crosvm_resets_and_sleeps_the_device_and_it_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let (vhost_path, control_path, _control) = serve_in_process(dir.path());
    let mut qmp = Qmp::connect(&control_path);
    let (file, mem) = guest_memory();
    let mut guest = Guest::connect_as(CROSVM, &vhost_path, &mem, &file);
    guest.stream_events(7);
    a_click_arrives(&mut qmp, &mut guest, "before");
    // crosvm's reset or `virtio_sleep`: each ring disabled, then stopped; its wake sends the
    // memory table and the rings again, from where they stood.
    let bases = guest.reset_rings();
    assert_eq!(bases[0], u32::from(guest.eventq.used_idx()));
    qmp.execute(
        "pvmouse-send",
        json!({"display": 0, "x": 0.5, "y": 0.5, "buttons": {"left": false}}),
    );
    guest.set_memory_again();
    for (q, base) in [(EVENTQ_INDEX, bases[0]), (STATUSQ_INDEX, bases[1])] {
        guest.start_ring(q, base);
    }
    // The move made while it slept arrives at wake.
    let events = guest.stream_events(5);
    assert_eq!(events[0], ev(EV_ABS, DISPLAY_AXIS, 0), "{events:?}");
    assert_eq!(events[3], ev(EV_KEY, BTN_LEFT, 0), "{events:?}");
}

#[test]
fn libkrun_claiming_the_device_again_after_a_reset_costs_the_connection_not_the_backend() {
    let dir = tempfile::tempdir().unwrap();
    let (vhost_path, control_path, _control) = serve_in_process(dir.path());
    let mut qmp = Qmp::connect(&control_path);
    let (file, mem) = guest_memory();
    let mut guest = Guest::connect_as(LIBKRUN, &vhost_path, &mem, &file);
    guest.stream_events(7);
    a_click_arrives(&mut qmp, &mut guest, "before");
    // libkrun's reset disables the rings; its next activation sends SET_OWNER again, which the
    // vhost-user-backend library refuses ("already claimed") and ends the connection with.
    for q in [EVENTQ_INDEX, STATUSQ_INDEX] {
        guest
            .frontend
            .set_vring_enable(usize::from(q), false)
            .unwrap();
    }
    let again = guest.frontend.set_owner();
    let answer = guest.frontend.get_features();
    println!("libkrun's second SET_OWNER: {again:?}; the next request: {answer:?}");
    assert!(answer.is_err(), "the library ends the connection");
    drop(guest);
    // The backend listens again, and a new connection is served.
    let mut guest = Guest::connect_as(LIBKRUN, &vhost_path, &mem, &file);
    let full = guest.stream_events(9);
    assert!(
        full.contains(&ev(EV_KEY, BTN_LEFT, 1)),
        "the state carried over: {full:?}"
    );
    qmp.execute("pvmouse-send", json!({"x": 0.75}));
    assert_eq!(guest.stream_events(2), [ev(EV_ABS, ABS_X, 49151), syn()]);
}
