//! Submits exactly N pointer frames through an active device over a mock queue, for counting
//! instructions under callgrind, which unlike wall-clock time on a shared VM is repeatable:
//!
//!     valgrind --tool=callgrind target/release/examples/frame_instructions 34000
//!     valgrind --tool=callgrind target/release/examples/frame_instructions 68000
//!
//! The difference of the two totals divided by 34000 is the cost of one frame, including the
//! mock guest posting three buffers for it.

use std::sync::Arc;

use vhost_user_pvmouse::Identity;
use vhost_user_pvmouse::NoticeBoard;
use vhost_user_pvmouse::PointerAction;
use vhost_user_pvmouse::testing::{MockEventQueue, MockRing, guest_memory};
use vhost_user_pvmouse::{PointerDevice, PvMouse};

fn main() {
    let frames: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .expect("usage: frame_instructions FRAMES");
    let mem = guest_memory();
    let mut ring = MockRing::new(&mem, 1024);
    let identity = Identity::new("pvmouse", "bench", 2).expect("identity");
    let dev =
        PvMouse::new(identity, Arc::new(NoticeBoard::new().expect("eventfd"))).expect("device");
    dev.activate(MockEventQueue::new(&mem, &ring));
    for i in 0..7 {
        ring.offer_event_buffer(i);
    }
    dev.refill();
    let mut sent = 0u64;
    while sent < frames {
        for b in 0..1020 {
            ring.offer_event_buffer(b);
        }
        for _ in 0..340 {
            sent += 1;
            let v = (sent % 60_000) as u16 + 1;
            dev.submit(&[PointerAction::Move {
                display: None,
                x: Some(v),
                y: Some(v),
            }])
            .expect("accepted");
        }
    }
}
