//! The fuzz target's body, shared by cargo-fuzz (`fuzz/`) and the corpus replay in `cargo test`.

/// What a viewer or a VNC server can send `pvmouse-vnc` once connected: any bytes, framed as
/// client messages (first byte even) or server messages (odd, in one of the three pixel sizes),
/// until the framing refuses them. The framing never invents bytes, and a cut-down
/// `SetEncodings` holds only encodings it can frame.
pub fn vnc_messages(data: &[u8]) {
    use crate::rfb::{self, ClientMessage, FRAMED, PixelFormat};
    let Some((&side, rest)) = data.split_first() else {
        return;
    };
    let mut input = rest;
    if side % 2 == 0 {
        while let Ok(m) = rfb::read_client_message(&mut input) {
            if let ClientMessage::Forward { bytes, .. } = m {
                if bytes.first() == Some(&2) {
                    for c in bytes.get(4..).unwrap_or_default().chunks_exact(4) {
                        let e = i32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                        assert!(FRAMED.contains(&e), "encoding {e} kept");
                    }
                }
            }
        }
    } else {
        let format = PixelFormat {
            bits_per_pixel: [8, 16, 32][usize::from(side / 2 % 3)],
        };
        let mut out = Vec::new();
        while rfb::pass_server_message(&mut input, &mut out, format).is_ok() {}
        assert!(out.len() <= rest.len(), "the framing made up bytes");
    }
}
