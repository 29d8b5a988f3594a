//! RFB (RFC 6143) as `pvmouse-vnc` needs it: the handshake, the viewer's messages framed (so
//! that pointer events can be taken out), and the server's messages framed ([`ServerFramer`])
//! on the proxy's own connection to each head (so that the head's size is known) and on the
//! connections of viewers that ask to be told of pointer type changes (so that the proxy can
//! tell them between two messages). Every other viewer's stream passes through byte for byte,
//! in whatever encodings it asked for. Nothing is buffered whole: a message's body is copied
//! through as it arrives.
//!
//! Both sides are untrusted: every length is checked against a limit before it is read, and
//! anything this module cannot frame is an error that ends that one connection.

use std::io::{self, Read, Write};

/// Pixel encodings the server framer takes: the common ones whose length needs no more than the
/// pixel format (Hextile and RRE, which QEMU's viewers list after Tight and ZRLE, are left out).
pub const RAW: i32 = 0;
pub const COPY_RECT: i32 = 1;
pub const ZLIB: i32 = 6;
pub const TIGHT: i32 = 7;
pub const ZRLE: i32 = 16;
pub const TIGHT_PNG: i32 = -260;
/// Pseudo-encodings whose rectangles the server framer takes.
pub const DESKTOP_SIZE: i32 = -223;
pub const LAST_RECT: i32 = -224;
pub const RICH_CURSOR: i32 = -239;
pub const X_CURSOR: i32 = -240;
pub const QEMU_EXTENDED_KEY_EVENT: i32 = -258;
pub const QEMU_AUDIO: i32 = -259;
pub const QEMU_LED_STATE: i32 = -261;
pub const DESKTOP_NAME: i32 = -307;
pub const EXTENDED_DESKTOP_SIZE: i32 = -308;
pub const ALPHA_CURSOR: i32 = -314;
/// VMware's pixel format change: the server's own new format, in the stream.
pub const WMVI: i32 = 0x574D_5669;
/// Capabilities with no rectangle of their own (their answers are messages, or change how
/// other messages look in ways the framing already takes).
pub const XVP: i32 = -309;
pub const FENCE: i32 = -312;
pub const CONTINUOUS_UPDATES: i32 = -313;
pub const EXTENDED_CLIPBOARD: i32 = i32::from_be_bytes([0xC0, 0xA1, 0xE5, 0xCE]);
/// Tight's JPEG quality and the compression level, which QEMU also applies to Zlib and ZRLE.
pub const QUALITY_LEVELS: std::ops::RangeInclusive<i32> = -32..=-23;
pub const COMPRESSION_LEVELS: std::ops::RangeInclusive<i32> = -256..=-247;
/// What the head watcher asks for: pixels only as Raw (of a 1x1 region), and the
/// pseudo-encodings that say the framebuffer's size changed.
pub const WATCHED: [i32; 4] = [RAW, DESKTOP_SIZE, LAST_RECT, EXTENDED_DESKTOP_SIZE];
/// QEMU's pointer type change (`QEMU_POINTER_MOTION_CHANGE`): a rectangle whose x says whether
/// the pointer is absolute (1) or relative (0); a viewer that has it sends relative motion as
/// positions offset by [`RELATIVE_ORIGIN`]. QEMU's own answer would be about QEMU's mouse, which
/// pvmouse is not (a VM with pvmouse may have no absolute QEMU device at all), so the encoding
/// never goes upstream: the proxy answers it from pvmouse's mode.
pub const POINTER_TYPE_CHANGE: i32 = -257;
/// The position that means "no motion" from a viewer told the pointer is relative.
pub const RELATIVE_ORIGIN: i32 = 0x7FFF;

/// Whether the server framer can frame every rectangle the server may send for `encoding`: what
/// a framed viewer's `SetEncodings` is cut down to.
pub fn framable(encoding: i32) -> bool {
    matches!(
        encoding,
        RAW | COPY_RECT
            | ZLIB
            | TIGHT
            | ZRLE
            | TIGHT_PNG
            | DESKTOP_SIZE
            | LAST_RECT
            | RICH_CURSOR
            | X_CURSOR
            | QEMU_EXTENDED_KEY_EVENT
            | QEMU_AUDIO
            | QEMU_LED_STATE
            | DESKTOP_NAME
            | EXTENDED_DESKTOP_SIZE
            | ALPHA_CURSOR
            | WMVI
            | XVP
            | FENCE
            | CONTINUOUS_UPDATES
            | EXTENDED_CLIPBOARD
            | POINTER_TYPE_CHANGE
    ) || QUALITY_LEVELS.contains(&encoding)
        || COMPRESSION_LEVELS.contains(&encoding)
}

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

/// The pixel format, as far as framing needs it: bytes per pixel, and Tight's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    pub bits_per_pixel: u8,
    /// Bytes in one of Tight's `TPIXEL`s: 3 for 32-bit pixels with 8 bits a channel, as QEMU
    /// decides it (it does not look at the depth, which RFC 6143 also asks for), else the
    /// pixel's bytes.
    pub tight_pixel: u8,
}

impl PixelFormat {
    /// A format of `bits_per_pixel` whose Tight pixels are its pixels.
    pub const fn plain(bits_per_pixel: u8) -> Self {
        Self {
            bits_per_pixel,
            tight_pixel: bits_per_pixel / 8,
        }
    }

    fn from_wire(b: &[u8]) -> Result<Self, RfbError> {
        let Some(wire) = b.get(..16) else {
            return bad("a short pixel format");
        };
        let channel_max = |at: usize| u16_of(wire, at);
        match wire[0] {
            32 if (4..10).step_by(2).all(|at| channel_max(at) == 255) => Ok(Self {
                bits_per_pixel: 32,
                tight_pixel: 3,
            }),
            bits @ (8 | 16 | 32) => Ok(Self::plain(bits)),
            other => bad(format!("{other} bits per pixel")),
        }
    }

    /// The format a viewer's `SetPixelFormat` sets, as QEMU applies it: a viewer that asks for
    /// a colour map gets 8 bits per pixel whatever it said.
    pub fn from_viewer(b: &[u8]) -> Result<Self, RfbError> {
        if b.get(3) == Some(&0) {
            return Ok(Self::plain(8));
        }
        Self::from_wire(b)
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
    /// The encodings the viewer takes, in its order of preference: the proxy decides which go
    /// on ([`set_encodings`]).
    SetEncodings {
        padding: u8,
        encodings: Vec<i32>,
    },
}

/// A `SetEncodings` message of `encodings`.
pub fn set_encodings(padding: u8, encodings: &[i32]) -> Vec<u8> {
    let mut b = vec![2, padding];
    // At most MAX_ENCODINGS came in, and no more go out.
    let n = u16::try_from(encodings.len()).unwrap_or(MAX_ENCODINGS);
    b.extend_from_slice(&n.to_be_bytes());
    for e in encodings.iter().take(usize::from(n)) {
        b.extend_from_slice(&e.to_be_bytes());
    }
    b
}

/// The `FramebufferUpdate` that tells a viewer the pointer is absolute or relative: one
/// [`POINTER_TYPE_CHANGE`] rectangle the size of the framebuffer, as QEMU sends it.
pub fn pointer_type_change(absolute: bool, size: (u16, u16)) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[3] = 1;
    b[5] = u8::from(absolute);
    b[8..10].copy_from_slice(&size.0.to_be_bytes());
    b[10..12].copy_from_slice(&size.1.to_be_bytes());
    b[12..16].copy_from_slice(&POINTER_TYPE_CHANGE.to_be_bytes());
    b
}

/// Reads `N` bytes after the type byte `kind` into a message head.
fn head_of<const N: usize>(r: &mut impl Read, kind: u8) -> Result<Vec<u8>, RfbError> {
    let rest: [u8; N] = read_n(r)?;
    let mut head = Vec::with_capacity(N + 1);
    head.push(kind);
    head.extend_from_slice(&rest);
    Ok(head)
}

/// Reads one viewer message: every message RFC 6143 and QEMU's VNC server define.
pub fn read_client_message(r: &mut impl Read) -> Result<ClientMessage, RfbError> {
    let [kind] = read_n::<1>(r)?;
    let whole = |head: Vec<u8>| Ok(ClientMessage::Forward { head, body: 0 });
    match kind {
        // SetPixelFormat.
        0 => whole(head_of::<19>(r, kind)?),
        // SetEncodings: padding, count, then four bytes an encoding; at most 4 KiB, read whole
        // so that the proxy can choose what goes on.
        2 => {
            let head = head_of::<3>(r, kind)?;
            let n = u16_of(&head, 2);
            if n > MAX_ENCODINGS {
                return bad(format!("SetEncodings with {n} encodings"));
            }
            let mut bytes = vec![0u8; usize::from(n) * 4];
            r.read_exact(&mut bytes)?;
            Ok(ClientMessage::SetEncodings {
                padding: head[1],
                encodings: bytes
                    .chunks_exact(4)
                    .map(|e| i32::from_be_bytes([e[0], e[1], e[2], e[3]]))
                    .collect(),
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

/// Reads `N` bytes and copies them to `w`.
fn pass<const N: usize>(r: &mut impl Read, w: &mut impl Write) -> Result<[u8; N], RfbError> {
    let b = read_n::<N>(r)?;
    w.write_all(&b)?;
    Ok(b)
}

/// A VNC server's messages, framed one at a time and copied through as they are read: every
/// message RFC 6143 and QEMU define, with rectangles in the encodings [`framable`] names. Lengths
/// are not limited (but a fence's, which RFB limits): nothing is held, so a long cut text costs
/// no memory, and the server is the VM's own. It follows what framing depends on: the pixel size (from `ServerInit`, a viewer's
/// `SetPixelFormat` the caller passes on, and the server's WMVi rectangles) and the
/// framebuffer's size.
#[derive(Debug, Clone)]
pub struct ServerFramer {
    pub format: PixelFormat,
    pub size: (u16, u16),
}

impl ServerFramer {
    pub fn new(init: &ServerInit) -> Self {
        Self {
            format: init.format,
            size: (init.width, init.height),
        }
    }

    /// Reads one message from `r`, its type byte `kind` already read, and copies it whole to
    /// `w`, type byte first. Returns the framebuffer's new size if the message changed it.
    pub fn copy_message(
        &mut self,
        kind: u8,
        r: &mut impl Read,
        w: &mut impl Write,
    ) -> Result<Option<(u16, u16)>, RfbError> {
        w.write_all(&[kind])?;
        match kind {
            // FramebufferUpdate: padding, then a count of rectangles.
            0 => {
                let head = pass::<3>(r, w)?;
                let before = self.size;
                for _ in 0..u16_of(&head, 1) {
                    let mut rect = [0u8; 12];
                    r.read_exact(&mut rect)?;
                    w.write_all(&rect)?;
                    if !self.copy_rectangle(&rect, r, w)? {
                        break;
                    }
                }
                Ok((self.size != before).then_some(self.size))
            }
            // SetColourMapEntries: padding, first colour, count, then six bytes a colour.
            1 => {
                let head = pass::<5>(r, w)?;
                copy_n(r, w, u64::from(u16_of(&head, 3)) * 6)?;
                Ok(None)
            }
            // Bell; QEMU's audio and LED answers come as rectangles, not messages.
            2 => Ok(None),
            // ServerCutText: padding, then a length, negative in the extended clipboard's form.
            3 => {
                let head = pass::<7>(r, w)?;
                let len = i32::from_be_bytes([head[3], head[4], head[5], head[6]]).unsigned_abs();
                copy_n(r, w, u64::from(len))?;
                Ok(None)
            }
            // EndOfContinuousUpdates.
            150 => Ok(None),
            // ServerFence: padding, flags, then a payload of at most 64 bytes.
            248 => {
                let head = pass::<8>(r, w)?;
                if head[7] > MAX_FENCE {
                    return bad(format!("a fence of {} bytes", head[7]));
                }
                copy_n(r, w, u64::from(head[7]))?;
                Ok(None)
            }
            // xvp: padding, version, message.
            250 => {
                pass::<3>(r, w)?;
                Ok(None)
            }
            // QEMU's own: audio stream end, begin, or data.
            255 => {
                let head = pass::<3>(r, w)?;
                if head[0] != 1 {
                    return bad(format!("QEMU server message {}", head[0]));
                }
                match u16_of(&head, 1) {
                    0 | 1 => {}
                    2 => {
                        let len = u32_of(&pass::<4>(r, w)?, 0);
                        copy_n(r, w, u64::from(len))?;
                    }
                    other => return bad(format!("QEMU audio operation {other}")),
                }
                Ok(None)
            }
            other => bad(format!("server message type {other}")),
        }
    }

    /// Copies one rectangle's payload, its 12-byte header `rect` already copied. `false` after
    /// the rectangle that ends an update early (LastRect).
    fn copy_rectangle(
        &mut self,
        rect: &[u8; 12],
        r: &mut impl Read,
        w: &mut impl Write,
    ) -> Result<bool, RfbError> {
        let (width, height) = (u16_of(rect, 4), u16_of(rect, 6));
        let area = u64::from(width) * u64::from(height);
        let mask = u64::from(width).div_ceil(8) * u64::from(height);
        let encoding = i32::from_be_bytes([rect[8], rect[9], rect[10], rect[11]]);
        match encoding {
            RAW => copy_n(r, w, area * self.format.bytes())?,
            COPY_RECT => copy_n(r, w, 4)?,
            TIGHT | TIGHT_PNG => self.copy_tight(width, height, r, w)?,
            // Both a length, then that much zlib data.
            ZLIB | ZRLE => {
                let len = u32_of(&pass::<4>(r, w)?, 0);
                copy_n(r, w, u64::from(len))?;
            }
            LAST_RECT => return Ok(false),
            DESKTOP_SIZE => self.size = (width, height),
            EXTENDED_DESKTOP_SIZE => {
                let head = pass::<4>(r, w)?;
                copy_n(r, w, u64::from(head[0]) * 16)?;
                self.size = (width, height);
            }
            // Pixels in the viewer's format, then a bit mask.
            RICH_CURSOR => copy_n(r, w, area * self.format.bytes() + mask)?,
            // Two colours and two bit masks, or nothing for no cursor.
            X_CURSOR if area > 0 => copy_n(r, w, 6 + 2 * mask)?,
            X_CURSOR => {}
            // The pixels' encoding, which must be Raw, then RGBA.
            ALPHA_CURSOR => {
                let inner = i32::from_be_bytes(pass::<4>(r, w)?);
                if inner != RAW {
                    return bad(format!("an alpha cursor in encoding {inner}"));
                }
                copy_n(r, w, area * 4)?;
            }
            // QEMU's answers that it has extended keys, audio and pointer type changes.
            QEMU_EXTENDED_KEY_EVENT | QEMU_AUDIO | POINTER_TYPE_CHANGE => {}
            QEMU_LED_STATE => copy_n(r, w, 1)?,
            DESKTOP_NAME => {
                let len = u32_of(&pass::<4>(r, w)?, 0);
                copy_n(r, w, u64::from(len))?;
            }
            // The server's new pixel format, on a rectangle of the framebuffer's size.
            WMVI => {
                self.format = PixelFormat::from_wire(&pass::<16>(r, w)?)?;
                self.size = (width, height);
            }
            other => return bad(format!("an update in encoding {other}, never asked for")),
        }
        Ok(true)
    }

    /// Copies one Tight rectangle's payload: a compression-control byte, then a fill colour,
    /// JPEG or PNG data of a compact length, or basic compression (an optional filter, then the
    /// filtered pixels: as they are below 12 bytes, else zlib data of a compact length).
    fn copy_tight(
        &self,
        width: u16,
        height: u16,
        r: &mut impl Read,
        w: &mut impl Write,
    ) -> Result<(), RfbError> {
        let [control] = pass::<1>(r, w)?;
        let pixel = u64::from(self.format.tight_pixel);
        let area = u64::from(width) * u64::from(height);
        let data = match control >> 4 {
            // Fill: one pixel.
            8 => return copy_n(r, w, pixel),
            // JPEG, and PNG (TightPNG).
            9 | 10 => {
                let len = compact_length(r, w)?;
                return copy_n(r, w, len);
            }
            0..=7 => {
                let filter = if control & 0x40 != 0 {
                    pass::<1>(r, w)?[0]
                } else {
                    0
                };
                match filter {
                    // Copy and gradient: whole pixels.
                    0 | 2 => area * pixel,
                    // Palette: its colours, then a bit a pixel for two, else a byte.
                    1 => {
                        let colours = u64::from(pass::<1>(r, w)?[0]) + 1;
                        copy_n(r, w, colours * pixel)?;
                        if colours == 2 {
                            u64::from(width).div_ceil(8) * u64::from(height)
                        } else {
                            area
                        }
                    }
                    other => return bad(format!("Tight filter {other}")),
                }
            }
            _ => return bad(format!("Tight compression control {control:#04x}")),
        };
        if data < 12 {
            return copy_n(r, w, data);
        }
        let len = compact_length(r, w)?;
        copy_n(r, w, len)
    }
}

/// Tight's compact length: 7 bits a byte while the top bit says more follow, 22 bits at most.
fn compact_length(r: &mut impl Read, w: &mut impl Write) -> Result<u64, RfbError> {
    let [a] = pass::<1>(r, w)?;
    let mut len = u64::from(a & 0x7f);
    if a & 0x80 != 0 {
        let [b] = pass::<1>(r, w)?;
        len |= u64::from(b & 0x7f) << 7;
        if b & 0x80 != 0 {
            let [c] = pass::<1>(r, w)?;
            len |= u64::from(c) << 14;
        }
    }
    Ok(len)
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

    /// A rectangle's 12-byte header.
    fn rect(x: u16, w: u16, h: u16, encoding: i32) -> Vec<u8> {
        let mut b = x.to_be_bytes().to_vec();
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&w.to_be_bytes());
        b.extend_from_slice(&h.to_be_bytes());
        b.extend_from_slice(&encoding.to_be_bytes());
        b
    }

    fn framer(bits_per_pixel: u8) -> ServerFramer {
        ServerFramer::new(&ServerInit {
            width: 1024,
            height: 768,
            format: PixelFormat::plain(bits_per_pixel),
        })
    }

    /// Frames `stream` whole, message by message; the sizes they set, and the bytes copied.
    fn frame_all(f: &mut ServerFramer, stream: &[u8]) -> Result<Vec<Option<(u16, u16)>>, String> {
        let mut r = stream;
        let mut copied = Vec::new();
        let mut sizes = Vec::new();
        while let Some((&kind, rest)) = r.split_first() {
            r = rest;
            sizes.push(
                f.copy_message(kind, &mut r, &mut copied)
                    .map_err(|e| e.to_string())?,
            );
        }
        assert_eq!(copied, stream, "copied exactly");
        Ok(sizes)
    }

    #[test]
    fn the_watcher_frames_what_it_asked_for_and_sees_size_changes() {
        let mut msg = vec![0, 0, 0, 2];
        // A 2x1 raw rectangle at 32 bits per pixel, then a desktop size change.
        msg.extend(rect(0, 2, 1, RAW));
        msg.extend_from_slice(&[9; 8]);
        msg.extend(rect(0, 800, 600, DESKTOP_SIZE));
        assert_eq!(
            frame_all(&mut framer(32), &msg).unwrap(),
            [Some((800, 600))]
        );
        // Hextile is never asked for, so it cannot be framed.
        let mut hextile = vec![0, 0, 0, 1];
        hextile.extend(rect(0, 1, 1, 5));
        assert!(frame_all(&mut framer(32), &hextile).is_err());
        let asked = watch_requests();
        assert_eq!(&asked[..4], &[2, 0, 0, 4]);
        assert_eq!(&asked[asked.len() - 10..], &update_request());
    }

    #[test]
    fn the_server_framer_takes_every_message_and_encoding_a_framed_viewer_can_get() {
        let mut s = vec![0, 0, 0, 12];
        // Raw 3x2 at 16 bits per pixel; CopyRect; ZRLE and Zlib by their lengths.
        s.extend(rect(0, 3, 2, RAW));
        s.extend_from_slice(&[1; 12]);
        s.extend(rect(0, 5, 5, COPY_RECT));
        s.extend_from_slice(&[0, 1, 0, 2]);
        for e in [ZRLE, ZLIB] {
            s.extend(rect(0, 64, 64, e));
            s.extend_from_slice(&3u32.to_be_bytes());
            s.extend_from_slice(&[7, 7, 7]);
        }
        // A 9x2 rich cursor: pixels, then a mask of two bytes a row.
        s.extend(rect(0, 9, 2, RICH_CURSOR));
        s.extend_from_slice(&[2; 9 * 2 * 2 + 2 * 2]);
        // An X cursor, and an empty one; an alpha cursor.
        s.extend(rect(0, 8, 1, X_CURSOR));
        s.extend_from_slice(&[3; 6 + 2]);
        s.extend(rect(0, 0, 0, X_CURSOR));
        s.extend(rect(0, 2, 2, ALPHA_CURSOR));
        s.extend_from_slice(&RAW.to_be_bytes());
        s.extend_from_slice(&[4; 16]);
        // QEMU's answers, a LED state and the desktop's name.
        s.extend(rect(0, 0, 0, QEMU_EXTENDED_KEY_EVENT));
        s.extend(rect(0, 0, 0, QEMU_AUDIO));
        s.extend(rect(0, 0, 0, QEMU_LED_STATE));
        s.push(5);
        s.extend(rect(0, 0, 0, DESKTOP_NAME));
        s.extend_from_slice(&2u32.to_be_bytes());
        s.extend_from_slice(b"vm");
        // The server's pixel format becomes 32 bits: the next Raw rectangle is 4 bytes a pixel.
        let mut wmvi = rect(0, 0, 0, WMVI);
        wmvi.extend_from_slice(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0]);
        let mut s2 = vec![0, 0, 0, 3];
        s2.extend(wmvi);
        s2.extend(rect(0, 1, 1, RAW));
        s2.extend_from_slice(&[6; 4]);
        s2.extend(rect(0, 1, 1, LAST_RECT));
        s.extend(s2);
        // An extended desktop size with one screen; a colour map, a bell, cut text, a fence,
        // xvp, QEMU audio data.
        s.extend_from_slice(&[0, 0, 0, 1]);
        s.extend(rect(0, 1280, 1024, EXTENDED_DESKTOP_SIZE));
        s.extend_from_slice(&[1, 0, 0, 0]);
        s.extend_from_slice(&[8; 16]);
        s.extend_from_slice(&[1, 0, 0, 0, 0, 1]);
        s.extend_from_slice(&[9; 6]);
        s.push(2);
        s.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']);
        s.extend_from_slice(&[248, 0, 0, 0, 0, 0, 0, 0, 1, 0xf]);
        s.extend_from_slice(&[250, 0, 1, 1]);
        s.extend_from_slice(&[255, 1, 0, 2, 0, 0, 0, 2, 1, 1]);
        s.push(150);
        let mut f = framer(16);
        let sizes = frame_all(&mut f, &s).unwrap();
        assert_eq!(sizes.len(), 10, "{sizes:?}");
        assert_eq!(sizes[2], Some((1280, 1024)));
        assert_eq!(f.format.bits_per_pixel, 32, "WMVi followed");
        // A Hextile rectangle is never asked for by a framed viewer, and is refused.
        let mut hextile = vec![0, 0, 0, 1];
        hextile.extend(rect(0, 1, 1, 5));
        assert!(frame_all(&mut framer(32), &hextile).is_err());
        // A fence past RFB's limit, unknown QEMU messages and types are refused; cut text and
        // audio cut short are an error too.
        for bad in [
            &[3u8, 0, 0, 0, 0x7f, 0, 0, 0][..],
            &[248, 0, 0, 0, 0, 0, 0, 0, 65],
            &[255, 1, 0, 2, 0x7f, 0, 0, 0],
            &[255, 2, 0, 0],
            &[99],
        ] {
            assert!(frame_all(&mut framer(32), bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tight_rectangles_are_framed_in_every_form_qemu_sends() {
        // 32-bit pixels with 8 bits a channel: Tight sends 3 bytes a pixel.
        let format =
            PixelFormat::from_wire(&[32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0])
                .unwrap();
        assert_eq!((format.bytes(), format.tight_pixel), (4, 3));
        let mut f = ServerFramer::new(&ServerInit {
            width: 1024,
            height: 768,
            format,
        });
        let mut s = vec![0, 0, 0, 7];
        // Fill: one TPIXEL.
        s.extend(rect(0, 64, 64, TIGHT));
        s.extend_from_slice(&[0x80, 1, 2, 3]);
        // JPEG of 200 bytes: a two-byte compact length (0xC8 = 0x48 | 1 << 7).
        s.extend(rect(0, 64, 64, TIGHT));
        s.extend_from_slice(&[0x90, 0xC8, 0x01]);
        s.extend_from_slice(&[7; 200]);
        // Basic, copy filter, 2x1 pixels: 6 bytes, under 12, sent as they are.
        s.extend(rect(0, 2, 1, TIGHT));
        s.extend_from_slice(&[0x00, 1, 2, 3, 4, 5, 6]);
        // Basic with a two-colour palette, 16x2: 4 bytes of bits, as they are.
        s.extend(rect(0, 16, 2, TIGHT));
        s.extend_from_slice(&[0x40, 1, 1, 9, 9, 9, 8, 8, 8, 0xAA, 0x55, 0xAA, 0x55]);
        // Basic with a palette of 3 colours, 8x8: 64 bytes, compressed to 5.
        s.extend(rect(0, 8, 8, TIGHT));
        s.extend_from_slice(&[0x40, 1, 2, 1, 1, 1, 2, 2, 2, 3, 3, 3, 5, 4, 4, 4, 4, 4]);
        // Gradient, 8x8, stream 1: 192 bytes, compressed to 3.
        s.extend(rect(0, 8, 8, TIGHT));
        s.extend_from_slice(&[0x50, 2, 3, 1, 1, 1]);
        // TightPNG's PNG: 3 bytes.
        s.extend(rect(0, 8, 8, TIGHT_PNG));
        s.extend_from_slice(&[0xA0, 3, 1, 2, 3]);
        assert_eq!(frame_all(&mut f, &s).unwrap(), [None]);
        // Three-byte compact lengths take the third byte whole.
        let mut long = vec![0, 0, 0, 1];
        long.extend(rect(0, 64, 64, TIGHT));
        long.extend_from_slice(&[0x90, 0x80, 0x80, 0x01]);
        long.extend(vec![0; 1 << 14]);
        assert!(frame_all(&mut framer(32), &long).is_ok());
        // A fill at 16 bits per pixel is two bytes; an unknown filter or control is refused.
        let mut fill16 = vec![0, 0, 0, 1];
        fill16.extend(rect(0, 1, 1, TIGHT));
        fill16.extend_from_slice(&[0x80, 1, 2]);
        assert!(frame_all(&mut framer(16), &fill16).is_ok());
        for bad in [[0x40, 3], [0xB0, 0], [0xF0, 0]] {
            let mut m = vec![0, 0, 0, 1];
            m.extend(rect(0, 1, 1, TIGHT));
            m.extend_from_slice(&bad);
            m.extend_from_slice(&[0; 8]);
            assert!(frame_all(&mut framer(32), &m).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_pointer_type_change_is_one_rectangle_as_qemu_sends_it() {
        let mut f = framer(32);
        let told = pointer_type_change(false, (1024, 768));
        assert_eq!(frame_all(&mut f, &told).unwrap(), [None]);
        assert_eq!(told[5], 0, "x 0: relative");
        assert_eq!(
            pointer_type_change(true, (1024, 768))[5],
            1,
            "x 1: absolute"
        );
        assert_eq!(&told[8..12], &[4, 0, 3, 0]);
    }

    #[test]
    fn every_viewer_message_is_framed_and_set_encodings_is_read_whole() {
        let asked = set_encodings(0, &[7, RAW, POINTER_TYPE_CHANGE, -258]);
        assert_eq!(&asked[..4], &[2, 0, 0, 4]);
        let mut msg = asked.clone();
        let ClientMessage::SetEncodings { padding, encodings } =
            read_client_message(&mut asked.as_slice()).unwrap()
        else {
            panic!("SetEncodings is read whole");
        };
        assert_eq!(
            (padding, encodings),
            (0, vec![7, RAW, POINTER_TYPE_CHANGE, -258])
        );
        assert!(!framable(5) && !framable(2), "Hextile and RRE");
        assert!(
            framable(TIGHT) && framable(ZRLE) && framable(-250) && framable(EXTENDED_CLIPBOARD)
        );
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
                ClientMessage::SetEncodings { padding, encodings } => {
                    passed.extend(set_encodings(padding, &encodings));
                }
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
