//! A connection switched to stream records (`pvmouse-stream`, spec/control.md).

use std::io::{BufRead, Write};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pvmouse_spec::control::event;
use pvmouse_spec::stream::Record;
use serde_json::Value;

use crate::connection::into_return;
use crate::{Connection, Error, Result};

/// What is told of the refusals of records that asked for no answer, as each
/// `PVMOUSE_STREAM_REFUSED` event arrives.
pub type RefusalHook = Arc<dyn Fn(&Value) + Send + Sync>;

/// Records out, JSON replies and events in. A record that asks for an answer waits for it;
/// one that does not costs one write. The connection's replies and events are read on a thread
/// of the stream's own, so a refusal of a record that asked for no answer (a
/// `PVMOUSE_STREAM_REFUSED` event) is known when it arrives, not at the next answer: it goes to
/// the hook given to [`with_refusal_hook`](Self::with_refusal_hook), and is kept for
/// [`take_refusals`](Self::take_refusals).
pub struct RecordStream {
    writer: UnixStream,
    replies: Receiver<Result<Value>>,
    refusals: Arc<Mutex<Vec<Value>>>,
    timeout: Duration,
}

impl std::fmt::Debug for RecordStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordStream")
            .field("writer", &self.writer)
            .finish_non_exhaustive()
    }
}

impl RecordStream {
    pub(crate) fn new(conn: Connection, hook: Option<RefusalHook>) -> Result<Self> {
        let timeout = conn.reply_timeout();
        let (reader, writer) = conn.split();
        // Replies wait on the channel now, for as long as the connection's timeout says.
        reader.get_ref().set_read_timeout(None)?;
        let refusals = Arc::new(Mutex::new(Vec::new()));
        let (tx, replies) = channel();
        let kept = refusals.clone();
        std::thread::Builder::new()
            .name("pvmouse-client-replies".into())
            .spawn(move || read_replies(reader, &tx, &kept, hook.as_deref()))?;
        Ok(Self {
            writer,
            replies,
            refusals,
            timeout,
        })
    }

    /// Writes a record. If it asks for an answer (`record.answer`), waits for it: a refusal is
    /// [`Error::Refused`], and nothing of the record was applied.
    pub fn send(&mut self, record: &Record) -> Result<()> {
        self.write(record)?;
        self.answer(record)
    }

    /// Writes a record whole, or fails having written none of it that the server applies.
    pub(crate) fn write(&mut self, record: &Record) -> Result<()> {
        self.writer.write_all(&record.encode())?;
        Ok(())
    }

    /// Waits for a written record's answer, if it asked for one. A connection lost here may
    /// have lost only the answer: the record may have been applied.
    pub(crate) fn answer(&mut self, record: &Record) -> Result<()> {
        if record.answer {
            let reply = match self.replies.recv_timeout(self.timeout) {
                Ok(reply) => reply?,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(Error::Timeout("answer to a stream record".into()));
                }
                Err(RecvTimeoutError::Disconnected) => return Err(Error::Closed),
            };
            into_return("a stream record", reply)?;
        }
        Ok(())
    }

    /// The `PVMOUSE_STREAM_REFUSED` events received so far (each counts refused unanswered
    /// records and says why the last one was refused), taken.
    pub fn take_refusals(&mut self) -> Vec<Value> {
        std::mem::take(&mut *self.refusals.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for RecordStream {
    /// Ends the reader thread with the connection.
    fn drop(&mut self) {
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
    }
}

/// The reader thread: replies to the channel, refusals to the hook and the list, other events
/// (state a relay does not need) dropped; the end of the connection as an error.
fn read_replies(
    mut reader: std::io::BufReader<UnixStream>,
    tx: &Sender<Result<Value>>,
    refusals: &Mutex<Vec<Value>>,
    hook: Option<&(dyn Fn(&Value) + Send + Sync)>,
) {
    let mut line = String::new();
    loop {
        line.clear();
        let value = match reader.read_line(&mut line) {
            Ok(0) => Err(Error::Closed),
            Ok(_) => serde_json::from_str::<Value>(&line)
                .map_err(|e| Error::Protocol(format!("{e}: {:?}", line.trim_end()))),
            Err(e) => Err(Error::Io(e)),
        };
        match value {
            Ok(v) => match v.get("event") {
                Some(e) if *e == event::STREAM_REFUSED => {
                    if let Some(hook) = hook {
                        hook(&v);
                    }
                    refusals.lock().unwrap_or_else(|e| e.into_inner()).push(v);
                }
                Some(_) => {}
                None => {
                    if tx.send(Ok(v)).is_err() {
                        return;
                    }
                }
            },
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    }
}
