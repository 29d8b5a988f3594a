//! The fuzz target's body, shared by cargo-fuzz (`fuzz/`) and the corpus replay in `cargo test`.

/// What a viewer or a VNC server can send `pvmouse-vnc` once connected: any bytes, framed as
/// viewer messages (first byte even) or as server messages on the head watcher's connection
/// (odd, in one of the three pixel sizes), until the framing refuses them. The framing never
/// reads past its input, and forwards every byte it takes but a pointer event's.
pub fn vnc_messages(data: &[u8]) {
    use crate::rfb::{self, ClientMessage, PixelFormat};
    let Some((&side, rest)) = data.split_first() else {
        return;
    };
    let mut input = rest;
    if side % 2 == 0 {
        let mut taken = 0usize;
        loop {
            let before = input.len();
            let Ok(m) = rfb::read_client_message(&mut input) else {
                break;
            };
            match m {
                ClientMessage::Forward { head, body } => {
                    let Ok(body) = usize::try_from(body) else {
                        break;
                    };
                    if body > input.len() {
                        break;
                    }
                    input = &input[body..];
                    taken += head.len() + body;
                }
                ClientMessage::Pointer { .. } => taken += 6,
            }
            assert!(input.len() < before, "a message took no bytes");
        }
        assert!(taken <= rest.len(), "the framing made up bytes");
    } else {
        let format = PixelFormat {
            bits_per_pixel: [8, 16, 32][usize::from(side / 2 % 3)],
        };
        while rfb::read_server_message(&mut input, format).is_ok() {}
    }
}
