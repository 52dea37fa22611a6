//! Retrying transient failures: one [`RetryPolicy`] (capped exponential backoff with jitter,
//! within a total time budget) for every request to a location, and a store wrapper that applies
//! it to each call. Only errors that say they are retryable are retried: `NotFound` or
//! `Corrupt` are answers. The S3 backend applies the same policy to the steps of a multipart
//! upload, which the wrapper cannot see. A failure that outlasted the budget comes back as
//! [`ErrorKind::Unavailable`], naming the server and how long it was tried, and no outer layer
//! retries it again: budgets never multiply.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{Cleaned, ObjectInfo, ObjectWriter, Store};
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
    fn next_wait(&self, attempt: u32, elapsed: Duration) -> Option<Duration> {
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
fn backoff(base: Duration, cap: Duration, attempt: u32) -> Duration {
    let bound = base.saturating_mul(1 << attempt.min(20)).min(cap);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut x = u64::from(nanos) ^ (u64::from(attempt) << 32) ^ 0x9E37_79B9_7F4A_7C15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    let frac = (x % 1000) as u32;
    bound / 2 + bound / 2 * frac / 1000
}

/// Retries transient failures of the wrapped store.
#[derive(Debug)]
pub struct RetryStore<S> {
    inner: S,
    policy: RetryPolicy,
    /// The location, as errors and logs name it.
    server: String,
    /// When a request last gave up on this location. For one budget after that, requests get
    /// one try each: a night whose server stays down fails within one budget, not one budget
    /// per request still to come (the lease's release, the run report).
    gave_up: std::sync::Mutex<Option<Instant>>,
}

impl<S: Store> RetryStore<S> {
    /// `attempts` tries in all (at least 1); the n-th wait is up to `base * 2^n`, capped at `cap`.
    pub fn new(inner: S, attempts: u32, base: Duration, cap: Duration) -> Self {
        RetryStore::with_policy(
            inner,
            RetryPolicy::attempts(attempts, base, cap),
            "the store",
        )
    }

    /// Retries by `policy`; `server` names the location in errors (`S3 server http://…`).
    pub fn with_policy(inner: S, policy: RetryPolicy, server: impl Into<String>) -> Self {
        RetryStore {
            inner,
            policy,
            server: server.into(),
            gave_up: Default::default(),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn run<T>(&self, what: &str, key: &str, f: impl FnMut() -> Result<T>) -> Result<T> {
        let recent = self
            .gave_up
            .lock()
            .expect("poisoned")
            .is_some_and(|t| t.elapsed() < self.policy.budget);
        let policy = if recent {
            RetryPolicy {
                attempts: 1,
                ..self.policy
            }
        } else {
            self.policy
        };
        let result = policy.run(&self.server, &format!("{what} {key}"), f);
        let mut gave_up = self.gave_up.lock().expect("poisoned");
        match &result {
            Err(e) if e.kind() == ErrorKind::Unavailable => *gave_up = Some(Instant::now()),
            // Still down: the one try failed as the last request's did.
            Err(e) if recent && e.is_retryable() => {}
            _ => *gave_up = None,
        }
        result
    }
}

impl<S: Store> Store for RetryStore<S> {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        self.run("put", key, || self.inner.put(key, data))
    }
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.run("get", key, || self.inner.get(key))
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.run("get_range", key, || self.inner.get_range(key, offset, len))
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.run("list", prefix, || self.inner.list(prefix))
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.run("delete", key, || self.inner.delete(key))
    }
    /// A stream cannot be replayed from here, and backends retry its pieces themselves; what
    /// is retried is its publication, which [`ObjectWriter::finish`]'s contract allows.
    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter + '_>> {
        let inner = self.run("create", key, || self.inner.create(key))?;
        Ok(Box::new(RetryWriter {
            store: self,
            key: key.to_string(),
            inner,
        }))
    }
    fn local_file(&self, key: &str) -> Option<std::path::PathBuf> {
        self.inner.local_file(key)
    }
    fn request_stats(&self) -> Option<super::RequestStats> {
        self.inner.request_stats()
    }
    fn server_object(&self, key: &str, pin: bool) -> Option<super::ServerObject> {
        self.inner.server_object(key, pin)
    }
    fn size(&self, key: &str) -> Result<u64> {
        self.run("size", key, || self.inner.size(key))
    }
    fn clock(&self) -> Result<Option<jiff::Timestamp>> {
        self.run("clock", "", || self.inner.clock())
    }
    fn clean_temporaries(&self, prefix: &str, older_than: Duration) -> Result<Cleaned> {
        self.run("clean_temporaries", prefix, || {
            self.inner.clean_temporaries(prefix, older_than)
        })
    }
}

/// A streamed object whose publication is retried like any other call of the store.
struct RetryWriter<'a, S> {
    store: &'a RetryStore<S>,
    key: String,
    inner: Box<dyn ObjectWriter + 'a>,
}

impl<S: Store> std::io::Write for RetryWriter<'_, S> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.inner.write(data)
    }
    fn write_all(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(data)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<S: Store> ObjectWriter for RetryWriter<'_, S> {
    fn finish(&mut self) -> Result<()> {
        let (store, key, inner) = (self.store, &self.key, &mut self.inner);
        store.run("finish", key, || inner.finish())
    }
    fn copy_from_file(&mut self, src: &std::path::Path, offset: u64, len: u64) -> Result<bool> {
        self.inner.copy_from_file(src, offset, len)
    }
    fn write_copy(
        &mut self,
        src: &super::ServerObject,
        offset: u64,
        data: &[u8],
    ) -> std::io::Result<()> {
        self.inner.write_copy(src, offset, data)
    }
}
