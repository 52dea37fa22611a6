//! cairn-engine: every behaviour of the cairn backup tool, with no printing and no process exit.
//!
//! Data flows `backup` (scan, FastCDC + BLAKE3 chunks, dedup against the `catalog`) → `format`
//! (zstd frames, packs, trees, the snapshot as commit point) → `repo` (packer, leases) → `store`.
//! `read` is the one way back; `restore`, `export` (the daily archive, with `tar`), `check`,
//! `prune` (forget and gc) and `offsite` build on it, and `nightly` runs a night in one call.
//! docs/FORMAT.md specifies every byte that reaches the store.
//!
//! Layers only point down: a module may use the ones listed before it in docs/DECISIONS.md's
//! layering, never one that uses it back (`scripts/module-cycles.py` checks it file by file).

// In name order (rustfmt sorts them); the layers, bottom to top, are in docs/DECISIONS.md, "Layers".
pub(crate) mod atomic_file;
pub mod backoff;
pub mod backup;
pub mod browse;
pub mod catalog;
pub mod check;
pub mod config;
pub mod error;
pub mod export;
pub mod format;
pub mod id;
pub mod nightly;
pub mod offsite;
pub mod progress;
pub mod prune;
pub mod read;
pub mod repo;
pub mod restore;
pub mod secret;
pub mod setup;
pub mod sparse;
pub mod stats;
pub mod store;
pub mod tar;

pub use error::{Error, ErrorKind, Result};
pub use id::Id;

// The paths callers (the CLI, tests, benches) used before the engine was grouped by concern.
pub use backup::scan;
pub use catalog::{heal, lock, tree_cache};
pub use export::retention;
pub use format::{chunk, codec, pack, snapshot, tree};
pub use nightly::{metrics, preflight, run};
pub use prune::{forget, gc};
pub use read::query;
pub use repo::{condemn, damage, index, lease, packer};
pub use store::fetch;
