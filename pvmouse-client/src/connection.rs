//! One QMP connection: greeting, negotiation, commands and their replies, events between them.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use pvmouse_spec::control::command as name;
use serde_json::{Value, json};

use crate::command::{Command, Status, Version};
use crate::stream::RefusalHook;
use crate::{Error, RecordStream, Result};

/// How long a reply may take before the connection is given up, unless set otherwise. The
/// backend answers at once; this is for a server that hangs.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a write may wait for the backend to take it (spec/control.md, "Clients").
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// A negotiated QMP connection to pvmouse's control socket (or to QEMU's monitor).
#[derive(Debug)]
pub struct Connection {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    greeting: Value,
    /// The greeting as it came, line ending included.
    greeting_line: String,
    /// Events received while waiting for replies, oldest first.
    events: VecDeque<Value>,
    timeout: Duration,
    /// The line being read, reused.
    line: String,
}

impl Connection {
    /// Connects, reads the greeting and negotiates capabilities.
    pub fn connect(path: &Path) -> Result<Self> {
        let mut c = Self::greeted(path)?;
        c.execute(name::QMP_CAPABILITIES, json!({}))?;
        Ok(c)
    }

    /// [`connect`](Self::connect), retrying while the socket does not exist or refuses, for up
    /// to `patience`: a backend or QEMU that is still starting.
    pub fn connect_within(path: &Path, patience: Duration) -> Result<Self> {
        let deadline = Instant::now() + patience;
        loop {
            match Self::connect(path) {
                Ok(c) => return Ok(c),
                Err(Error::Io(e))
                    if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::ConnectionRefused)
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// [`connect`](Self::connect), giving up on a greeting or reply not read within `timeout`
    /// (later replies keep it too): a check that must not hang on a hung backend.
    pub fn connect_timeout(path: &Path, timeout: Duration) -> Result<Self> {
        let mut c = Self::greeted_within(path, timeout)?;
        c.execute(name::QMP_CAPABILITIES, json!({}))?;
        Ok(c)
    }

    /// Connects and reads the greeting, but does not negotiate: for tests of the protocol's
    /// own rules, which send things a client should not.
    pub fn greeted(path: &Path) -> Result<Self> {
        Self::greeted_within(path, DEFAULT_REPLY_TIMEOUT)
    }

    fn greeted_within(path: &Path, timeout: Duration) -> Result<Self> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(timeout))?;
        // A backend that stops reading (hung, or stopped) fails a write after this long instead
        // of holding the caller for ever (spec/control.md).
        stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let mut c = Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            greeting: Value::Null,
            greeting_line: String::new(),
            events: VecDeque::new(),
            timeout,
            line: String::with_capacity(256),
        };
        let greeting = c.read_value()?;
        if greeting.get("QMP").is_none() {
            return Err(Error::Protocol(format!("not a QMP greeting: {greeting}")));
        }
        c.greeting = greeting;
        c.greeting_line = c.line.clone();
        Ok(c)
    }

    /// The server's greeting (`{"QMP": {"version": …}}`).
    pub fn greeting(&self) -> &Value {
        &self.greeting
    }

    /// The greeting's line as it came: for tests of the protocol's framing.
    pub fn greeting_line(&self) -> &str {
        &self.greeting_line
    }

    /// How long a reply may take before [`Error::Timeout`].
    pub fn set_reply_timeout(&mut self, timeout: Duration) -> Result<()> {
        self.writer.set_read_timeout(Some(timeout))?;
        self.timeout = timeout;
        Ok(())
    }

    /// A typed command; its reply, or [`Error::Refused`].
    pub fn send<C: Command>(&mut self, command: &C) -> Result<C::Reply> {
        let arguments = match serde_json::to_value(command) {
            // A command without arguments: QMP wants an object, if anything.
            Ok(Value::Null) => json!({}),
            Ok(v) => v,
            Err(e) => return Err(Error::Protocol(format!("{}: {e}", C::NAME))),
        };
        let value = self.execute(C::NAME, arguments)?;
        serde_json::from_value(value)
            .map_err(|e| Error::Protocol(format!("the reply to {}: {e}", C::NAME)))
    }

    /// Any command by name: its `return` value, or [`Error::Refused`].
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        let reply = self.reply(command, arguments)?;
        into_return(command, reply)
    }

    /// Any command by name: the whole reply object, `return` or `error`, for callers that
    /// look at both.
    pub fn reply(&mut self, command: &str, arguments: Value) -> Result<Value> {
        self.write_line(&json!({"execute": command, "arguments": arguments}).to_string())?;
        self.next_reply()
    }

    /// `query-pvmouse`.
    pub fn status(&mut self) -> Result<Status> {
        self.send(&crate::command::QueryPvmouse)
    }

    /// `query-version`.
    pub fn version(&mut self) -> Result<Version> {
        self.send(&crate::command::QueryVersion)
    }

    /// Writes one line as it is (a newline is added): for tests of malformed input.
    pub fn write_line(&mut self, line: &str) -> Result<()> {
        self.writer.write_all(line.as_bytes())?;
        self.writer.write_all(b"\n")?;
        Ok(())
    }

    /// Writes bytes as they are.
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.writer.write_all(bytes)?;
        Ok(())
    }

    /// The next reply (anything that is not an event); events before it are kept.
    pub fn next_reply(&mut self) -> Result<Value> {
        loop {
            let v = self.read_value()?;
            if v.get("event").is_some() {
                self.events.push_back(v);
            } else {
                return Ok(v);
            }
        }
    }

    /// The next JSON value the server sends, reply or event.
    pub fn read_value(&mut self) -> Result<Value> {
        self.read_line()?;
        serde_json::from_str(&self.line)
            .map_err(|e| Error::Protocol(format!("{e}: {:?}", self.line.trim_end())))
    }

    /// The next line the server sends, as it came (line ending included): for tests of the
    /// protocol's framing.
    pub fn read_line(&mut self) -> Result<&str> {
        self.line.clear();
        match self.reader.read_line(&mut self.line) {
            Ok(0) => Err(Error::Closed),
            Ok(_) => Ok(&self.line),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(Error::Timeout("reply".into()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Waits for the named event, up to `timeout`; events of other names are kept.
    pub fn wait_event(&mut self, event: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.events.iter().position(|e| e["event"] == event) {
                if let Some(e) = self.events.remove(i) {
                    return Ok(e);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout(format!("{event} event within {timeout:?}")));
            }
            self.writer.set_read_timeout(Some(left))?;
            let v = self.read_value();
            self.writer.set_read_timeout(Some(self.timeout))?;
            match v {
                Ok(v) if v.get("event").is_some() => self.events.push_back(v),
                Ok(v) => return Err(Error::Protocol(format!("a reply nobody asked for: {v}"))),
                Err(Error::Timeout(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The events received so far, oldest first, taken.
    pub fn take_events(&mut self) -> Vec<Value> {
        self.events.drain(..).collect()
    }

    /// Switches the connection to stream records (`pvmouse-stream`).
    pub fn into_stream(self) -> Result<RecordStream> {
        self.into_stream_with(None)
    }

    /// [`into_stream`](Self::into_stream), telling `hook` of each refusal of records that asked
    /// for no answer as it arrives.
    pub fn into_stream_with(mut self, hook: Option<RefusalHook>) -> Result<RecordStream> {
        self.execute(name::PVMOUSE_STREAM, json!({}))?;
        RecordStream::new(self, hook)
    }

    /// How long a reply is waited for.
    pub fn reply_timeout(&self) -> Duration {
        self.timeout
    }

    /// The connection's two halves, for clients that pipeline commands and read the replies on
    /// another thread.
    pub fn split(self) -> (BufReader<UnixStream>, UnixStream) {
        (self.reader, self.writer)
    }

    /// The socket, to shut it down or to change its timeouts for one read (what
    /// [`set_reply_timeout`](Self::set_reply_timeout) set is what later reads expect).
    pub fn socket(&self) -> &UnixStream {
        &self.writer
    }
}

/// A reply's `return` value, or its `error` as [`Error::Refused`].
pub(crate) fn into_return(command: &str, mut reply: Value) -> Result<Value> {
    if let Some(v) = reply.get_mut("return") {
        return Ok(v.take());
    }
    match reply.get("error") {
        Some(e) => Err(Error::Refused {
            command: command.to_owned(),
            class: e["class"].as_str().unwrap_or("GenericError").to_owned(),
            desc: e["desc"].as_str().unwrap_or_default().to_owned(),
        }),
        None => Err(Error::Protocol(format!(
            "neither return nor error: {reply}"
        ))),
    }
}
