//! The keeper's vhost-user framing and session record: any bytes a frontend can send it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhost_user_pvmouse::fuzzing::keeper_messages(data));
