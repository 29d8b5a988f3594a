//! What the control socket does with what it did not ask for: event storms a guest can cause,
//! clients that never read, and connections that never negotiate.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

#[path = "support/control_server.rs"]
mod control_server;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use control_server::{Client, Server};
use pvmouse_spec::control::{GUEST_EVENT_INTERVAL_MS, MAX_CLIENTS, NEGOTIATION_TIMEOUT_MS};
use serde_json::{Value, json};
use vhost_user_pvmouse::Notice;

fn bridge(present: bool, version: u8) -> Notice {
    Notice::Bridge { present, version }
}

#[test]
fn a_guest_event_storm_is_rate_limited_never_disconnects_and_ends_in_the_newest_state() {
    let server = Server::start();
    let mut reading = Client::negotiated(&server.path);
    // Negotiated, then never reads a byte while the storm lasts.
    let mut idle = Client::negotiated(&server.path);
    reading
        .socket()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();

    let storm = Duration::from_millis(2500);
    let notices = server.notices.clone();
    let poster = std::thread::spawn(move || {
        let start = Instant::now();
        let mut posted = 0u64;
        while start.elapsed() < storm {
            for _ in 0..1000 {
                notices.post(bridge(posted % 2 == 0, 1));
                notices.post(Notice::Driver {
                    active: posted % 3 == 0,
                });
                posted += 1;
            }
        }
        notices.post(bridge(true, 7));
        notices.post(Notice::Driver { active: false });
        posted
    });

    let start = Instant::now();
    let mut events: Vec<(Duration, Value)> = Vec::new();
    let settle =
        storm + Duration::from_millis(GUEST_EVENT_INTERVAL_MS) + Duration::from_millis(700);
    while start.elapsed() < settle {
        if let Some(v) = reading.read() {
            events.push((start.elapsed(), v));
        }
    }
    let posted = poster.join().unwrap();
    let of = |name: &str| -> Vec<(Duration, Value)> {
        events
            .iter()
            .filter(|(_, e)| e["event"] == name)
            .cloned()
            .collect()
    };
    let bridge_events = of("PVMOUSE_BRIDGE_CHANGE");
    let driver_events = of("PVMOUSE_DRIVER_CHANGE");
    println!(
        "{posted} flips of each kind posted in {storm:?}; the reading client got {} bridge and {} \
         driver events",
        bridge_events.len(),
        driver_events.len()
    );
    let interval = Duration::from_millis(GUEST_EVENT_INTERVAL_MS);
    // One at once, then at most one per interval: 2.5 s plus the last interval's release.
    let most = 1 + usize::try_from((settle.as_millis()) / interval.as_millis()).unwrap();
    for (kind, evs) in [("bridge", &bridge_events), ("driver", &driver_events)] {
        assert!(
            !evs.is_empty() && evs.len() <= most,
            "{kind}: {} events, at most {most} allowed",
            evs.len()
        );
        for pair in evs.windows(2) {
            // Timer and scheduling slack only ever make a gap longer.
            assert!(
                pair[1].0 - pair[0].0 >= interval - Duration::from_millis(50),
                "{kind}: two events {:?} apart",
                pair[1].0 - pair[0].0
            );
        }
    }
    assert_eq!(
        bridge_events.last().unwrap().1["data"],
        json!({"present": true, "version": 7}),
        "the newest bridge state arrives"
    );
    assert_eq!(
        driver_events.last().unwrap().1["data"],
        json!({"active": false}),
        "the newest driver state arrives"
    );

    // The client that read nothing is still connected, and what it has waiting ends in the
    // same newest states.
    idle.socket()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut waiting = Vec::new();
    while let Some(v) = idle.read() {
        waiting.push(v);
    }
    let last_of = |name: &str| waiting.iter().rev().find(|e| e["event"] == name).cloned();
    assert_eq!(
        last_of("PVMOUSE_BRIDGE_CHANGE").unwrap()["data"],
        json!({"present": true, "version": 7})
    );
    assert_eq!(
        last_of("PVMOUSE_DRIVER_CHANGE").unwrap()["data"],
        json!({"active": false})
    );
    idle.socket()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let reply = idle
        .query_version()
        .expect("the idle client was disconnected");
    assert!(reply["return"]["package"].is_string(), "{reply}");
}

#[test]
fn connections_that_never_negotiate_are_closed_and_free_their_slots() {
    let server = Server::start();
    let mut idle: Vec<Client> = (0..MAX_CLIENTS)
        .map(|_| Client::connect(&server.path))
        .collect();
    // Every slot is taken: the next connection is told so.
    let mut refused = UnixStream::connect(&server.path).unwrap();
    let mut text = String::new();
    refused.read_to_string(&mut text).unwrap();
    assert!(text.contains("too many control connections"), "{text}");

    std::thread::sleep(Duration::from_millis(NEGOTIATION_TIMEOUT_MS + 500));
    for c in &mut idle {
        let v = c.read().expect("told why before being closed");
        assert!(
            v["error"]["desc"]
                .as_str()
                .unwrap()
                .contains("capabilities negotiation timed out"),
            "{v}"
        );
        assert_eq!(c.read(), None, "then closed");
    }
    let mut fresh = Client::negotiated(&server.path);
    assert!(fresh.query_version().unwrap()["return"].is_object());
}

#[test]
fn a_negotiated_client_is_never_timed_out() {
    let server = Server::start();
    let mut c = Client::negotiated(&server.path);
    std::thread::sleep(Duration::from_millis(NEGOTIATION_TIMEOUT_MS + 500));
    assert!(c.query_version().unwrap()["return"].is_object());
}
