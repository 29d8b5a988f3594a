//! Moving events through the guest's queues, and checking every descriptor chain on the way.
//!
//! A chain is checked whole before the device touches its buffer. A bad chain is completed with
//! length 0 so the guest gets it back, counted in the [`GuestFaultLog`], and the next one is
//! tried. Nothing here allocates or logs per event; faults are the only thing logged.

use std::num::Wrapping;
use std::ops::Deref;
use std::sync::atomic::Ordering;

use pvmouse_spec::InputEvent;
use pvmouse_spec::wire::VIRTIO_EVENT_SIZE;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestMemory, GuestMemoryBackend, GuestMemoryMmap, Permissions};

use crate::guest_fault::{GuestFault, GuestFaultLog};
use crate::pending::PendingFrames;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueOutcome {
    /// Events written (eventq) or read (statusq).
    pub events: usize,
    /// Chains given back to the guest, bad ones included.
    pub completed: usize,
    /// The guest must be interrupted for what was completed.
    pub notify: bool,
    /// Events are still pending because the guest has posted no more buffers.
    pub starved: bool,
}

/// Where a stopped event queue stood. A queue restarted at the same place is the same driver
/// resuming (QEMU `stop`/`cont`); a reset driver restarts at index 0 with rings it just set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RingPosition {
    pub next_avail: u16,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
}

impl RingPosition {
    pub fn of(queue: &Queue) -> Self {
        Self {
            next_avail: queue.next_avail(),
            desc_table: queue.desc_table(),
            avail_ring: queue.avail_ring(),
            used_ring: queue.used_ring(),
        }
    }
}

/// The guest's event queue as the device reaches it: a vring in the daemon, a mock in tests.
pub trait EventQueue: Send + Sync + std::fmt::Debug {
    /// Where the queue stands now.
    fn position(&self) -> RingPosition;

    /// Runs `fill` on the queue if the guest has it running, and interrupts the guest if `fill`
    /// says so. A queue that is not running yields an empty outcome.
    fn fill(
        &self,
        fill: &mut dyn FnMut(&mut Queue, &GuestMemoryMmap) -> QueueOutcome,
    ) -> QueueOutcome;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// The device writes: eventq.
    DeviceWrites,
    /// The device reads: statusq.
    DeviceReads,
}

/// Checks the whole chain and returns the bytes it can carry in the wanted direction.
fn check_chain<M>(chain: &DescriptorChain<M>, direction: Direction) -> Result<u64, GuestFault>
where
    M: Deref + Clone,
    M::Target: GuestMemoryBackend,
{
    let mem = chain.memory();
    let mut total = 0u64;
    let mut count = 0usize;
    let mut ended = false;
    for desc in chain.clone() {
        count += 1;
        let writable = desc.is_write_only();
        match direction {
            Direction::DeviceWrites if !writable => return Err(GuestFault::ReadOnlyEventBuffer),
            Direction::DeviceReads if writable => return Err(GuestFault::WriteOnlyStatusBuffer),
            _ => {}
        }
        if desc.len() == 0 {
            return Err(GuestFault::ZeroLengthDescriptor);
        }
        if !GuestMemory::check_range(mem, desc.addr(), desc.len() as usize, access(direction)) {
            return Err(GuestFault::OutsideGuestMemory);
        }
        total += u64::from(desc.len());
        ended = !desc.has_next();
    }
    // The iterator stops early, without an error, on loops, nested indirect tables and bad
    // indices: a chain whose last descriptor still says NEXT did not end where it should.
    if count == 0 || !ended {
        return Err(GuestFault::BrokenChain);
    }
    if total < VIRTIO_EVENT_SIZE as u64 {
        return Err(GuestFault::ShortBuffer);
    }
    Ok(total)
}

/// The common case, one descriptor holding the whole event (Linux's virtio_input posts exactly
/// that), checked and transferred with a single descriptor read. `None` means the chain has more
/// than one descriptor and needs the general path.
fn transfer_single<M>(
    chain: &DescriptorChain<M>,
    bytes: &mut [u8; VIRTIO_EVENT_SIZE],
    direction: Direction,
) -> Option<Result<(), GuestFault>>
where
    M: Deref + Clone,
    M::Target: GuestMemoryBackend,
{
    let desc = chain.clone().next()?;
    if desc.has_next() {
        return None;
    }
    let mem = chain.memory();
    let writable = desc.is_write_only();
    let result = match direction {
        Direction::DeviceWrites if !writable => Err(GuestFault::ReadOnlyEventBuffer),
        Direction::DeviceReads if writable => Err(GuestFault::WriteOnlyStatusBuffer),
        _ if desc.len() == 0 => Err(GuestFault::ZeroLengthDescriptor),
        _ if (desc.len() as usize) < VIRTIO_EVENT_SIZE => Err(GuestFault::ShortBuffer),
        // An exactly sized buffer is bounds-checked by the access itself.
        _ if desc.len() as usize > VIRTIO_EVENT_SIZE
            && !GuestMemory::check_range(
                mem,
                desc.addr(),
                desc.len() as usize,
                access(direction),
            ) =>
        {
            Err(GuestFault::OutsideGuestMemory)
        }
        // One region lookup and a plain copy: vm-memory's general accessors cost several
        // hundred instructions per call, which mattered at three calls per frame.
        _ => match GuestMemoryBackend::get_slice(mem, desc.addr(), VIRTIO_EVENT_SIZE) {
            Ok(slice) => {
                match direction {
                    Direction::DeviceWrites => slice.copy_from(&bytes[..]),
                    Direction::DeviceReads => {
                        slice.copy_to(&mut bytes[..]);
                    }
                }
                Ok(())
            }
            Err(_) => Err(GuestFault::OutsideGuestMemory),
        },
    };
    Some(result)
}

fn access(direction: Direction) -> Permissions {
    match direction {
        Direction::DeviceWrites => Permissions::Write,
        Direction::DeviceReads => Permissions::Read,
    }
}

/// Checks a chain whole, then moves one event through it.
fn transfer_event<M>(
    chain: DescriptorChain<M>,
    bytes: &mut [u8; VIRTIO_EVENT_SIZE],
    direction: Direction,
) -> Result<(), GuestFault>
where
    M: Deref + Clone,
    M::Target: GuestMemoryBackend,
{
    if let Some(result) = transfer_single(&chain, bytes, direction) {
        return result;
    }
    check_chain(&chain, direction)?;
    transfer(chain, bytes, direction)
}

/// Scatters or gathers one event across the chain's buffers, in order.
fn transfer<M>(
    chain: DescriptorChain<M>,
    bytes: &mut [u8; VIRTIO_EVENT_SIZE],
    direction: Direction,
) -> Result<(), GuestFault>
where
    M: Deref + Clone,
    M::Target: GuestMemoryBackend,
{
    let mem = chain.memory();
    let mut done = 0;
    for desc in chain.clone() {
        let n = (desc.len() as usize).min(VIRTIO_EVENT_SIZE - done);
        let part = &mut bytes[done..done + n];
        let result = match direction {
            Direction::DeviceWrites => mem.write_slice(part, desc.addr()),
            Direction::DeviceReads => mem.read_slice(part, desc.addr()),
        };
        result.map_err(|_| GuestFault::OutsideGuestMemory)?;
        done += n;
        if done == VIRTIO_EVENT_SIZE {
            return Ok(());
        }
    }
    Err(GuestFault::ShortBuffer)
}

fn complete<Q: QueueT, M: GuestMemory>(
    queue: &mut Q,
    mem: &M,
    head: u16,
    len: u32,
    faults: &mut GuestFaultLog,
) {
    if queue.add_used(mem, head, len).is_err() {
        faults.record(GuestFault::UsedRingWrite);
    }
}

/// Chains taken from one walk of the avail ring before their used entries are published.
const BATCH: usize = 64;

/// The used length of a delivered event.
#[expect(clippy::cast_possible_truncation, reason = "8 bytes")]
const EVENT_LEN: u32 = VIRTIO_EVENT_SIZE as u32;

/// Streams pending events into the eventq until either runs out.
///
/// Each batch walks the avail ring once (one read of its index), writes the events, then
/// publishes the used entries; buffers are filled before the guest can see them as used.
pub fn fill_eventq<M: GuestMemoryBackend>(
    queue: &mut Queue,
    mem: &M,
    pending: &mut PendingFrames,
    faults: &mut GuestFaultLog,
) -> QueueOutcome {
    let mut out = QueueOutcome::default();
    let mut done = [(0u16, 0u32); BATCH];
    loop {
        let mut n = 0;
        out.starved = false;
        {
            let mut chains = match queue.iter(mem) {
                Ok(chains) => chains,
                Err(_) => {
                    // The avail index runs more than a queue ahead: nothing in it is trustworthy.
                    faults.record(GuestFault::BadAvailIndex);
                    out.starved = pending.peek().is_some();
                    break;
                }
            };
            while n < BATCH {
                let Some(event) = pending.peek() else {
                    break;
                };
                let Some(chain) = chains.next() else {
                    out.starved = true;
                    break;
                };
                let head = chain.head_index();
                let mut bytes = event.to_le_bytes();
                let len = match transfer_event(chain, &mut bytes, Direction::DeviceWrites) {
                    Ok(()) => {
                        pending.consume();
                        out.events += 1;
                        EVENT_LEN
                    }
                    Err(fault) => {
                        faults.record(fault);
                        0
                    }
                };
                done[n] = (head, len);
                n += 1;
            }
        }
        for &(head, len) in &done[..n] {
            complete(queue, mem, head, len, faults);
        }
        out.completed += n;
        if n == BATCH {
            continue;
        }
        // Out of buffers with events left: ask the guest to kick when it posts more, then look
        // once more in case it did so in between.
        if !out.starved || !matches!(queue.enable_notification(mem), Ok(true)) {
            break;
        }
    }
    out.notify = out.completed > 0 && queue.needs_notification(mem).unwrap_or(true);
    out
}

/// The avail index may run at most one queue ahead of the device; beyond that the ring is
/// corrupt and nothing in it can be trusted.
fn avail_ring_sane<Q: QueueT, M: GuestMemory>(queue: &Q, mem: &M) -> bool {
    match queue.avail_idx(mem, Ordering::Acquire) {
        Ok(avail) => (avail - Wrapping(queue.next_avail())).0 <= queue.size(),
        Err(_) => false,
    }
}

/// Takes every buffer the guest posted on the statusq and hands each event to `on_event`.
pub fn drain_statusq<Q, M>(
    queue: &mut Q,
    mem: &M,
    faults: &mut GuestFaultLog,
    mut on_event: impl FnMut(InputEvent),
) -> QueueOutcome
where
    Q: QueueT,
    M: GuestMemoryBackend,
{
    let mut out = QueueOutcome::default();
    loop {
        if !avail_ring_sane(queue, mem) {
            faults.record(GuestFault::BadAvailIndex);
            break;
        }
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let mut bytes = [0u8; VIRTIO_EVENT_SIZE];
            match transfer_event(chain, &mut bytes, Direction::DeviceReads) {
                Ok(()) => {
                    out.events += 1;
                    on_event(InputEvent::from_le_bytes(bytes));
                }
                Err(fault) => faults.record(fault),
            }
            // The device writes nothing into status buffers.
            complete(queue, mem, head, 0, faults);
            out.completed += 1;
        }
        if !matches!(queue.enable_notification(mem), Ok(true)) {
            break;
        }
    }
    out.notify = out.completed > 0 && queue.needs_notification(mem).unwrap_or(true);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Frame;
    use crate::testing::{INDIRECT, MockRing, NEXT, WRITE, buffer, desc, guest_memory};
    use pvmouse_spec::evdev::{ABS_X, EV_ABS, EV_MSC, MSC_RAW};

    fn motion_frames(pending: &mut PendingFrames, count: u16) {
        // Alternating clicks keep frames from coalescing, so each one is delivered.
        for i in 0..count {
            pending
                .push(Frame {
                    x: Some(i),
                    buttons_set: 1,
                    buttons_down: u8::from(i % 2 == 0),
                    ..Frame::default()
                })
                .unwrap();
        }
    }

    fn delivered(ring: &MockRing, from: u16, to: u16) -> Vec<InputEvent> {
        (from..to)
            .map(|n| {
                let used = ring.used(n);
                assert_eq!(used.len(), 8, "used entry {n}");
                let head = u16::try_from(used.id()).unwrap();
                InputEvent::from_le_bytes(ring.read_buffer(buffer(head)))
            })
            .collect()
    }

    #[test]
    fn fills_queues_of_size_4_64_and_1024_and_streams_the_rest_across_refills() {
        for size in [4u16, 64, 1024] {
            let mem = guest_memory();
            let mut ring = MockRing::new(&mem, size);
            let mut q = ring.queue();
            let mut pending = PendingFrames::with_capacity(4096);
            let mut faults = GuestFaultLog::default();
            let frames = 700u16;
            motion_frames(&mut pending, frames);
            let total = usize::from(frames) * 3;
            let mut got = Vec::new();
            let mut refills = 0;
            while got.len() < total {
                for i in 0..size {
                    ring.offer_event_buffer(i);
                }
                let before = ring.used_idx();
                let out = fill_eventq(&mut q, &mem, &mut pending, &mut faults);
                assert_eq!(
                    out.completed,
                    usize::from(ring.used_idx().wrapping_sub(before)),
                    "size {size} refill {refills} before {before} got {}",
                    got.len()
                );
                assert!(out.notify);
                got.extend(delivered(&ring, before, ring.used_idx()));
                refills += 1;
                assert!(refills < 10_000, "size {size}: no progress");
            }
            assert!(pending.is_empty());
            assert_eq!(got.len(), total, "size {size}");
            for (i, frame) in got.chunks(3).enumerate() {
                assert_eq!(
                    frame[0],
                    InputEvent::new(EV_ABS, ABS_X, i32::try_from(i).unwrap()),
                    "size {size}"
                );
                assert_eq!(frame[1].value, i32::from(i % 2 == 0));
                assert!(frame[2].is_syn_report());
            }
            // Unused buffers stay with the device until there is something to send.
            let used = ring.used_idx();
            let out = fill_eventq(&mut q, &mem, &mut pending, &mut faults);
            assert_eq!((out.completed, ring.used_idx()), (0, used));
            assert_eq!(faults.counts().count(), 0);
        }
    }

    #[test]
    fn a_frame_bigger_than_the_queue_arrives_whole_and_in_order() {
        let mem = guest_memory();
        let mut ring = MockRing::new(&mem, 4);
        let mut q = ring.queue();
        let mut pending = PendingFrames::with_capacity(8);
        let mut faults = GuestFaultLog::default();
        let big = crate::pointer::PointerState::default()
            .full_state_frame(&crate::coordinates::Coordinates::PerDisplay);
        let want = big.events();
        pending.push(big).unwrap();
        let mut got = Vec::new();
        while got.len() < want.as_slice().len() {
            let start = ring.used_idx();
            for i in 0..4 {
                ring.offer_event_buffer(i);
            }
            let out = fill_eventq(&mut q, &mem, &mut pending, &mut faults);
            assert!(out.events <= 4);
            got.extend(delivered(&ring, start, ring.used_idx()));
        }
        assert_eq!(got, want.as_slice());
    }

    /// A malformed chain in the eventq, as (descriptors to install, head to offer).
    struct BadChain {
        name: &'static str,
        fault: GuestFault,
        build: fn(&mut MockRing),
    }

    const BAD_EVENTQ_CHAINS: &[BadChain] = &[
        BadChain {
            name: "read-only buffer",
            fault: GuestFault::ReadOnlyEventBuffer,
            build: |r| {
                r.set_desc(0, desc(buffer(0), 8, 0, 0));
                r.offer(0);
            },
        },
        BadChain {
            name: "too short",
            fault: GuestFault::ShortBuffer,
            build: |r| {
                r.set_desc(0, desc(buffer(0), 4, WRITE, 0));
                r.offer(0);
            },
        },
        BadChain {
            name: "zero length",
            fault: GuestFault::ZeroLengthDescriptor,
            build: |r| {
                r.set_desc(0, desc(buffer(0), 0, WRITE, 0));
                r.offer(0);
            },
        },
        BadChain {
            name: "outside guest memory",
            fault: GuestFault::OutsideGuestMemory,
            build: |r| {
                r.set_desc(0, desc(0xffff_0000, 8, WRITE, 0));
                r.offer(0);
            },
        },
        BadChain {
            name: "straddles the end of guest memory",
            fault: GuestFault::OutsideGuestMemory,
            build: |r| {
                let end = crate::testing::MEMORY_SIZE as u64;
                r.set_desc(0, desc(end - 4, 8, WRITE, 0));
                r.offer(0);
            },
        },
        BadChain {
            name: "loop",
            fault: GuestFault::BrokenChain,
            build: |r| {
                r.set_desc(0, desc(buffer(0), 2, WRITE | NEXT, 1));
                r.set_desc(1, desc(buffer(1), 2, WRITE | NEXT, 0));
                r.offer(0);
            },
        },
        BadChain {
            name: "next index out of range",
            fault: GuestFault::BrokenChain,
            build: |r| {
                r.set_desc(0, desc(buffer(0), 4, WRITE | NEXT, 999));
                r.offer(0);
            },
        },
        BadChain {
            name: "head index out of range",
            fault: GuestFault::BrokenChain,
            build: |r| r.offer(999),
        },
        BadChain {
            name: "nested indirect table",
            fault: GuestFault::BrokenChain,
            build: |r| {
                let table = buffer(100);
                r.set_desc(0, desc(table, 16, INDIRECT, 0));
                // The indirect table's only entry is itself indirect.
                let mem_desc = desc(buffer(101), 16, INDIRECT, 0);
                r.write_raw(table, mem_desc);
                r.offer(0);
            },
        },
        BadChain {
            name: "indirect table of bad length",
            fault: GuestFault::BrokenChain,
            build: |r| {
                r.set_desc(0, desc(buffer(100), 15, INDIRECT, 0));
                r.offer(0);
            },
        },
        BadChain {
            name: "writable then read-only",
            fault: GuestFault::ReadOnlyEventBuffer,
            build: |r| {
                r.set_desc(0, desc(buffer(0), 4, WRITE | NEXT, 1));
                r.set_desc(1, desc(buffer(1), 4, 0, 0));
                r.offer(0);
            },
        },
    ];

    #[test]
    fn every_malformed_eventq_chain_is_returned_empty_and_the_next_good_one_is_used() {
        for size in [4u16, 64] {
            for bad in BAD_EVENTQ_CHAINS {
                let mem = guest_memory();
                let mut ring = MockRing::new(&mem, size);
                let mut q = ring.queue();
                let mut pending = PendingFrames::with_capacity(8);
                let mut faults = GuestFaultLog::default();
                pending
                    .push(Frame {
                        x: Some(42),
                        ..Frame::default()
                    })
                    .unwrap();
                (bad.build)(&mut ring);
                ring.offer_event_buffer(2);
                ring.offer_event_buffer(3);
                let out = fill_eventq(&mut q, &mem, &mut pending, &mut faults);
                assert_eq!(faults.total(bad.fault), 1, "{}: {:?}", bad.name, bad.fault);
                assert_eq!(out.events, 2, "{}", bad.name);
                assert!(pending.is_empty(), "{}", bad.name);
                let got = delivered(&ring, ring.used_idx() - 2, ring.used_idx());
                assert_eq!(got[0], InputEvent::new(EV_ABS, ABS_X, 42), "{}", bad.name);
                assert!(got[1].is_syn_report());
                if bad.name == "head index out of range" {
                    // No descriptor to give back: the used ring refuses the index.
                    assert_eq!(faults.total(GuestFault::UsedRingWrite), 1);
                    assert_eq!(ring.used_idx(), 2);
                } else {
                    assert_eq!(
                        ring.used(0).len(),
                        0,
                        "{}: bad chain completed empty",
                        bad.name
                    );
                    assert_eq!(ring.used_idx(), 3, "{}", bad.name);
                }
            }
        }
    }

    #[test]
    fn an_event_split_over_two_buffers_and_an_indirect_table_are_both_accepted() {
        let mem = guest_memory();
        let mut ring = MockRing::new(&mem, 4);
        let mut q = ring.queue();
        let mut pending = PendingFrames::with_capacity(8);
        let mut faults = GuestFaultLog::default();
        pending
            .push(Frame {
                x: Some(0x1234),
                ..Frame::default()
            })
            .unwrap();
        ring.set_desc(0, desc(buffer(0), 3, WRITE | NEXT, 1));
        ring.set_desc(1, desc(buffer(1), 5, WRITE, 0));
        ring.offer(0);
        let table = buffer(50);
        ring.set_desc(2, desc(table, 16, INDIRECT, 0));
        ring.write_raw(table, desc(buffer(51), 8, WRITE, 0));
        ring.offer(2);
        let out = fill_eventq(&mut q, &mem, &mut pending, &mut faults);
        assert_eq!(out.events, 2);
        assert_eq!(faults.counts().count(), 0);
        let first = ring.read_buffer(buffer(0));
        let second = ring.read_buffer(buffer(1));
        let joined = [
            first[0], first[1], first[2], second[0], second[1], second[2], second[3], second[4],
        ];
        assert_eq!(
            InputEvent::from_le_bytes(joined),
            InputEvent::new(EV_ABS, ABS_X, 0x1234)
        );
        assert!(InputEvent::from_le_bytes(ring.read_buffer(buffer(51))).is_syn_report());
    }

    #[test]
    fn a_corrupt_avail_index_is_refused_without_touching_the_ring() {
        let mem = guest_memory();
        let mut ring = MockRing::new(&mem, 4);
        let mut q = ring.queue();
        let mut pending = PendingFrames::with_capacity(8);
        let mut faults = GuestFaultLog::default();
        pending
            .push(Frame {
                x: Some(1),
                ..Frame::default()
            })
            .unwrap();
        ring.offer_event_buffer(0);
        ring.corrupt_avail_idx();
        let out = fill_eventq(&mut q, &mem, &mut pending, &mut faults);
        assert_eq!((out.completed, out.starved), (0, true));
        assert_eq!(faults.total(GuestFault::BadAvailIndex), 1);
        assert_eq!(ring.used_idx(), 0);
    }

    #[test]
    fn statusq_reads_each_event_and_returns_bad_buffers_empty() {
        let mem = guest_memory();
        let mut ring = MockRing::new(&mem, 64);
        let mut q = ring.queue();
        let mut faults = GuestFaultLog::default();
        let heartbeat = InputEvent::new(EV_MSC, MSC_RAW, 0x5056_0101);
        ring.offer_status_buffer(0, heartbeat.to_le_bytes());
        ring.set_desc(1, desc(buffer(1), 8, WRITE, 0));
        ring.offer(1);
        ring.set_desc(2, desc(buffer(2), 4, 0, 0));
        ring.offer(2);
        ring.offer_status_buffer(3, InputEvent::new(0x11, 0, 1).to_le_bytes());
        let mut seen = Vec::new();
        let out = drain_statusq(&mut q, &mem, &mut faults, |e| seen.push(e));
        assert_eq!(seen, vec![heartbeat, InputEvent::new(0x11, 0, 1)]);
        assert_eq!(out.completed, 4);
        assert_eq!(faults.total(GuestFault::WriteOnlyStatusBuffer), 1);
        assert_eq!(faults.total(GuestFault::ShortBuffer), 1);
        for n in 0..4 {
            assert_eq!(ring.used(n).len(), 0);
        }
    }
}
