//! When the keeper starts the next worker: at once, unless workers keep dying right after they
//! start, in which case it waits, longer each time, up to [`BACKOFF_MAX`]. A worker that cannot
//! start, again and again, must not turn the keeper into a fork loop; one that lived a while
//! says the trouble is over.
//!
//! Decisions only: the keeper's supervisor thread spawns, waits and sleeps as told.

use std::io;
use std::process::ExitStatus;
use std::time::Duration;

/// How many workers in a row may die right after they started before the keeper waits.
pub const QUICK_DEATHS: u32 = 5;
/// A worker that lived less than this died "right after it started".
pub const QUICK: Duration = Duration::from_millis(200);
/// The first wait, doubled at each further quick death.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How a worker ended.
#[derive(Debug)]
pub enum WorkerEnd {
    /// It exited with success: it answered `pvmouse-upgrade`.
    Upgraded,
    /// It was killed, panicked (and aborted) or failed.
    Died(ExitStatus),
    /// It could not be started, or waited for.
    NotStarted(io::Error),
}

impl From<io::Result<ExitStatus>> for WorkerEnd {
    fn from(status: io::Result<ExitStatus>) -> Self {
        match status {
            Ok(s) if s.success() => WorkerEnd::Upgraded,
            Ok(s) => WorkerEnd::Died(s),
            Err(e) => WorkerEnd::NotStarted(e),
        }
    }
}

/// The keeper's record of recent worker lifetimes.
#[derive(Debug)]
pub struct Restarts {
    /// Workers in a row that died right after they started.
    quick: u32,
    /// The next wait, once `quick` reaches [`QUICK_DEATHS`].
    backoff: Duration,
}

impl Default for Restarts {
    fn default() -> Self {
        Self {
            quick: 0,
            backoff: BACKOFF_FIRST,
        }
    }
}

impl Restarts {
    /// A worker ended after living `lived`, however it ended (an upgrade that came at once
    /// counts as much as a crash): how long to wait before starting the next one.
    pub fn ended(&mut self, lived: Duration) -> Duration {
        if lived < QUICK {
            self.quick = self.quick.saturating_add(1);
        } else {
            *self = Self::default();
        }
        if self.quick < QUICK_DEATHS {
            return Duration::ZERO;
        }
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        wait
    }

    /// Workers in a row that died right after they started.
    pub fn quick_deaths(&self) -> u32 {
        self.quick
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    const LONG: Duration = Duration::from_secs(60);
    const SHORT: Duration = Duration::from_millis(10);

    #[test]
    fn a_worker_that_crashes_after_a_while_is_replaced_at_once() {
        let mut restarts = Restarts::default();
        for _ in 0..100 {
            assert_eq!(restarts.ended(LONG), Duration::ZERO);
        }
        assert_eq!(
            restarts.ended(QUICK),
            Duration::ZERO,
            "QUICK itself is not quick"
        );
    }

    #[test]
    fn quick_deaths_wait_longer_each_time_up_to_the_cap() {
        let mut restarts = Restarts::default();
        for _ in 1..QUICK_DEATHS {
            assert_eq!(restarts.ended(SHORT), Duration::ZERO);
        }
        let waits: Vec<Duration> = (0..9).map(|_| restarts.ended(SHORT)).collect();
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(restarts.quick_deaths(), QUICK_DEATHS + 8);
    }

    #[test]
    fn a_worker_that_lived_resets_the_backoff() {
        let mut restarts = Restarts::default();
        for _ in 0..QUICK_DEATHS + 3 {
            restarts.ended(SHORT);
        }
        assert_eq!(restarts.ended(LONG), Duration::ZERO);
        assert_eq!(restarts.quick_deaths(), 0);
        for _ in 1..QUICK_DEATHS {
            assert_eq!(restarts.ended(SHORT), Duration::ZERO);
        }
        assert_eq!(
            restarts.ended(SHORT),
            BACKOFF_FIRST,
            "the schedule starts over"
        );
    }

    #[test]
    fn an_upgrade_is_a_success_and_anything_else_a_death() {
        assert!(matches!(
            WorkerEnd::from(Ok(ExitStatus::from_raw(0))),
            WorkerEnd::Upgraded
        ));
        // Killed by SIGKILL; exited with status 1; aborted (SIGABRT) after a panic.
        for raw in [9, 1 << 8, 6] {
            assert!(matches!(
                WorkerEnd::from(Ok(ExitStatus::from_raw(raw))),
                WorkerEnd::Died(_)
            ));
        }
        assert!(matches!(
            WorkerEnd::from(Err(io::Error::other("no such file"))),
            WorkerEnd::NotStarted(_)
        ));
    }
}
