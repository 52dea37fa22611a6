//! A store wrapper that injects faults, for tests of what the engine does when storage
//! misbehaves: fail once, fail always, fail after N calls (a crash mid-backup), truncate, flip a
//! bit, be slow, or be full. Rules match an operation and a key substring; every call is also counted.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Cleaned, ObjectInfo, ObjectWriter, Store};
use crate::error::{Error, ErrorKind, Result};

/// A store operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `put`
    Put,
    /// `get`
    Get,
    /// `get_range`
    GetRange,
    /// `list`
    List,
    /// `delete`
    Delete,
}

const OPS: [Op; 5] = [Op::Put, Op::Get, Op::GetRange, Op::List, Op::Delete];

/// What happens to a matching call.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The first call for each distinct key fails with a transient error; retries succeed.
    FailOncePerKey,
    /// Every call fails with an error of this kind.
    FailAlways(ErrorKind),
    /// The first `n` matching calls pass; every later one fails with an error of this kind.
    FailAfter(u64, ErrorKind),
    /// `put` stores only the first half of the data and reports success (a lying disk);
    /// reads return the first half of what is stored.
    Truncate,
    /// `put` stores, and reads return, the data with one bit flipped in the middle.
    FlipBit,
    /// The store holds at most this many bytes, like a volume of that size: a `put`, or the
    /// publication of a streamed object, that would hold more fails with an I/O error ("no space
    /// left on device"). Replacing an object counts its new size only.
    Capacity(u64),
    /// The call succeeds after sleeping.
    Delay(Duration),
}

#[derive(Debug)]
struct Rule {
    op: Option<Op>,
    key_contains: String,
    fault: Fault,
    matched: u64,
    seen: HashSet<String>,
}

/// Wraps a store and misbehaves according to its rules.
#[derive(Debug)]
pub struct FaultStore<S> {
    inner: S,
    rules: Mutex<Vec<Rule>>,
    calls: [AtomicU64; 5],
}

enum Action {
    Pass,
    Fail(ErrorKind),
    Truncate,
    Flip,
}

impl<S: Store> FaultStore<S> {
    /// A wrapper with no rules: it passes every call through.
    pub fn new(inner: S) -> Self {
        FaultStore {
            inner,
            rules: Mutex::new(Vec::new()),
            calls: Default::default(),
        }
    }

    /// Adds a rule for `op` (or every operation) on keys containing `key_contains`.
    pub fn inject(&self, op: Option<Op>, key_contains: &str, fault: Fault) {
        self.rules.lock().expect("poisoned").push(Rule {
            op,
            key_contains: key_contains.to_string(),
            fault,
            matched: 0,
            seen: HashSet::new(),
        });
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.rules.lock().expect("poisoned").clear();
    }

    /// How many times `op` was called, faulty or not.
    pub fn calls(&self, op: Op) -> u64 {
        self.calls[OPS.iter().position(|o| *o == op).expect("listed")].load(Ordering::Relaxed)
    }

    /// The wrapped store, to look behind the faults.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn decide(&self, op: Op, key: &str) -> Action {
        self.calls[OPS.iter().position(|o| *o == op).expect("listed")]
            .fetch_add(1, Ordering::Relaxed);
        let mut delay = Duration::ZERO;
        let mut action = Action::Pass;
        {
            let mut rules = self.rules.lock().expect("poisoned");
            for r in rules
                .iter_mut()
                .filter(|r| r.op.is_none_or(|o| o == op) && key.contains(&r.key_contains))
            {
                r.matched += 1;
                let a = match &r.fault {
                    Fault::FailOncePerKey if r.seen.insert(key.to_string()) => {
                        Action::Fail(ErrorKind::Transient)
                    }
                    Fault::FailOncePerKey => Action::Pass,
                    Fault::FailAlways(kind) => Action::Fail(*kind),
                    Fault::FailAfter(n, kind) if r.matched > *n => Action::Fail(*kind),
                    Fault::FailAfter(..) => Action::Pass,
                    Fault::Truncate => Action::Truncate,
                    Fault::FlipBit => Action::Flip,
                    Fault::Delay(d) => {
                        delay += *d;
                        Action::Pass
                    }
                    // Needs the object's size: checked by `full` where that is known.
                    Fault::Capacity(_) => Action::Pass,
                };
                if !matches!(a, Action::Pass) {
                    action = a;
                    break;
                }
            }
        }
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        action
    }
}

impl<S: Store> FaultStore<S> {
    /// Whether storing `len` bytes under `key` would exceed a `Capacity` rule.
    fn full(&self, key: &str, len: u64) -> Result<()> {
        let cap = {
            let rules = self.rules.lock().expect("poisoned");
            rules
                .iter()
                .filter(|r| r.op.is_none_or(|o| o == Op::Put) && key.contains(&r.key_contains))
                .find_map(|r| match r.fault {
                    Fault::Capacity(c) => Some(c),
                    _ => None,
                })
        };
        let Some(cap) = cap else { return Ok(()) };
        let used: u64 = self
            .inner
            .list("")?
            .iter()
            .filter(|o| o.key != key)
            .map(|o| o.size)
            .sum();
        if used + len > cap {
            return Err(Error::io(
                format!("writing object {key}"),
                std::io::Error::from_raw_os_error(libc::ENOSPC),
            ));
        }
        Ok(())
    }
}

fn injected(kind: ErrorKind, op: Op, key: &str) -> Error {
    Error::new(kind, format!("injected fault: {op:?} {key}"))
}

fn damage(action: &Action, mut data: Vec<u8>) -> Vec<u8> {
    match action {
        Action::Truncate => data.truncate(data.len() / 2),
        Action::Flip if !data.is_empty() => {
            let mid = data.len() / 2;
            data[mid] ^= 0x01;
        }
        _ => {}
    }
    data
}

impl<S: Store> Store for FaultStore<S> {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        self.full(key, data.len() as u64)?;
        match self.decide(Op::Put, key) {
            Action::Pass => self.inner.put(key, data),
            Action::Fail(kind) => Err(injected(kind, Op::Put, key)),
            a => self.inner.put(key, &damage(&a, data.to_vec())),
        }
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        match self.decide(Op::Get, key) {
            Action::Fail(kind) => Err(injected(kind, Op::Get, key)),
            a => Ok(damage(&a, self.inner.get(key)?)),
        }
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        match self.decide(Op::GetRange, key) {
            Action::Fail(kind) => Err(injected(kind, Op::GetRange, key)),
            a => Ok(damage(&a, self.inner.get_range(key, offset, len)?)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        match self.decide(Op::List, prefix) {
            Action::Fail(kind) => Err(injected(kind, Op::List, prefix)),
            _ => self.inner.list(prefix),
        }
    }

    fn delete(&self, key: &str) -> Result<()> {
        match self.decide(Op::Delete, key) {
            Action::Fail(kind) => Err(injected(kind, Op::Delete, key)),
            _ => self.inner.delete(key),
        }
    }

    fn clock(&self) -> Result<Option<jiff::Timestamp>> {
        self.inner.clock()
    }

    /// Passes through: the temporaries are the inner store's; `Delete` rules apply.
    fn request_stats(&self) -> Option<super::RequestStats> {
        self.inner.request_stats()
    }

    fn clean_temporaries(&self, prefix: &str, older_than: Duration) -> Result<Cleaned> {
        match self.decide(Op::Delete, prefix) {
            Action::Fail(kind) => Err(injected(kind, Op::Delete, prefix)),
            _ => self.inner.clean_temporaries(prefix, older_than),
        }
    }

    /// Streams through the inner store; the `Put` rules apply when the object is published,
    /// and `Truncate` makes writes fail halfway through, as a connection lost mid-upload would.
    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter + '_>> {
        Ok(Box::new(FaultWriter {
            store: self,
            key: key.to_string(),
            inner: self.inner.create(key)?,
            written: 0,
        }))
    }
}

struct FaultWriter<'a, S> {
    store: &'a FaultStore<S>,
    key: String,
    inner: Box<dyn ObjectWriter + 'a>,
    written: u64,
}

impl<S: Store> std::io::Write for FaultWriter<'_, S> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let truncating = {
            let rules = self.store.rules.lock().expect("poisoned");
            rules.iter().any(|r| {
                r.op.is_none_or(|o| o == Op::Put)
                    && self.key.contains(&r.key_contains)
                    && matches!(r.fault, Fault::Truncate)
            })
        };
        if truncating && self.written > 0 {
            return Err(std::io::Error::other(format!(
                "injected fault: connection lost writing {}",
                self.key
            )));
        }
        let n = self.inner.write(data)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<S: Store> ObjectWriter for FaultWriter<'_, S> {
    /// The `Put` rules apply here, once per call: a fault injected for the key is exactly a
    /// failure at publication, and a retried `finish` meets the rules again.
    fn finish(&mut self) -> Result<()> {
        self.store.full(&self.key, self.written)?;
        match self.store.decide(Op::Put, &self.key) {
            Action::Fail(kind) => Err(injected(kind, Op::Put, &self.key)),
            _ => self.inner.finish(),
        }
    }
}
