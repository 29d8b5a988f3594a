//! The event and status queues, driven by guest memory the fuzzer writes: descriptor tables,
//! avail rings and buffers.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhost_user_pvmouse::fuzzing::guest_queues(data));
