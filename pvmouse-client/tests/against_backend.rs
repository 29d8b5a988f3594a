//! The client against the real control server (a real device with no guest): typed commands,
//! refusals, events, stream records, and a backend replaced under a reconnecting stream.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::time::{Duration, Instant};

use pvmouse_client::command::{
    Axis, Buttons, GuestCoordinates, InputEvent, InputSendEvent, PvmouseSend, QemuButton,
};
use pvmouse_client::{Connection, Error, Reconnecting, Sent};
use pvmouse_spec::profile::Button;
use pvmouse_spec::stream::{Record, pixel_centre};
use vhost_user_pvmouse::testing::ControlBackend;

fn backend() -> (tempfile::TempDir, std::path::PathBuf, ControlBackend) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let backend = ControlBackend::start(&path).unwrap();
    (dir, path, backend)
}

#[test]
fn typed_commands_reach_the_device_and_the_status_reads_back() {
    let (_dir, path, backend) = backend();
    let mut c = Connection::connect(&path).unwrap();
    assert!(c.greeting()["QMP"]["version"]["package"].is_string());
    c.send(&PvmouseSend {
        display: Some(1),
        x: Some(0.5),
        y: Some(0.25),
        buttons: Some(Buttons {
            left: Some(true),
            ..Buttons::default()
        }),
        ..PvmouseSend::default()
    })
    .unwrap();
    assert_eq!(backend.pointer(), (1, Some(32768), Button::Left.bit()));

    let status = c.status().unwrap();
    assert_eq!(status.displays, 2);
    assert_eq!(status.axis_max, 65535);
    assert_eq!(status.pointer.display, 1);
    assert_eq!(
        (status.pointer.x, status.pointer.y),
        (Some(32768), Some(16384))
    );
    assert_eq!(status.pointer.buttons.get("left"), Some(&true));
    assert_eq!(status.pointer.buttons.get("right"), Some(&false));
    assert!(!status.driver_active);
    assert_eq!(status.guest_coordinates, GuestCoordinates::PerDisplay);

    c.send(&InputSendEvent {
        head: Some(0),
        events: vec![
            InputEvent::Abs {
                axis: Axis::X,
                value: 0x7fff,
            },
            InputEvent::Btn {
                down: false,
                button: QemuButton::Left,
            },
        ],
        ..InputSendEvent::default()
    })
    .unwrap();
    assert_eq!(backend.pointer(), (0, Some(65535), 0));
    assert!(c.version().unwrap().package.contains("pvmouse"));
}

#[test]
fn a_refusal_names_its_command_and_class_and_leaves_the_connection_usable() {
    let (_dir, path, backend) = backend();
    let mut c = Connection::connect(&path).unwrap();
    let e = c
        .send(&PvmouseSend {
            display: Some(7),
            x: Some(0.5),
            ..PvmouseSend::default()
        })
        .unwrap_err();
    match &e {
        Error::Refused {
            command,
            class,
            desc,
        } => {
            assert_eq!(command, "pvmouse-send");
            assert_eq!(class, "GenericError");
            assert!(desc.contains("display"), "{desc}");
        }
        other => panic!("not a refusal: {other:?}"),
    }
    assert!(!e.is_connection_lost());
    assert_eq!(
        backend.pointer().1,
        None,
        "nothing of a refused command applies"
    );
    let e = c
        .execute("no-such-command", serde_json::json!({}))
        .unwrap_err();
    assert!(
        matches!(e, Error::Refused { ref class, .. } if class == "CommandNotFound"),
        "{e}"
    );
    assert_eq!(c.status().unwrap().displays, 2);
}

#[test]
fn events_arrive_between_replies_and_are_awaited_by_name() {
    let (_dir, path, backend) = backend();
    let mut c = Connection::connect(&path).unwrap();
    backend
        .notices()
        .post(vhost_user_pvmouse::Notice::Driver { active: true });
    let e = c
        .wait_event("PVMOUSE_DRIVER_CHANGE", Duration::from_secs(5))
        .unwrap();
    assert_eq!(e["data"]["active"], true);
    let e = c
        .wait_event("PVMOUSE_BRIDGE_CHANGE", Duration::from_millis(200))
        .unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e}");
}

#[test]
fn records_are_applied_and_an_answered_refusal_comes_back_as_an_error() {
    let (_dir, path, backend) = backend();
    let mut s = Connection::connect(&path).unwrap().into_stream().unwrap();
    s.send(&Record {
        display: Some(1),
        x: Some(pixel_centre(640, 1280)),
        ..Record::default()
    })
    .unwrap();
    s.send(&Record {
        buttons_set: Button::Right.bit(),
        buttons_down: Button::Right.bit(),
        answer: true,
        ..Record::default()
    })
    .unwrap();
    assert_eq!(
        backend.pointer(),
        (1, Some(pixel_centre(640, 1280)), Button::Right.bit())
    );
    let e = s
        .send(&Record {
            display: Some(9),
            answer: true,
            ..Record::default()
        })
        .unwrap_err();
    assert!(matches!(e, Error::Refused { .. }), "{e}");
    assert_eq!(backend.pointer().0, 1, "a refused record changes nothing");
}

#[test]
fn a_reconnecting_stream_sets_its_state_again_on_a_new_backend_and_drops_after_its_patience() {
    let (dir, path, first) = backend();
    let mut stream = Reconnecting::new(&path, Duration::from_millis(600));
    let state = |x| Record {
        display: Some(1),
        x: Some(x),
        y: Some(10),
        buttons_set: Button::Left.bit(),
        buttons_down: Button::Left.bit(),
        answer: true,
        ..Record::default()
    };
    let sent = stream.send(&state(5), &state(5));
    assert!(
        matches!(sent, Sent::Delivered { outage: None, .. }),
        "{sent:?}"
    );
    assert_eq!(first.pointer(), (1, Some(5), Button::Left.bit()));
    drop(first);

    // Nobody listens: the record waits its patience, then is dropped, saying the outage began.
    let start = Instant::now();
    let motion = Record {
        x: Some(6),
        ..Record::default()
    };
    let sent = stream.send(&motion, &state(6));
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );
    assert!(
        matches!(
            sent,
            Sent::Dropped {
                outage_began: true,
                ..
            }
        ),
        "{sent:?}"
    );

    // A new backend with none of the old one's state: the held button is set again first.
    let second = ControlBackend::start(&dir.path().join("control.sock")).unwrap();
    let sent = stream.send(&motion, &state(6));
    assert!(
        matches!(
            sent,
            Sent::Delivered {
                outage: Some(_),
                ..
            }
        ),
        "{sent:?}"
    );
    assert_eq!(second.pointer(), (1, Some(6), Button::Left.bit()));
}

#[test]
fn a_refusal_of_motion_is_known_when_it_comes_not_at_the_next_answer() {
    let (_dir, path, _backend) = backend();
    let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let theirs = told.clone();
    let hook: pvmouse_client::RefusalHook = std::sync::Arc::new(move |event| {
        theirs
            .lock()
            .unwrap()
            .push(event["data"]["refused"].clone());
    });
    let mut s = Connection::connect(&path)
        .unwrap()
        .into_stream_with(Some(hook))
        .unwrap();
    // Motion on a display the backend lacks, answered by nothing.
    s.send(&Record {
        display: Some(9),
        x: Some(5),
        ..Record::default()
    })
    .unwrap();
    let start = Instant::now();
    while told.lock().unwrap().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the refusal was not told"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("refusal told after {:?}", start.elapsed());
    assert_eq!(s.take_refusals().len(), 1, "and kept");
}
