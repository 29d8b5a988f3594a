//! A record stream that outlives its connection: for relays (a VNC front door, a gateway) whose
//! backend may restart under them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pvmouse_spec::stream::Record;

use crate::{Connection, Error, RecordStream, RefusalHook};

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

/// A record stream on `path`, connected on demand and again after every failure. A record whose
/// connection broke after it was written whole may have been applied: it is sent again without
/// its wheel movement, so that a scroll is applied at most once (its position and buttons are
/// states, which applying twice does not change). On each new
/// connection the caller's whole pointer state is sent first, answered, so that motion written
/// to a connection that broke is not missed and a held button stays held. So it is, too, before
/// the record after one that changed buttons and was refused or dropped: the caller has moved on
/// to a state the backend has not taken, and only the whole state puts the two level again.
pub struct Reconnecting {
    path: PathBuf,
    patience: Duration,
    stream: Option<RecordStream>,
    /// Since when the socket has been unreachable, and why.
    down: Option<(Instant, Error)>,
    /// Buttons a refused or dropped record changed: the next try sends the whole state first,
    /// these buttons included (up or down as the state has them).
    resync: u8,
    /// Told of refusals of records that asked for no answer, as they arrive.
    hook: Option<RefusalHook>,
}

impl std::fmt::Debug for Reconnecting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconnecting")
            .field("path", &self.path)
            .field("connected", &self.stream.is_some())
            .finish_non_exhaustive()
    }
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
            resync: 0,
            hook: None,
        }
    }

    /// Tells `hook` of every refusal of a record that asked for no answer, as it arrives
    /// (`PVMOUSE_STREAM_REFUSED`), on every connection this stream makes.
    pub fn with_refusal_hook(mut self, hook: RefusalHook) -> Self {
        self.hook = Some(hook);
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends `record`; `state` is everything the caller has set, this record included (a
    /// record with every field set, as `PointerRouter::state` gives it).
    pub fn send(&mut self, record: &Record, state: &Record) -> Sent {
        let sent = self.deliver(record, state);
        let lost = match &sent {
            Sent::Delivered { refused, .. } => refused.is_some(),
            Sent::Dropped { .. } => true,
        };
        if lost {
            self.resync |= record.buttons_set;
        }
        sent
    }

    fn deliver(&mut self, record: &Record, state: &Record) -> Sent {
        // The clock is read only once something fails: the usual record costs one write.
        let mut waiting_since = None;
        let mut outage_began = false;
        let mut record = *record;
        loop {
            let mut written = false;
            let tried = self.try_once(&record, state, &mut written);
            if written {
                record.wheel_vertical = 0;
                record.wheel_horizontal = 0;
            }
            match tried {
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
        written: &mut bool,
    ) -> Result<(Option<Error>, Option<Error>), Error> {
        let mut state_refused = None;
        let answered = Record {
            answer: true,
            buttons_set: state.buttons_set | self.resync,
            buttons_down: state.buttons_down,
            ..*state
        };
        let stream = match &mut self.stream {
            Some(s) => {
                if self.resync != 0 {
                    state_refused = refusal(s.send(&answered))?;
                }
                s
            }
            None => {
                let mut s = Connection::connect(&self.path)?.into_stream_with(self.hook.clone())?;
                state_refused = refusal(s.send(&answered))?;
                self.stream.insert(s)
            }
        };
        if state_refused.is_none() {
            self.resync = 0;
        }
        stream.write(record)?;
        *written = true;
        let refused = refusal(stream.answer(record))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use pvmouse_spec::profile::Button;
    use vhost_user_pvmouse::testing::ControlBackend;

    /// A control server that applies every record it reads, and on its first connection goes
    /// away after reading the first scroll, without answering it: the answer lost, the record
    /// applied. Returns the wheel units it applied.
    fn forgetful_server(path: &Path) -> std::thread::JoinHandle<i32> {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let mut wheel = 0i32;
            for first in [true, false] {
                let (mut s, _) = listener.accept().unwrap();
                s.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                    .unwrap();
                let mut reader = BufReader::new(s.try_clone().unwrap());
                for _ in 0..2 {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    s.write_all(b"{\"return\": {}}\n").unwrap();
                }
                let mut bytes = [0u8; 16];
                while reader.read_exact(&mut bytes).is_ok() {
                    let r = Record::decode(&bytes).unwrap();
                    wheel += i32::from(r.wheel_vertical);
                    if first && r.wheel_vertical != 0 {
                        break;
                    }
                    if r.answer {
                        s.write_all(b"{\"return\": {}}\n").unwrap();
                    }
                    if !first && r.x == Some(9) {
                        return wheel;
                    }
                }
            }
            wheel
        })
    }

    #[test]
    fn a_scroll_whose_answer_was_lost_is_not_applied_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let server = forgetful_server(&path);
        let mut stream = Reconnecting::new(&path, Duration::from_secs(5));
        let scroll = Record {
            display: Some(0),
            x: Some(1),
            y: Some(1),
            wheel_vertical: 120,
            answer: true,
            ..Record::default()
        };
        let sent = stream.send(
            &scroll,
            &Record {
                wheel_vertical: 0,
                ..scroll
            },
        );
        assert!(
            matches!(sent, Sent::Delivered { refused: None, .. }),
            "{sent:?}"
        );
        let last = Record {
            x: Some(9),
            wheel_vertical: 0,
            ..scroll
        };
        assert!(matches!(stream.send(&last, &last), Sent::Delivered { .. }));
        assert_eq!(server.join().unwrap(), 120, "one detent, applied once");
    }

    #[test]
    fn a_refused_release_is_made_good_by_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let backend = ControlBackend::start(&path).unwrap();
        let mut stream = Reconnecting::new(&path, Duration::from_secs(5));
        let left = Button::Left.bit();
        let at = |display, down| Record {
            display: Some(display),
            x: Some(100),
            y: Some(100),
            buttons_set: left,
            buttons_down: if down { left } else { 0 },
            answer: true,
            ..Record::default()
        };
        let delivered = |s: Sent| matches!(s, Sent::Delivered { refused: None, .. });
        assert!(delivered(stream.send(&at(0, true), &at(0, true))));
        assert_eq!(backend.pointer().2, left);
        // The release names a display the backend lacks: refused, and the button stays down.
        let up = at(0, false);
        let refused = stream.send(&at(9, false), &up);
        assert!(
            matches!(
                refused,
                Sent::Delivered {
                    refused: Some(_),
                    ..
                }
            ),
            "{refused:?}"
        );
        assert_eq!(backend.pointer().2, left);
        // The next record, motion only, brings the whole state first: the button is let go.
        let motion = Record {
            display: Some(0),
            x: Some(200),
            y: Some(200),
            ..Record::default()
        };
        assert!(delivered(stream.send(
            &motion,
            &Record {
                x: Some(200),
                y: Some(200),
                buttons_set: 0,
                ..up
            }
        )));
        assert_eq!(backend.pointer(), (0, Some(200), 0));
    }
}
