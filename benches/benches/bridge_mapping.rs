//! The guest bridge's per-frame work without the syscalls: a raw pvmouse frame (as read from
//! evdev) fed event by event into the mapper, which returns the uinput frame to emit.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use pvmouse_guestd::layout::{Layout, ParseLayout};
use pvmouse_guestd::mapper::Mapper;
use pvmouse_spec::InputEvent;
use pvmouse_spec::evdev::{ABS_X, ABS_Y, BTN_LEFT, EV_ABS, EV_KEY};
use pvmouse_spec::profile::DISPLAY_AXIS;

fn bridge_mapping(c: &mut Criterion) {
    let layout = Layout::parse_spec("0=1024x768@0,0,1=1280x1024@1024,0").expect("layout");
    let mut g = c.benchmark_group("bridge_mapping");
    g.bench_function("move_frame", |b| {
        let mut m = Mapper::new(layout.clone());
        let mut i = 0i32;
        b.iter(|| {
            i = (i + 1) % 60_000;
            black_box(m.feed(InputEvent::new(EV_ABS, ABS_X, i)));
            black_box(m.feed(InputEvent::new(EV_ABS, ABS_Y, i)));
            black_box(m.feed(InputEvent::syn_report()))
        })
    });
    g.bench_function("display_change_and_click_frame", |b| {
        let mut m = Mapper::new(layout.clone());
        let mut i = 0i32;
        b.iter(|| {
            i += 1;
            black_box(m.feed(InputEvent::new(EV_ABS, DISPLAY_AXIS, i % 2)));
            black_box(m.feed(InputEvent::new(EV_ABS, ABS_X, i % 60_000)));
            black_box(m.feed(InputEvent::new(EV_ABS, ABS_Y, i % 50_000)));
            black_box(m.feed(InputEvent::new(EV_KEY, BTN_LEFT, i % 2)));
            black_box(m.feed(InputEvent::syn_report()))
        })
    });
    g.finish();
}

criterion_group!(benches, bridge_mapping);
criterion_main!(benches);
