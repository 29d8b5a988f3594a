//! vhost-user messages as the keeper sees them: a 12-byte header (request, flags, size), a
//! payload of at most [`MAX_PAYLOAD`] bytes, and the descriptors that came with it. The keeper
//! reads only what it must to record and replay a session; everything else passes through
//! as bytes, unknown requests included.
//!
//! The request codes, flags and limits are the `vhost` crate's. Its header type and the
//! endpoint that reads it are private to that crate, and it parses only requests it knows, so
//! the keeper frames the three header words itself.

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use vhost::vhost_user::message::{
    FrontendReq, MAX_ATTACHED_FD_ENTRIES, MAX_MSG_SIZE, VhostUserHeaderFlag,
};
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

/// Request, flags and payload size: three 32-bit words.
pub const HEADER: usize = 12;
/// vhost-user's own bound on a message body.
pub const MAX_PAYLOAD: usize = MAX_MSG_SIZE;
/// vhost-user's own bound on descriptors per message.
pub const MAX_FDS: usize = MAX_ATTACHED_FD_ENTRIES;
/// The flags of a request the keeper writes itself: protocol version 1, as vhost-user has it.
const VERSION_1: u32 = 0x1;

#[derive(Debug)]
pub struct Message {
    pub request: u32,
    pub flags: u32,
    pub payload: Vec<u8>,
    pub fds: Vec<OwnedFd>,
}

#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("a message of {0} bytes is over vhost-user's {MAX_PAYLOAD}")]
    TooLarge(usize),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Message {
    /// A request with no payload, asking for no more than the request itself implies.
    pub fn request(code: FrontendReq) -> Message {
        Message {
            request: code.into(),
            flags: VERSION_1,
            payload: Vec::new(),
            fds: Vec::new(),
        }
    }

    /// Reads one message. Descriptors come with the header, as senders attach them to a
    /// message's first byte.
    pub fn recv(stream: &UnixStream) -> Result<Message, MessageError> {
        let mut header = [0u8; HEADER];
        let mut raw = [-1 as RawFd; MAX_FDS];
        let mut iov = [libc::iovec {
            iov_base: header.as_mut_ptr().cast(),
            iov_len: header.len(),
        }];
        // SAFETY: the iovec points at `header`, live and as long as it says, for the call.
        let (n, nfds) = unsafe { stream.recv_with_fds(&mut iov, &mut raw) }
            .map_err(|e| io::Error::from_raw_os_error(e.errno()))?;
        // SAFETY: recvmsg installed exactly `nfds` new descriptors in `raw`, now ours alone.
        let fds: Vec<OwnedFd> = raw[..nfds.min(MAX_FDS)]
            .iter()
            .map(|fd| unsafe { OwnedFd::from_raw_fd(*fd) })
            .collect();
        if n == 0 {
            return Err(MessageError::Closed);
        }
        let mut s = stream;
        if n < HEADER {
            s.read_exact(&mut header[n..]).map_err(closed)?;
        }
        let word =
            |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
        let size = usize::try_from(word(8)).unwrap_or(usize::MAX);
        if size > MAX_PAYLOAD {
            return Err(MessageError::TooLarge(size));
        }
        let mut payload = vec![0u8; size];
        s.read_exact(&mut payload).map_err(closed)?;
        Ok(Message {
            request: word(0),
            flags: word(4),
            payload,
            fds,
        })
    }

    /// Writes the message, with its descriptors, in one `sendmsg` where it fits.
    pub fn send(&self, stream: &UnixStream) -> io::Result<()> {
        let mut bytes = Vec::with_capacity(HEADER + self.payload.len());
        bytes.extend_from_slice(&self.request.to_le_bytes());
        bytes.extend_from_slice(&self.flags.to_le_bytes());
        let size = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        bytes.extend_from_slice(&size.to_le_bytes());
        bytes.extend_from_slice(&self.payload);
        let fds: Vec<RawFd> = self.fds.iter().map(AsRawFd::as_raw_fd).collect();
        let sent = stream.send_with_fds(&[bytes.as_slice()], &fds)?;
        let mut s = stream;
        s.write_all(&bytes[sent..])
    }

    /// A copy, with duplicates of its descriptors: the record keeps one, the worker gets one.
    pub fn duplicate(&self) -> io::Result<Message> {
        Ok(Message {
            request: self.request,
            flags: self.flags,
            payload: self.payload.clone(),
            fds: self
                .fds
                .iter()
                .map(OwnedFd::try_clone)
                .collect::<io::Result<_>>()?,
        })
    }

    /// Whether the frontend waits for an answer to this one.
    pub fn wants_reply(&self) -> bool {
        self.needs_reply() || self.asks()
    }

    /// Whether this is a question, answered with data rather than acknowledged.
    pub fn asks(&self) -> bool {
        [
            FrontendReq::GET_FEATURES,
            FrontendReq::GET_PROTOCOL_FEATURES,
            FrontendReq::GET_VRING_BASE,
            FrontendReq::GET_QUEUE_NUM,
            FrontendReq::GET_CONFIG,
            FrontendReq::GET_MAX_MEM_SLOTS,
            FrontendReq::GET_INFLIGHT_FD,
            FrontendReq::GET_STATUS,
        ]
        .into_iter()
        .any(|r| self.is(r))
    }

    /// Whether the sender set `NEED_REPLY` (an acknowledgement, with `REPLY_ACK`).
    pub fn needs_reply(&self) -> bool {
        self.flags & VhostUserHeaderFlag::NEED_REPLY.bits() != 0
    }

    /// The same message, asking for no acknowledgement.
    pub fn without_need_reply(mut self) -> Message {
        self.flags &= !VhostUserHeaderFlag::NEED_REPLY.bits();
        self
    }

    /// The request, if vhost-user defines it.
    pub fn code(&self) -> Option<FrontendReq> {
        FrontendReq::try_from(self.request).ok()
    }

    /// The first 32-bit word of the payload: the ring index of a ring message, the offset of a
    /// config write.
    pub fn first_word(&self) -> Option<u32> {
        let b = self.payload.get(..4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn is(&self, code: FrontendReq) -> bool {
        self.request == u32::from(code)
    }
}

fn closed(e: io::Error) -> MessageError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        MessageError::Closed
    } else {
        MessageError::Io(e)
    }
}
