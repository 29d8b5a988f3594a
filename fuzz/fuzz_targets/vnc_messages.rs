//! pvmouse-vnc's RFB framing: any bytes a viewer or a VNC server can send once connected.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| vhost_user_pvmouse::fuzzing::vnc_messages(data));
