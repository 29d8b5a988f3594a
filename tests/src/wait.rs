//! Waiting for something observable instead of sleeping: a condition polled until a deadline,
//! and, when it never holds, an error that names what was awaited and what was last seen.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::qmp::Qmp;

/// The pause between two checks, when the check is a round trip to QEMU, the backend or the
/// guest: short beside a guest's reaction, long beside a local query.
pub const POLL: Duration = Duration::from_millis(20);

/// Calls `check` every [`POLL`] until it returns `Ok`, for at most `limit`. `check` returns
/// `Err(seen)` while the condition does not hold; the last `seen` is in the error.
pub fn until<T, S: Debug>(
    what: &str,
    limit: Duration,
    check: impl FnMut() -> Result<T, S>,
) -> Result<T, String> {
    until_every(what, limit, POLL, check)
}

/// [`until`] with checks `every` apart.
pub fn until_every<T, S: Debug>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: impl FnMut() -> Result<T, S>,
) -> Result<T, String> {
    let deadline = Instant::now() + limit;
    loop {
        let seen = match check() {
            Ok(done) => return Ok(done),
            Err(seen) => seen,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "timed out after {limit:?} waiting for {what}; last seen: {seen:?}"
            ));
        }
        std::thread::sleep(every.min(left));
    }
}

/// `Ok(v)` when `ok`, else `Err(v)`: the usual check of [`until`], on a value it reads.
pub fn when<T>(v: T, ok: impl FnOnce(&T) -> bool) -> Result<T, T> {
    if ok(&v) { Ok(v) } else { Err(v) }
}

/// Polls pvmouse's `query-pvmouse` until `ready` holds; returns that status.
pub fn status(
    ctl: &mut Qmp,
    what: &str,
    limit: Duration,
    ready: impl Fn(&Value) -> bool,
) -> Result<Value, String> {
    until(what, limit, || {
        match ctl.execute("query-pvmouse", json!({})) {
            Ok(status) => when(status, &ready),
            Err(e) => Err(Value::String(e.to_string())),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_as_soon_as_the_condition_holds() {
        let mut n = 0;
        let got = until("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            when(n, |n| *n == 3)
        });
        assert_eq!(got, Ok(3));
    }

    #[test]
    fn names_what_it_awaited_and_what_it_saw_last() {
        let err = until("the answer", Duration::from_millis(50), || Err::<(), _>(41)).unwrap_err();
        assert!(err.contains("waiting for the answer"), "{err}");
        assert!(err.ends_with("last seen: 41"), "{err}");
    }
}
