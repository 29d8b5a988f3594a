//! What the guest bridge says on the status queue: its heartbeats and its layout messages.

use std::time::Instant;

use pvmouse_spec::evdev::EV_MSC;
use pvmouse_spec::profile::STATUS_MSC_CODE;
use virtio_queue::QueueT;
use vm_memory::GuestMemoryBackend;

use super::{Core, PvMouse};
use crate::notice::Notice;
use crate::presence::PresenceChange;
use crate::virtqueue::{self, QueueOutcome};

impl PvMouse {
    pub fn service_statusq<Q: QueueT, M: GuestMemoryBackend>(
        &self,
        queue: &mut Q,
        mem: &M,
    ) -> QueueOutcome {
        let now = Instant::now();
        let displays = self.identity.displays();
        let mut core = self.core();
        let mut change = None;
        // Stays unallocated unless a layout message completes, which is rare.
        let mut messages = Vec::new();
        let Core {
            bridge,
            faults,
            layouts,
            ..
        } = &mut *core;
        let out = virtqueue::drain_statusq(queue, mem, faults, |event| {
            if let Some(c) = bridge.on_status(event, now) {
                change = Some(c);
            }
            if event.kind == EV_MSC && event.code == STATUS_MSC_CODE {
                messages.extend(layouts.feed(event.value));
            }
        });
        if change == Some(PresenceChange::Disappeared) {
            core.forget_layout();
        }
        for message in messages {
            core.on_layout(message, displays, now);
        }
        core.deliver();
        core.persist();
        drop(core);
        self.post_presence(change);
        out
    }

    pub(super) fn post_presence(&self, change: Option<PresenceChange>) {
        let notice = match change {
            Some(PresenceChange::Appeared { version }) => Notice::Bridge {
                present: true,
                version,
            },
            Some(PresenceChange::Disappeared) => Notice::Bridge {
                present: false,
                version: 0,
            },
            None => return,
        };
        self.notices.post(notice);
    }
}
