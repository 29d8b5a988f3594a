//! A QMP connection that pipelines commands: the sender never waits for a reply, and a reader
//! thread counts them, so a steady stream keeps its schedule whatever the server's latency.

use std::io::{BufRead, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pvmouse_vmtest::Qmp;

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

/// `input-send-event` moving the pointer to (x, y), QEMU's 0..=32767 scale.
pub fn move_command(x: u32, y: u32) -> String {
    format!(
        "{{\"execute\":\"input-send-event\",\"arguments\":{{\"events\":[\
         {{\"type\":\"abs\",\"data\":{{\"axis\":\"x\",\"value\":{x}}}}},\
         {{\"type\":\"abs\",\"data\":{{\"axis\":\"y\",\"value\":{y}}}}}]}}}}\n"
    )
}

/// `input-send-event` pressing or releasing the left button.
pub fn button_command(down: bool) -> String {
    format!(
        "{{\"execute\":\"input-send-event\",\"arguments\":{{\"events\":[\
         {{\"type\":\"btn\",\"data\":{{\"down\":{down},\"button\":\"left\"}}}}]}}}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_valid_qmp() {
        let m: serde_json::Value = serde_json::from_str(&move_command(16, 32751)).unwrap();
        assert_eq!(m["arguments"]["events"][1]["data"]["value"], 32751);
        let b: serde_json::Value = serde_json::from_str(&button_command(true)).unwrap();
        assert_eq!(b["arguments"]["events"][0]["data"]["down"], true);
    }
}
