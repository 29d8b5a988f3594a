//! A QMP connection that pipelines commands: the sender never waits for a reply, and a reader
//! thread counts them, so a steady stream keeps its schedule whatever the server's latency.

use std::io::{BufRead, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::qmp::Qmp;

#[derive(Debug, Clone, Default)]
pub struct Replies {
    pub ok: u64,
    pub errors: u64,
    /// The first error the server gave, to show why commands were refused.
    pub first_error: Option<String>,
}

impl Replies {
    pub fn total(&self) -> u64 {
        self.ok + self.errors
    }
}

#[derive(Debug)]
pub struct QmpStream {
    writer: UnixStream,
    replies: Arc<Mutex<Replies>>,
}

impl QmpStream {
    pub fn connect(path: &Path) -> std::io::Result<QmpStream> {
        let (mut reader, writer) = Qmp::connect(path, Duration::from_secs(10))?.split();
        writer.set_read_timeout(None)?;
        let replies: Arc<Mutex<Replies>> = Arc::default();
        let sink = replies.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let mut r = sink.lock().unwrap_or_else(|e| e.into_inner());
                if line.starts_with("{\"return\"") {
                    r.ok += 1;
                } else if line.contains("\"error\"") && !line.contains("\"event\"") {
                    r.errors += 1;
                    r.first_error.get_or_insert_with(|| line.trim().to_owned());
                }
            }
        });
        Ok(QmpStream { writer, replies })
    }

    /// Writes one command line (ending in a newline) without waiting for its reply.
    pub fn send(&mut self, line: &str) -> std::io::Result<()> {
        self.writer.write_all(line.as_bytes())
    }

    pub fn replies(&self) -> Replies {
        self.replies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until `count` replies in all have arrived, or `timeout`.
    pub fn wait_replies(&self, count: u64, timeout: Duration) -> Replies {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.replies();
            if r.total() >= count || Instant::now() >= deadline {
                return r;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for QmpStream {
    fn drop(&mut self) {
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
    }
}
