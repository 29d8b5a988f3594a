//! A control client that goes away holding buttons, however it goes (killed mid-drag, a closed
//! socket), leaves none held: the backend releases what each connection pressed and did not
//! release (spec/control.md, "Connections"). What other connections hold stays held.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::time::{Duration, Instant};

use pvmouse_client::Connection;
use pvmouse_spec::profile::Button;
use pvmouse_spec::stream::Record;
use serde_json::json;
use vhost_user_pvmouse::testing::ControlBackend;

fn wait_for_buttons(backend: &ControlBackend, want: u8) {
    let start = Instant::now();
    while backend.pointer().2 != want {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "buttons {:#07b}, not {want:#07b}",
            backend.pointer().2
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_client_that_goes_away_holding_buttons_leaves_none_held() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control.sock");
    let backend = ControlBackend::start(&path).unwrap();
    let all: u8 = Button::ALL.iter().fold(0, |m, b| m | b.bit());
    let right = Button::Right.bit();

    // Another client holds right throughout; it must stay held.
    let mut keeper = Connection::connect(&path).unwrap();
    keeper
        .execute(
            "pvmouse-send",
            json!({"display": 0, "x": 0.5, "y": 0.5, "buttons": {"right": true}}),
        )
        .unwrap();

    // A stream client presses all five buttons and its socket is closed.
    let mut stream = Connection::connect(&path).unwrap().into_stream().unwrap();
    let press = Record {
        display: Some(0),
        x: Some(100),
        y: Some(100),
        buttons_set: all,
        buttons_down: all,
        answer: true,
        ..Record::default()
    };
    stream.send(&press).unwrap();
    assert_eq!(backend.pointer().2, all);
    drop(stream);
    wait_for_buttons(&backend, right);
    println!(
        "a stream client left holding five buttons: four released, right kept for its other holder"
    );

    // A JSON client presses left, releases it, presses middle, and goes.
    let mut json_client = Connection::connect(&path).unwrap();
    for buttons in [
        json!({"left": true}),
        json!({"left": false}),
        json!({"middle": true}),
    ] {
        json_client
            .execute("pvmouse-send", json!({"buttons": buttons}))
            .unwrap();
    }
    assert_eq!(backend.pointer().2, right | Button::Middle.bit());
    drop(json_client);
    wait_for_buttons(&backend, right);

    // The holder of right lets go itself; nothing else changes when it leaves.
    keeper
        .execute("pvmouse-send", json!({"buttons": {"right": false}}))
        .unwrap();
    drop(keeper);
    wait_for_buttons(&backend, 0);
}
