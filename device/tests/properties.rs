//! Properties that hold over any sequence of control commands and guest behaviour: the guest
//! posts buffers when it likes, on QEMU 10's 4-entry queue or a 64-entry one.
//!
//! - button transitions are never lost or reordered, and wheel movement is never lost;
//! - only absolute motion is coalesced: once everything is drained, the guest holds the newest
//!   position;
//! - every frame ends in SYN_REPORT;
//! - the queue never holds more than MAX_PENDING_FRAMES button or wheel frames plus one
//!   motion frame, and a command is refused only when its held frames would not fit;
//! - with the relative device, under any mix of positions, motion, switches, buttons and
//!   wheels: no button transition is lost or reordered, all relative motion arrives on the
//!   relative device and nothing else does, and in the order the guest sees, no position
//!   follows relative motion unless it is a switch back (renewed), which lands where the host
//!   last said.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::collections::VecDeque;
use std::sync::Arc;

use proptest::prelude::*;
use pvmouse_spec::evdev::{
    ABS_MISC, ABS_X, ABS_Y, EV_ABS, EV_KEY, EV_REL, EV_SYN, REL_HWHEEL_HI_RES, REL_WHEEL_HI_RES,
    REL_X, REL_Y, SYN_REPORT,
};
use pvmouse_spec::profile::{Button, MAX_PENDING_FRAMES, PointerMode};
use vhost_user_pvmouse::Identity;
use vhost_user_pvmouse::NoticeBoard;
use vhost_user_pvmouse::testing::{
    DeliveryLog, MockEventQueue, MockRing, descriptor_index, guest_memory,
};
use vhost_user_pvmouse::{PointerAction, WheelAxis};
use vhost_user_pvmouse::{PointerDevice, PvMouse};

#[derive(Debug, Clone)]
enum Step {
    Command(Vec<PointerAction>),
    /// The guest posts up to this many buffers (and reads what was written).
    Drain(u16),
}

fn action() -> impl Strategy<Value = PointerAction> {
    prop_oneof![
        (
            proptest::option::of(0u8..3),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u16>())
        )
            .prop_map(|(display, x, y)| PointerAction::Move { display, x, y }),
        (0usize..5, any::<bool>()).prop_map(|(b, down)| PointerAction::Button {
            button: Button::ALL[b],
            down
        }),
        (any::<bool>(), -400i32..400).prop_map(|(v, hi_res)| PointerAction::Wheel {
            axis: if v {
                WheelAxis::Vertical
            } else {
                WheelAxis::Horizontal
            },
            hi_res
        }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => proptest::collection::vec(action(), 1..5).prop_map(Step::Command),
        1 => (0u16..80).prop_map(Step::Drain),
    ]
}

/// The guest side: posts free buffers, collects written events in order.
struct Guest<'a> {
    ring: MockRing<'a>,
    free: VecDeque<u16>,
    seen_used: u16,
    events: Vec<(u16, u16, i32)>,
}

impl<'a> Guest<'a> {
    fn post(&mut self, n: u16) {
        for _ in 0..n {
            let Some(i) = self.free.pop_front() else {
                break;
            };
            self.ring.offer_event_buffer(i);
        }
    }

    fn collect(&mut self) {
        while self.seen_used != self.ring.used_idx() {
            let used = self.ring.used(self.seen_used);
            let b = self
                .ring
                .read_buffer(self.ring.buffer(descriptor_index(&used)));
            self.events.push((
                u16::from_le_bytes([b[0], b[1]]),
                u16::from_le_bytes([b[2], b[3]]),
                i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            ));
            self.free.push_back(descriptor_index(&used));
            self.seen_used = self.seen_used.wrapping_add(1);
        }
    }
}

/// Posts buffers until the device has nothing more to write.
fn drain(device: &PvMouse, guest: &mut Guest, size: u16) {
    loop {
        let before = guest.events.len();
        guest.post(size);
        device.refill();
        guest.collect();
        if guest.events.len() == before {
            if !device.pacing() {
                return;
            }
            // A paced backlog: the backend's timer would bring the next batch.
            let at = device
                .next_deadline()
                .unwrap_or_else(std::time::Instant::now);
            std::thread::sleep(at.saturating_duration_since(std::time::Instant::now()));
            device.on_timer();
        }
    }
}

/// The queue holds at most MAX_PENDING_FRAMES held frames plus one motion-only tail (motion
/// folds into it, so it never counts against capacity).
const MAX_QUEUED: usize = MAX_PENDING_FRAMES + 1;

fn check(size: u16, steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mem = guest_memory();
    let ring = MockRing::new(&mem, size);
    let identity = Identity::new("pvmouse", "prop", 3).unwrap();
    let device = PvMouse::new(identity, Arc::new(NoticeBoard::new().unwrap())).unwrap();
    device.activate(MockEventQueue::new(&mem, &ring));
    let mut guest = Guest {
        ring,
        free: (0..size).collect(),
        seen_used: 0,
        events: Vec::new(),
    };
    // A new driver first gets the full state (every button up); the properties are about what
    // follows.
    drain(&device, &mut guest, size);
    guest.events.clear();

    // What the guest must end up seeing, from the commands the device accepted.
    let mut buttons = 0u8;
    let mut transitions = Vec::new();
    let mut wheel = [0i64; 2];
    let (mut display, mut x, mut y) = (0u8, None, None);
    for step in steps {
        match step {
            Step::Command(actions) => {
                let before = device.status();
                match device.submit(&actions) {
                    Ok(_) => {
                        for a in &actions {
                            match *a {
                                PointerAction::Move {
                                    display: d,
                                    x: nx,
                                    y: ny,
                                } => {
                                    display = d.unwrap_or(display);
                                    x = nx.or(x);
                                    y = ny.or(y);
                                }
                                PointerAction::Button { button, down } => {
                                    if (buttons & button.bit() != 0) != down {
                                        buttons ^= button.bit();
                                        transitions.push((button.code(), i32::from(down)));
                                    }
                                }
                                PointerAction::Wheel { axis, hi_res } => {
                                    wheel[usize::from(axis == WheelAxis::Horizontal)] +=
                                        i64::from(hi_res);
                                }
                                // This device has no relative port, and no step makes these.
                                PointerAction::Motion { .. } | PointerAction::Mode(_) => {}
                            }
                        }
                    }
                    Err(e) => {
                        // Refused only for lack of room, and then nothing of it was applied.
                        prop_assert!(
                            before.pending_frames + actions.len() > MAX_PENDING_FRAMES,
                            "refused with room: {e}"
                        );
                        prop_assert_eq!(device.status().pointer, before.pointer);
                    }
                }
                prop_assert!(device.status().pending_frames <= MAX_QUEUED);
            }
            Step::Drain(n) => {
                guest.post(n);
                device.refill();
                guest.collect();
            }
        }
    }
    drain(&device, &mut guest, size);
    prop_assert_eq!(device.status().pending_frames, 0);

    // Every frame ends in SYN_REPORT: nothing is left after the last one.
    let last_syn = guest
        .events
        .iter()
        .rposition(|e| e.0 == EV_SYN && e.1 == SYN_REPORT);
    prop_assert_eq!(
        last_syn.map_or(0, |i| i + 1),
        guest.events.len(),
        "events after the last SYN_REPORT"
    );

    // Events inside one frame are simultaneous for evdev, so order is checked at frame
    // granularity: the same transitions, each button's in its own order, and no transition in
    // an earlier frame than one the client sent before it.
    let mut frame = 0;
    let mut got: Vec<(u16, i32, usize)> = Vec::new();
    for e in &guest.events {
        match (e.0, e.1) {
            (EV_KEY, _) => got.push((e.1, e.2, frame)),
            (EV_SYN, SYN_REPORT) => frame += 1,
            _ => {}
        }
    }
    prop_assert_eq!(
        got.len(),
        transitions.len(),
        "{:?} vs {:?}",
        got,
        transitions
    );
    let mut taken = vec![false; got.len()];
    let mut last_frame = 0;
    for &(code, value) in &transitions {
        let i = (0..got.len()).find(|&i| !taken[i] && got[i].0 == code);
        let Some(i) = i else {
            return Err(TestCaseError::fail(format!(
                "{code} {value} never arrived: {got:?}"
            )));
        };
        taken[i] = true;
        prop_assert_eq!(got[i].1, value, "button {} out of order: {:?}", code, got);
        prop_assert!(
            got[i].2 >= last_frame,
            "{code} {value} arrived early: {got:?}"
        );
        last_frame = got[i].2;
    }

    let mut got_wheel = [0i64; 2];
    for e in guest.events.iter().filter(|e| e.0 == EV_REL) {
        if e.1 == REL_WHEEL_HI_RES {
            got_wheel[0] += i64::from(e.2);
        } else if e.1 == REL_HWHEEL_HI_RES {
            got_wheel[1] += i64::from(e.2);
        }
    }
    prop_assert_eq!(got_wheel, wheel);

    // The newest position: the last value the guest saw on each axis (the input core keeps it).
    let last = |code: u16| {
        guest
            .events
            .iter()
            .rev()
            .find(|e| e.0 == EV_ABS && e.1 == code)
            .map(|e| e.2)
    };
    prop_assert_eq!(last(ABS_MISC).unwrap_or(0), i32::from(display));
    prop_assert_eq!(last(ABS_X), x.map(i32::from));
    prop_assert_eq!(last(ABS_Y), y.map(i32::from));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn qemu_sized_queue(steps in proptest::collection::vec(step(), 1..120)) {
        check(4, steps)?;
    }

    #[test]
    fn linux_sized_queue(steps in proptest::collection::vec(step(), 1..120)) {
        check(64, steps)?;
    }
}

fn mixed_action() -> impl Strategy<Value = PointerAction> {
    prop_oneof![
        2 => action(),
        2 => (-50i32..50, -50i32..50, any::<bool>())
            .prop_map(|(dx, dy, keep_mode)| PointerAction::Motion { dx, dy, keep_mode }),
        1 => any::<bool>().prop_map(|r| PointerAction::Mode(if r {
            PointerMode::Relative
        } else {
            PointerMode::Absolute
        })),
    ]
}

#[derive(Debug, Clone)]
enum MixedStep {
    Act(PointerAction),
    /// The guest posts up to this many buffers on the pointer's queue (the relative device's
    /// always has room).
    Drain(u16),
}

fn mixed_step() -> impl Strategy<Value = MixedStep> {
    prop_oneof![
        4 => mixed_action().prop_map(MixedStep::Act),
        1 => (0u16..40).prop_map(MixedStep::Drain),
    ]
}

fn guest_of(ring: MockRing<'_>, size: u16) -> Guest<'_> {
    Guest {
        ring,
        free: (0..size).collect(),
        seen_used: 0,
        events: Vec::new(),
    }
}

fn check_switches(size: u16, steps: Vec<MixedStep>) -> Result<(), TestCaseError> {
    let mem = guest_memory();
    let identity = Identity::new("pvmouse", "prop", 1)
        .unwrap()
        .with_relative(true);
    let device = PvMouse::new(identity, Arc::new(NoticeBoard::new().unwrap())).unwrap();
    let mut pointer = guest_of(MockRing::new(&mem, size), size);
    let mut relative = guest_of(MockRing::at(&mem, 0x4_0000, 64), 64);
    // The order across the two queues: which one took how many events, delivery by delivery.
    let log = DeliveryLog::default();
    device.activate(MockEventQueue::logged(&mem, &pointer.ring, &log, 0));
    device.relative_activate(MockEventQueue::logged(&mem, &relative.ring, &log, 1));
    relative.post(64);
    drain(&device, &mut pointer, size);
    pointer.events.clear();
    log.lock().unwrap().clear();

    // What the guest sees, in its order.
    let mut seen: Vec<(u16, u16, i32)> = Vec::new();
    let (mut from_pointer, mut from_relative) = (0, 0);
    let mut read = |pointer: &mut Guest<'_>, relative: &mut Guest<'_>| {
        pointer.collect();
        relative.collect();
        for (tag, n) in log.lock().unwrap().drain(..) {
            let (events, from) = if tag == 0 {
                (&pointer.events, &mut from_pointer)
            } else {
                (&relative.events, &mut from_relative)
            };
            seen.extend_from_slice(&events[*from..*from + n]);
            *from += n;
        }
        relative.post(64);
        device.relative_refill();
    };
    let (mut mode, mut transitions, mut buttons) = (PointerMode::Absolute, Vec::new(), 0u8);
    let (mut x, mut y, mut moved) = (None, None, (0i64, 0i64));
    for step in steps {
        match step {
            MixedStep::Act(action) => {
                // Refused only for lack of room, with nothing applied.
                if device.submit(&[action]).is_err() {
                    continue;
                }
                match action {
                    PointerAction::Move { x: nx, y: ny, .. } => {
                        x = nx.or(x);
                        y = ny.or(y);
                    }
                    PointerAction::Button { button, down } => {
                        if (buttons & button.bit() != 0) != down {
                            buttons ^= button.bit();
                            transitions.push((button.code(), i32::from(down)));
                        }
                    }
                    // Motion of nothing is no motion: it switches nothing. Motion that keeps
                    // the mode is dropped while absolute.
                    PointerAction::Motion { dx, dy, keep_mode }
                        if (dx != 0 || dy != 0)
                            && !(keep_mode && mode == PointerMode::Absolute) =>
                    {
                        mode = PointerMode::Relative;
                        moved = (moved.0 + i64::from(dx), moved.1 + i64::from(dy));
                    }
                    PointerAction::Mode(m) => mode = m,
                    PointerAction::Wheel { .. } | PointerAction::Motion { .. } => {}
                }
                prop_assert_eq!(device.status().mode, mode);
            }
            MixedStep::Drain(n) => {
                pointer.post(n);
                device.refill();
            }
        }
        read(&mut pointer, &mut relative);
    }
    drain(&device, &mut pointer, size);
    read(&mut pointer, &mut relative);
    prop_assert_eq!(device.status().relative.unwrap().pending_frames, 0);

    let keys: Vec<(u16, i32)> = seen
        .iter()
        .filter(|e| e.0 == EV_KEY)
        .map(|e| (e.1, e.2))
        .collect();
    prop_assert_eq!(keys, transitions, "every button transition, in order");
    let sum = |code: u16| -> i64 {
        seen.iter()
            .filter(|e| e.0 == EV_REL && e.1 == code)
            .map(|e| i64::from(e.2))
            .sum()
    };
    prop_assert_eq!((sum(REL_X), sum(REL_Y)), moved, "all relative motion");
    // After relative motion, the next position is a renewal: the value one off, then the value.
    let mut after_motion = false;
    let mut i = 0;
    while i < seen.len() {
        let (kind, code, value) = seen[i];
        if kind == EV_REL && (code == REL_X || code == REL_Y) {
            after_motion = true;
        } else if kind == EV_ABS && (code == ABS_X || code == ABS_Y) && after_motion {
            let renewed = seen
                .get(i + 1)
                .is_some_and(|n| (n.0, n.1) == (kind, code) && n.2 == value ^ 1);
            prop_assert!(
                renewed,
                "a position after relative motion, not renewed: {:?}",
                &seen[i..]
            );
            after_motion = false;
            i += 1;
        }
        i += 1;
    }
    if mode == PointerMode::Absolute {
        let last = |code: u16| {
            seen.iter()
                .rev()
                .find(|e| e.0 == EV_ABS && e.1 == code)
                .map(|e| e.2)
        };
        prop_assert_eq!(last(ABS_X), x.map(i32::from), "where the host last said");
        prop_assert_eq!(last(ABS_Y), y.map(i32::from));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn switches_under_a_mixed_stream_on_qemus_queue(
        steps in proptest::collection::vec(mixed_step(), 1..120)
    ) {
        check_switches(4, steps)?;
    }

    #[test]
    fn switches_under_a_mixed_stream_on_a_linux_sized_queue(
        steps in proptest::collection::vec(mixed_step(), 1..120)
    ) {
        check_switches(64, steps)?;
    }
}

/// The bound itself: a guest that never drains, under far more commands than the queue holds.
#[test]
fn a_stalled_guest_keeps_memory_bounded_and_refuses_only_held_frames() {
    let mem = guest_memory();
    let ring = MockRing::new(&mem, 4);
    let identity = Identity::new("pvmouse", "prop", 1).unwrap();
    let device = PvMouse::new(identity, Arc::new(NoticeBoard::new().unwrap())).unwrap();
    device.activate(MockEventQueue::new(&mem, &ring));
    let mut refused = 0;
    for i in 0..3 * MAX_PENDING_FRAMES {
        let click = [PointerAction::Button {
            button: Button::Left,
            down: i % 2 == 0,
        }];
        let moved = [PointerAction::Move {
            display: None,
            x: Some(u16::try_from(i).unwrap()),
            y: None,
        }];
        if device.submit(&click).is_err() {
            refused += 1;
        }
        // Motion is always accepted: it folds into the newest pending frame.
        device.submit(&moved).unwrap();
        assert!(device.status().pending_frames <= MAX_QUEUED);
    }
    assert!(refused > 0);
}
