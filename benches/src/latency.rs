//! Round-trip samples: which guest line answers which host send, and the statistics of the
//! result.
//!
//! A sample is answered by the first guest frame that shows its position or a newer one. An
//! absolute pointer that coalesces has still put the pointer at (or past) the sample, so a
//! coalesced sample counts as delivered when the newer frame arrives; how many were coalesced is
//! reported beside the latency.

use std::time::{Duration, Instant};

use pvmouse_spec::control::QEMU_ABS_MAX;

/// How far ahead of the oldest unanswered sample a reply may match: the positions repeat with
/// this period, so a window this wide can never hold two samples with the same key.
pub const POSITIONS: usize = 500;

/// The host's position for sample `i` on QEMU's 0..=32767 scale. Consecutive samples always
/// differ, and positions 64 apart survive every kind's scaling, including the bridge's 1920
/// pixels, as distinct values.
pub fn position(i: usize) -> (u32, u32) {
    // POSITIONS is far below u32::MAX, so the remainder always fits.
    let step = |k: usize| 16 + 64 * u32::try_from(k % POSITIONS).unwrap_or(0);
    (step(i), step(i + POSITIONS / 2))
}

/// Two samples' keys differ by at least 64/32767 of the axis; the bridge's worst rounding is one
/// pixel in 1920, so this tolerance tells them apart with room on both sides.
pub const FRACTION_TOLERANCE: f64 = 24.0 / QEMU_ABS_MAX as f64;

/// What a series' replies say about its samples.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matched {
    /// Per sample: the time from send to the reply that answered it.
    pub latency: Vec<Option<Duration>>,
    /// Samples answered by a reply showing their own position.
    pub own: usize,
    /// Samples answered by a reply showing a newer position.
    pub coalesced: usize,
    /// Replies that matched no sample.
    pub stray: usize,
}

impl Matched {
    pub fn unanswered(&self) -> usize {
        self.latency.iter().filter(|l| l.is_none()).count()
    }
}

/// Matches replies to samples. `sent[i]` is (send time, key) and `replies` are (arrival time,
/// key) in arrival order; keys match when within `tolerance`.
pub fn match_replies(
    sent: &[(Instant, f64)],
    replies: &[(Instant, f64)],
    tolerance: f64,
) -> Matched {
    let mut m = Matched {
        latency: vec![None; sent.len()],
        ..Matched::default()
    };
    let mut next = 0;
    for &(arrived, key) in replies {
        let window = next..sent.len().min(next + POSITIONS);
        let found = window
            .take_while(|&k| sent[k].0 <= arrived)
            .find(|&k| (sent[k].1 - key).abs() <= tolerance);
        let Some(k) = found else {
            m.stray += 1;
            continue;
        };
        for (j, slot) in m.latency.iter_mut().enumerate().take(k + 1).skip(next) {
            *slot = Some(arrived.saturating_duration_since(sent[j].0));
        }
        m.coalesced += k - next;
        m.own += 1;
        next = k + 1;
    }
    m
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Distribution {
    /// Every answered sample, ascending.
    pub sorted_ms: Vec<f64>,
}

impl Distribution {
    pub fn new(latencies: impl IntoIterator<Item = Duration>) -> Distribution {
        let mut sorted_ms: Vec<f64> = latencies
            .into_iter()
            .map(|d| d.as_secs_f64() * 1e3)
            .collect();
        sorted_ms.sort_by(f64::total_cmp);
        Distribution { sorted_ms }
    }

    /// Every sample of all of `parts`, as one distribution.
    pub fn pooled<'a>(parts: impl IntoIterator<Item = &'a Distribution>) -> Distribution {
        let mut sorted_ms: Vec<f64> = parts
            .into_iter()
            .flat_map(|d| d.sorted_ms.iter().copied())
            .collect();
        sorted_ms.sort_by(f64::total_cmp);
        Distribution { sorted_ms }
    }

    /// The nearest-rank percentile, `q` in 0..=1; NaN when there are no samples.
    pub fn quantile(&self, q: f64) -> f64 {
        let n = self.sorted_ms.len();
        if n == 0 {
            return f64::NAN;
        }
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "ceil() of a value clamped to 1..=n"
        )]
        let rank = (q * n as f64).ceil().clamp(1.0, n as f64) as usize;
        self.sorted_ms[rank - 1]
    }

    pub fn p50(&self) -> f64 {
        self.quantile(0.5)
    }
    pub fn p90(&self) -> f64 {
        self.quantile(0.9)
    }
    pub fn p99(&self) -> f64 {
        self.quantile(0.99)
    }
    pub fn max(&self) -> f64 {
        self.quantile(1.0)
    }
}

/// Whether latency grew over a series, which means the path fell behind the rate: the median of
/// the last tenth of samples against the first tenth's.
pub fn backlog_grew(latency: &[Option<Duration>]) -> bool {
    let tenth = (latency.len() / 10).max(1);
    let median =
        |part: &[Option<Duration>]| Distribution::new(part.iter().flatten().copied()).quantile(0.5);
    let first = median(&latency[..tenth.min(latency.len())]);
    let last = median(&latency[latency.len().saturating_sub(tenth)..]);
    // NaN (no answered samples at one end) counts as grown: nothing shows it kept up.
    last.is_nan() || first.is_nan() || last > 2.0 * first + 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn positions_repeat_only_after_the_window_and_stay_in_range() {
        for i in 0..3 * POSITIONS {
            let (x, y) = position(i);
            assert!(i64::from(x) <= QEMU_ABS_MAX && i64::from(y) <= QEMU_ABS_MAX);
            assert_ne!(position(i).0, position(i + 1).0);
            for j in 1..POSITIONS {
                assert_ne!(position(i).0, position(i + j).0);
            }
        }
    }

    #[test]
    fn own_coalesced_and_stray_replies() {
        let t = Instant::now();
        let sent: Vec<(Instant, f64)> = (0..4).map(|i| (at(t, i * 5), i as f64)).collect();
        let replies = [
            (at(t, 2), 0.0),  // sample 0
            (at(t, 3), 7.0),  // nobody's
            (at(t, 17), 2.0), // sample 2 supersedes 1
        ];
        let m = match_replies(&sent, &replies, 0.1);
        assert_eq!(m.own, 2);
        assert_eq!(m.coalesced, 1);
        assert_eq!(m.stray, 1);
        assert_eq!(m.unanswered(), 1);
        assert_eq!(m.latency[0], Some(Duration::from_millis(2)));
        assert_eq!(m.latency[1], Some(Duration::from_millis(12)));
        assert_eq!(m.latency[2], Some(Duration::from_millis(7)));
        assert_eq!(m.latency[3], None);
    }

    #[test]
    fn a_reply_cannot_answer_a_sample_sent_after_it_arrived() {
        let t = Instant::now();
        let sent = [(at(t, 0), 1.0), (at(t, 10), 2.0)];
        let m = match_replies(&sent, &[(at(t, 5), 2.0)], 0.1);
        assert_eq!(m.stray, 1);
        assert_eq!(m.unanswered(), 2);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let d = Distribution::new((1..=100).map(Duration::from_millis));
        assert_eq!(d.p50(), 50.0);
        assert_eq!(d.p90(), 90.0);
        assert_eq!(d.p99(), 99.0);
        assert_eq!(d.max(), 100.0);
        assert!(Distribution::default().p50().is_nan());
    }

    #[test]
    fn growing_latency_is_a_backlog() {
        let steady: Vec<_> = (0..100).map(|_| Some(Duration::from_millis(1))).collect();
        assert!(!backlog_grew(&steady));
        let growing: Vec<_> = (0..100).map(|i| Some(Duration::from_millis(i))).collect();
        assert!(backlog_grew(&growing));
    }
}
