//! The status queue's messages as the guest bridge writes them: heartbeats and desktop layouts,
//! whole, cut short, damaged or made up.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhost_user_pvmouse::fuzzing::status_messages(data));
