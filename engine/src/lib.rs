//! cairn-engine: every behaviour of the cairn backup tool, with no printing and no process exit.
//!
//! Data flows `scan` → `chunk` (FastCDC + BLAKE3) → dedup against the `catalog` → `codec`
//! (zstd frames) → `pack` → `store`, with `tree` blobs per directory and a `snapshot` object as
//! the commit point. docs/FORMAT.md specifies every byte that reaches the store.

pub mod backup;
pub mod catalog;
pub mod check;
pub mod chunk;
pub mod codec;
pub mod condemn;
pub mod config;
pub mod damage;
pub mod error;
pub mod export;
pub mod fetch;
pub mod forget;
pub mod gc;
pub mod heal;
pub mod id;
pub mod index;
pub mod lease;
pub mod lock;
pub mod metrics;
pub mod offsite;
pub mod pack;
pub mod packer;
pub mod preflight;
pub mod query;
pub mod read;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod run;
pub mod scan;
pub mod secret;
pub mod snapshot;
pub mod sparse;
pub mod store;
pub mod tar_format;
pub mod tar_guard;
pub mod tree;
pub mod tree_cache;

pub use error::{Error, ErrorKind, Result};
pub use id::Id;
