//! One client's side of the control protocol, without the socket: bytes in, replies out.
//!
//! Input is a stream of JSON values (a newline between commands is customary but not needed, as
//! in QEMU). A value that cannot be parsed, or grows past [`MAX_COMMAND_BYTES`], gets an error
//! reply and the input is skipped to the next newline. Kept apart from the server so that the
//! whole of what a client can send is tested and fuzzed without sockets.

use pvmouse_spec::control::MAX_COMMAND_BYTES;
use serde_json::Value;

use super::commands::{Session, execute};
use super::qmp::{self, QmpError};
use crate::device::PointerDevice;

#[derive(Debug, Default)]
pub struct Conversation {
    /// Received bytes not yet part of a complete command.
    input: Vec<u8>,
    session: Session,
    /// Skipping the rest of a bad or over-long command, up to the next newline.
    skipping: bool,
}

impl Conversation {
    /// Whether the client has negotiated capabilities, and so may get QMP events.
    pub fn negotiated(&self) -> bool {
        self.session.negotiated
    }

    /// Bytes not yet part of a complete command (never more than a command's limit plus one
    /// read).
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// Takes `bytes` from the client, executes every command they complete, and appends each
    /// reply, newline-terminated, to `output`.
    pub fn feed(&mut self, device: &dyn PointerDevice, bytes: &[u8], output: &mut Vec<u8>) {
        self.input.extend_from_slice(bytes);
        loop {
            if self.skipping {
                match self.input.iter().position(|b| *b == b'\n') {
                    Some(end) => {
                        self.input.drain(..=end);
                        self.skipping = false;
                    }
                    None => {
                        self.input.clear();
                        return;
                    }
                }
            }
            let start = self
                .input
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(self.input.len());
            self.input.drain(..start);
            if self.input.is_empty() {
                return;
            }
            let mut values = serde_json::Deserializer::from_slice(&self.input).into_iter::<Value>();
            match values.next() {
                Some(Ok(value)) => {
                    let used = values.byte_offset();
                    self.input.drain(..used);
                    let reply = reply_to(device, &mut self.session, value);
                    output.extend_from_slice(&qmp::encode(&reply));
                }
                Some(Err(e)) if e.is_eof() => {
                    if self.input.len() > MAX_COMMAND_BYTES {
                        let err = QmpError::generic(format!(
                            "command too long: over {MAX_COMMAND_BYTES} bytes without a complete \
                             JSON value; skipped to the next newline"
                        ));
                        output.extend_from_slice(&qmp::encode(&qmp::failure(&err, None)));
                        self.skipping = true;
                        continue;
                    }
                    return;
                }
                Some(Err(e)) => {
                    let err = QmpError::generic(format!(
                        "JSON parse error: {e}; input skipped to the next newline"
                    ));
                    output.extend_from_slice(&qmp::encode(&qmp::failure(&err, None)));
                    self.skipping = true;
                }
                None => return,
            }
        }
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
