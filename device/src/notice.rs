//! Things the device tells control clients without being asked (QMP events).
//!
//! The device posts notices; the control server drains them when the board's eventfd fires.
//! Notices are states, not history: the board keeps the newest one of each kind, so however
//! fast a guest makes the device post (a bridge flapping its presence, a driver resetting in a
//! loop), the board holds at most one notice per kind and nothing newer is ever lost.

use std::sync::Mutex;

use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// A vhost-user frontend (QEMU) connected or went away.
    Frontend { connected: bool },
    /// The guest driver started using the event queue, or stopped (reset, VM stop, disconnect).
    Driver { active: bool },
    /// The guest bridge announced itself, said goodbye, or fell silent.
    Bridge { present: bool, version: u8 },
    /// The host switched the pointer between absolute and relative mode.
    Mode(pvmouse_spec::profile::PointerMode),
}

/// The kinds of notice, one slot each wherever notices are held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoticeKind {
    Frontend,
    Driver,
    Bridge,
    Mode,
}

impl NoticeKind {
    pub const COUNT: usize = 4;

    pub const fn index(self) -> usize {
        self as usize
    }

    /// Whether the guest decides how often this kind changes. Such kinds are rate-limited on
    /// their way to clients; the frontend's come from the host and pass as they happen.
    pub const fn guest_controlled(self) -> bool {
        matches!(self, NoticeKind::Driver | NoticeKind::Bridge)
    }
}

impl Notice {
    pub const fn kind(&self) -> NoticeKind {
        match self {
            Notice::Frontend { .. } => NoticeKind::Frontend,
            Notice::Driver { .. } => NoticeKind::Driver,
            Notice::Bridge { .. } => NoticeKind::Bridge,
            Notice::Mode(_) => NoticeKind::Mode,
        }
    }
}

/// The newest item of each notice kind (a notice, or an event encoded for one client), with
/// the order they were put in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latest<T> {
    slots: [Option<(u64, T)>; NoticeKind::COUNT],
    next_seq: u64,
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Self {
            slots: [const { None }; NoticeKind::COUNT],
            next_seq: 0,
        }
    }
}

impl<T> Latest<T> {
    /// Keeps `item`, replacing an older one of its kind.
    pub fn put(&mut self, kind: NoticeKind, item: T) {
        self.slots[kind.index()] = Some((self.next_seq, item));
        self.next_seq += 1;
    }

    pub fn remove(&mut self, kind: NoticeKind) {
        self.slots[kind.index()] = None;
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().flatten().map(|(_, item)| item)
    }

    /// Takes every held item, oldest first.
    pub fn take_in_order(&mut self) -> impl Iterator<Item = T> + use<T> {
        let mut held = std::mem::replace(&mut self.slots, [const { None }; NoticeKind::COUNT]);
        held.sort_by_key(|slot| slot.as_ref().map_or(u64::MAX, |(seq, _)| *seq));
        held.into_iter().flatten().map(|(_, item)| item)
    }
}

#[derive(Debug)]
pub struct NoticeBoard {
    latest: Mutex<Latest<Notice>>,
    ready: EventFd,
}

impl NoticeBoard {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            latest: Mutex::new(Latest::default()),
            ready: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    pub fn post(&self, notice: Notice) {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put(notice.kind(), notice);
        // A full eventfd counter only means the reader is already due to wake.
        let _ = self.ready.write(1);
    }

    /// Takes the newest notice of each kind posted since the last drain, oldest first.
    pub fn drain(&self) -> Vec<Notice> {
        let _ = self.ready.read();
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest.take_in_order().collect()
    }

    /// Readable while notices are waiting.
    pub fn eventfd(&self) -> &EventFd {
        &self.ready
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_storm_leaves_the_newest_state_of_each_kind_in_posting_order() {
        let board = NoticeBoard::new().unwrap();
        board.post(Notice::Frontend { connected: true });
        for i in 0..100_000u32 {
            board.post(Notice::Bridge {
                present: i % 2 == 0,
                version: 1,
            });
            board.post(Notice::Driver { active: i % 3 == 0 });
        }
        assert_eq!(
            board.drain(),
            [
                Notice::Frontend { connected: true },
                Notice::Bridge {
                    present: false,
                    version: 1
                },
                Notice::Driver { active: true },
            ]
        );
        assert!(board.drain().is_empty());
    }
}
