//! Config space reads and writes at any offset and size, select and subsel included.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhost_user_pvmouse::fuzzing::config_space(data));
