//! Things the device tells control clients without being asked (QMP events).
//!
//! The vring worker posts notices; the control server drains them when the board's eventfd
//! fires. The board is bounded: if no control loop drains it, the oldest notices go first.

use std::collections::VecDeque;
use std::sync::Mutex;

use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

const MAX_NOTICES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// A vhost-user frontend (QEMU) connected or went away.
    Frontend { connected: bool },
    /// The guest driver started using the event queue, or stopped (reset, VM stop, disconnect).
    Driver { active: bool },
    /// The guest bridge announced itself, said goodbye, or fell silent.
    Bridge { present: bool, version: u8 },
}

#[derive(Debug)]
pub struct NoticeBoard {
    queue: Mutex<VecDeque<Notice>>,
    ready: EventFd,
}

impl NoticeBoard {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            queue: Mutex::new(VecDeque::with_capacity(MAX_NOTICES)),
            ready: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    pub fn post(&self, notice: Notice) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() == MAX_NOTICES {
            q.pop_front();
        }
        q.push_back(notice);
        // A full eventfd counter only means the reader is already due to wake.
        let _ = self.ready.write(1);
    }

    /// Takes every posted notice, oldest first.
    pub fn drain(&self) -> Vec<Notice> {
        let _ = self.ready.read();
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        q.drain(..).collect()
    }

    /// Readable while notices are waiting.
    pub fn eventfd(&self) -> &EventFd {
        &self.ready
    }
}
