//! The guest bridge's session socket: one line from a session agent, parsed and matched to DRM
//! connectors.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    pvmouse_guestd::fuzzing::session_line(data);
});
