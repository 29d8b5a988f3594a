//! A record stream that outlives its connection: for relays (a VNC front door, a gateway) whose
//! backend may restart under them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pvmouse_spec::stream::Record;

use crate::{Connection, Error, RecordStream};

/// How long to wait between tries while the control socket is away.
const RETRY: Duration = Duration::from_millis(100);

/// What became of a record given to [`Reconnecting::send`].
#[derive(Debug)]
pub enum Sent {
    /// Written, and if it asked for an answer, answered.
    Delivered {
        /// A refusal of the record itself (only for a record that asked for an answer).
        refused: Option<Error>,
        /// A refusal of the state set again on a new connection before the record.
        state_refused: Option<Error>,
        /// The outage this record ended, if the socket had been away.
        outage: Option<Outage>,
    },
    /// The socket stayed away for the whole patience: the record is dropped.
    Dropped {
        /// Why the last try failed.
        error: Error,
        /// This record found the socket working before it failed: the outage began with it.
        outage_began: bool,
    },
}

/// A time the control socket was away.
#[derive(Debug)]
pub struct Outage {
    /// From the first failed try to the record that got through.
    pub lasted: Duration,
    /// Why the first try failed.
    pub cause: Error,
}

/// A record stream on `path`, connected on demand and again after every failure. On each new
/// connection the caller's whole pointer state is sent first, answered, so that motion written
/// to a connection that broke is not missed and a held button stays held.
#[derive(Debug)]
pub struct Reconnecting {
    path: PathBuf,
    patience: Duration,
    stream: Option<RecordStream>,
    /// Since when the socket has been unreachable, and why.
    down: Option<(Instant, Error)>,
}

impl Reconnecting {
    /// Connects lazily, on the first [`send`](Self::send). A record waits up to `patience` for
    /// the socket to come back before it is dropped.
    pub fn new(path: &Path, patience: Duration) -> Self {
        Self {
            path: path.to_owned(),
            patience,
            stream: None,
            down: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends `record`; `state` is everything the caller has set, this record included (a
    /// record with every field set, as `PointerRouter::state` gives it).
    pub fn send(&mut self, record: &Record, state: &Record) -> Sent {
        // The clock is read only once something fails: the usual record costs one write.
        let mut waiting_since = None;
        let mut outage_began = false;
        loop {
            match self.try_once(record, state) {
                Ok((refused, state_refused)) => {
                    return Sent::Delivered {
                        refused,
                        state_refused,
                        outage: self.down.take().map(|(since, cause)| Outage {
                            lasted: since.elapsed(),
                            cause,
                        }),
                    };
                }
                Err(error) => {
                    self.stream = None;
                    let error = if self.down.is_none() {
                        outage_began = true;
                        // The outage keeps its first cause; this try reports a copy of it.
                        let copy = Error::Protocol(error.to_string());
                        self.down = Some((Instant::now(), error));
                        copy
                    } else {
                        error
                    };
                    if waiting_since.get_or_insert_with(Instant::now).elapsed() >= self.patience {
                        return Sent::Dropped {
                            error,
                            outage_began,
                        };
                    }
                    std::thread::sleep(RETRY);
                }
            }
        }
    }

    /// One try: `Err` if the connection failed, else the record's and the state's refusals.
    fn try_once(
        &mut self,
        record: &Record,
        state: &Record,
    ) -> Result<(Option<Error>, Option<Error>), Error> {
        let mut state_refused = None;
        let stream = match &mut self.stream {
            Some(s) => s,
            None => {
                let mut s = Connection::connect(&self.path)?.into_stream()?;
                let answered = Record {
                    answer: true,
                    ..*state
                };
                state_refused = refusal(s.send(&answered))?;
                self.stream.insert(s)
            }
        };
        let refused = refusal(stream.send(record))?;
        Ok((refused, state_refused))
    }
}

/// A refusal as a value, a lost connection as an error.
fn refusal(result: crate::Result<()>) -> Result<Option<Error>, Error> {
    match result {
        Ok(()) => Ok(None),
        Err(e) if !e.is_connection_lost() => Ok(Some(e)),
        Err(e) => Err(e),
    }
}
