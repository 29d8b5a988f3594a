//! From a control command to events in the used ring, over a mock split queue.
//!
//! Each timed frame is what the backend does per pointer move: `submit` updates the state, builds
//! and queues the frame, and delivers it from the calling thread, writing X, Y and SYN_REPORT
//! into three guest buffers and the used ring. Posting buffers is the guest's work and is not
//! timed; neither is the guest interrupt (an eventfd write in the daemon, absent in the mock).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use vhost_user_pvmouse::Identity;
use vhost_user_pvmouse::NoticeBoard;
use vhost_user_pvmouse::PointerAction;
use vhost_user_pvmouse::testing::parse_pvmouse_send;
use vhost_user_pvmouse::testing::parse_request;
use vhost_user_pvmouse::testing::{MockEventQueue, MockRing, guest_memory};
use vhost_user_pvmouse::{PointerDevice, PvMouse};

const QUEUE: u16 = 1024;
/// Frames per timed batch: three buffers each, within one queue's worth.
const BATCH: u16 = QUEUE / 3;

fn device() -> PvMouse {
    let identity = Identity::new("pvmouse", "bench", 2).expect("identity");
    PvMouse::new(identity, Arc::new(NoticeBoard::new().expect("eventfd"))).expect("device")
}

fn moves(i: u64) -> [PointerAction; 1] {
    // X and Y both change every frame, so each frame is exactly X, Y, SYN_REPORT.
    let v = (i % 60_000) as u16 + 1;
    [PointerAction::Move {
        display: None,
        x: Some(v),
        y: Some(v),
    }]
}

/// Runs `frame` `iters` times against an active device, timing only the frames.
fn timed_frames(iters: u64, mut frame: impl FnMut(&PvMouse, u64)) -> Duration {
    let mem = guest_memory();
    let mut ring = MockRing::new(&mem, QUEUE);
    let dev = device();
    dev.activate(MockEventQueue::new(&mem, &ring));
    // Drain the activation frame (display, five buttons, SYN) with exactly as many buffers, so
    // every timed frame finds an empty queue and all buffers returned.
    for i in 0..7 {
        ring.offer_event_buffer(i);
    }
    dev.refill();
    assert_eq!(ring.used_idx(), 7);
    let mut total = Duration::ZERO;
    let mut done = 0u64;
    while done < iters {
        let n = u64::from(BATCH).min(iters - done);
        let before = ring.used_idx();
        let events = u16::try_from(n * 3).expect("a batch's events fit the ring index");
        for i in 0..events {
            ring.offer_event_buffer(i);
        }
        let start = Instant::now();
        for i in 0..n {
            frame(&dev, done + i);
        }
        total += start.elapsed();
        assert_eq!(
            ring.used_idx().wrapping_sub(before),
            events,
            "every frame delivered"
        );
        done += n;
    }
    total
}

fn frame_path(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_path");
    g.bench_function("pointer_frame_to_used_ring", |b| {
        b.iter_custom(|iters| {
            timed_frames(iters, |dev, i| {
                black_box(dev.submit(&moves(i)).expect("accepted"));
            })
        })
    });
    g.bench_function("qmp_json_to_used_ring", |b| {
        let commands: Vec<Vec<u8>> = (0..1000)
            .map(|i| {
                let x = f64::from(i) / 1000.0;
                format!(r#"{{"execute":"pvmouse-send","arguments":{{"x":{x},"y":{x}}}}}"#)
                    .into_bytes()
            })
            .collect();
        b.iter_custom(|iters| {
            timed_frames(iters, |dev, i| {
                let bytes = &commands[(i % 1000) as usize];
                let value: serde_json::Value = serde_json::from_slice(bytes).expect("json");
                let request = parse_request(value).expect("request");
                let actions =
                    parse_pvmouse_send(&request.arguments, dev.identity()).expect("arguments");
                black_box(dev.submit(&actions).expect("accepted"));
            })
        })
    });
    g.bench_function("submit_while_guest_stalled_coalesces", |b| {
        let dev = device();
        let mem = guest_memory();
        let mut ring = MockRing::new(&mem, 4);
        ring.offer_event_buffer(0);
        dev.activate(MockEventQueue::new(&mem, &ring));
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            black_box(dev.submit(&moves(i)).expect("motion always fits"))
        });
        assert_eq!(
            dev.status().pending_frames,
            1,
            "motion folded into one frame"
        );
    });
    g.finish();
}

criterion_group!(benches, frame_path);
criterion_main!(benches);
