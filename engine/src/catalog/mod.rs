//! The catalog: a RocksDB cache of what the repository holds, on the state volume.
//!
//! Column families: `meta` (schema version, repository id), `chunks` and `trees` (blob id →
//! pack, offset, length, raw length), `packs` (pack id → size, blob count), `files` (source path →
//! size, times, inode, chunk ids: the files cache that makes unchanged files cost a stat), and
//! `snapshots` (id → snapshot JSON), `pack_index` (pack id → its index entries: every copy of
//! every blob, which `chunks` and `trees` keep one of, so that a forgotten pack's blobs are
//! found in other packs and gc weighs each pack without a request). The store is the source of truth: [`Catalog::open_for`]
//! reconciles the catalog with the store's listing before every backup, rebuilding it from the
//! pack trailers when it is missing or belongs to another repository, and forgetting packs that
//! vanished, so a chunk is only ever deduplicated against a pack that is known to exist.
//!
//! Condemned packs (`condemned/` markers) are forgotten the same way, so that no backup
//! deduplicates against a pack a gc may delete; but while one is still in the store, its index
//! is kept aside (`meta`, `condemned-index/<pack>`) and [`Catalog::locate`] finds a blob there
//! when no other pack has it. A snapshot that needs a condemned pack (a marker planted by a key
//! that may write, a backup that ran beside the gc that condemned it) therefore still reads,
//! and the gc that would delete the pack takes it back first.
//!
//! Where things are:
//! - `db.rs`: the [`Catalog`] value, its RocksDB options and column families, the schema version.
//! - `open.rs`: opening it, read-only or matched to a repository, and rebuilding it.
//! - `sync.rs`: matching it to the store's listing ([`SyncReport`]).
//! - `records.rs`: the bytes of every record and key ([`FileRecord`] among them).
//! - `packs.rs`: packs and blob locations, and forgetting packs.
//! - `condemned.rs`: the kept index of condemned packs still in the store.
//! - `damage.rs`: damage markers.
//! - `files.rs`: the files cache.
//! - `snapshots.rs`: snapshot records and picking one by selector or instant.
//! - `tree_cache.rs`: tree packs cached on the state volume.
//! - `heal.rs`: what is done on finding a damaged blob.
//! - `lock.rs`: the state-directory lock.

pub mod heal;
pub mod lock;
pub mod tree_cache;

mod condemned;
mod damage;
mod db;
mod files;
mod open;
mod packs;
mod records;
mod snapshots;
mod sync;

pub use db::{Catalog, SCHEMA_VERSION};
pub use records::FileRecord;
pub use sync::SyncReport;

#[cfg(test)]
mod tests;
