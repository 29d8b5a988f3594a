//! The restart ledger's states: any bytes a replacement worker may find there.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhost_user_pvmouse::fuzzing::ledger_states(data));
