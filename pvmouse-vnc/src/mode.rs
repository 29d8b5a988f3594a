//! pvmouse's pointer mode (absolute or relative), followed for the whole process on one
//! control connection of its own: `query-pvmouse` when it connects, then the
//! `PVMOUSE_MODE_CHANGE` events. Viewers that asked to be told of pointer type changes are woken
//! through their eventfd when it changes; nothing polls (while the backend is away, the watcher
//! tries to connect again every 2 s).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use pvmouse_spec::control::event;
use pvmouse_spec::profile::PointerMode;
use vmm_sys_util::eventfd::EventFd;

/// How long the watcher waits before it connects again after the backend went away.
const RETRY: Duration = Duration::from_secs(2);

/// The backend's pointer mode as last heard. Absolute until the backend says otherwise, and
/// kept as it was while the backend is away (a restarted backend keeps its mode).
#[derive(Debug, Default)]
pub struct ModeWatch {
    /// Read after every server message of every framed viewer: an atomic, not under the lock.
    relative: AtomicBool,
    /// Woken on each change; gone viewers are dropped as they are met. Changes are made under
    /// this lock, so that a subscriber misses none.
    woken: Mutex<Vec<Weak<EventFd>>>,
}

impl ModeWatch {
    /// Follows the mode of the backend at `control` on a thread of its own, for as long as the
    /// process runs.
    pub fn start(control: PathBuf) -> std::io::Result<Arc<Self>> {
        let watch = Arc::new(Self::default());
        let theirs = watch.clone();
        std::thread::Builder::new()
            .name("pvmouse-vnc-mode".into())
            .spawn(move || theirs.follow(&control))?;
        Ok(watch)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Weak<EventFd>>> {
        self.woken.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn mode(&self) -> PointerMode {
        if self.relative.load(Ordering::Acquire) {
            PointerMode::Relative
        } else {
            PointerMode::Absolute
        }
    }

    /// Writes `wake` on every change of mode from now on, until it is dropped.
    pub fn subscribe(&self, wake: &Arc<EventFd>) {
        let mut woken = self.lock();
        // Viewers come and go between changes: the gone ones are dropped here too.
        woken.retain(|w| w.strong_count() > 0);
        woken.push(Arc::downgrade(wake));
    }

    /// Sets the mode and wakes the subscribers if it changed.
    pub fn set(&self, mode: PointerMode) {
        let mut woken = self.lock();
        let relative = mode == PointerMode::Relative;
        if self.relative.swap(relative, Ordering::AcqRel) == relative {
            return;
        }
        tracing::info!(mode = mode.name(), "pvmouse's pointer mode changed");
        woken.retain(|w| match w.upgrade() {
            Some(wake) => {
                // A full counter already wakes its reader.
                let _ = wake.write(1);
                true
            }
            None => false,
        });
    }

    fn follow(&self, control: &Path) {
        let mut last_error = String::new();
        loop {
            let error = match self.follow_once(control) {
                Ok(()) => "the backend closed the connection".to_owned(),
                Err(e) => e.to_string(),
            };
            if error != last_error {
                tracing::info!(control = %control.display(), "following pvmouse's pointer mode: {error}; trying again every {RETRY:?}");
                last_error = error;
            }
            std::thread::sleep(RETRY);
        }
    }

    fn follow_once(&self, control: &Path) -> Result<(), pvmouse_client::Error> {
        let mut conn = pvmouse_client::Connection::connect(control)?;
        self.set(conn.status()?.mode);
        for value in conn.take_events() {
            self.take_event(&value);
        }
        let (mut reader, _writer) = conn.split();
        // The connection's reply timeout would end it after 30 idle seconds: events come when
        // they come.
        reader.get_ref().set_read_timeout(None)?;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            // Anything that is not an event of ours is no business of this connection.
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) {
                self.take_event(&value);
            }
        }
    }

    fn take_event(&self, value: &serde_json::Value) {
        if value["event"] != event::MODE_CHANGE {
            return;
        }
        if let Some(mode) = value["data"]["mode"]
            .as_str()
            .and_then(PointerMode::from_name)
        {
            self.set(mode);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pvmouse_client::command::PvmouseSetMode;
    use vhost_user_pvmouse::testing::ControlBackend;

    #[test]
    fn the_mode_is_followed_and_subscribers_are_woken_once_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let backend = ControlBackend::start(&path).unwrap();
        let watch = ModeWatch::start(path.clone()).unwrap();
        let wake = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        watch.subscribe(&wake);
        let mut ctl = pvmouse_client::Connection::connect(&path).unwrap();
        ctl.send(&PvmouseSetMode {
            mode: PointerMode::Relative,
        })
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while watch.mode() != PointerMode::Relative {
            assert!(std::time::Instant::now() < deadline, "never heard");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(wake.read().unwrap(), 1, "woken once");
        // The same mode again wakes nobody.
        watch.set(PointerMode::Relative);
        assert!(wake.read().is_err(), "nothing more to read");
        drop(backend);
    }
}
