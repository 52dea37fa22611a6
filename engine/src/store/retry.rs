//! A store wrapper that retries transient failures with exponential backoff and jitter.
//! Only errors that say they are retryable are retried: `NotFound` or `Corrupt` are answers.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Cleaned, ObjectInfo, ObjectWriter, Store};
use crate::error::Result;

/// Retries transient failures of the wrapped store.
#[derive(Debug)]
pub struct RetryStore<S> {
    inner: S,
    attempts: u32,
    base: Duration,
    cap: Duration,
}

impl<S: Store> RetryStore<S> {
    /// `attempts` tries in all (at least 1); the n-th wait is up to `base * 2^n`, capped at `cap`.
    pub fn new(inner: S, attempts: u32, base: Duration, cap: Duration) -> Self {
        RetryStore {
            inner,
            attempts: attempts.max(1),
            base,
            cap,
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn run<T>(&self, what: &str, key: &str, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        let mut attempt = 0;
        loop {
            match f() {
                Err(e) if e.is_retryable() && attempt + 1 < self.attempts => {
                    let wait = self.backoff(attempt);
                    tracing::warn!(op = what, key, attempt = attempt + 1, wait_ms = wait.as_millis() as u64, error = %e, "retrying store operation");
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// "Equal jitter": half the exponential bound plus a random share of the other half, so
    /// that many clients failing together do not retry together, yet each waits a while.
    fn backoff(&self, attempt: u32) -> Duration {
        let bound = self.base.saturating_mul(1 << attempt.min(20)).min(self.cap);
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
