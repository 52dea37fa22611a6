//! The open catalog: the [`Catalog`] value around its RocksDB handle, the column families every
//! catalog has, the options they are opened with, and the schema version. The other files of
//! `catalog/` add methods to it, one concern each; only this one knows how RocksDB is tuned.

use std::collections::HashMap;
use std::path::PathBuf;

use rocksdb::{BlockBasedOptions, ColumnFamilyDescriptor, DB, Options};

use crate::catalog::records::DAMAGED;
use crate::catalog::tree_cache::TreeCache;
use crate::error::Result;
use crate::id::Id;
use crate::repo::index::BlobLocation;

/// Bump when the catalog's encoding changes; an old catalog is then rebuilt, not misread.
pub const SCHEMA_VERSION: &str = "1";
pub(super) const CFS: [&str; 7] = [
    "meta",
    "chunks",
    "trees",
    "packs",
    "pack_index",
    "files",
    "snapshots",
];

/// Where the blobs of condemned packs still in the store are, by kind code and id.
pub(super) type CondemnedMap = HashMap<(u8, Id), BlobLocation>;

/// The open catalog.
pub struct Catalog {
    pub(super) db: DB,
    pub(super) path: PathBuf,
    /// Whether any damage marker exists: while none does, deduplication needs no second lookup.
    pub(super) any_damaged: std::sync::atomic::AtomicBool,
    /// Tree packs kept on the state volume, when the repository is read by requests.
    pub(super) tree_cache: Option<TreeCache>,
    /// The blobs of condemned packs still in the store, read from `meta` at the first lookup
    /// that misses (`None`: not read yet, or changed by a sync since).
    pub(super) condemned: std::sync::Mutex<Option<std::sync::Arc<CondemnedMap>>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("path", &self.path).finish()
    }
}

pub(super) fn db_options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    o.set_max_open_files(256);
    o.set_keep_log_file_num(3);
    o.increase_parallelism(2);
    // Every command opens the catalog; reading each table file's statistics at open (RocksDB's
    // default) made that a quarter of a notes share's next-day export. They only tune
    // compaction, which computes them when it runs.
    o.set_skip_stats_update_on_db_open(true);
    // Memtables of all column families together: a first backup of 1,000,000 files writes
    // ~150 MB of records, which RocksDB's default of 64 MiB per family (and as many waiting
    // to be flushed) held in memory; flushed at this size they cost a few more table files.
    o.set_db_write_buffer_size(48 << 20);
    o
}

fn cf_options() -> Options {
    let mut o = Options::default();
    let mut b = BlockBasedOptions::default();
    // Most lookups during a backup are for chunks that are new: a bloom filter answers those
    // without touching a data block.
    b.set_bloom_filter(10.0, false);
    o.set_block_based_table_factory(&b);
    o
}

/// Column family descriptors for `names`, all with the same options.
pub(super) fn descriptors(names: &[String]) -> impl Iterator<Item = ColumnFamilyDescriptor> + '_ {
    names
        .iter()
        .map(|n| ColumnFamilyDescriptor::new(n.as_str(), cf_options()))
}

impl Catalog {
    /// The catalog over an opened database: learns whether any damage marker exists.
    pub(super) fn over(db: DB, path: PathBuf) -> Result<Catalog> {
        let cat = Catalog {
            db,
            path,
            any_damaged: Default::default(),
            tree_cache: None,
            condemned: Default::default(),
        };
        let any = cat
            .db
            .prefix_iterator_cf(cat.cf("meta"), DAMAGED)
            .next()
            .transpose()?
            .is_some_and(|(k, _)| k.starts_with(DAMAGED));
        cat.any_damaged
            .store(any, std::sync::atomic::Ordering::Relaxed);
        Ok(cat)
    }

    pub(super) fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created on open")
    }

    pub(super) fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf("meta"), key)?)
    }

    /// The tree-pack cache, when the repository's packs are read by requests.
    pub fn tree_cache(&self) -> Option<&TreeCache> {
        self.tree_cache.as_ref()
    }

    /// Flushes memtables so that the catalog survives a crash without replaying its log.
    pub fn flush(&self) -> Result<()> {
        for cf in CFS {
            self.db.flush_cf(self.cf(cf))?;
        }
        Ok(())
    }
}
