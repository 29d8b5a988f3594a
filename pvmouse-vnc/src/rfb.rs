//! RFB (RFC 6143) as `pvmouse-vnc` needs it: the handshake, the viewer's messages framed (so
//! that pointer events can be taken out), and, on a connection of the proxy's own to each head,
//! the server's messages framed for the encodings it asks for (so that the head's size is
//! known). The server's stream to a viewer is not framed at all: it passes through byte for
//! byte, in whatever encodings the viewer asked for. Nothing is buffered whole: a message's body
//! is copied through as it arrives.
//!
//! Both sides are untrusted: every length is checked against a limit before it is read, and
//! anything this module cannot frame is an error that ends that one connection.

use std::io::{self, Read, Write};

/// Encodings the head watcher asks for and frames: pixels only as Raw (of a 1x1 region), and the
/// pseudo-encodings that say the framebuffer's size changed.
pub const RAW: i32 = 0;
pub const DESKTOP_SIZE: i32 = -223;
pub const LAST_RECT: i32 = -224;
pub const EXTENDED_DESKTOP_SIZE: i32 = -308;
pub const WATCHED: [i32; 4] = [RAW, DESKTOP_SIZE, LAST_RECT, EXTENDED_DESKTOP_SIZE];
/// QEMU's pointer type change (`QEMU_POINTER_MOTION_CHANGE`): a viewer that asks for it is told
/// by QEMU whether QEMU's own active mouse is absolute, and sends relative motion when it is not.
/// pvmouse is not QEMU's mouse (a VM with pvmouse may have no absolute QEMU device at all), so
/// QEMU's answer says nothing about pvmouse; the proxy takes the encoding out of the viewer's
/// `SetEncodings`, and its viewers keep sending positions.
pub const POINTER_TYPE_CHANGE: i32 = -257;

/// The version the proxy offers viewers, before it has connected upstream.
pub const VERSION: &[u8; 12] = b"RFB 003.008\n";

/// Security types passed through: None and VNC authentication.
pub const SECURITY_NONE: u8 = 1;
pub const SECURITY_VNC_AUTH: u8 = 2;

/// Longest cut text or desktop name accepted from either side.
pub const MAX_TEXT: u32 = 1 << 20;
/// Most encodings in one `SetEncodings`.
pub const MAX_ENCODINGS: u16 = 1024;
/// Most screens in one `ExtendedDesktopSize` rectangle or `SetDesktopSize`.
pub const MAX_SCREENS: u8 = 64;
/// Longest fence payload (RFB's own limit).
pub const MAX_FENCE: u8 = 64;

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
pub fn copy_n(r: &mut impl Read, w: &mut impl Write, n: u64) -> Result<(), RfbError> {
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

/// The version a viewer chose, and the minor number the rest of its handshake follows: 3, 7 or
/// 8 (RFC 6143 §7.1.1: any other is 3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Greeting {
    pub version: [u8; 12],
    pub minor: u32,
}

fn minor_of(version: &[u8; 12]) -> Option<u32> {
    if &version[..4] != b"RFB " || version[7] != b'.' || version[11] != b'\n' {
        return None;
    }
    let major = std::str::from_utf8(&version[4..7])
        .ok()?
        .parse::<u32>()
        .ok()?;
    let minor = std::str::from_utf8(&version[8..11])
        .ok()?
        .parse::<u32>()
        .ok()?;
    Some(match (major, minor) {
        (3, 7) => 7,
        (3, m) if m >= 8 => 8,
        _ => 3,
    })
}

/// Offers the viewer [`VERSION`] and reads the version it chooses: a viewer must speak before
/// the proxy connects upstream for it.
pub fn greet(viewer: &mut (impl Read + Write)) -> Result<Greeting, RfbError> {
    viewer.write_all(VERSION)?;
    viewer.flush()?;
    let version: [u8; 12] = read_n(viewer)?;
    let minor = minor_of(&version)
        .ok_or_else(|| RfbError::Protocol("the viewer sent no RFB version".into()))?;
    Ok(Greeting { version, minor })
}

/// Tells a greeted viewer why it is not served, as its version says a refusal goes.
pub fn refuse(viewer: &mut impl Write, greeting: Greeting, reason: &str) -> Result<(), RfbError> {
    let len = u32::try_from(reason.len()).unwrap_or(0).to_be_bytes();
    if greeting.minor >= 7 {
        viewer.write_all(&[0])?;
    } else {
        viewer.write_all(&0u32.to_be_bytes())?;
    }
    viewer.write_all(&len)?;
    viewer.write_all(reason.as_bytes())?;
    viewer.flush()?;
    Ok(())
}

/// The rest of the handshake, passed through between a greeted `viewer` and `server`, with the
/// security types cut down to None and VNC authentication. Returns what `ServerInit` said.
pub fn handshake(
    viewer: &mut (impl Read + Write),
    greeting: Greeting,
    server: &mut (impl Read + Write),
) -> Result<ServerInit, RfbError> {
    let version: [u8; 12] = read_n(server)?;
    let Some(server_minor) = minor_of(&version) else {
        return bad("the server sent no RFB version");
    };
    if server_minor < greeting.minor {
        let reason = format!(
            "the VNC server speaks only RFB 3.{server_minor}; connect with a viewer set to it"
        );
        refuse(viewer, greeting, &reason)?;
        return bad(reason);
    }
    let chosen = greeting.version;
    server.write_all(&chosen)?;
    let minor = greeting.minor;
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

/// A viewer's message, framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// Passed on: these bytes, then `body` more bytes copied straight from the viewer (cut
    /// text, an encoding list), so that no viewer makes the proxy hold a large message.
    Forward {
        head: Vec<u8>,
        body: u64,
    },
    Pointer {
        mask: u8,
        x: u16,
        y: u16,
    },
}

/// Reads `N` bytes after the type byte `kind` into a message head.
fn head_of<const N: usize>(r: &mut impl Read, kind: u8) -> Result<Vec<u8>, RfbError> {
    let rest: [u8; N] = read_n(r)?;
    let mut head = Vec::with_capacity(N + 1);
    head.push(kind);
    head.extend_from_slice(&rest);
    Ok(head)
}

/// Reads one viewer message: every message RFC 6143 and QEMU's VNC server define. The viewer's
/// `SetEncodings` passes unchanged but for [`POINTER_TYPE_CHANGE`]: the server's stream is not
/// framed, so the viewer may ask for any encoding the server has.
pub fn read_client_message(r: &mut impl Read) -> Result<ClientMessage, RfbError> {
    let [kind] = read_n::<1>(r)?;
    let whole = |head: Vec<u8>| Ok(ClientMessage::Forward { head, body: 0 });
    match kind {
        // SetPixelFormat.
        0 => whole(head_of::<19>(r, kind)?),
        // SetEncodings: padding, count, then four bytes an encoding.
        2 => {
            let head = head_of::<3>(r, kind)?;
            let n = u16_of(&head, 2);
            if n > MAX_ENCODINGS {
                return bad(format!("SetEncodings with {n} encodings"));
            }
            // At most 4 KiB, read whole to take one encoding out.
            let mut encodings = vec![0u8; usize::from(n) * 4];
            r.read_exact(&mut encodings)?;
            let kept: Vec<u8> = encodings
                .chunks_exact(4)
                .filter(|e| i32::from_be_bytes([e[0], e[1], e[2], e[3]]) != POINTER_TYPE_CHANGE)
                .flatten()
                .copied()
                .collect();
            // Fewer than MAX_ENCODINGS, so the count fits.
            let count = u16::try_from(kept.len() / 4).unwrap_or(n);
            let mut message = vec![kind, head[1]];
            message.extend_from_slice(&count.to_be_bytes());
            message.extend_from_slice(&kept);
            Ok(ClientMessage::Forward {
                head: message,
                body: 0,
            })
        }
        // FramebufferUpdateRequest, KeyEvent.
        3 => whole(head_of::<9>(r, kind)?),
        4 => whole(head_of::<7>(r, kind)?),
        5 => {
            let b: [u8; 5] = read_n(r)?;
            Ok(ClientMessage::Pointer {
                mask: b[0],
                x: u16_of(&b, 1),
                y: u16_of(&b, 3),
            })
        }
        // ClientCutText: padding, then a length; negative in the extended clipboard's form.
        6 => {
            let head = head_of::<7>(r, kind)?;
            let len = i32::from_be_bytes([head[4], head[5], head[6], head[7]]).unsigned_abs();
            if len > MAX_TEXT {
                return bad(format!("ClientCutText of {len} bytes"));
            }
            Ok(ClientMessage::Forward {
                head,
                body: u64::from(len),
            })
        }
        // EnableContinuousUpdates.
        150 => whole(head_of::<9>(r, kind)?),
        // ClientFence: padding, flags, then a payload of at most 64 bytes.
        248 => {
            let head = head_of::<8>(r, kind)?;
            let len = head[8];
            if len > MAX_FENCE {
                return bad(format!("a fence of {len} bytes"));
            }
            Ok(ClientMessage::Forward {
                head,
                body: u64::from(len),
            })
        }
        // xvp.
        250 => whole(head_of::<3>(r, kind)?),
        // SetDesktopSize: padding, width, height, screens, padding, then 16 bytes a screen.
        251 => {
            let head = head_of::<7>(r, kind)?;
            let screens = head[6];
            if screens > MAX_SCREENS {
                return bad(format!("SetDesktopSize with {screens} screens"));
            }
            Ok(ClientMessage::Forward {
                head,
                body: u64::from(screens) * 16,
            })
        }
        // QEMU's own: extended key events and audio.
        255 => {
            let [sub] = read_n::<1>(r)?;
            let mut head = vec![kind, sub];
            match sub {
                0 => head.extend_from_slice(&read_n::<10>(r)?),
                1 => {
                    let op: [u8; 2] = read_n(r)?;
                    head.extend_from_slice(&op);
                    match u16::from_be_bytes(op) {
                        0 | 1 => {}
                        2 => head.extend_from_slice(&read_n::<6>(r)?),
                        other => return bad(format!("QEMU audio operation {other}")),
                    }
                }
                other => return bad(format!("QEMU client message {other}")),
            }
            whole(head)
        }
        other => bad(format!("client message type {other}")),
    }
}

/// The client's side of the handshake, for the proxy's own connection to a head: only a server
/// that lets it in with no password (security None) can be watched.
pub fn connect_as_client(server: &mut (impl Read + Write)) -> Result<ServerInit, RfbError> {
    let version: [u8; 12] = read_n(server)?;
    if minor_of(&version) != Some(8) {
        return bad("the server does not speak RFB 3.8");
    }
    server.write_all(VERSION)?;
    let [n] = read_n::<1>(server)?;
    let mut types = vec![0u8; usize::from(n)];
    server.read_exact(&mut types)?;
    if !types.contains(&SECURITY_NONE) {
        return bad(format!(
            "the server wants a password (security types {types:?})"
        ));
    }
    server.write_all(&[SECURITY_NONE])?;
    if u32::from_be_bytes(read_n(server)?) != 0 {
        return bad("the server refused a connection with no password");
    }
    // Shared: the viewers stay connected.
    server.write_all(&[1])?;
    let init: [u8; 24] = read_n(server)?;
    let name_len = u32_of(&init, 20);
    if name_len > MAX_TEXT {
        return bad("an overlong desktop name");
    }
    io::copy(&mut server.take(u64::from(name_len)), &mut io::sink())?;
    Ok(ServerInit {
        width: u16_of(&init, 0),
        height: u16_of(&init, 2),
        format: PixelFormat::from_wire(&init[4..20])?,
    })
}

/// The head watcher's requests: the encodings it frames, and an incremental update of one pixel,
/// which the server answers when that pixel changes or the framebuffer's size does.
pub fn watch_requests() -> Vec<u8> {
    let mut b = vec![2, 0];
    b.extend_from_slice(&u16::try_from(WATCHED.len()).unwrap_or(0).to_be_bytes());
    for e in WATCHED {
        b.extend_from_slice(&e.to_be_bytes());
    }
    b.extend_from_slice(&update_request());
    b
}

/// An incremental FramebufferUpdateRequest for the pixel at the origin.
pub fn update_request() -> [u8; 10] {
    [3, 1, 0, 0, 0, 0, 0, 1, 0, 1]
}

/// Reads one server message on the watcher's connection, which asked only for [`WATCHED`], and
/// returns the framebuffer size it sets, if it sets one.
pub fn read_server_message(
    r: &mut impl Read,
    format: PixelFormat,
) -> Result<Option<(u16, u16)>, RfbError> {
    let w = &mut io::sink();
    let [kind] = read_n::<1>(r)?;
    match kind {
        0 => {
            let head: [u8; 3] = read_n(r)?;
            let rects = u16_of(&head, 1);
            let mut size = None;
            for _ in 0..rects {
                let rect: [u8; 12] = read_n(r)?;
                let (width, height) = (u16_of(&rect, 4), u16_of(&rect, 6));
                let area = u64::from(width) * u64::from(height);
                let encoding = i32::from_be_bytes([rect[8], rect[9], rect[10], rect[11]]);
                match encoding {
                    RAW => copy_n(r, w, area * format.bytes())?,
                    DESKTOP_SIZE => size = Some((width, height)),
                    EXTENDED_DESKTOP_SIZE => {
                        let head: [u8; 4] = read_n(r)?;
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
            copy_n(r, w, u64::from(u16_of(&head, 3)) * 6)?;
            Ok(None)
        }
        2 => Ok(None),
        3 => {
            let head: [u8; 7] = read_n(r)?;
            let len = i32::from_be_bytes([head[3], head[4], head[5], head[6]]).unsigned_abs();
            if len > MAX_TEXT {
                return bad(format!("ServerCutText of {len} bytes"));
            }
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
        let result = greet(&mut viewer_side)
            .and_then(|g| handshake(&mut viewer_side, g, &mut server_side))
            .map_err(|e| e.to_string());
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
    fn the_watcher_frames_what_it_asked_for_and_sees_size_changes() {
        let mut msg = vec![0, 0, 0, 2];
        // A 2x1 raw rectangle at 32 bits per pixel, then a desktop size change.
        msg.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 0, 0, 0]);
        msg.extend_from_slice(&[9; 8]);
        msg.extend_from_slice(&[0, 0, 0, 0, 3, 32, 2, 88]);
        msg.extend_from_slice(&DESKTOP_SIZE.to_be_bytes());
        let format = PixelFormat { bits_per_pixel: 32 };
        let mut r = msg.as_slice();
        assert_eq!(
            read_server_message(&mut r, format).unwrap(),
            Some((800, 600))
        );
        assert!(r.is_empty(), "read whole");
        // An encoding never asked for (Hextile) cannot be framed.
        let hextile = [0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 5];
        assert!(read_server_message(&mut hextile.as_slice(), format).is_err());
        let asked = watch_requests();
        assert_eq!(&asked[..4], &[2, 0, 0, 4]);
        assert_eq!(&asked[asked.len() - 10..], &update_request());
    }

    #[test]
    fn every_viewer_message_is_framed_and_set_encodings_passes_unchanged() {
        let mut msg = vec![2, 0, 0, 4];
        for e in [7, RAW, -258, DESKTOP_SIZE] {
            msg.extend_from_slice(&i32::to_be_bytes(e));
        }
        // QEMU's pointer type change is taken out, and the count with it.
        let mut asked = vec![2, 0, 0, 3];
        for e in [RAW, POINTER_TYPE_CHANGE, -258] {
            asked.extend_from_slice(&i32::to_be_bytes(e));
        }
        let ClientMessage::Forward { head, body: 0 } =
            read_client_message(&mut asked.as_slice()).unwrap()
        else {
            panic!("SetEncodings is forwarded whole");
        };
        let mut want = vec![2, 0, 0, 2];
        for e in [RAW, -258] {
            want.extend_from_slice(&i32::to_be_bytes(e));
        }
        assert_eq!(head, want);
        msg.extend_from_slice(&[5, 1, 0, 10, 0, 20]);
        // Extended clipboard: a negative length.
        msg.extend_from_slice(&[6, 0, 0, 0]);
        msg.extend_from_slice(&(-3i32).to_be_bytes());
        msg.extend_from_slice(b"abc");
        // QEMU's extended key event, audio enable and audio format.
        msg.extend_from_slice(&[255, 0, 0, 1, 0, 0, 0, 0x61, 0, 0, 0, 30]);
        msg.extend_from_slice(&[255, 1, 0, 0]);
        msg.extend_from_slice(&[255, 1, 0, 2, 3, 2, 0, 0, 0xac, 0x44]);
        // A fence with a 2-byte payload; continuous updates.
        msg.extend_from_slice(&[248, 0, 0, 0, 0, 0, 0, 1, 2, 7, 7]);
        msg.extend_from_slice(&[150, 1, 0, 0, 0, 0, 1, 0, 1, 0]);
        let mut r = msg.as_slice();
        let mut passed = Vec::new();
        let mut pointers = Vec::new();
        while !r.is_empty() {
            match read_client_message(&mut r).unwrap() {
                ClientMessage::Forward { head, body } => {
                    passed.extend_from_slice(&head);
                    let (b, rest) = r.split_at(usize::try_from(body).unwrap());
                    passed.extend_from_slice(b);
                    r = rest;
                }
                ClientMessage::Pointer { mask, x, y } => pointers.push((mask, x, y)),
            }
        }
        let mut want = msg.clone();
        want.drain(20..26);
        assert_eq!(passed, want, "everything but the pointer, unchanged");
        assert_eq!(pointers, [(1, 10, 20)]);
        for bad in [
            &[99u8][..],
            &[255, 9],
            &[255, 1, 0, 7],
            &[248, 0, 0, 0, 0, 0, 0, 1, 65],
            &[6, 0, 0, 0, 0x80, 0, 0, 0],
        ] {
            assert!(read_client_message(&mut &bad[..]).is_err(), "{bad:?}");
        }
    }
}
