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

use vhost::vhost_user::message::{
    FrontendReq, VhostUserMemory, VhostUserMemoryRegion, VhostUserVringAddr, VhostUserVringState,
};
use vm_memory::ByteValued;

use super::message::Message;

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

fn ring(rings: &mut [Ring; RINGS], index: Option<usize>) -> Option<&mut Ring> {
    index.and_then(|i| rings.get_mut(i))
}

/// The ring a `SET_VRING_KICK`/`CALL`/`ERR` names: the low byte of its 64-bit payload.
fn fd_ring(msg: &Message) -> Option<usize> {
    msg.payload.first().map(|b| usize::from(*b))
}

impl Session {
    /// Keeps what `msg` sets, if it sets anything the worker must be told again.
    pub fn record(&mut self, msg: &Message) -> io::Result<()> {
        use FrontendReq as R;
        let Some(code) = msg.code() else {
            return Ok(());
        };
        let keep = msg.duplicate()?;
        let word_ring = msg.first_word().and_then(|w| usize::try_from(w).ok());
        match code {
            R::SET_OWNER => self.owner = Some(keep),
            R::RESET_OWNER => *self = Session::default(),
            R::SET_FEATURES => self.features = Some(keep),
            R::SET_PROTOCOL_FEATURES => self.protocol = Some(keep),
            R::SET_MEM_TABLE => self.mem_table = Some(keep),
            R::SET_BACKEND_REQ_FD => self.backend_req = Some(keep),
            R::SET_CONFIG => {
                if let Some(offset) = msg.first_word() {
                    self.config.insert(offset, keep);
                }
            }
            R::RESET_DEVICE => self.rings = Default::default(),
            R::GET_VRING_BASE => {
                // A stopped ring: the frontend sets it up afresh before it starts again.
                if let Some(r) = ring(&mut self.rings, word_ring) {
                    *r = Ring::default();
                }
            }
            R::SET_VRING_NUM | R::SET_VRING_ADDR | R::SET_VRING_BASE | R::SET_VRING_ENABLE => {
                if let Some(r) = ring(&mut self.rings, word_ring) {
                    let slot = match code {
                        R::SET_VRING_NUM => &mut r.num,
                        R::SET_VRING_ADDR => &mut r.addr,
                        R::SET_VRING_BASE => &mut r.base,
                        _ => &mut r.enable,
                    };
                    *slot = Some(keep);
                }
            }
            R::SET_VRING_KICK | R::SET_VRING_CALL | R::SET_VRING_ERR => {
                if let Some(r) = ring(&mut self.rings, fd_ring(msg)) {
                    let slot = match code {
                        R::SET_VRING_KICK => &mut r.kick,
                        R::SET_VRING_CALL => &mut r.call,
                        _ => &mut r.err,
                    };
                    *slot = Some(keep);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The messages that bring a fresh worker to this session, in order, each asking for no
    /// reply unless the worker must answer anyway (the keeper reads and drops those answers).
    /// Ring bases come from guest memory.
    pub fn replay(&self) -> io::Result<Vec<Message>> {
        let mut out = Vec::new();
        let quiet =
            |m: &Message| -> io::Result<Message> { Ok(m.duplicate()?.without_need_reply()) };
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
            out.push(Message::request(FrontendReq::GET_FEATURES));
        }
        push(&mut out, &self.features)?;
        push(&mut out, &self.protocol)?;
        push(&mut out, &self.mem_table)?;
        push(&mut out, &self.backend_req)?;
        for (index, ring) in self.rings.iter().enumerate() {
            // A ring stopped (or never set up) has nothing recorded. One being set up when the
            // worker came (its kick not yet sent) is told what it was told so far, as it was:
            // those messages were recorded for this replay, never passed.
            push(&mut out, &ring.num)?;
            push(&mut out, &ring.addr)?;
            if let Some(base) = &ring.base {
                let mut base = quiet(base)?;
                let running = ring.kick.is_some();
                match self.used_index(ring).filter(|_| running) {
                    Some(used) => {
                        if let Some(state) = base
                            .payload
                            .get_mut(..size_of::<VhostUserVringState>())
                            .and_then(VhostUserVringState::from_mut_slice)
                        {
                            state.num = u32::from(used);
                        }
                    }
                    None if running => tracing::warn!(
                        ring = index,
                        "cannot read where the ring stands; replaying its base as set"
                    ),
                    None => {}
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

    /// Where ring `index` stands, as `GET_VRING_BASE` would tell it: the used ring's index in
    /// guest memory for a ring that was set up, else the base it was set to, else 0. The keeper
    /// answers with it when no worker can, and only once no worker runs the ring.
    pub fn ring_position(&self, index: usize) -> u16 {
        let Some(ring) = self.rings.get(index) else {
            return 0;
        };
        self.used_index(ring)
            .or_else(|| {
                let base = ring.base.as_ref()?;
                let state = prefix::<VhostUserVringState>(&base.payload)?;
                u16::try_from(state.num).ok()
            })
            .unwrap_or(0)
    }

    /// What the frontend last wrote at each config offset (the selector, for virtio-input),
    /// in offset order: what a config read's answer depends on.
    pub fn config_writes(&self) -> impl Iterator<Item = &[u8]> {
        self.config.values().map(|m| m.payload.as_slice())
    }

    /// The used ring's index in guest memory: `SET_VRING_ADDR` gives the used ring's address in
    /// the frontend's address space, and `SET_MEM_TABLE` which descriptor and offset hold it.
    fn used_index(&self, ring: &Ring) -> Option<u16> {
        let used = prefix::<VhostUserVringAddr>(&ring.addr.as_ref()?.payload)?.used;
        let table = self.mem_table.as_ref()?;
        let memory = prefix::<VhostUserMemory>(&table.payload)?;
        let regions = table.payload.get(size_of::<VhostUserMemory>()..)?;
        let count = usize::try_from(memory.num_regions).ok()?;
        for (region, fd) in regions
            .chunks_exact(size_of::<VhostUserMemoryRegion>())
            .map(VhostUserMemoryRegion::from_slice)
            .zip(&table.fds)
            .take(count)
        {
            let region = region?;
            let (user, size, offset) = (region.user_addr, region.memory_size, region.mmap_offset);
            if used >= user && used - user < size {
                let file = std::fs::File::from(fd.try_clone().ok()?);
                let mut idx = [0u8; 2];
                // `struct vring_used { u16 flags; u16 idx; … }`
                file.read_exact_at(&mut idx, offset.checked_add(used - user)?.checked_add(2)?)
                    .ok()?;
                return Some(u16::from_le_bytes(idx));
            }
        }
        None
    }
}

/// The `T` that `bytes` start with, if they are long enough.
fn prefix<T: ByteValued>(bytes: &[u8]) -> Option<&T> {
    T::from_slice(bytes.get(..size_of::<T>())?)
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

    use std::os::fd::OwnedFd;
    use std::os::linux::fs::MetadataExt;

    use vhost::vhost_user::message::{
        FrontendReq as R, VhostUserHeaderFlag, VhostUserU64, VhostUserVringAddrFlags,
    };

    use super::*;

    const NEED_REPLY: u32 = 0x1 | 0x8;

    /// Where ring `i`'s used ring is, in the frontend's address space: inside the one memory
    /// region for ring 0, outside it for ring 1.
    const USER_ADDR: u64 = 0x7f00_0000_0000;
    const USED: [u64; RINGS] = [USER_ADDR + 0x200, 0x1000];
    /// The used index guest memory shows for ring 0.
    const RING0_USED: u16 = 4242;

    pub(crate) fn descriptor_id(fd: &OwnedFd) -> u64 {
        std::fs::File::from(fd.try_clone().unwrap())
            .metadata()
            .unwrap()
            .st_ino()
    }

    fn file() -> OwnedFd {
        OwnedFd::from(tempfile::tempfile().unwrap())
    }

    fn msg(code: R, flags: u32, payload: &[u8], fds: Vec<OwnedFd>) -> Message {
        Message {
            request: code.into(),
            flags,
            payload: payload.to_vec(),
            fds,
        }
    }

    fn state(index: u32, num: u32) -> Vec<u8> {
        VhostUserVringState::new(index, num).as_slice().to_vec()
    }

    fn u64_payload(value: u64) -> Vec<u8> {
        VhostUserU64::new(value).as_slice().to_vec()
    }

    fn guest_memory() -> OwnedFd {
        let memory = tempfile::tempfile().unwrap();
        memory.set_len(0x1000).unwrap();
        memory
            .write_all_at(&RING0_USED.to_le_bytes(), 0x200 + 2)
            .unwrap();
        OwnedFd::from(memory)
    }

    fn mem_table() -> Vec<u8> {
        let mut payload = VhostUserMemory::new(1).as_slice().to_vec();
        let region = VhostUserMemoryRegion::new(0, 0x1000, USER_ADDR, 0);
        payload.extend_from_slice(region.as_slice());
        payload
    }

    fn vring_addr(index: u32) -> Vec<u8> {
        let used = USED[usize::try_from(index).unwrap()];
        let flags = VhostUserVringAddrFlags::empty();
        VhostUserVringAddr::new(index, flags, 0x1000, used, 0x3000, 0)
            .as_slice()
            .to_vec()
    }

    /// What QEMU's `vhost-user-input` sends a backend, in its order: the device's set-up, then
    /// the driver starting both rings. Each ring's call descriptor is set twice (masked at
    /// set-up, the guest's at start).
    pub(crate) fn qemu_session() -> Vec<Message> {
        let v = 0x1;
        let mut out = vec![
            msg(R::GET_FEATURES, v, &[], vec![]),
            msg(R::GET_PROTOCOL_FEATURES, v, &[], vec![]),
            msg(R::SET_PROTOCOL_FEATURES, v, &u64_payload(0x8203), vec![]),
            msg(R::GET_QUEUE_NUM, v, &[], vec![]),
            msg(R::GET_MAX_MEM_SLOTS, v, &[], vec![]),
            msg(R::SET_BACKEND_REQ_FD, NEED_REPLY, &[], vec![file()]),
            msg(R::SET_OWNER, v, &[], vec![]),
            msg(R::SET_VRING_CALL, v, &u64_payload(0), vec![file()]),
            msg(R::SET_VRING_CALL, v, &u64_payload(1), vec![file()]),
            msg(R::GET_CONFIG, v, &[0; 12], vec![]),
            msg(R::SET_FEATURES, v, &u64_payload(0x1_4000_0000), vec![]),
            msg(
                R::SET_MEM_TABLE,
                NEED_REPLY,
                &mem_table(),
                vec![guest_memory()],
            ),
        ];
        for i in 0..2 {
            out.extend([
                msg(R::SET_VRING_NUM, v, &state(i, 64), vec![]),
                msg(R::SET_VRING_BASE, v, &state(i, 0), vec![]),
                msg(R::SET_VRING_ADDR, v, &vring_addr(i), vec![]),
                msg(R::SET_VRING_KICK, v, &u64_payload(i.into()), vec![file()]),
                msg(R::SET_VRING_CALL, v, &u64_payload(i.into()), vec![file()]),
            ]);
        }
        for i in 0..2 {
            out.push(msg(R::SET_VRING_ENABLE, v, &state(i, 1), vec![]));
        }
        out
    }

    /// What a new worker is told of [`qemu_session`], in order: what it must hear before its
    /// rings (owner, features, protocol, memory, the backend channel), then ring by ring.
    pub(crate) const QEMU_REPLAY: [R; 18] = [
        R::SET_OWNER,
        R::GET_FEATURES,
        R::SET_FEATURES,
        R::SET_PROTOCOL_FEATURES,
        R::SET_MEM_TABLE,
        R::SET_BACKEND_REQ_FD,
        R::SET_VRING_NUM,
        R::SET_VRING_ADDR,
        R::SET_VRING_BASE,
        R::SET_VRING_CALL,
        R::SET_VRING_KICK,
        R::SET_VRING_ENABLE,
        R::SET_VRING_NUM,
        R::SET_VRING_ADDR,
        R::SET_VRING_BASE,
        R::SET_VRING_CALL,
        R::SET_VRING_KICK,
        R::SET_VRING_ENABLE,
    ];

    /// The descriptors a replay of `session` rings: per ring, the newest kick, then call.
    pub(crate) fn doorbell_ids(session: &[Message]) -> Vec<u64> {
        let newest = |code: R, ring: u8| {
            session
                .iter()
                .rev()
                .find(|m| m.is(code) && m.payload.first() == Some(&ring))
                .map(|m| descriptor_id(&m.fds[0]))
                .unwrap()
        };
        (0..2)
            .flat_map(|ring| {
                [
                    newest(R::SET_VRING_KICK, ring),
                    newest(R::SET_VRING_CALL, ring),
                ]
            })
            .collect()
    }

    fn recorded(messages: &[Message]) -> Session {
        let mut session = Session::default();
        for m in messages {
            session.record(m).unwrap();
        }
        session
    }

    fn codes(replay: &[Message]) -> Vec<u32> {
        replay.iter().map(|m| m.request).collect()
    }

    fn want(codes: &[R]) -> Vec<u32> {
        codes.iter().map(|c| u32::from(*c)).collect()
    }

    #[test]
    fn qemus_session_replays_in_set_up_order_newest_first_and_asking_for_nothing() {
        let messages = qemu_session();
        let replay = recorded(&messages).replay().unwrap();
        assert_eq!(codes(&replay), want(&QEMU_REPLAY));
        assert!(
            replay.iter().all(|m| !m.needs_reply()),
            "no acknowledgement asked"
        );
        // Ring messages in ring order, each ring's own.
        let rings: Vec<u8> = replay[6..].iter().map(|m| m.payload[0]).collect();
        assert_eq!(rings, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]);
        // The call descriptor replayed is the one set last: the guest's, not the masked one.
        let calls: Vec<u64> = replay
            .iter()
            .filter(|m| m.is(R::SET_VRING_CALL))
            .map(|m| descriptor_id(&m.fds[0]))
            .collect();
        let ids = doorbell_ids(&messages);
        assert_eq!(calls, [ids[1], ids[3]]);
    }

    #[test]
    fn each_ring_resumes_where_guest_memory_shows_it_got_to() {
        let replay = recorded(&qemu_session()).replay().unwrap();
        let bases: Vec<(u32, u32)> = replay
            .iter()
            .filter(|m| m.is(R::SET_VRING_BASE))
            .map(|m| {
                let s = VhostUserVringState::from_slice(&m.payload).unwrap();
                (s.index, s.num)
            })
            .collect();
        // Ring 1's used ring is in no region the keeper has: its base is replayed as set.
        assert_eq!(bases, [(0, u32::from(RING0_USED)), (1, 0)]);
    }

    /// A frontend that restarts a ring while a new worker is probed: what it sent so far was
    /// only recorded, so the replay must tell it, base as set (the ring is not running, so
    /// guest memory does not say where it stands). Found by keeper_never_stalls, where the
    /// worker otherwise started the ring at 0 and overwrote events the guest had.
    #[test]
    fn a_ring_being_set_up_is_replayed_as_set_so_far() {
        let mut session = recorded(&qemu_session());
        session
            .record(&msg(R::GET_VRING_BASE, 0x1, &state(0, 0), vec![]))
            .unwrap();
        for m in [
            msg(R::SET_VRING_NUM, 0x1, &state(0, 4), vec![]),
            msg(R::SET_VRING_BASE, 0x1, &state(0, 31), vec![]),
            msg(R::SET_VRING_ADDR, 0x1, &vring_addr(0), vec![]),
        ] {
            session.record(&m).unwrap();
        }
        let replay = session.replay().unwrap();
        let ring0: Vec<&Message> = replay[6..].iter().filter(|m| m.payload[0] == 0).collect();
        assert_eq!(
            ring0.iter().map(|m| m.request).collect::<Vec<_>>(),
            want(&[R::SET_VRING_NUM, R::SET_VRING_ADDR, R::SET_VRING_BASE])
        );
        let base = VhostUserVringState::from_slice(&ring0[2].payload).unwrap();
        assert_eq!((base.index, base.num), (0, 31), "as the frontend set it");
    }

    #[test]
    fn a_stopped_ring_is_not_replayed_and_a_reset_owner_forgets_everything() {
        let mut session = recorded(&qemu_session());
        session
            .record(&msg(R::GET_VRING_BASE, 0x1, &state(1, 0), vec![]))
            .unwrap();
        let replay = session.replay().unwrap();
        assert_eq!(codes(&replay), want(&QEMU_REPLAY[..12]));
        assert_eq!(session.doorbells().len(), 2, "ring 0's kick and call");

        session
            .record(&msg(R::RESET_OWNER, 0x1, &[], vec![]))
            .unwrap();
        assert!(session.replay().unwrap().is_empty());
        assert!(session.doorbells().is_empty());
    }

    #[test]
    fn config_writes_replay_last_one_per_offset_in_offset_order() {
        let config = |offset: u32, value: u8| {
            let mut payload = offset.to_le_bytes().to_vec();
            payload.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, value]);
            msg(R::SET_CONFIG, NEED_REPLY, &payload, vec![])
        };
        let mut messages = qemu_session();
        messages.extend([config(8, 1), config(0, 2), config(8, 3)]);
        let replay = recorded(&messages).replay().unwrap();
        let configs: Vec<(u32, u8)> = replay
            .iter()
            .filter(|m| m.is(R::SET_CONFIG))
            .map(|m| (m.first_word().unwrap(), *m.payload.last().unwrap()))
            .collect();
        assert_eq!(configs, [(0, 2), (8, 3)]);
        assert!(replay.last().unwrap().is(R::SET_CONFIG), "after the rings");
        assert!(
            replay
                .iter()
                .all(|m| m.flags & VhostUserHeaderFlag::NEED_REPLY.bits() == 0)
        );
    }

    #[test]
    fn nothing_is_replayed_before_an_owner_and_unknown_requests_are_not_kept() {
        let mut session = Session::default();
        session
            .record(&Message {
                request: 9999,
                flags: 0x1,
                payload: vec![0; 8],
                fds: vec![],
            })
            .unwrap();
        assert!(session.replay().unwrap().is_empty());
    }
}
