//! RFB (RFC 6143) as `pvmouse-vnc` needs it: the handshake, the client's messages whole, and
//! the server's messages framed as they stream past, so that pointer events can be taken out and
//! framebuffer size changes seen. Nothing is buffered whole: a framebuffer update is copied
//! through rectangle by rectangle.
//!
//! Both sides are untrusted: every length is checked against a limit before it is read, and
//! anything this module cannot frame is an error that ends that one connection.

use std::io::{self, Read, Write};

/// Encodings the proxy can frame. A viewer's `SetEncodings` is cut down to these.
pub const RAW: i32 = 0;
pub const COPY_RECT: i32 = 1;
pub const ZRLE: i32 = 16;
pub const CURSOR: i32 = -239;
pub const DESKTOP_SIZE: i32 = -223;
pub const LAST_RECT: i32 = -224;
pub const EXTENDED_DESKTOP_SIZE: i32 = -308;
pub const FRAMED: [i32; 7] = [
    RAW,
    COPY_RECT,
    ZRLE,
    CURSOR,
    DESKTOP_SIZE,
    LAST_RECT,
    EXTENDED_DESKTOP_SIZE,
];

/// Security types passed through: None and VNC authentication.
pub const SECURITY_NONE: u8 = 1;
pub const SECURITY_VNC_AUTH: u8 = 2;

/// Longest cut text or desktop name accepted from either side.
pub const MAX_TEXT: u32 = 1 << 20;
/// Most encodings in one `SetEncodings`.
pub const MAX_ENCODINGS: u16 = 1024;
/// Most screens in one `ExtendedDesktopSize` rectangle or `SetDesktopSize`.
pub const MAX_SCREENS: u8 = 64;
/// Largest ZRLE rectangle body.
pub const MAX_ZRLE: u32 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RfbError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("protocol error: {0}")]
    Protocol(String),
}

fn bad<T>(why: impl Into<String>) -> Result<T, RfbError> {
    Err(RfbError::Protocol(why.into()))
}

fn read_n<const N: usize>(r: &mut impl Read) -> Result<[u8; N], RfbError> {
    let mut b = [0u8; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

fn u16_of(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn u32_of(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Copies exactly `n` bytes from `r` to `w`.
fn copy_n(r: &mut impl Read, w: &mut impl Write, n: u64) -> Result<(), RfbError> {
    let copied = io::copy(&mut r.take(n), w)?;
    if copied != n {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(())
}

/// The pixel format, as far as framing needs it: bytes per pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    pub bits_per_pixel: u8,
}

impl PixelFormat {
    fn from_wire(b: &[u8]) -> Result<Self, RfbError> {
        match b[0] {
            8 | 16 | 32 => Ok(Self {
                bits_per_pixel: b[0],
            }),
            other => bad(format!("{other} bits per pixel")),
        }
    }

    pub fn bytes(self) -> u64 {
        u64::from(self.bits_per_pixel / 8)
    }
}

/// What `ServerInit` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInit {
    pub width: u16,
    pub height: u16,
    pub format: PixelFormat,
}

/// The handshake, passed through between `viewer` and `server`, with the security types cut
/// down to None and VNC authentication. Returns what `ServerInit` said.
pub fn handshake(
    viewer: &mut (impl Read + Write),
    server: &mut (impl Read + Write),
) -> Result<ServerInit, RfbError> {
    let version: [u8; 12] = read_n(server)?;
    if &version[..4] != b"RFB " || version[11] != b'\n' {
        return bad("the server sent no RFB version");
    }
    viewer.write_all(&version)?;
    let chosen: [u8; 12] = read_n(viewer)?;
    if &chosen[..4] != b"RFB " || chosen[11] != b'\n' {
        return bad("the viewer sent no RFB version");
    }
    server.write_all(&chosen)?;
    let minor = std::str::from_utf8(&chosen[8..11])
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(3);
    let security = if minor >= 7 {
        let [n] = read_n::<1>(server)?;
        if n == 0 {
            // The server's refusal, with its reason: pass it on.
            let len = u32::from_be_bytes(read_n(server)?);
            if len > MAX_TEXT {
                return bad("an overlong refusal reason");
            }
            viewer.write_all(&[0])?;
            viewer.write_all(&len.to_be_bytes())?;
            copy_n(server, viewer, u64::from(len))?;
            return bad("the server refused the connection");
        }
        let mut types = vec![0u8; usize::from(n)];
        server.read_exact(&mut types)?;
        let usable: Vec<u8> = types
            .iter()
            .copied()
            .filter(|t| *t == SECURITY_NONE || *t == SECURITY_VNC_AUTH)
            .collect();
        if usable.is_empty() {
            let reason = format!(
                "pvmouse-vnc cannot proxy the VNC server's security types {types:?} (VeNCrypt and \
                 TLS are not supported); configure the server with no password or a VNC password"
            );
            viewer.write_all(&[0])?;
            viewer.write_all(&u32::try_from(reason.len()).unwrap_or(0).to_be_bytes())?;
            viewer.write_all(reason.as_bytes())?;
            return bad(reason);
        }
        viewer.write_all(&[u8::try_from(usable.len()).unwrap_or(0)])?;
        viewer.write_all(&usable)?;
        let [pick] = read_n::<1>(viewer)?;
        if !usable.contains(&pick) {
            return bad(format!(
                "the viewer chose security type {pick}, not offered"
            ));
        }
        server.write_all(&[pick])?;
        pick
    } else {
        let t = u32::from_be_bytes(read_n(server)?);
        match u8::try_from(t) {
            Ok(t @ (SECURITY_NONE | SECURITY_VNC_AUTH)) => {
                viewer.write_all(&u32::from(t).to_be_bytes())?;
                t
            }
            _ => return bad(format!("the server requires security type {t}")),
        }
    };
    if security == SECURITY_VNC_AUTH {
        let challenge: [u8; 16] = read_n(server)?;
        viewer.write_all(&challenge)?;
        let response: [u8; 16] = read_n(viewer)?;
        server.write_all(&response)?;
    }
    if security == SECURITY_VNC_AUTH || minor >= 8 {
        let result: [u8; 4] = read_n(server)?;
        viewer.write_all(&result)?;
        if u32::from_be_bytes(result) != 0 {
            if minor >= 8 {
                let len = u32::from_be_bytes(read_n(server)?);
                if len <= MAX_TEXT {
                    viewer.write_all(&len.to_be_bytes())?;
                    copy_n(server, viewer, u64::from(len))?;
                }
            }
            return bad("the server refused the viewer's authentication");
        }
    }
    let shared: [u8; 1] = read_n(viewer)?;
    server.write_all(&shared)?;
    let init: [u8; 24] = read_n(server)?;
    let name_len = u32_of(&init, 20);
    if name_len > MAX_TEXT {
        return bad("an overlong desktop name");
    }
    viewer.write_all(&init)?;
    copy_n(server, viewer, u64::from(name_len))?;
    Ok(ServerInit {
        width: u16_of(&init, 0),
        height: u16_of(&init, 2),
        format: PixelFormat::from_wire(&init[4..20])?,
    })
}

/// A client message, whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// Passed on as these bytes; a new pixel format changes how updates are framed.
    Forward {
        bytes: Vec<u8>,
        format: Option<PixelFormat>,
    },
    Pointer {
        mask: u8,
        x: u16,
        y: u16,
    },
}

/// Reads one client message. `SetEncodings` comes back already cut down to [`FRAMED`].
pub fn read_client_message(r: &mut impl Read) -> Result<ClientMessage, RfbError> {
    let [kind] = read_n::<1>(r)?;
    let forward = |bytes: Vec<u8>| {
        Ok(ClientMessage::Forward {
            bytes,
            format: None,
        })
    };
    match kind {
        0 => {
            let rest: [u8; 19] = read_n(r)?;
            let format = PixelFormat::from_wire(&rest[3..])?;
            let mut bytes = vec![0];
            bytes.extend_from_slice(&rest);
            Ok(ClientMessage::Forward {
                bytes,
                format: Some(format),
            })
        }
        2 => {
            let head: [u8; 3] = read_n(r)?;
            let n = u16_of(&head, 1);
            if n > MAX_ENCODINGS {
                return bad(format!("SetEncodings with {n} encodings"));
            }
            let mut list = vec![0u8; usize::from(n) * 4];
            r.read_exact(&mut list)?;
            let kept: Vec<i32> = list
                .chunks_exact(4)
                .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .filter(|e| FRAMED.contains(e))
                .collect();
            let mut bytes = vec![2, 0];
            bytes.extend_from_slice(&u16::try_from(kept.len()).unwrap_or(0).to_be_bytes());
            for e in kept {
                bytes.extend_from_slice(&e.to_be_bytes());
            }
            forward(bytes)
        }
        3 => {
            let rest: [u8; 9] = read_n(r)?;
            let mut bytes = vec![3];
            bytes.extend_from_slice(&rest);
            forward(bytes)
        }
        4 => {
            let rest: [u8; 7] = read_n(r)?;
            let mut bytes = vec![4];
            bytes.extend_from_slice(&rest);
            forward(bytes)
        }
        5 => {
            let b: [u8; 5] = read_n(r)?;
            Ok(ClientMessage::Pointer {
                mask: b[0],
                x: u16_of(&b, 1),
                y: u16_of(&b, 3),
            })
        }
        6 => {
            let head: [u8; 7] = read_n(r)?;
            let len = u32_of(&head, 3);
            if len > MAX_TEXT {
                return bad(format!("ClientCutText of {len} bytes"));
            }
            let mut bytes = vec![6];
            bytes.extend_from_slice(&head);
            let start = bytes.len();
            bytes.resize(start + usize::try_from(len).unwrap_or(0), 0);
            r.read_exact(&mut bytes[start..])?;
            forward(bytes)
        }
        251 => {
            // SetDesktopSize: padding, width, height, screens, padding, then 16 bytes a screen.
            let head: [u8; 7] = read_n(r)?;
            let screens = head[5];
            if screens > MAX_SCREENS {
                return bad(format!("SetDesktopSize with {screens} screens"));
            }
            let mut bytes = vec![251];
            bytes.extend_from_slice(&head);
            let start = bytes.len();
            bytes.resize(start + usize::from(screens) * 16, 0);
            r.read_exact(&mut bytes[start..])?;
            forward(bytes)
        }
        other => bad(format!("client message type {other}")),
    }
}

/// Passes one server message from `r` to `w`, and returns the framebuffer size it sets, if it
/// sets one.
pub fn pass_server_message(
    r: &mut impl Read,
    w: &mut impl Write,
    format: PixelFormat,
) -> Result<Option<(u16, u16)>, RfbError> {
    let [kind] = read_n::<1>(r)?;
    w.write_all(&[kind])?;
    match kind {
        0 => {
            let head: [u8; 3] = read_n(r)?;
            w.write_all(&head)?;
            let rects = u16_of(&head, 1);
            let mut size = None;
            for _ in 0..rects {
                let rect: [u8; 12] = read_n(r)?;
                w.write_all(&rect)?;
                let (width, height) = (u16_of(&rect, 4), u16_of(&rect, 6));
                let area = u64::from(width) * u64::from(height);
                let encoding = i32::from_be_bytes([rect[8], rect[9], rect[10], rect[11]]);
                match encoding {
                    RAW => copy_n(r, w, area * format.bytes())?,
                    COPY_RECT => copy_n(r, w, 4)?,
                    ZRLE => {
                        let len: [u8; 4] = read_n(r)?;
                        let len32 = u32::from_be_bytes(len);
                        if len32 > MAX_ZRLE {
                            return bad(format!("a ZRLE rectangle of {len32} bytes"));
                        }
                        w.write_all(&len)?;
                        copy_n(r, w, u64::from(len32))?;
                    }
                    CURSOR => {
                        let mask = u64::from(width).div_ceil(8) * u64::from(height);
                        copy_n(r, w, area * format.bytes() + mask)?;
                    }
                    DESKTOP_SIZE => size = Some((width, height)),
                    EXTENDED_DESKTOP_SIZE => {
                        let head: [u8; 4] = read_n(r)?;
                        w.write_all(&head)?;
                        if head[0] > MAX_SCREENS {
                            return bad(format!("{} screens", head[0]));
                        }
                        copy_n(r, w, u64::from(head[0]) * 16)?;
                        size = Some((width, height));
                    }
                    LAST_RECT => break,
                    other => return bad(format!("an update in encoding {other}, never asked for")),
                }
            }
            Ok(size)
        }
        1 => {
            let head: [u8; 5] = read_n(r)?;
            w.write_all(&head)?;
            copy_n(r, w, u64::from(u16_of(&head, 3)) * 6)?;
            Ok(None)
        }
        2 => Ok(None),
        3 => {
            let head: [u8; 7] = read_n(r)?;
            let len = u32_of(&head, 3);
            if len > MAX_TEXT {
                return bad(format!("ServerCutText of {len} bytes"));
            }
            w.write_all(&head)?;
            copy_n(r, w, u64::from(len))?;
            Ok(None)
        }
        other => bad(format!("server message type {other}, never asked for")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn handshake_with(
        server_says: Vec<u8>,
        viewer_says: Vec<u8>,
    ) -> (Result<ServerInit, String>, Vec<u8>, Vec<u8>) {
        let (mut viewer_side, mut viewer) = UnixStream::pair().unwrap();
        let (mut server_side, mut server) = UnixStream::pair().unwrap();
        viewer.write_all(&viewer_says).unwrap();
        server.write_all(&server_says).unwrap();
        let result = handshake(&mut viewer_side, &mut server_side).map_err(|e| e.to_string());
        drop((viewer_side, server_side));
        let (mut to_viewer, mut to_server) = (Vec::new(), Vec::new());
        viewer.read_to_end(&mut to_viewer).unwrap();
        server.read_to_end(&mut to_server).unwrap();
        (result, to_viewer, to_server)
    }

    fn server_init(w: u16, h: u16) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&w.to_be_bytes());
        b.extend_from_slice(&h.to_be_bytes());
        b.extend_from_slice(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
        b.extend_from_slice(&4u32.to_be_bytes());
        b.extend_from_slice(b"QEMU");
        b
    }

    #[test]
    fn security_types_are_cut_to_none_and_vnc_auth_and_the_init_is_read() {
        let mut server = b"RFB 003.008\n".to_vec();
        server.extend_from_slice(&[2, 18, 1]);
        server.extend_from_slice(&0u32.to_be_bytes());
        server.extend(server_init(1280, 1024));
        let mut viewer = b"RFB 003.008\n".to_vec();
        viewer.extend_from_slice(&[1, 0]);
        let (result, to_viewer, to_server) = handshake_with(server, viewer);
        let init = result.unwrap();
        assert_eq!(
            (init.width, init.height, init.format.bytes()),
            (1280, 1024, 4)
        );
        assert_eq!(&to_viewer[12..14], &[1, 1], "only None offered on");
        assert_eq!(to_server, b"RFB 003.008\n\x01\x00");
    }

    #[test]
    fn a_vencrypt_only_server_is_refused_with_a_reason_the_viewer_sees() {
        let mut server = b"RFB 003.008\n".to_vec();
        server.extend_from_slice(&[1, 19]);
        let (result, to_viewer, _) = handshake_with(server, b"RFB 003.008\n".to_vec());
        assert!(result.unwrap_err().contains("VeNCrypt"));
        assert_eq!(to_viewer[12], 0, "no security types");
        assert!(String::from_utf8_lossy(&to_viewer[17..]).contains("VeNCrypt"));
    }

    #[test]
    fn updates_are_framed_through_and_size_changes_seen() {
        let mut msg = vec![0, 0, 0, 3];
        // A 2x1 raw rectangle at 32 bits per pixel, a copy, then a desktop size change.
        msg.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 0, 0, 0]);
        msg.extend_from_slice(&[9; 8]);
        msg.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 5, 0, 6]);
        msg.extend_from_slice(&[0, 0, 0, 0, 3, 32, 2, 88]);
        msg.extend_from_slice(&DESKTOP_SIZE.to_be_bytes());
        let mut out = Vec::new();
        let size = pass_server_message(
            &mut msg.as_slice(),
            &mut out,
            PixelFormat { bits_per_pixel: 32 },
        )
        .unwrap();
        assert_eq!(size, Some((800, 600)));
        assert_eq!(out, msg, "passed through unchanged");
        // An encoding never asked for (Hextile) cannot be framed.
        let hextile = [0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 5];
        assert!(
            pass_server_message(
                &mut hextile.as_slice(),
                &mut Vec::new(),
                PixelFormat { bits_per_pixel: 32 }
            )
            .is_err()
        );
    }

    #[test]
    fn set_encodings_keeps_what_can_be_framed_and_pointer_events_are_taken_out() {
        let mut msg = vec![2, 0, 0, 4];
        for e in [5, RAW, -258, DESKTOP_SIZE] {
            msg.extend_from_slice(&i32::to_be_bytes(e));
        }
        msg.extend_from_slice(&[5, 1, 0, 10, 0, 20]);
        let mut r = msg.as_slice();
        let ClientMessage::Forward { bytes, .. } = read_client_message(&mut r).unwrap() else {
            panic!("not forwarded");
        };
        let mut want = vec![2, 0, 0, 2];
        want.extend_from_slice(&RAW.to_be_bytes());
        want.extend_from_slice(&DESKTOP_SIZE.to_be_bytes());
        assert_eq!(bytes, want);
        assert_eq!(
            read_client_message(&mut r).unwrap(),
            ClientMessage::Pointer {
                mask: 1,
                x: 10,
                y: 20
            }
        );
        assert!(read_client_message(&mut [99u8].as_slice()).is_err());
    }
}
