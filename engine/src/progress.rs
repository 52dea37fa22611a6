//! Live figures of the long operation this process runs, for a person or a log to watch: which
//! stage it is in, how many items and bytes of that stage are done and of how many, and a few
//! counts of its own (groups reused, packs deleted). The operation bumps atomics on its hot paths
//! and never waits for the watcher; whoever watches takes a [`Reading`] when it likes. The engine
//! never prints: the CLI draws a line on a terminal, or logs a reading every so often.
//!
//! There is one meter per process ([`meter`]), the way `tracing` has one dispatcher: cairn runs
//! one operation at a time, and threading a handle through every layer of export, restore,
//! check, gc, offsite and verify would change each of their signatures for what only the CLI
//! reads. Two operations run at once in one process (the engine's own tests) see their sum.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Counts of its own an operation may keep beside items and bytes.
pub const COUNTS: usize = 3;

/// The figures of the stage under way.
#[derive(Debug, Default)]
pub struct Meter {
    stage: Mutex<Stage>,
    items: AtomicU64,
    bytes: AtomicU64,
    counts: [AtomicU64; COUNTS],
}

#[derive(Debug, Clone, Default)]
struct Stage {
    name: String,
    unit: &'static str,
    items_total: Option<u64>,
    bytes_total: Option<u64>,
    counts: [&'static str; COUNTS],
    started: Option<Instant>,
}

/// What a [`Meter`] showed at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The stage under way (`"export 2026-12-07"`); empty before the first.
    pub stage: String,
    /// What the items are (`"files"`, `"packs"`).
    pub unit: &'static str,
    pub items: u64,
    pub items_total: Option<u64>,
    pub bytes: u64,
    pub bytes_total: Option<u64>,
    /// The stage's own counts, by name, in the order it gave them.
    pub counts: Vec<(&'static str, u64)>,
    /// Since the stage began.
    pub elapsed: Duration,
}

/// The process's meter.
pub fn meter() -> &'static Meter {
    static METER: std::sync::OnceLock<Meter> = std::sync::OnceLock::new();
    METER.get_or_init(Meter::default)
}

impl Meter {
    /// Starts a stage: its name, what its items are, the totals known so far and the names of
    /// its own counts (at most [`COUNTS`]); every figure starts again from zero.
    pub fn begin(
        &self,
        stage: impl Into<String>,
        unit: &'static str,
        items_total: Option<u64>,
        bytes_total: Option<u64>,
        counts: &[&'static str],
    ) {
        let mut names = [""; COUNTS];
        for (slot, name) in names.iter_mut().zip(counts) {
            *slot = name;
        }
        let mut st = self.stage.lock().expect("poisoned");
        self.items.store(0, Relaxed);
        self.bytes.store(0, Relaxed);
        for c in &self.counts {
            c.store(0, Relaxed);
        }
        *st = Stage {
            name: stage.into(),
            unit,
            items_total,
            bytes_total,
            counts: names,
            started: Some(Instant::now()),
        };
    }

    /// Sets the totals once they are known (a plan made after the stage began).
    pub fn totals(&self, items_total: Option<u64>, bytes_total: Option<u64>) {
        let mut st = self.stage.lock().expect("poisoned");
        st.items_total = items_total;
        st.bytes_total = bytes_total;
    }

    /// `n` more items done.
    pub fn items(&self, n: u64) {
        self.items.fetch_add(n, Relaxed);
    }

    /// `n` more bytes done.
    pub fn bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Relaxed);
    }

    /// Takes `n` bytes back: a retried piece of work counts once.
    pub fn unbytes(&self, n: u64) {
        // fetch_update cannot fail with a closure that always returns Some.
        let _ = self
            .bytes
            .fetch_update(Relaxed, Relaxed, |b| Some(b.saturating_sub(n)));
    }

    /// `n` more of the stage's own count `i` (its place in [`Meter::begin`]'s `counts`).
    pub fn count(&self, i: usize, n: u64) {
        self.counts[i].fetch_add(n, Relaxed);
    }

    /// The figures now.
    pub fn read(&self) -> Reading {
        let st = self.stage.lock().expect("poisoned").clone();
        Reading {
            stage: st.name,
            unit: st.unit,
            items: self.items.load(Relaxed),
            items_total: st.items_total,
            bytes: self.bytes.load(Relaxed),
            bytes_total: st.bytes_total,
            counts: st
                .counts
                .iter()
                .zip(&self.counts)
                .filter(|(name, _)| !name.is_empty())
                .map(|(name, c)| (*name, c.load(Relaxed)))
                .collect(),
            elapsed: st.started.map(|t| t.elapsed()).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_starts_from_zero_with_its_own_names() {
        let m = Meter::default();
        m.begin("check", "packs", Some(4), Some(100), &["damaged"]);
        m.items(2);
        m.bytes(60);
        m.count(0, 1);
        m.unbytes(10);
        let r = m.read();
        assert_eq!(
            (r.stage.as_str(), r.unit, r.items, r.items_total, r.bytes),
            ("check", "packs", 2, Some(4), 50)
        );
        assert_eq!(r.counts, vec![("damaged", 1)]);
        m.begin("gc: delete", "packs", None, None, &[]);
        m.totals(Some(3), None);
        let r = m.read();
        assert_eq!((r.items, r.bytes, r.items_total), (0, 0, Some(3)));
        assert!(r.counts.is_empty());
    }
}
