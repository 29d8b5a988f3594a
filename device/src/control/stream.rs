//! A connection after `pvmouse-stream`: fixed 16-byte records in, applied as they complete,
//! answered only when a record asks (`spec/control.md`, `pvmouse-stream`).
//!
//! Nothing here allocates for a record that is applied and not answered: that is the path a
//! gateway's pointer motion takes. A refused record that was not to be answered is counted, and
//! the client hears of the refusals in one event once it has read what it was sent before, so a
//! client sending garbage without reading cannot make its output grow.

use pvmouse_spec::control::event;
use pvmouse_spec::profile::Button;
use pvmouse_spec::stream::{RECORD_LEN, Record, RecordError, flag};
use serde_json::json;

use super::commands::submit;
use super::qmp::{self, QmpError};
use crate::device::PointerDevice;
use crate::pointer::{PointerAction, WheelAxis};

/// A record as pointer actions: a move, five buttons and two wheels at most.
const MAX_ACTIONS: usize = 1 + Button::ALL.len() + 2;

#[derive(Debug, Default)]
pub struct RecordStream {
    /// A record split across reads, and how much of it has arrived.
    partial: [u8; RECORD_LEN],
    filled: usize,
    /// Whitespace after the `pvmouse-stream` command (a newline, usually) has been skipped.
    started: bool,
    /// Records received on this connection, which numbers them from 0.
    received: u64,
    /// Refused records the client did not ask answers for and has not been told of yet.
    unreported: u64,
    /// The newest of those: its number and why.
    last_refused: Option<(u64, String)>,
    /// The buttons this connection's records pressed and have not released.
    pub held: u8,
}

impl RecordStream {
    /// Takes `bytes` from the client and applies every record they complete, in order.
    pub fn feed(&mut self, device: &dyn PointerDevice, mut bytes: &[u8], output: &mut Vec<u8>) {
        // Whether the client had taken everything sent to it before these bytes.
        let caught_up = output.is_empty();
        if !self.started {
            // A record starts with its kind, never whitespace, so this cannot eat one.
            let skip = bytes
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(bytes.len());
            bytes = &bytes[skip..];
            self.started = !bytes.is_empty();
        }
        if self.filled > 0 {
            let take = (RECORD_LEN - self.filled).min(bytes.len());
            self.partial[self.filled..self.filled + take].copy_from_slice(&bytes[..take]);
            self.filled += take;
            bytes = &bytes[take..];
            if self.filled < RECORD_LEN {
                self.report_refusals(caught_up, output);
                return;
            }
            self.filled = 0;
            let record = self.partial;
            self.apply(device, &record, output);
        }
        let mut records = bytes.chunks_exact(RECORD_LEN);
        for record in &mut records {
            if let Ok(record) = <&[u8; RECORD_LEN]>::try_from(record) {
                self.apply(device, record, output);
            }
        }
        let rest = records.remainder();
        self.partial[..rest.len()].copy_from_slice(rest);
        self.filled = rest.len();
        self.report_refusals(caught_up, output);
    }

    fn apply(
        &mut self,
        device: &dyn PointerDevice,
        bytes: &[u8; RECORD_LEN],
        output: &mut Vec<u8>,
    ) {
        let number = self.received;
        self.received += 1;
        // Even a record refused for its flags is answered if it asked: the client is waiting.
        let answer = bytes[1] & flag::ANSWER != 0;
        let result = Record::decode(bytes)
            .map_err(|e| refused_bytes(number, e))
            .and_then(|record| {
                let displays = device.identity().displays();
                if let Some(display) = record.display.filter(|d| *d >= displays) {
                    return Err(QmpError::generic(format!(
                        "record {number} refused: display {display} is out of range: this \
                         device has {displays} displays (0..={}); nothing of it was applied",
                        displays - 1
                    )));
                }
                let mut actions = [PointerAction::Move {
                    display: None,
                    x: None,
                    y: None,
                }; MAX_ACTIONS];
                let n = actions_of(&record, &mut actions);
                submit(device, &mut self.held, &actions[..n])
            });
        match (result, answer) {
            (Ok(_), true) => output.extend_from_slice(&qmp::encode(&qmp::success(json!({}), None))),
            (Ok(_), false) => {}
            (Err(e), true) => output.extend_from_slice(&qmp::encode(&qmp::failure(&e, None))),
            (Err(e), false) => {
                self.unreported += 1;
                self.last_refused = Some((number, e.desc));
            }
        }
    }

    /// Tells the client of refusals it has not heard of, if it had taken everything sent to it
    /// before: a client that does not read gets one event per read at most, and none once its
    /// socket is full, whatever it sends.
    fn report_refusals(&mut self, caught_up: bool, output: &mut Vec<u8>) {
        if self.unreported == 0 || !caught_up {
            return;
        }
        let (record, desc) = self.last_refused.take().unwrap_or_default();
        output.extend_from_slice(&qmp::encode(&qmp::event(
            event::STREAM_REFUSED,
            json!({ "refused": self.unreported, "last": { "record": record, "desc": desc } }),
        )));
        self.unreported = 0;
    }
}

fn refused_bytes(number: u64, e: RecordError) -> QmpError {
    QmpError::generic(format!(
        "record {number} refused: {e}; nothing of it was applied"
    ))
}

/// The actions of one record, in the order of `pvmouse-send`: motion, buttons, wheels.
fn actions_of(r: &Record, actions: &mut [PointerAction; MAX_ACTIONS]) -> usize {
    let mut n = 0;
    let mut push = |a| {
        actions[n] = a;
        n += 1;
    };
    if r.display.is_some() || r.x.is_some() || r.y.is_some() {
        push(PointerAction::Move {
            display: r.display,
            x: r.x,
            y: r.y,
        });
    }
    if r.dx != 0 || r.dy != 0 {
        push(PointerAction::Motion {
            dx: r.dx,
            dy: r.dy,
            keep_mode: r.keep_mode,
        });
    }
    for button in Button::ALL {
        if r.buttons_set & button.bit() != 0 {
            push(PointerAction::Button {
                button,
                down: r.buttons_down & button.bit() != 0,
            });
        }
    }
    for (axis, units) in [
        (WheelAxis::Vertical, r.wheel_vertical),
        (WheelAxis::Horizontal, r.wheel_horizontal),
    ] {
        if units != 0 {
            push(PointerAction::Wheel {
                axis,
                hi_res: i32::from(units),
            });
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::PvMouse;
    use crate::identity::Identity;
    use crate::notice::NoticeBoard;
    use std::sync::Arc;

    fn device() -> PvMouse {
        let identity = Identity::new("pvmouse", "s", 2).unwrap();
        PvMouse::new(identity, Arc::new(NoticeBoard::new().unwrap())).unwrap()
    }

    fn lines(output: &[u8]) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(output)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn records_split_anyhow_apply_in_order_and_only_asked_ones_are_answered() {
        let dev = device();
        let mut s = RecordStream::default();
        let mut bytes = b"\r\n".to_vec();
        for (i, answer) in [(0u16, false), (1, true), (2, false)] {
            bytes.extend_from_slice(
                &Record {
                    display: Some(1),
                    x: Some(100 + i),
                    y: Some(7),
                    buttons_set: Button::Left.bit(),
                    buttons_down: if i == 1 { Button::Left.bit() } else { 0 },
                    answer,
                    ..Record::default()
                }
                .encode(),
            );
        }
        let mut out = Vec::new();
        for chunk in bytes.chunks(5) {
            s.feed(&dev, chunk, &mut out);
        }
        assert_eq!(lines(&out), vec![json!({"return": {}})]);
        let status = dev.status();
        assert_eq!(
            (status.pointer.display, status.pointer.x, status.pointer.y),
            (1, Some(102), Some(7))
        );
        assert_eq!(status.counters.commands, 3);
        assert_eq!(
            status.pointer.buttons & Button::Left.bit(),
            0,
            "pressed, then released"
        );
    }

    #[test]
    fn refusals_are_answered_when_asked_and_otherwise_told_once() {
        let dev = device();
        let mut s = RecordStream::default();
        let out_of_range = Record {
            display: Some(2),
            x: Some(1),
            ..Record::default()
        };
        let mut out = Vec::new();
        s.feed(
            &dev,
            &Record {
                answer: true,
                ..out_of_range
            }
            .encode(),
            &mut out,
        );
        let reply = lines(&out);
        assert!(
            reply[0]["error"]["desc"]
                .as_str()
                .unwrap()
                .contains("display 2 is out of range"),
            "{reply:?}"
        );
        // The client has not read that reply: refusals are counted, not written.
        let mut garbage = [0xffu8; RECORD_LEN];
        garbage[1] = 0;
        for _ in 0..1000 {
            s.feed(&dev, &out_of_range.encode(), &mut out);
            s.feed(&dev, &garbage, &mut out);
        }
        assert_eq!(lines(&out).len(), 1);
        // It has read it: one event tells of all of them, the last one named.
        out.clear();
        s.feed(&dev, &[], &mut out);
        let told = lines(&out);
        assert_eq!(told.len(), 1);
        assert_eq!(told[0]["event"], event::STREAM_REFUSED);
        assert_eq!(told[0]["data"]["refused"], 2000);
        assert_eq!(told[0]["data"]["last"]["record"], 2000);
        assert!(
            told[0]["data"]["last"]["desc"]
                .as_str()
                .unwrap()
                .contains("unknown record kind 255"),
            "{told:?}"
        );
        assert_eq!(dev.status().pointer.x, None, "nothing refused was applied");
        out.clear();
        s.feed(&dev, &[], &mut out);
        assert!(out.is_empty(), "told once");
    }

    #[test]
    fn an_empty_answered_record_confirms_what_came_before() {
        let dev = device();
        let mut s = RecordStream::default();
        let mut out = Vec::new();
        let mut bytes = Record {
            x: Some(9),
            ..Record::default()
        }
        .encode()
        .to_vec();
        bytes.extend_from_slice(
            &Record {
                answer: true,
                ..Record::default()
            }
            .encode(),
        );
        s.feed(&dev, &bytes, &mut out);
        assert_eq!(lines(&out), vec![json!({"return": {}})]);
        assert_eq!(dev.status().pointer.x, Some(9));
    }
}
