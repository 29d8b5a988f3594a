//! The guest bridge: raw evdev event streams into its mapper (first byte even), or the text of
//! a layout file and a `--layout` spec (first byte odd).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, rest)) if mode % 2 == 1 => pvmouse_guestd::fuzzing::layout_text(rest),
        Some((_, rest)) => pvmouse_guestd::fuzzing::raw_events(rest),
        None => {}
    }
});
