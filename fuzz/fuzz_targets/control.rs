//! The control socket's parser and dispatch: raw bytes (first byte even) or JSON values built
//! from the bytes and biased towards real commands (first byte odd).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => vhost_user_pvmouse::fuzzing::control_values(rest),
        Some((_, rest)) => vhost_user_pvmouse::fuzzing::control_bytes(rest),
        None => {}
    }
});
