//! The server's side of one viewer: QEMU's messages on their way to the viewer, and the
//! pointer type changes the proxy tells it between them.
//!
//! A viewer that asks for pointer type changes (gtk-vnc's viewers: virt-viewer, remote-viewer)
//! is told when pvmouse switches between absolute and relative mode, and sends relative motion
//! while it is relative. The proxy can only tell it between two server messages, so such a
//! viewer's stream is framed ([`ServerFramer`]), and its encodings are cut down to those the
//! framer takes ([`rfb::framable`]: Raw, CopyRect, Zlib, Tight and ZRLE for pixels; not Hextile
//! or RRE, which gtk-vnc lists after Tight and ZRLE).
//! Every other viewer's stream passes through untouched, in any encoding.
//!
//! Which of the two a viewer is, is decided by its first `SetEncodings`. Until then the stream
//! is framed (QEMU sends only Raw before it), so either way is open at a message boundary: the
//! viewer's side sets the decision before the `SetEncodings` goes upstream, and the decision is
//! read after each message's first byte, which QEMU sent after it read the `SetEncodings` if it
//! is in the new encodings.

use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, Ordering};

use pvmouse_spec::profile::PointerMode;
use vmm_sys_util::eventfd::EventFd;

use crate::mode::ModeWatch;
use crate::rfb::{self, PixelFormat, RfbError, ServerFramer, ServerInit};

/// How a viewer's stream from the server goes.
const UNDECIDED: u8 = 0;
const FRAMED: u8 = 1;
const PASSED: u8 = 2;

/// What a viewer's two threads share.
#[derive(Debug)]
pub struct ViewerLink {
    framing: AtomicU8,
    /// The viewer's latest `SetEncodings` asked for pointer type changes.
    asks: AtomicBool,
    /// Tell the viewer the mode again, changed or not: it asked again.
    tell_again: AtomicBool,
    /// The mode the viewer was last told (`TOLD_*`), nothing until it was told one.
    told: AtomicU8,
    /// A `SetPixelFormat` the framer has not taken yet: bits per pixel, then Tight's pixel
    /// bytes; 0 for none.
    new_format: AtomicU16,
    /// Written when the viewer needs telling: it asked, or the mode changed.
    wake: Arc<EventFd>,
}

const TOLD_NOTHING: u8 = 0;
const TOLD_ABSOLUTE: u8 = 1;
const TOLD_RELATIVE: u8 = 2;

impl ViewerLink {
    pub fn new(mode: &ModeWatch) -> io::Result<Self> {
        let wake = Arc::new(EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)?);
        mode.subscribe(&wake);
        Ok(Self {
            framing: AtomicU8::new(UNDECIDED),
            asks: AtomicBool::new(false),
            tell_again: AtomicBool::new(false),
            told: AtomicU8::new(TOLD_NOTHING),
            new_format: AtomicU16::new(0),
            wake,
        })
    }

    /// The viewer's `SetEncodings`, as the server is to get it. The first decides whether the
    /// viewer's stream is framed: it is if the viewer asks for pointer type changes. A framed
    /// viewer's encodings are cut to those the framer takes; nobody's pointer type change goes
    /// upstream. Call before sending the result upstream.
    pub fn encodings(&self, asked: &[i32]) -> Vec<i32> {
        let asks = asked.contains(&rfb::POINTER_TYPE_CHANGE);
        let framed = match self.framing.compare_exchange(
            UNDECIDED,
            if asks { FRAMED } else { PASSED },
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => asks,
            Err(decided) => decided == FRAMED,
        };
        if framed {
            self.asks.store(asks, Ordering::Release);
            if asks {
                self.tell_again.store(true, Ordering::Release);
                let _ = self.wake.write(1);
            } else {
                self.told.store(TOLD_NOTHING, Ordering::Release);
            }
        }
        asked
            .iter()
            .copied()
            .filter(|e| *e != rfb::POINTER_TYPE_CHANGE && (!framed || rfb::framable(*e)))
            .collect()
    }

    /// Whether the viewer's stream is framed (it asked for pointer type changes first thing).
    pub fn framed(&self) -> bool {
        self.framing.load(Ordering::Acquire) == FRAMED
    }

    /// The viewer's `SetPixelFormat`, for the framer. Call before sending it upstream.
    pub fn pixel_format(&self, format: PixelFormat) {
        let packed = u16::from_be_bytes([format.bits_per_pixel, format.tight_pixel]);
        self.new_format.store(packed, Ordering::Release);
    }

    /// Whether the viewer's latest `SetEncodings` asks for pointer type changes.
    pub fn asks(&self) -> bool {
        self.asks.load(Ordering::Acquire)
    }

    /// Whether the viewer was last told the pointer is relative: its pointer events are then
    /// motion, offset by [`rfb::RELATIVE_ORIGIN`].
    pub fn relative(&self) -> bool {
        self.asks.load(Ordering::Acquire) && self.told.load(Ordering::Acquire) == TOLD_RELATIVE
    }
}

/// Copies the server's messages to the viewer until either side ends: framed, with pointer
/// type changes told between them, or, once the viewer's first `SetEncodings` says so, byte
/// for byte.
pub fn relay<S: Read + AsRawFd, V: Write>(
    server: S,
    viewer: V,
    init: &ServerInit,
    link: &ViewerLink,
    mode: &ModeWatch,
) -> Result<(), RfbError> {
    let server_fd = server.as_raw_fd();
    let mut from = BufReader::with_capacity(64 * 1024, server);
    let mut to = BufWriter::with_capacity(64 * 1024, viewer);
    let mut framer = ServerFramer::new(init);
    loop {
        if from.buffer().is_empty() {
            to.flush()?;
            let (sent, woken) = wait(server_fd, link.wake.as_raw_fd())?;
            if woken {
                let _ = link.wake.read();
            }
            tell(&mut to, link, mode, framer.size)?;
            if !sent {
                continue;
            }
            if from.fill_buf()?.is_empty() {
                return Ok(());
            }
        }
        let [kind] = {
            let mut b = [0u8; 1];
            from.read_exact(&mut b)?;
            b
        };
        if link.framing.load(Ordering::Acquire) == PASSED {
            to.write_all(&[kind])?;
            let mut to = to.into_inner().map_err(|e| e.into_error())?;
            io::copy(&mut from, &mut to)?;
            return Ok(());
        }
        let format = link.new_format.swap(0, Ordering::AcqRel);
        if format != 0 {
            let [bits_per_pixel, tight_pixel] = format.to_be_bytes();
            framer.format = PixelFormat {
                bits_per_pixel,
                tight_pixel,
            };
        }
        framer.copy_message(kind, &mut from, &mut to)?;
        tell(&mut to, link, mode, framer.size)?;
    }
}

/// Tells the viewer the mode if it asks to be told and was not told this one (or asked again).
fn tell(
    to: &mut impl Write,
    link: &ViewerLink,
    mode: &ModeWatch,
    size: (u16, u16),
) -> io::Result<()> {
    if !link.asks.load(Ordering::Acquire) {
        return Ok(());
    }
    let mode = mode.mode();
    let told = match mode {
        PointerMode::Absolute => TOLD_ABSOLUTE,
        PointerMode::Relative => TOLD_RELATIVE,
    };
    let again = link.tell_again.swap(false, Ordering::AcqRel);
    // Set before the viewer can read it, so that whatever the viewer sends once told is read as
    // told. What it sent before it read the notice and the proxy reads after is read as told
    // too: QEMU's own server has the same window.
    if link.told.swap(told, Ordering::AcqRel) != told || again {
        to.write_all(&rfb::pointer_type_change(
            mode == PointerMode::Absolute,
            size,
        ))?;
        to.flush()?;
    }
    Ok(())
}

/// Waits until the server has sent something or the viewer's link is woken; says which. An
/// error or hang-up on the server counts as something sent: the read says what.
fn wait(server: RawFd, wake: RawFd) -> io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd {
            fd: server,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: wake,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is an array of two initialised pollfds that outlives the call, and the
        // count passed is its length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if n >= 0 {
            return Ok((fds[0].revents != 0, fds[1].revents != 0));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_set_encodings_decides_and_nothing_asks_qemu_for_pointer_type_changes() {
        let mode = ModeWatch::default();
        let (hextile, tight) = (5, rfb::TIGHT);
        let asks = [hextile, tight, rfb::POINTER_TYPE_CHANGE, rfb::RAW];
        let link = ViewerLink::new(&mode).unwrap();
        assert_eq!(link.encodings(&asks), [tight, rfb::RAW], "framed: cut down");
        assert!(link.framed());
        assert_eq!(link.wake.read().unwrap(), 1, "woken to tell the mode");
        // A later list without the pseudo-encoding: still framed, no longer told.
        assert_eq!(link.encodings(&[hextile, rfb::RAW]), [rfb::RAW]);
        assert!(link.framed() && !link.relative());
        let link = ViewerLink::new(&mode).unwrap();
        assert_eq!(link.encodings(&[hextile, rfb::RAW]), [hextile, rfb::RAW]);
        assert!(!link.framed());
        // Asking later does not frame a stream already passed through.
        assert_eq!(link.encodings(&asks), [hextile, tight, rfb::RAW]);
        assert!(!link.framed() && !link.relative());
    }
}
