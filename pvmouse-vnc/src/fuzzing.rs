//! The fuzz target's body, shared by cargo-fuzz (`fuzz/`) and the corpus replay in `cargo test`.

/// What a viewer or a VNC server can send `pvmouse-vnc` once connected: any bytes, framed as
/// viewer messages (first byte even) or as server messages (odd, in one of the four pixel
/// formats), until the framing refuses them. The framing never reads past its input, forwards
/// every byte it takes but a pointer event's, and copies a server's bytes exactly.
pub fn vnc_messages(data: &[u8]) {
    use crate::rfb::{self, ClientMessage, PixelFormat, ServerFramer, ServerInit};
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
                ClientMessage::SetEncodings { encodings, .. } => taken += 4 + encodings.len() * 4,
            }
            assert!(input.len() < before, "a message took no bytes");
        }
        assert!(taken <= rest.len(), "the framing made up bytes");
    } else {
        let mut framer = ServerFramer::new(&ServerInit {
            width: 640,
            height: 480,
            format: match side / 2 % 4 {
                0 => PixelFormat::plain(8),
                1 => PixelFormat::plain(16),
                2 => PixelFormat::plain(32),
                _ => PixelFormat {
                    bits_per_pixel: 32,
                    tight_pixel: 3,
                },
            },
        });
        let mut copied = Vec::new();
        while let Some((&kind, rest)) = input.split_first() {
            input = rest;
            let before = copied.len();
            if framer.copy_message(kind, &mut input, &mut copied).is_err() {
                break;
            }
            assert!(copied.len() > before, "a message copied no bytes");
        }
        let taken = rest.len() - input.len();
        assert_eq!(copied, rest[..copied.len()], "copied what it read");
        assert!(copied.len() <= taken, "the framing made up bytes");
    }
}
