//! What the device's unit tests share: a device, a guest bridge, a layout.

use std::sync::Arc;

use pvmouse_spec::InputEvent;
use pvmouse_spec::evdev::{EV_ABS, EV_MSC};
use pvmouse_spec::profile::{Button, STATUS_MSC_CODE};
use pvmouse_spec::status::Acknowledgement;

use super::PvMouse;
use crate::identity::Identity;
use crate::notice::NoticeBoard;
use crate::pointer::PointerAction;
use crate::testing::MockRing;

pub(crate) fn device() -> PvMouse {
    let identity = Identity::new("pvmouse", "s", 2).unwrap();
    PvMouse::new(identity, Arc::new(NoticeBoard::new().unwrap())).unwrap()
}

pub(crate) fn press(down: bool) -> [PointerAction; 1] {
    [PointerAction::Button {
        button: Button::Left,
        down,
    }]
}

pub(crate) fn events(ring: &MockRing, from: u16) -> Vec<InputEvent> {
    (from..ring.used_idx())
        .map(|n| InputEvent::from_le_bytes(ring.used_event(n)))
        .collect()
}

/// A guest bridge on the status queue, as the tests below drive it.
pub(crate) struct StatusWriter<'m> {
    pub(crate) mem: &'m vm_memory::GuestMemoryMmap,
    pub(crate) ring: MockRing<'m>,
    pub(crate) queue: virtio_queue::Queue,
    pub(crate) next: u16,
}

impl<'m> StatusWriter<'m> {
    pub(crate) fn new(mem: &'m vm_memory::GuestMemoryMmap) -> Self {
        let ring = MockRing::at(mem, 0x4_0000, 16);
        let queue = ring.queue();
        Self {
            mem,
            ring,
            queue,
            next: 0,
        }
    }

    pub(crate) fn send(&mut self, dev: &PvMouse, values: &[i32]) {
        for v in values {
            let event = InputEvent::new(EV_MSC, STATUS_MSC_CODE, *v);
            self.ring
                .offer_status_buffer(self.next % 16, event.to_le_bytes());
            self.next += 1;
            dev.service_statusq(&mut self.queue, self.mem);
        }
    }
}

pub(crate) fn move_to(display: u8, x: u16, y: u16) -> [PointerAction; 1] {
    [PointerAction::Move {
        display: Some(display),
        x: Some(x),
        y: Some(y),
    }]
}

pub(crate) fn side_by_side() -> pvmouse_spec::layout::Layout {
    use pvmouse_spec::layout::{Layout, Rect};
    let rect = |x, width, height| Rect {
        x,
        y: 0,
        width,
        height,
    };
    Layout::new(std::collections::BTreeMap::from([
        (0, rect(0, 1024, 768)),
        (1, rect(1024, 1280, 1024)),
    ]))
    .unwrap()
}

pub(crate) fn heartbeat() -> i32 {
    pvmouse_spec::status::StatusMessage::BridgePresent { version: 1 }.encode()
}

pub(crate) fn ack(a: Acknowledgement) -> [InputEvent; 2] {
    [
        InputEvent::new(EV_MSC, STATUS_MSC_CODE, a.encode()),
        InputEvent::syn_report(),
    ]
}

pub(crate) fn abs(code: u16, value: i32) -> InputEvent {
    InputEvent::new(EV_ABS, code, value)
}
