//! Problems a guest (or a frontend acting for it) can cause, logged once per kind and then at
//! most every [`REPORT_INTERVAL`], with a count of what was suppressed in between. None of them
//! stops the device.

use std::time::{Duration, Instant};

pub const REPORT_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestFault {
    /// An eventq descriptor the device may not write.
    ReadOnlyEventBuffer,
    /// A statusq descriptor the device may not read.
    WriteOnlyStatusBuffer,
    /// A descriptor of length 0.
    ZeroLengthDescriptor,
    /// Less than one 8-byte event in the whole chain.
    ShortBuffer,
    /// A descriptor that points outside guest memory.
    OutsideGuestMemory,
    /// A chain that ends early: a loop, a nested indirect table, a bad next index or head.
    BrokenChain,
    /// The avail ring claims more buffers than the queue holds.
    BadAvailIndex,
    /// The used ring could not be written.
    UsedRingWrite,
    /// A config read or write outside the config space.
    ConfigOutOfBounds,
    /// A desktop layout on the status queue that was damaged, malformed, for displays the
    /// device does not have, or sent with no bridge present.
    LayoutRefused,
}

impl GuestFault {
    const ALL: [GuestFault; 10] = [
        GuestFault::ReadOnlyEventBuffer,
        GuestFault::WriteOnlyStatusBuffer,
        GuestFault::ZeroLengthDescriptor,
        GuestFault::ShortBuffer,
        GuestFault::OutsideGuestMemory,
        GuestFault::BrokenChain,
        GuestFault::BadAvailIndex,
        GuestFault::UsedRingWrite,
        GuestFault::ConfigOutOfBounds,
        GuestFault::LayoutRefused,
    ];

    pub fn describe(self) -> &'static str {
        match self {
            GuestFault::ReadOnlyEventBuffer => "eventq buffer is not device-writable",
            GuestFault::WriteOnlyStatusBuffer => "statusq buffer is not device-readable",
            GuestFault::ZeroLengthDescriptor => "descriptor has length 0",
            GuestFault::ShortBuffer => "buffer is shorter than one 8-byte event",
            GuestFault::OutsideGuestMemory => "descriptor points outside guest memory",
            GuestFault::BrokenChain => {
                "descriptor chain is broken (loop, nested indirect table or bad index)"
            }
            GuestFault::BadAvailIndex => "avail index runs more than a queue ahead",
            GuestFault::UsedRingWrite => "used ring could not be written",
            GuestFault::ConfigOutOfBounds => "config access outside the config space",
            GuestFault::LayoutRefused => "desktop layout refused (damaged, malformed or no bridge)",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            GuestFault::ReadOnlyEventBuffer => "read-only-event-buffer",
            GuestFault::WriteOnlyStatusBuffer => "write-only-status-buffer",
            GuestFault::ZeroLengthDescriptor => "zero-length-descriptor",
            GuestFault::ShortBuffer => "short-buffer",
            GuestFault::OutsideGuestMemory => "outside-guest-memory",
            GuestFault::BrokenChain => "broken-chain",
            GuestFault::BadAvailIndex => "bad-avail-index",
            GuestFault::UsedRingWrite => "used-ring-write",
            GuestFault::ConfigOutOfBounds => "config-out-of-bounds",
            GuestFault::LayoutRefused => "layout-refused",
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct KindLog {
    total: u64,
    suppressed: u64,
    last_report: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct GuestFaultLog {
    kinds: [KindLog; GuestFault::ALL.len()],
}

impl GuestFaultLog {
    pub fn record(&mut self, fault: GuestFault) {
        let log = &mut self.kinds[fault as usize];
        log.total += 1;
        let now = Instant::now();
        let due = log
            .last_report
            .is_none_or(|t| now.duration_since(t) >= REPORT_INTERVAL);
        if due {
            tracing::warn!(
                fault = fault.name(),
                suppressed = log.suppressed,
                total = log.total,
                "guest fault: {}; skipped it and carried on",
                fault.describe()
            );
            log.last_report = Some(now);
            log.suppressed = 0;
        } else {
            log.suppressed += 1;
        }
    }

    pub fn total(&self, fault: GuestFault) -> u64 {
        self.kinds[fault as usize].total
    }

    /// Non-zero counts by kind name, for status reports.
    pub fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        GuestFault::ALL
            .into_iter()
            .map(|f| (f.name(), self.total(f)))
            .filter(|(_, n)| *n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_fault_but_reports_a_kind_at_most_once_per_interval() {
        let mut log = GuestFaultLog::default();
        for _ in 0..1000 {
            log.record(GuestFault::BrokenChain);
        }
        log.record(GuestFault::ShortBuffer);
        assert_eq!(log.total(GuestFault::BrokenChain), 1000);
        let k = log.kinds[GuestFault::BrokenChain as usize];
        assert_eq!(k.suppressed, 999, "only the first was reported");
        assert_eq!(log.counts().count(), 2);
    }

    #[test]
    fn kind_indices_match_the_table() {
        for (i, f) in GuestFault::ALL.into_iter().enumerate() {
            assert_eq!(f as usize, i);
        }
    }
}
