//! Retrying transient failures of a store: a wrapper that applies the location's
//! [`RetryPolicy`] (capped exponential backoff with jitter, within a total time budget; see
//! [`crate::backoff`]) to each call. Only errors that say they are retryable are retried: `NotFound` or
//! `Corrupt` are answers. The S3 backend applies the same policy to the steps of a multipart
//! upload, which the wrapper cannot see. A failure that outlasted the budget comes back as
//! [`ErrorKind::Unavailable`], naming the server and how long it was tried, and no outer layer
//! retries it again: budgets never multiply.

use std::time::{Duration, Instant};

use super::{Cleaned, ObjectInfo, ObjectWriter, Store};
pub use crate::backoff::RetryPolicy;
use crate::error::{ErrorKind, Result};

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
