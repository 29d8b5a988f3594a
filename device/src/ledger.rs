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
//! What can still be lost or repeated at a kill: an event the dead worker had written into a
//! guest buffer but not yet recorded as sent is sent again (the input core drops a repeated
//! absolute value or button state; a repeated wheel event scrolls once more).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// "PVLG".
const MAGIC: u32 = 0x5056_4c47;
const FORMAT: u16 = 1;
const HEADER: u64 = 16;
/// Room for every frame the device may hold (MAX_PENDING_FRAMES + 1, about 40 bytes each) and the
/// rest, with margin.
pub const SLOT_BYTES: u64 = 256 * 1024;
/// The memfd's size: the header and two slots.
pub const LEDGER_BYTES: u64 = HEADER + 2 * SLOT_BYTES;

#[derive(Debug)]
pub struct Ledger {
    file: File,
    active: u32,
    /// Reused for every write, so a steady stream allocates nothing.
    buf: Vec<u8>,
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
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    fn slot(index: u32) -> u64 {
        HEADER + u64::from(index & 1) * SLOT_BYTES
    }

    /// The state an earlier worker left, if there is a whole one.
    pub fn read(&self) -> io::Result<Option<Vec<u8>>> {
        let mut header = [0u8; 4];
        self.file.read_exact_at(&mut header, 0)?;
        if u32::from_le_bytes(header) != MAGIC {
            return Ok(None);
        }
        let at = Self::slot(self.active);
        let mut len = [0u8; 4];
        self.file.read_exact_at(&mut len, at)?;
        let len = u64::from(u32::from_le_bytes(len));
        if len == 0 || len > SLOT_BYTES - 4 {
            return Ok(None);
        }
        let mut body = vec![0u8; usize::try_from(len).unwrap_or(0)];
        self.file.read_exact_at(&mut body, at + 4)?;
        Ok(Some(body))
    }

    /// Writes a new state: `fill` encodes it into the buffer given. The previous state stays
    /// whole until this one is.
    pub fn write(&mut self, fill: impl FnOnce(&mut Writer<'_>)) -> io::Result<()> {
        self.buf.clear();
        self.buf.extend_from_slice(&[0; 4]);
        fill(&mut Writer(&mut self.buf));
        let len = u32::try_from(self.buf.len() - 4)
            .ok()
            .filter(|l| u64::from(*l) <= SLOT_BYTES - 4)
            .ok_or_else(|| io::Error::other("the device state outgrew its ledger slot"))?;
        self.buf[..4].copy_from_slice(&len.to_le_bytes());
        let next = self.active ^ 1;
        self.file.write_all_at(&self.buf, Self::slot(next))?;
        let mut header = [0u8; 8];
        header[..4].copy_from_slice(&MAGIC.to_le_bytes());
        header[4..].copy_from_slice(&next.to_le_bytes());
        self.file.write_all_at(&header, 0)?;
        self.active = next;
        Ok(())
    }
}

/// Little-endian encoding into the ledger's buffer.
#[derive(Debug)]
pub struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    pub fn format(&mut self) {
        self.u16(FORMAT);
    }
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    /// A presence byte, then the value if there is one.
    pub fn opt_u16(&mut self, v: Option<u16>) {
        self.u8(u8::from(v.is_some()));
        self.u16(v.unwrap_or(0));
    }
}

/// Decoding what a worker wrote, which a later worker trusts no more than guest input: every
/// read is bounds-checked, and anything malformed makes the whole state `None`.
#[derive(Debug)]
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    pub fn format(&mut self) -> Option<()> {
        (self.u16()? == FORMAT).then_some(())
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    pub fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_le_bytes)
    }
    pub fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    pub fn opt_u16(&mut self) -> Option<Option<u16>> {
        let present = self.u8()?;
        let v = self.u16()?;
        match present {
            0 => Some(None),
            1 => Some(Some(v)),
            _ => None,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
        l.write(|w| w.u32(7)).unwrap();
        l.write(|w| w.u32(8)).unwrap();
        let again = Ledger::open(file.try_clone().unwrap()).unwrap();
        assert_eq!(again.read().unwrap(), Some(8u32.to_le_bytes().to_vec()));
        // A writer killed after filling the other slot but before moving the index: the
        // slot the index names is still the whole, previous state.
        file.write_all_at(&[4, 0, 0, 0, 9, 9, 9, 9], Ledger::slot(l.active ^ 1))
            .unwrap();
        let after = Ledger::open(file).unwrap();
        assert_eq!(after.read().unwrap(), Some(8u32.to_le_bytes().to_vec()));
    }

    #[test]
    fn reads_past_the_end_or_bad_options_are_refused() {
        let mut r = Reader::new(&[1, 2]);
        assert_eq!(r.u32(), None);
        let mut r = Reader::new(&[2, 0, 0]);
        assert_eq!(r.opt_u16(), None);
    }
}
