//! A connection switched to stream records (`pvmouse-stream`, spec/control.md).

use std::io::Write;

use pvmouse_spec::control::event;
use pvmouse_spec::stream::Record;
use serde_json::Value;

use crate::connection::into_return;
use crate::{Connection, Result};

/// Records out, JSON replies and events in. A record that asks for an answer waits for it;
/// one that does not costs one write, and a refusal of it arrives later as a
/// `PVMOUSE_STREAM_REFUSED` event, kept for [`take_refusals`](Self::take_refusals).
#[derive(Debug)]
pub struct RecordStream {
    conn: Connection,
    refusals: Vec<Value>,
}

impl RecordStream {
    pub(crate) fn new(conn: Connection) -> Self {
        Self {
            conn,
            refusals: Vec::new(),
        }
    }

    /// Writes a record. If it asks for an answer (`record.answer`), waits for it: a refusal is
    /// [`Error::Refused`](crate::Error::Refused), and nothing of the record was applied.
    pub fn send(&mut self, record: &Record) -> Result<()> {
        self.write(record)?;
        self.answer(record)
    }

    /// Writes a record whole, or fails having written none of it that the server applies.
    pub(crate) fn write(&mut self, record: &Record) -> Result<()> {
        let mut socket = self.conn.socket();
        socket.write_all(&record.encode())?;
        Ok(())
    }

    /// Waits for a written record's answer, if it asked for one. A connection lost here may
    /// have lost only the answer: the record may have been applied.
    pub(crate) fn answer(&mut self, record: &Record) -> Result<()> {
        if record.answer {
            let reply = self.next_reply()?;
            into_return("a stream record", reply)?;
        }
        Ok(())
    }

    /// The next reply. Refusals of unanswered records met on the way are kept; other events
    /// are state a relay does not need, and are dropped.
    fn next_reply(&mut self) -> Result<Value> {
        loop {
            let v = self.conn.read_value()?;
            match v.get("event") {
                Some(e) if *e == event::STREAM_REFUSED => self.refusals.push(v),
                Some(_) => {}
                None => return Ok(v),
            }
        }
    }

    /// The `PVMOUSE_STREAM_REFUSED` events read so far (each counts refused unanswered records
    /// and says why the last one was refused), taken.
    pub fn take_refusals(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.refusals)
    }

    /// The connection underneath, to read what else the server sent.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.conn
    }
}

impl From<RecordStream> for Connection {
    fn from(s: RecordStream) -> Self {
        s.conn
    }
}
