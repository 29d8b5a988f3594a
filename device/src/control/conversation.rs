//! One client's side of the control protocol, without the socket: bytes in, replies out.
//!
//! Input is a stream of JSON values (a newline between commands is customary but not needed, as
//! in QEMU). A value that cannot be parsed (duplicate keys included), or grows past
//! [`MAX_COMMAND_BYTES`], gets one error reply, and the input after it is skipped to the next
//! newline. Kept apart from the server so that the whole of what a client can send is tested
//! and fuzzed without sockets.

use pvmouse_spec::control::MAX_COMMAND_BYTES;
use serde_json::Value;

use super::commands::{Session, execute};
use super::framing::{Scan, ValueFramer, parse_value};
use super::qmp::{self, QmpError};
use super::stream::RecordStream;
use crate::device::PointerDevice;
use crate::keeper::worker::Upgrade;
use crate::pointer::PointerAction;
use pvmouse_spec::profile::Button;

#[derive(Debug, Default)]
pub struct Conversation {
    /// Received bytes not yet answered: from `start` on, the current value's bytes and any that
    /// follow it in the same read.
    input: Vec<u8>,
    start: usize,
    /// Where the current value ends, found a byte at a time across reads.
    framer: ValueFramer,
    session: Session,
    /// Skipping the rest of a bad or over-long command, up to the next newline.
    skipping: bool,
    /// Records, once `pvmouse-stream` has switched the connection to them.
    records: RecordStream,
}

impl Conversation {
    /// A conversation whose `pvmouse-upgrade` ends this worker through `upgrade`.
    pub fn with_upgrade(upgrade: Option<Upgrade>) -> Self {
        Self {
            session: Session {
                upgrade,
                ..Session::default()
            },
            ..Self::default()
        }
    }

    /// Releases every button this connection pressed and has not released: what the backend
    /// does when a connection ends, so that a client killed mid-drag leaves nothing held
    /// (spec/control.md). Buttons other connections pressed are not touched.
    pub fn release_held(
        &mut self,
        device: &dyn PointerDevice,
    ) -> Result<u8, crate::device::SubmitError> {
        let held = self.session.held | self.records.held;
        if held == 0 {
            return Ok(0);
        }
        let mut actions = [PointerAction::Move {
            display: None,
            x: None,
            y: None,
        }; Button::ALL.len()];
        let mut n = 0;
        for button in Button::ALL {
            if held & button.bit() != 0 {
                actions[n] = PointerAction::Button {
                    button,
                    down: false,
                };
                n += 1;
            }
        }
        device.submit(&actions[..n])?;
        self.session.held = 0;
        self.records.held = 0;
        Ok(held)
    }

    /// Whether the client has negotiated capabilities, and so may get QMP events.
    pub fn negotiated(&self) -> bool {
        self.session.negotiated
    }

    /// Bytes not yet part of a complete command (never more than a command's limit plus one
    /// read). For the fuzz targets, which check that bound.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn buffered(&self) -> usize {
        self.input.len() - self.start
    }

    /// Takes `bytes` from the client, executes every command they complete, and appends each
    /// reply, newline-terminated, to `output`. Each byte is looked at by the framer once, and
    /// each complete value is parsed once, so the cost is linear in the bytes received however
    /// they are split.
    ///
    /// After `pvmouse-stream`, every later byte, including any that came with the command, is
    /// a record's.
    pub fn feed(&mut self, device: &dyn PointerDevice, bytes: &[u8], output: &mut Vec<u8>) {
        if self.session.streaming {
            self.records.feed(device, bytes, output);
            return;
        }
        self.input.extend_from_slice(bytes);
        while !self.session.streaming && self.next(device, output) {}
        if self.session.streaming {
            let rest = std::mem::take(&mut self.input);
            self.records.feed(device, &rest[self.start..], output);
        } else {
            self.input.drain(..self.start);
        }
        self.start = 0;
    }

    /// Handles the next complete value, or the skip after a bad one. False when more bytes are
    /// needed.
    fn next(&mut self, device: &dyn PointerDevice, output: &mut Vec<u8>) -> bool {
        let rest = &self.input[self.start..];
        if self.skipping {
            match rest.iter().position(|b| *b == b'\n') {
                Some(newline) => {
                    self.start += newline + 1;
                    self.skipping = false;
                }
                None => {
                    self.start = self.input.len();
                    return false;
                }
            }
        }
        if self.framer.seen() == 0 {
            let rest = &self.input[self.start..];
            self.start += rest
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(rest.len());
        }
        let value = &self.input[self.start..];
        if value.is_empty() {
            return false;
        }
        let end = match self.framer.scan(value) {
            Scan::Complete(end) => end,
            Scan::Incomplete => {
                if value.len() > MAX_COMMAND_BYTES {
                    let err = QmpError::generic(format!(
                        "command too long: over {MAX_COMMAND_BYTES} bytes without a complete \
                         JSON value; skipped to the next newline"
                    ));
                    output.extend_from_slice(&qmp::encode(&qmp::failure(&err, None)));
                    self.framer.reset();
                    self.start = self.input.len();
                    self.skipping = true;
                }
                return false;
            }
            Scan::Invalid(at) => {
                let err = QmpError::generic(format!(
                    "JSON parse error: {}; input skipped to the next newline",
                    syntax_error(&value[..=at])
                ));
                output.extend_from_slice(&qmp::encode(&qmp::failure(&err, None)));
                self.framer.reset();
                // A command cut short on an earlier line must not take the next line's
                // command with it: when the bad byte opens a line of its own, the next value
                // starts there. Otherwise the rest of the line goes with the bad input, so
                // that one bad input gets one reply. Either way the input moves forward.
                self.start += at;
                let opens_a_line = value[..at]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .is_some_and(|newline| value[newline..at].iter().all(u8::is_ascii_whitespace));
                self.skipping = !opens_a_line;
                return true;
            }
        };
        // The grammar is right; the parser still checks strings, numbers and duplicate keys.
        let reply = match parse_value(&value[..end]) {
            Ok(value) => reply_to(device, &mut self.session, value),
            Err(e) => {
                self.skipping = true;
                qmp::failure(
                    &QmpError::generic(format!(
                        "JSON parse error: {e}; input skipped to the next newline"
                    )),
                    None,
                )
            }
        };
        output.extend_from_slice(&qmp::encode(&reply));
        self.start += end;
        self.framer.reset();
        true
    }
}

/// What the parser says of `bytes`, whose last byte is where the framer found the value cannot
/// go on; the framer's own words if the parser has none.
fn syntax_error(bytes: &[u8]) -> String {
    match parse_value(bytes) {
        Err(e) if !e.is_eof() => e.to_string(),
        _ => format!(
            "unexpected {:?} at byte {}",
            char::from(bytes[bytes.len() - 1]),
            bytes.len()
        ),
    }
}

fn reply_to(device: &dyn PointerDevice, session: &mut Session, value: Value) -> Value {
    match qmp::parse_request(value) {
        Ok(request) => match execute(device, session, &request) {
            Ok(ret) => qmp::success(ret, request.id),
            Err(err) => qmp::failure(&err, request.id),
        },
        Err((err, id)) => qmp::failure(&err, id),
    }
}
