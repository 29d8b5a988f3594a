//! A small blocking QMP client, for QEMU's monitor and pvmouse's control socket alike.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Asynchronous events received while waiting for replies, oldest first.
    pub events: Vec<Value>,
}

impl Qmp {
    /// Connects (retrying while the socket appears) and negotiates capabilities.
    pub fn connect(path: &Path, timeout: Duration) -> std::io::Result<Self> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut q = Qmp {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            events: Vec::new(),
        };
        let greeting = q.read()?;
        if greeting.get("QMP").is_none() {
            return Err(std::io::Error::other(format!(
                "not a QMP greeting: {greeting}"
            )));
        }
        q.execute("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    fn read(&mut self) -> std::io::Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "QMP connection closed",
            ));
        }
        serde_json::from_str(&line).map_err(std::io::Error::other)
    }

    /// The command's `return` value; a QMP error becomes an `io::Error` carrying its text.
    pub fn execute(&mut self, command: &str, arguments: Value) -> std::io::Result<Value> {
        let reply = self.raw(command, arguments)?;
        match reply.get("return") {
            Some(v) => Ok(v.clone()),
            None => Err(std::io::Error::other(format!("{command} failed: {reply}"))),
        }
    }

    /// The whole reply, error or not.
    pub fn raw(&mut self, command: &str, arguments: Value) -> std::io::Result<Value> {
        writeln!(
            self.writer,
            "{}",
            json!({"execute": command, "arguments": arguments})
        )?;
        loop {
            let v = self.read()?;
            if v.get("event").is_some() {
                self.events.push(v);
            } else {
                return Ok(v);
            }
        }
    }

    /// The connection's two halves, for clients that pipeline commands and read replies on
    /// another thread.
    pub fn split(self) -> (BufReader<UnixStream>, UnixStream) {
        (self.reader, self.writer)
    }

    /// Waits for the named event; earlier ones are kept for later waits.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> std::io::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
                return Ok(self.events.remove(i));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no {name} event within {timeout:?}"),
                ));
            }
            self.writer.set_read_timeout(Some(left))?;
            let v = self.read();
            self.writer
                .set_read_timeout(Some(Duration::from_secs(30)))?;
            let v = v?;
            if v.get("event").is_some() {
                self.events.push(v);
            }
        }
    }
}
