//! The device's state, kept where a replacement worker finds it.
//!
//! With `--restartable`, the part of the backend that may die (the worker) writes its whole state
//! after every change into a memfd that the keeper created and hands to each worker it starts. A
//! worker that starts on a ledger with a state in it carries on from there: the pointer, every
//! frame still waiting for the guest, the coordinates, the driver's ring position.
//!
//! The ledger has two slots and an index saying which one is whole. A change is written into the
//! other slot, and only then does the index move to it, so a worker killed in the middle of a
//! write leaves the previous state intact. Writes go through `pwrite` on the memfd (no mapping,
//! so no `unsafe`); the page cache outlives the process that wrote it.
//!
//! A slot holds the state's length, the format it is written in, and the state. The state is
//! the device's snapshot (`device/snapshot`), encoded with postcard straight into a buffer the
//! ledger keeps, so a steady stream allocates nothing. A worker reads the formats earlier
//! workers wrote, so an upgrade carries the state across a change of format.
//!
//! What can still be lost or repeated at a kill: an event the dead worker had written into a
//! guest buffer but not yet recorded as sent is sent again (the input core drops a repeated
//! absolute value or button state; a repeated wheel event scrolls once more). Telling those
//! events apart from ones the next worker queues itself before the ring restarts would need the
//! record to say which of its frames the ring's advance may cover; dropping by the advance alone
//! lost a click in `restart.rs`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use serde::Serialize;

/// "PVLG".
const MAGIC: u32 = 0x5056_4c47;
const HEADER: u64 = 16;
/// Room for every frame the device may hold (MAX_PENDING_FRAMES + 1, at most about 40 bytes
/// each) and the rest, with margin.
pub const SLOT_BYTES: u64 = SLOT_LEN as u64;
const SLOT_LEN: usize = 256 * 1024;
/// The memfd's size: the header and two slots.
pub const LEDGER_BYTES: u64 = HEADER + 2 * SLOT_BYTES;
/// A slot's length and format fields.
const SLOT_FIELDS: usize = 6;

#[derive(Debug)]
pub struct Ledger {
    file: File,
    active: u32,
    /// A slot's worth, allocated once: every state is encoded into it.
    buf: Box<[u8]>,
}

/// A state as a worker left it: the format it is written in, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub format: u16,
    pub bytes: Vec<u8>,
}

impl Ledger {
    /// Takes a ledger file: fresh (all zeros, or too short) or written by an earlier worker.
    pub fn open(file: File) -> io::Result<Self> {
        if file.metadata()?.len() < LEDGER_BYTES {
            file.set_len(LEDGER_BYTES)?;
        }
        let mut header = [0u8; 8];
        file.read_exact_at(&mut header, 0)?;
        let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let active = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        Ok(Self {
            file,
            active: if magic == MAGIC { active & 1 } else { 0 },
            buf: vec![0; SLOT_LEN].into_boxed_slice(),
        })
    }

    fn slot(index: u32) -> u64 {
        HEADER + u64::from(index & 1) * SLOT_BYTES
    }

    /// The state an earlier worker left, if there is a whole one.
    pub fn read(&self) -> io::Result<Option<Written>> {
        let mut header = [0u8; 4];
        self.file.read_exact_at(&mut header, 0)?;
        if u32::from_le_bytes(header) != MAGIC {
            return Ok(None);
        }
        let at = Self::slot(self.active);
        let mut fields = [0u8; SLOT_FIELDS];
        self.file.read_exact_at(&mut fields, at)?;
        // The length counts the format field and the state.
        let len = u64::from(u32::from_le_bytes([
            fields[0], fields[1], fields[2], fields[3],
        ]));
        if !(2..=SLOT_BYTES - 4).contains(&len) {
            return Ok(None);
        }
        let format = u16::from_le_bytes([fields[4], fields[5]]);
        let mut bytes = vec![0u8; usize::try_from(len - 2).unwrap_or(0)];
        self.file
            .read_exact_at(&mut bytes, at + SLOT_FIELDS as u64)?;
        Ok(Some(Written { format, bytes }))
    }

    /// Writes a new state in `format`. The previous state stays whole until this one is.
    pub fn write(&mut self, format: u16, state: &impl Serialize) -> io::Result<()> {
        let (fields, body) = self.buf.split_at_mut(SLOT_FIELDS);
        let used = postcard::to_slice(state, body)
            .map_err(|e| match e {
                postcard::Error::SerializeBufferFull => {
                    io::Error::other("the device state outgrew its ledger slot")
                }
                e => io::Error::other(format!("cannot encode the device state: {e}")),
            })?
            .len();
        // `used` is within the slot, so both fit.
        let len = u32::try_from(used + 2).unwrap_or(u32::MAX);
        fields[..4].copy_from_slice(&len.to_le_bytes());
        fields[4..].copy_from_slice(&format.to_le_bytes());
        let next = self.active ^ 1;
        self.file
            .write_all_at(&self.buf[..SLOT_FIELDS + used], Self::slot(next))?;
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&MAGIC.to_le_bytes());
        header[4..].copy_from_slice(&next.to_le_bytes());
        self.file.write_all_at(&header, 0)?;
        self.active = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memfd() -> File {
        tempfile::tempfile().unwrap()
    }

    #[test]
    fn a_state_survives_and_a_torn_write_leaves_the_previous_one() {
        let file = memfd();
        let mut l = Ledger::open(file.try_clone().unwrap()).unwrap();
        assert_eq!(l.read().unwrap(), None, "fresh");
        l.write(3, &7u32).unwrap();
        l.write(3, &300u32).unwrap();
        let whole = Some(Written {
            format: 3,
            bytes: postcard::to_stdvec(&300u32).unwrap(),
        });
        let again = Ledger::open(file.try_clone().unwrap()).unwrap();
        assert_eq!(again.read().unwrap(), whole);
        // A writer killed after filling the other slot but before moving the index: the
        // slot the index names is still the whole, previous state.
        file.write_all_at(&[4, 0, 0, 0, 3, 0, 9, 9], Ledger::slot(l.active ^ 1))
            .unwrap();
        let after = Ledger::open(file).unwrap();
        assert_eq!(after.read().unwrap(), whole);
    }

    #[test]
    fn a_state_larger_than_a_slot_is_refused_and_the_previous_one_stays() {
        let file = memfd();
        let mut l = Ledger::open(file.try_clone().unwrap()).unwrap();
        l.write(3, &1u8).unwrap();
        let huge = vec![0u8; SLOT_LEN];
        let e = l.write(3, &huge).unwrap_err();
        assert!(e.to_string().contains("outgrew"), "{e}");
        let again = Ledger::open(file).unwrap();
        assert_eq!(again.read().unwrap().unwrap().bytes, vec![1]);
    }
}
