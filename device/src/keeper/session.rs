//! What the frontend set up, kept so that a new worker can be told it again.
//!
//! Only the messages that set state are kept, the newest of each kind (per ring, per config
//! offset), with duplicates of their descriptors. Replayed in the order a frontend sets a device
//! up, they bring a fresh worker to where the frontend believes the device is. Each ring starts
//! again where guest memory shows the device had got to: the used ring's index, which counts
//! every buffer the dead worker gave back.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::FileExt;

use vhost::vhost_user::message::FrontendReq;

use super::message::{Message, NEED_REPLY, VERSION};

#[derive(Debug, Default)]
struct Ring {
    num: Option<Message>,
    addr: Option<Message>,
    base: Option<Message>,
    call: Option<Message>,
    err: Option<Message>,
    kick: Option<Message>,
    enable: Option<Message>,
}

/// The rings pvmouse has: eventq and statusq.
const RINGS: usize = 2;

#[derive(Debug, Default)]
pub struct Session {
    owner: Option<Message>,
    features: Option<Message>,
    protocol: Option<Message>,
    mem_table: Option<Message>,
    backend_req: Option<Message>,
    rings: [Ring; RINGS],
    config: BTreeMap<u32, Message>,
}

/// The ring a `SET_VRING_KICK`/`CALL`/`ERR` names: the low byte of its 64-bit payload.
fn fd_ring(msg: &Message) -> Option<usize> {
    msg.payload.first().map(|b| usize::from(*b))
}

impl Session {
    /// Keeps what `msg` sets, if it sets anything the worker must be told again.
    pub fn record(&mut self, msg: &Message) -> io::Result<()> {
        use FrontendReq as R;
        let word_ring = msg.first_word().and_then(|w| usize::try_from(w).ok());
        let keep = msg.duplicate()?;
        if msg.is(R::SET_OWNER) {
            self.owner = Some(keep);
        } else if msg.is(R::RESET_OWNER) {
            *self = Session::default();
        } else if msg.is(R::SET_FEATURES) {
            self.features = Some(keep);
        } else if msg.is(R::SET_PROTOCOL_FEATURES) {
            self.protocol = Some(keep);
        } else if msg.is(R::SET_MEM_TABLE) {
            self.mem_table = Some(keep);
        } else if msg.is(R::SET_BACKEND_REQ_FD) {
            self.backend_req = Some(keep);
        } else if msg.is(R::SET_CONFIG) {
            if let Some(offset) = msg.first_word() {
                self.config.insert(offset, keep);
            }
        } else if msg.is(R::RESET_DEVICE) {
            self.rings = Default::default();
        } else if msg.is(R::GET_VRING_BASE) {
            // A stopped ring: the frontend sets it up afresh before it starts again.
            if let Some(r) = word_ring.and_then(|i| self.rings.get_mut(i)) {
                *r = Ring::default();
            }
        } else if let Some(r) = word_ring.and_then(|i| self.rings.get_mut(i)) {
            if msg.is(R::SET_VRING_NUM) {
                r.num = Some(keep);
            } else if msg.is(R::SET_VRING_ADDR) {
                r.addr = Some(keep);
            } else if msg.is(R::SET_VRING_BASE) {
                r.base = Some(keep);
            } else if msg.is(R::SET_VRING_ENABLE) {
                r.enable = Some(keep);
            } else {
                self.record_fd_ring(msg, keep);
            }
        } else {
            self.record_fd_ring(msg, keep);
        }
        Ok(())
    }

    fn record_fd_ring(&mut self, msg: &Message, keep: Message) {
        use FrontendReq as R;
        let Some(r) = fd_ring(msg).and_then(|i| self.rings.get_mut(i)) else {
            return;
        };
        if msg.is(R::SET_VRING_KICK) {
            r.kick = Some(keep);
        } else if msg.is(R::SET_VRING_CALL) {
            r.call = Some(keep);
        } else if msg.is(R::SET_VRING_ERR) {
            r.err = Some(keep);
        }
    }

    /// The messages that bring a fresh worker to this session, in order, each asking for no
    /// reply unless the worker must answer anyway (the keeper reads and drops those answers).
    /// Ring bases come from guest memory.
    pub fn replay(&self) -> io::Result<Vec<Message>> {
        let mut out = Vec::new();
        let quiet = |m: &Message| -> io::Result<Message> {
            let mut m = m.duplicate()?;
            m.flags &= !NEED_REPLY;
            Ok(m)
        };
        let push = |out: &mut Vec<Message>, m: &Option<Message>| -> io::Result<()> {
            if let Some(m) = m {
                out.push(quiet(m)?);
            }
            Ok(())
        };
        push(&mut out, &self.owner)?;
        if self.owner.is_some() {
            // The worker's vhost-user library only acknowledges (REPLY_ACK) once it has been
            // asked for its features; the keeper drops this answer.
            out.push(Message {
                request: FrontendReq::GET_FEATURES as u32,
                flags: VERSION,
                payload: Vec::new(),
                fds: Vec::new(),
            });
        }
        push(&mut out, &self.features)?;
        push(&mut out, &self.protocol)?;
        push(&mut out, &self.mem_table)?;
        push(&mut out, &self.backend_req)?;
        for (index, ring) in self.rings.iter().enumerate() {
            if ring.kick.is_none() {
                // Never started, or stopped: nothing to resume.
                continue;
            }
            push(&mut out, &ring.num)?;
            push(&mut out, &ring.addr)?;
            if let Some(base) = &ring.base {
                let mut base = quiet(base)?;
                match self.used_index(ring) {
                    // { index: u32, num: u32 }
                    Some(used) => {
                        if let Some(num) = base.payload.get_mut(4..8) {
                            num.copy_from_slice(&u32::from(used).to_le_bytes());
                        }
                    }
                    None => tracing::warn!(
                        ring = index,
                        "cannot read where the ring stands; replaying its base as set"
                    ),
                }
                out.push(base);
            }
            push(&mut out, &ring.call)?;
            push(&mut out, &ring.err)?;
            push(&mut out, &ring.kick)?;
            push(&mut out, &ring.enable)?;
        }
        for m in self.config.values() {
            out.push(quiet(m)?);
        }
        Ok(out)
    }

    /// The kick and call descriptors of the running rings: after a replay the keeper kicks the
    /// worker (a kick may have come while no worker read it) and interrupts the guest (the dead
    /// worker may have given buffers back without saying so).
    pub fn doorbells(&self) -> Vec<&Message> {
        self.rings
            .iter()
            .filter(|r| r.kick.is_some())
            .flat_map(|r| [r.kick.as_ref(), r.call.as_ref()])
            .flatten()
            .collect()
    }

    /// The used ring's index in guest memory: `SET_VRING_ADDR` gives the used ring's address in
    /// the frontend's address space, and `SET_MEM_TABLE` which descriptor and offset hold it.
    fn used_index(&self, ring: &Ring) -> Option<u16> {
        let addr = ring.addr.as_ref()?;
        // { index: u32, flags: u32, descriptor: u64, used: u64, available: u64, log: u64 }
        let used = u64_at(&addr.payload, 16)?;
        let table = self.mem_table.as_ref()?;
        let regions =
            usize::try_from(u32::from_le_bytes(table.payload.get(..4)?.try_into().ok()?)).ok()?;
        for i in 0..regions.min(table.fds.len()) {
            // { guest_phys_addr, memory_size, userspace_addr, mmap_offset }, 32 bytes each, after 8.
            let at = 8 + 32 * i;
            let size = u64_at(&table.payload, at + 8)?;
            let user = u64_at(&table.payload, at + 16)?;
            let offset = u64_at(&table.payload, at + 24)?;
            if used >= user && used - user < size {
                let file = std::fs::File::from(table.fds.get(i)?.try_clone().ok()?);
                let mut idx = [0u8; 2];
                // `struct vring_used { u16 flags; u16 idx; … }`
                file.read_exact_at(&mut idx, offset + (used - user) + 2)
                    .ok()?;
                return Some(u16::from_le_bytes(idx));
            }
        }
        None
    }
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}
