//! The one backoff policy: capped exponential waits with jitter ([`backoff`]), and
//! [`RetryPolicy`], which bounds them by tries and by a total time budget. Every retry loop uses
//! it: the store wrapper and the S3 multipart steps (with `[store]`'s `retry_*` settings), the
//! offsite uploads (`offsite.attempts`, `retry_wait`, the sync's budget) and contended leases
//! (their own bounds, a few seconds). Only errors that say they are retryable are retried by
//! [`RetryPolicy::run`]: `NotFound` or `Corrupt` are answers. A failure that outlasted the budget
//! comes back as [`ErrorKind::Unavailable`], naming the server and how long it was tried, and no
//! outer layer retries it again: budgets never multiply.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, ErrorKind, Result};

/// How transient failures of one location's requests are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included (at least 1); `u32::MAX` leaves it to the budget.
    pub attempts: u32,
    /// The first wait; each further one doubles, up to `cap`.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
    /// How long one request keeps being tried, from its first try: no retry starts whose wait
    /// would end past it.
    pub budget: Duration,
}

impl RetryPolicy {
    /// `attempts` tries with waits from `base` to `cap`, however long they take.
    pub fn attempts(attempts: u32, base: Duration, cap: Duration) -> RetryPolicy {
        RetryPolicy {
            attempts: attempts.max(1),
            base,
            cap,
            budget: Duration::MAX,
        }
    }

    /// The wait before retry number `attempt + 1`, or `None` when the policy gives up.
    pub fn next_wait(&self, attempt: u32, elapsed: Duration) -> Option<Duration> {
        if attempt.saturating_add(1) >= self.attempts {
            return None;
        }
        let wait = backoff(self.base, self.cap, attempt);
        (elapsed.saturating_add(wait) <= self.budget).then_some(wait)
    }

    /// Runs `f` until it succeeds, fails for good, or the policy gives up; `what` names the
    /// request and `server` the location, in logs and in the error after the budget.
    pub fn run<T>(&self, server: &str, what: &str, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let began = Instant::now();
        let mut attempt = 0;
        loop {
            match f() {
                Err(e) if e.is_retryable() => match self.next_wait(attempt, began.elapsed()) {
                    Some(wait) => {
                        tracing::warn!(server, op = what, attempt = attempt + 1, wait_ms = wait.as_millis() as u64, error = %e, "retrying a store request");
                        std::thread::sleep(wait);
                        attempt += 1;
                    }
                    None => return Err(self.gave_up(server, attempt + 1, began, e)),
                },
                other => return other,
            }
        }
    }

    /// [`RetryPolicy::run`] for requests made on an async runtime (the S3 backend's own).
    pub async fn run_async<T, F, Fut>(&self, server: &str, what: &str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let began = Instant::now();
        let mut attempt = 0;
        loop {
            match f().await {
                Err(e) if e.is_retryable() => match self.next_wait(attempt, began.elapsed()) {
                    Some(wait) => {
                        tracing::warn!(server, op = what, attempt = attempt + 1, wait_ms = wait.as_millis() as u64, error = %e, "retrying a store request");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    }
                    None => return Err(self.gave_up(server, attempt + 1, began, e)),
                },
                other => return other,
            }
        }
    }

    /// The error of a request given up on: one try only is the error itself; after retries, an
    /// `Unavailable` one that says where, for how long and how often.
    fn gave_up(&self, server: &str, tries: u32, began: Instant, last: Error) -> Error {
        if tries <= 1 {
            return last;
        }
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "{server} did not answer for {} s ({tries} tries): {last}",
                began.elapsed().as_secs()
            ),
        )
    }
}

/// "Equal jitter": half the exponential bound plus a random share of the other half, so that
/// many clients failing together do not retry together, yet each waits a while.
pub fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let bound = base.saturating_mul(1 << attempt.min(20)).min(cap);
    // The engine's one random source; the clock's nanoseconds only if the kernel refuses.
    let x = crate::id::random_bytes::<8>()
        .map(u64::from_le_bytes)
        .unwrap_or_else(|_| {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            u64::from(nanos).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        });
    let frac = (x % 1000) as u32;
    bound / 2 + bound / 2 * frac / 1000
}
