//! An in-process control server on a real Unix socket, in front of a real `PvMouse` with no
//! guest, and a line-reading client for it. Shared by the control socket's test files.

#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "test support: not every test file uses every helper; a panic is the failure report"
)]

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pvmouse_client::Connection;
use serde_json::{Value, json};
use vhost_user_pvmouse::Identity;
use vhost_user_pvmouse::NoticeBoard;
use vhost_user_pvmouse::PvMouse;
use vhost_user_pvmouse::{ControlHandle, ControlServer};

pub struct Server {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub notices: Arc<NoticeBoard>,
    handle: Option<ControlHandle>,
}

impl Server {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let notices = Arc::new(NoticeBoard::new().unwrap());
        let identity = Identity::new("pvmouse", "s", 2).unwrap();
        let device = Arc::new(PvMouse::new(identity, notices.clone()).unwrap());
        let handle = ControlServer::bind(&path, device, notices.clone())
            .unwrap()
            .spawn()
            .unwrap();
        Server {
            _dir: dir,
            path,
            notices,
            handle: Some(handle),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.stop().unwrap();
        }
    }
}

/// A line-reading client over [`Connection`], for tests that look at the protocol itself.
pub struct Client {
    conn: Connection,
}

impl Client {
    pub fn connect(path: &Path) -> Self {
        let mut conn = Connection::greeted(path).unwrap();
        conn.set_reply_timeout(Duration::from_secs(10)).unwrap();
        Client { conn }
    }

    pub fn negotiated(path: &Path) -> Self {
        let mut c = Self::connect(path);
        c.send(&json!({"execute": "qmp_capabilities"}));
        assert_eq!(c.read().unwrap(), json!({"return": {}}));
        c
    }

    /// The socket, to change a timeout or shut it down.
    pub fn socket(&self) -> &UnixStream {
        self.conn.socket()
    }

    pub fn send(&mut self, v: &Value) {
        self.conn.write_raw(v.to_string().as_bytes()).unwrap();
    }

    /// The next line, or None at end of stream or when nothing came within the read timeout.
    pub fn read(&mut self) -> Option<Value> {
        match self.conn.read_value() {
            Ok(v) => Some(v),
            Err(pvmouse_client::Error::Closed | pvmouse_client::Error::Timeout(_)) => None,
            Err(e) => panic!("{e}"),
        }
    }

    /// The reply to `query-version`, skipping events; None if the server closed the connection.
    pub fn query_version(&mut self) -> Option<Value> {
        self.send(&json!({"execute": "query-version", "id": "v"}));
        loop {
            let v = self.read()?;
            if v["id"] == "v" {
                return Some(v);
            }
        }
    }
}
