//! The control socket's binary records after `pvmouse-stream`, split into reads of any size.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhost_user_pvmouse::fuzzing::stream_records(data));
