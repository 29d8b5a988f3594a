//! pvmouse-vnc's RFB framing: any bytes a viewer or a VNC server can send once connected.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pvmouse_vnc::fuzzing::vnc_messages(data));
