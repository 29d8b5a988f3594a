//! The harness's QMP client, for QEMU's monitor and pvmouse's control socket alike: a
//! [`pvmouse_client::Connection`] with `io::Result`s, as the harness's helpers return them.

use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use pvmouse_client::Connection;
use serde_json::Value;

#[derive(Debug)]
pub struct Qmp {
    conn: Connection,
    /// Asynchronous events received while waiting for replies, oldest first.
    pub events: Vec<Value>,
}

fn io(e: pvmouse_client::Error) -> std::io::Error {
    match e {
        pvmouse_client::Error::Io(e) => e,
        pvmouse_client::Error::Closed => {
            std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "QMP connection closed")
        }
        pvmouse_client::Error::Timeout(what) => {
            std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no {what} in time"))
        }
        e => std::io::Error::other(e.to_string()),
    }
}

impl Qmp {
    /// Connects (retrying while the socket appears) and negotiates capabilities.
    pub fn connect(path: &Path, timeout: Duration) -> std::io::Result<Self> {
        Ok(Qmp {
            conn: Connection::connect_within(path, timeout).map_err(io)?,
            events: Vec::new(),
        })
    }

    /// The command's `return` value; a QMP error becomes an `io::Error` carrying its text.
    pub fn execute(&mut self, command: &str, arguments: Value) -> std::io::Result<Value> {
        let reply = self.conn.execute(command, arguments);
        self.events.extend(self.conn.take_events());
        reply.map_err(|e| std::io::Error::other(format!("{command} failed: {e}")))
    }

    /// The whole reply, error or not.
    pub fn raw(&mut self, command: &str, arguments: Value) -> std::io::Result<Value> {
        let reply = self.conn.reply(command, arguments);
        self.events.extend(self.conn.take_events());
        reply.map_err(io)
    }

    /// The connection's two halves, for clients that pipeline commands and read replies on
    /// another thread.
    pub fn split(self) -> (BufReader<UnixStream>, UnixStream) {
        self.conn.split()
    }

    /// Waits for the named event; earlier ones are kept for later waits.
    pub fn wait_event(&mut self, name: &str, timeout: Duration) -> std::io::Result<Value> {
        if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
            return Ok(self.events.remove(i));
        }
        let found = self.conn.wait_event(name, timeout);
        self.events.extend(self.conn.take_events());
        found.map_err(io)
    }
}
