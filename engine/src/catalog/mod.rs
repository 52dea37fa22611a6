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

pub mod heal;
pub mod lock;
pub mod tree_cache;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rocksdb::{BlockBasedOptions, ColumnFamilyDescriptor, DB, IteratorMode, Options, WriteBatch};

use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::{BlobKind, PackEntry};
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::index::BlobLocation;

/// Bump when the catalog's encoding changes; an old catalog is then rebuilt, not misread.
pub const SCHEMA_VERSION: &str = "1";
const CFS: [&str; 7] = [
    "meta",
    "chunks",
    "trees",
    "packs",
    "pack_index",
    "files",
    "snapshots",
];
/// One pack index entry in the `pack_index` column family: kind, id, offset, length, raw length.
const ENTRY_LEN: usize = 45;
/// Prefix of damage markers in `meta`. Kept there rather than in a column family of their own:
/// a catalog with a column family an older cairn does not know cannot be opened by it at all.
const DAMAGED: &[u8] = b"damaged/";
/// Prefix in `meta` of the index entries of condemned packs still in the store.
const CONDEMNED_INDEX: &[u8] = b"condemned-index/";

/// Where the blobs of condemned packs still in the store are, by kind code and id.
type CondemnedMap = HashMap<(u8, Id), BlobLocation>;

/// What the files cache remembers about a file that was backed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Size when read.
    pub size: u64,
    /// mtime seconds.
    pub mtime: i64,
    /// mtime nanoseconds.
    pub mtime_ns: u32,
    /// ctime seconds.
    pub ctime: i64,
    /// ctime nanoseconds.
    pub ctime_ns: u32,
    /// Inode number.
    pub ino: u64,
    /// Content.
    pub chunks: Vec<Id>,
}

impl FileRecord {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(40 + 32 * self.chunks.len());
        v.extend_from_slice(&self.size.to_le_bytes());
        v.extend_from_slice(&self.mtime.to_le_bytes());
        v.extend_from_slice(&self.mtime_ns.to_le_bytes());
        v.extend_from_slice(&self.ctime.to_le_bytes());
        v.extend_from_slice(&self.ctime_ns.to_le_bytes());
        v.extend_from_slice(&self.ino.to_le_bytes());
        for c in &self.chunks {
            v.extend_from_slice(c.as_bytes());
        }
        v
    }

    /// Parses a files cache record; `None` if its length is not that of a record. Public for
    /// the fuzz tests, which feed it arbitrary bytes.
    #[doc(hidden)]
    pub fn decode(v: &[u8]) -> Option<FileRecord> {
        if v.len() < 40 || !(v.len() - 40).is_multiple_of(32) {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(v[i..i + 8].try_into().expect("8"));
        let u32_at = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().expect("4"));
        Some(FileRecord {
            size: u64_at(0),
            mtime: u64_at(8) as i64,
            mtime_ns: u32_at(16),
            ctime: u64_at(20) as i64,
            ctime_ns: u32_at(28),
            ino: u64_at(32),
            chunks: v[40..]
                .chunks_exact(32)
                .map(|c| Id::from_slice(c).expect("32 bytes"))
                .collect(),
        })
    }
}

/// Column family descriptors for `names`, all with the same options.
fn descriptors(names: &[String]) -> impl Iterator<Item = ColumnFamilyDescriptor> + '_ {
    names
        .iter()
        .map(|n| ColumnFamilyDescriptor::new(n.as_str(), cf_options()))
}

/// A snapshot as the catalog's `snapshots` column family holds it.
fn snapshot_record(v: &[u8]) -> Result<Snapshot> {
    serde_json::from_slice(v).map_err(|e| {
        Error::new(
            ErrorKind::Catalog,
            "catalog snapshot record is not valid JSON",
        )
        .with_source(e)
    })
}

/// Key in `meta` of a condemned pack's kept index entries.
fn condemned_index_key(pack: &Id) -> Vec<u8> {
    let mut k = CONDEMNED_INDEX.to_vec();
    k.extend_from_slice(pack.as_bytes());
    k
}

/// Key of a damage marker in `meta`: `damaged/`, kind code, blob id, pack id.
fn damaged_key(kind: BlobKind, id: &Id, pack: &Id) -> Vec<u8> {
    let mut k = Vec::with_capacity(DAMAGED.len() + 65);
    k.extend_from_slice(DAMAGED);
    k.push(kind.code());
    k.extend_from_slice(id.as_bytes());
    k.extend_from_slice(pack.as_bytes());
    k
}

/// The column family of blobs of `kind`.
fn cf_of(kind: BlobKind) -> &'static str {
    match kind {
        BlobKind::Data => "chunks",
        BlobKind::Tree => "trees",
    }
}

fn encode_location(loc: &BlobLocation) -> [u8; 44] {
    let mut v = [0u8; 44];
    v[..32].copy_from_slice(loc.pack.as_bytes());
    v[32..36].copy_from_slice(&loc.offset.to_le_bytes());
    v[36..40].copy_from_slice(&loc.length.to_le_bytes());
    v[40..44].copy_from_slice(&loc.raw_length.to_le_bytes());
    v
}

fn encode_entries(entries: &[PackEntry]) -> Vec<u8> {
    let mut v = Vec::with_capacity(ENTRY_LEN * entries.len());
    for e in entries {
        v.push(e.kind.code());
        v.extend_from_slice(e.id.as_bytes());
        v.extend_from_slice(&e.offset.to_le_bytes());
        v.extend_from_slice(&e.length.to_le_bytes());
        v.extend_from_slice(&e.raw_length.to_le_bytes());
    }
    v
}

fn decode_entries(v: &[u8]) -> Result<Vec<PackEntry>> {
    if !v.len().is_multiple_of(ENTRY_LEN) {
        return Err(Error::new(
            ErrorKind::Catalog,
            "catalog pack index record has the wrong length",
        ));
    }
    v.chunks_exact(ENTRY_LEN)
        .map(|e| {
            let u = |i: usize| u32::from_le_bytes(e[i..i + 4].try_into().expect("4"));
            Ok(PackEntry {
                kind: BlobKind::from_code(e[0]).map_err(|_| {
                    Error::new(
                        ErrorKind::Catalog,
                        "catalog pack index record has an unknown kind",
                    )
                })?,
                id: Id::from_slice(&e[1..33])?,
                offset: u(33),
                length: u(37),
                raw_length: u(41),
            })
        })
        .collect()
}

fn decode_location(v: &[u8]) -> Result<BlobLocation> {
    if v.len() != 44 {
        return Err(Error::new(
            ErrorKind::Catalog,
            "catalog blob record has the wrong length",
        ));
    }
    let u = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().expect("4"));
    Ok(BlobLocation {
        pack: Id::from_slice(&v[..32])?,
        offset: u(32),
        length: u(36),
        raw_length: u(40),
    })
}

/// What [`Catalog::open_for`] had to do to match the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The catalog was missing, of another schema or of another repository, and was rebuilt.
    pub rebuilt: bool,
    /// Packs found in the store and indexed from their trailers.
    pub packs_added: usize,
    /// Packs the catalog knew that are gone from the store; their blobs were forgotten.
    pub packs_removed: Vec<String>,
    /// Packs a garbage collection condemned or deleted (`condemned/` markers); their blobs were
    /// forgotten, and no backup deduplicates against them.
    pub packs_collected: usize,
    /// Packs whose trailer could not be read (left out; `check` reports them).
    pub packs_unreadable: Vec<String>,
    /// Snapshots loaded from the store.
    pub snapshots_added: usize,
    /// Snapshot objects that do not decode or do not match their id (left out; `check`
    /// reports them and `check --repair` moves them aside).
    pub snapshots_unreadable: Vec<String>,
    /// Blobs the damage register names that the catalog forgot in this sync.
    pub blobs_damaged: usize,
}

/// The open catalog.
pub struct Catalog {
    db: DB,
    path: PathBuf,
    /// Whether any damage marker exists: while none does, deduplication needs no second lookup.
    any_damaged: std::sync::atomic::AtomicBool,
    /// Tree packs kept on the state volume, when the repository is read by requests.
    tree_cache: Option<crate::catalog::tree_cache::TreeCache>,
    /// The blobs of condemned packs still in the store, read from `meta` at the first lookup
    /// that misses (`None`: not read yet, or changed by a sync since).
    condemned: std::sync::Mutex<Option<std::sync::Arc<CondemnedMap>>>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("path", &self.path).finish()
    }
}

fn db_options() -> Options {
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

impl Catalog {
    /// Opens (creating if needed) the catalog in `<state_dir>/catalog`, without syncing it.
    pub fn open(state_dir: &Path) -> Result<Catalog> {
        let path = state_dir.join("catalog");
        std::fs::create_dir_all(state_dir).map_err(|e| {
            Error::io(
                format!("creating state directory {}", state_dir.display()),
                e,
            )
        })?;
        // Column families a newer cairn added are opened too (RocksDB refuses to open a database
        // without all of them), so that going back to an older binary keeps working.
        let mut names: Vec<String> = CFS.iter().map(|n| n.to_string()).collect();
        if let Ok(existing) = DB::list_cf(&db_options(), &path) {
            for n in existing {
                if n != "default" && !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        let db = DB::open_cf_descriptors(&db_options(), &path, descriptors(&names))
            .map_err(|e| Error::from(e).context(format!("opening catalog {}", path.display())))?;
        Catalog::over(db, path)
    }

    /// The catalog over an opened database: learns whether any damage marker exists.
    fn over(db: DB, path: PathBuf) -> Result<Catalog> {
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

    /// Opens an existing catalog of `repo` for reading only, without the state lock and without
    /// matching it to the store: what `ls`, `diff`, `find` and `snapshots` need, so that they run
    /// beside a nightly job that holds the catalog (RocksDB lets readers open a database that a
    /// writer holds) and cost no listing of the store. `None` when there is no catalog, or one of
    /// another schema or repository: the caller then opens it the usual way. What it shows is
    /// what the last backup or run on this state volume knew.
    pub fn open_reader(state_dir: &Path, repo: &Repository) -> Result<Option<Catalog>> {
        let path = state_dir.join("catalog");
        if !path.join("CURRENT").exists() {
            return Ok(None);
        }
        let names = match DB::list_cf(&db_options(), &path) {
            Ok(n) => n,
            Err(_) => return Ok(None),
        };
        if CFS.iter().any(|c| !names.iter().any(|n| n == c)) {
            return Ok(None);
        }
        let db =
            DB::open_cf_descriptors_read_only(&db_options(), &path, descriptors(&names), false)
                .map_err(|e| {
                    Error::from(e).context(format!("opening catalog {}", path.display()))
                })?;
        let mut cat = Catalog::over(db, path)?;
        let fits = cat.meta("schema_version")?.as_deref() == Some(SCHEMA_VERSION.as_bytes())
            && cat.meta("repo_id")?.as_deref() == Some(repo.config().id.as_bytes());
        cat.tree_cache =
            (!repo.reads_locally()).then(|| crate::catalog::tree_cache::TreeCache::at(state_dir));
        Ok(fits.then_some(cat))
    }

    /// Opens the catalog and makes it match `repo`: rebuilt from the store if it is new, of an
    /// older schema, or of another repository; otherwise brought up to date with the store's
    /// packs and snapshots.
    pub fn open_for(state_dir: &Path, repo: &Repository) -> Result<(Catalog, SyncReport)> {
        let mut cat = Catalog::open(state_dir)?;
        let fits = cat.meta("schema_version")?.as_deref() == Some(SCHEMA_VERSION.as_bytes())
            && cat.meta("repo_id")?.as_deref() == Some(repo.config().id.as_bytes());
        let mut report = SyncReport::default();
        if !fits {
            tracing::info!(path = %cat.path.display(), "catalog is new or belongs to another repository: rebuilding it from the store");
            cat = cat.wipe()?;
            report.rebuilt = true;
        }
        cat.sync(repo, &mut report)?;
        tracing::debug!(
            rebuilt = report.rebuilt,
            packs_added = report.packs_added,
            packs_removed = report.packs_removed.len(),
            packs_unreadable = report.packs_unreadable.len(),
            snapshots_added = report.snapshots_added,
            blobs_damaged = report.blobs_damaged,
            "catalog matched to the store"
        );
        if !repo.reads_locally() {
            let cache = crate::catalog::tree_cache::TreeCache::at(state_dir);
            let packs = cat.pack_sizes()?;
            // The cache only saves requests: a folder that cannot be cleaned stops nothing.
            match cache.retain(|id| packs.contains_key(id)) {
                Ok(0) => {}
                Ok(removed) => {
                    tracing::debug!(removed, "cached tree packs the store no longer has removed")
                }
                Err(e) => tracing::warn!(error = %e, "could not clean the tree-pack cache"),
            }
            cat.tree_cache = Some(cache);
        }
        if !fits {
            // Written last: a rebuild that dies midway is redone next time.
            let mut b = WriteBatch::default();
            b.put_cf(cat.cf("meta"), "schema_version", SCHEMA_VERSION);
            b.put_cf(cat.cf("meta"), "repo_id", &repo.config().id);
            cat.db.write(b)?;
        }
        Ok((cat, report))
    }

    /// Matches an open catalog to the store again: what a long command (gc) does after taking
    /// its lease and again before deleting, to see what others committed meanwhile.
    pub fn resync(&self, repo: &Repository) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        self.sync(repo, &mut report)?;
        Ok(report)
    }

    /// Throws everything away and rebuilds from the store (`cairn catalog rebuild`).
    pub fn rebuild(state_dir: &Path, repo: &Repository) -> Result<(Catalog, SyncReport)> {
        Catalog::open(state_dir)?.wipe()?;
        Catalog::open_for(state_dir, repo)
    }

    fn wipe(self) -> Result<Catalog> {
        let path = self.path.clone();
        drop(self.db);
        DB::destroy(&db_options(), &path)?;
        Catalog::open(path.parent().expect("catalog lives in the state dir"))
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created on open")
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf(self.cf("meta"), key)?)
    }

    fn sync(&self, repo: &Repository, report: &mut SyncReport) -> Result<()> {
        // A condemned pack is treated as gone: gc deletes it once its grace has passed, and a
        // blob deduplicated against it now could be lost then.
        let condemned = crate::repo::condemn::list(repo.store().as_ref())?;
        let mut in_store: HashMap<Id, u64> = repo.list_packs()?.into_iter().collect();
        let known = self.pack_sizes()?;
        // Before the known ones are forgotten below: their entries are kept from `pack_index`.
        self.keep_condemned_index(
            repo,
            in_store
                .iter()
                .filter(|(id, _)| condemned.contains_key(id))
                .map(|(id, size)| (*id, *size))
                .collect(),
        )?;
        in_store.retain(|id, _| !condemned.contains_key(id));
        let collected: HashSet<Id> = known
            .keys()
            .filter(|id| condemned.contains_key(id))
            .copied()
            .collect();
        report.packs_collected = collected.len();
        let gone: HashSet<Id> = known
            .keys()
            .filter(|id| !in_store.contains_key(id) && !collected.contains(id))
            .copied()
            .collect();
        // A pack whose size changed since it was indexed (truncated, overwritten) is no longer
        // the pack whose blobs the catalog lists: forgotten like a lost one, and indexed again
        // below only if its trailer still reads.
        let resized: HashSet<Id> = known
            .iter()
            .filter(|(id, size)| in_store.get(id).is_some_and(|s| s != *size))
            .map(|(id, _)| *id)
            .collect();
        if !gone.is_empty() {
            tracing::warn!(
                count = gone.len(),
                "packs known to the catalog are gone from the store; forgetting their blobs"
            );
            report.packs_removed = gone.iter().map(Id::to_hex).collect();
            report.packs_removed.sort();
        }
        if !resized.is_empty() {
            tracing::warn!(
                count = resized.len(),
                "packs in the store changed size since they were indexed; forgetting their blobs"
            );
        }
        let forget: HashSet<Id> = gone
            .iter()
            .chain(&resized)
            .chain(&collected)
            .copied()
            .collect();
        // Catalogs written before `pack_index` existed learn their packs' entries once, so that
        // a forgotten pack's blobs can be looked for in the others below.
        let unlisted: Vec<(Id, u64)> = known
            .iter()
            .filter(|(id, _)| !forget.contains(id) && !self.has_pack_index(id).unwrap_or(false))
            .map(|(id, size)| (*id, *size))
            .collect();
        if !unlisted.is_empty() {
            tracing::info!(
                packs = unlisted.len(),
                "recording the index entries of known packs (once, for a catalog of an older cairn)"
            );
            let indexed: Vec<(Id, Result<Vec<PackEntry>>)> = unlisted
                .par_iter()
                .map(|(id, size)| (*id, repo.read_pack_index(id, *size)))
                .collect();
            for (id, entries) in indexed {
                match entries {
                    Ok(entries) => self.put_pack_index(&id, &entries)?,
                    Err(e) => {
                        tracing::warn!(pack = %id, error = %e, "pack index unreadable while recording it")
                    }
                }
            }
        }
        // A resized pack is forgotten before it is indexed again; gone and collected packs
        // after the new ones are indexed, so that a blob a repack moved finds its new copy and
        // no files record is dropped for it.
        if !resized.is_empty() {
            self.forget_packs(&resized)?;
        }
        // Damage found by another machine, or before this catalog was rebuilt: marked before
        // packs are indexed, so that a damaged copy never replaces a good one.
        for (pack, note) in crate::repo::damage::load_all(repo)? {
            report.blobs_damaged +=
                self.mark_damaged(&pack, note.blobs.iter().map(|b| (b.kind, b.id)))?;
        }
        let new: Vec<(Id, u64)> = in_store
            .into_iter()
            .filter(|(id, _)| !known.contains_key(id) || resized.contains(id))
            .collect();
        let indexed: Vec<(Id, u64, Result<Vec<PackEntry>>)> = new
            .par_iter()
            .map(|(id, size)| (*id, *size, repo.read_pack_index(id, *size)))
            .collect();
        for (id, size, entries) in indexed {
            match entries {
                Ok(entries) => {
                    self.add_pack(&id, size, &entries)?;
                    report.packs_added += 1;
                }
                Err(e) if e.kind() == ErrorKind::Corrupt || e.kind() == ErrorKind::NotFound => {
                    tracing::warn!(pack = %id, error = %e, "pack index unreadable; its blobs are not indexed");
                    report.packs_unreadable.push(id.to_hex());
                }
                Err(e) => return Err(e),
            }
        }
        let forget: HashSet<Id> = forget.difference(&resized).copied().collect();
        if !forget.is_empty() {
            self.forget_packs(&forget)?;
        }
        let stored: HashSet<Id> = repo.list_snapshot_ids()?.into_iter().collect();
        let cached: HashSet<Id> = self.snapshot_ids()?.into_iter().collect();
        let mut batch = WriteBatch::default();
        for id in cached.difference(&stored) {
            batch.delete_cf(self.cf("snapshots"), id.as_bytes());
        }
        for id in stored.difference(&cached) {
            let snap = match repo.load_snapshot(id) {
                Ok(snap) => snap,
                // One garbage object must not stop every night: left out and reported.
                Err(e) if e.kind() == ErrorKind::Corrupt => {
                    tracing::warn!(snapshot = %id, error = %e, "skipping a snapshot object that cannot be read (cairn check reports it)");
                    report.snapshots_unreadable.push(id.to_hex());
                    continue;
                }
                // Written by a newer cairn: intact, just not for this one to read.
                Err(e) if e.kind() == ErrorKind::Unsupported => {
                    tracing::warn!(snapshot = %id, error = %e, "skipping a snapshot this cairn cannot read");
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            batch.put_cf(
                self.cf("snapshots"),
                id.as_bytes(),
                serde_json::to_vec(&snap).expect("serializes"),
            );
            report.snapshots_added += 1;
        }
        report.snapshots_unreadable.sort();
        self.db.write(batch)?;
        Ok(())
    }

    /// Marks blobs as damaged in `pack`: their copies there are never used for deduplication
    /// again (the next backup stores them anew, which makes it their location), while readers
    /// keep the location as long as there is no other copy. When a newly marked blob's location
    /// is in `pack`, every files cache record is dropped too, so that the next backup reads the
    /// source again; a marker already known changes nothing (a blob the source no longer has
    /// must not cost a full read every night). Returns how many locations were newly marked.
    pub fn mark_damaged(
        &self,
        pack: &Id,
        blobs: impl IntoIterator<Item = (BlobKind, Id)>,
    ) -> Result<usize> {
        let mut batch = WriteBatch::default();
        let mut n = 0;
        for (kind, id) in blobs {
            if self.is_damaged_in(kind, &id, pack)? {
                continue;
            }
            batch.put_cf(self.cf("meta"), damaged_key(kind, &id, pack), []);
            if self
                .locate_known(kind, &id)?
                .is_some_and(|l| l.pack == *pack)
            {
                n += 1;
            }
        }
        // Cache first: a crash in between must not leave markers whose drop never happened.
        if n > 0 {
            self.drop_files_cache()?;
        }
        self.any_damaged
            .fetch_or(!batch.is_empty(), std::sync::atomic::Ordering::Relaxed);
        self.db.write(batch)?;
        Ok(n)
    }

    /// Takes back [`Catalog::mark_damaged`] for blobs of `pack` found intact again (a pack
    /// put back from another copy).
    pub fn unmark_damaged(
        &self,
        pack: &Id,
        blobs: impl IntoIterator<Item = (BlobKind, Id)>,
    ) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (kind, id) in blobs {
            batch.delete_cf(self.cf("meta"), damaged_key(kind, &id, pack));
        }
        Ok(self.db.write(batch)?)
    }

    fn is_damaged_in(&self, kind: BlobKind, id: &Id, pack: &Id) -> Result<bool> {
        if !self.any_damaged.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(false);
        }
        Ok(self
            .db
            .get_pinned_cf(self.cf("meta"), damaged_key(kind, id, pack))?
            .is_some())
    }

    /// Drops every files cache record, in one range deletion (no batch as large as the cache).
    fn drop_files_cache(&self) -> Result<()> {
        // Keys are paths of at most MAX_PATH_LEN bytes, all below this bound.
        let end = vec![0xffu8; crate::format::tree::MAX_PATH_LEN + 2];
        Ok(self
            .db
            .delete_range_cf(self.cf("files"), &b""[..], &end[..])?)
    }

    /// Forgets `gone` packs: their blobs take a location in another known pack that has a copy
    /// (from `pack_index`, without a request), and the files records that name a chunk left
    /// without any copy are dropped, so that a record never outlives its chunks. A gc deletes
    /// only blobs that no snapshot reaches, so after one nothing but stale records goes.
    pub(crate) fn forget_packs(&self, gone: &HashSet<Id>) -> Result<()> {
        let mut batch = WriteBatch::default();
        let mut homeless: HashSet<(u8, Id)> = HashSet::new();
        for (kind, cf) in [(BlobKind::Data, "chunks"), (BlobKind::Tree, "trees")] {
            for item in self.db.iterator_cf(self.cf(cf), IteratorMode::Start) {
                let (k, v) = item?;
                if gone.contains(&decode_location(&v)?.pack) {
                    batch.delete_cf(self.cf(cf), &k);
                    homeless.insert((kind.code(), Id::from_slice(&k)?));
                }
            }
        }
        // Other copies, in packs that stay: the first one found becomes the location (damaged
        // copies only when there is no other).
        let mut found: HashMap<(u8, Id), (Id, PackEntry, bool)> = HashMap::new();
        if !homeless.is_empty() {
            // Only packs still known: an older cairn forgets packs but not their index rows.
            let known = self.pack_sizes()?;
            for item in self
                .db
                .iterator_cf(self.cf("pack_index"), IteratorMode::Start)
            {
                let (k, v) = item?;
                let pack = Id::from_slice(&k)?;
                if gone.contains(&pack) || !known.contains_key(&pack) {
                    continue;
                }
                for e in decode_entries(&v)? {
                    let key = (e.kind.code(), e.id);
                    if !homeless.contains(&key) {
                        continue;
                    }
                    let damaged = self.is_damaged_in(e.kind, &e.id, &pack)?;
                    match found.get(&key) {
                        Some((_, _, false)) => {}
                        Some((_, _, true)) if damaged => {}
                        _ => {
                            found.insert(key, (pack, e, damaged));
                        }
                    }
                }
            }
        }
        let mut lost_chunks: HashSet<Id> = HashSet::new();
        for key in &homeless {
            // A chunk left with only a damaged copy counts as lost for the files records: the
            // next backup must read its file and store it again.
            let damaged_only = match found.get(key) {
                Some((pack, e, damaged)) => {
                    self.put_location(&mut batch, pack, e);
                    *damaged
                }
                None => true,
            };
            if damaged_only && key.0 == BlobKind::Data.code() {
                lost_chunks.insert(key.1);
            }
        }
        for id in gone {
            batch.delete_cf(self.cf("packs"), id.as_bytes());
            batch.delete_cf(self.cf("pack_index"), id.as_bytes());
        }
        for item in self.db.prefix_iterator_cf(self.cf("meta"), DAMAGED) {
            let (k, _) = item?;
            if !k.starts_with(DAMAGED) {
                break;
            }
            if k.len() == DAMAGED.len() + 65 && gone.contains(&Id::from_slice(&k[k.len() - 32..])?)
            {
                batch.delete_cf(self.cf("meta"), k);
            }
        }
        // Records first: a crash in between leaves at worst records dropped for nothing.
        self.drop_files_naming(&lost_chunks)?;
        self.db.write(batch)?;
        Ok(())
    }

    /// Drops the files records that name any of `chunks`.
    fn drop_files_naming(&self, chunks: &HashSet<Id>) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for item in self.db.iterator_cf(self.cf("files"), IteratorMode::Start) {
            let (k, v) = item?;
            let stale = match FileRecord::decode(&v) {
                Some(r) => r.chunks.iter().any(|c| chunks.contains(c)),
                None => true,
            };
            if stale {
                batch.delete_cf(self.cf("files"), k);
            }
        }
        Ok(self.db.write(batch)?)
    }

    fn has_pack_index(&self, pack: &Id) -> Result<bool> {
        Ok(self
            .db
            .get_pinned_cf(self.cf("pack_index"), pack.as_bytes())?
            .is_some())
    }

    fn put_pack_index(&self, pack: &Id, entries: &[PackEntry]) -> Result<()> {
        Ok(self.db.put_cf(
            self.cf("pack_index"),
            pack.as_bytes(),
            encode_entries(entries),
        )?)
    }

    /// The index entries of one known pack (every blob in it, damaged copies included), without
    /// a request; `None` for an unknown pack or one of more than `max` entries (counted before
    /// they are decoded).
    pub fn pack_entries(&self, pack: &Id, max: usize) -> Result<Option<Vec<PackEntry>>> {
        match self
            .db
            .get_pinned_cf(self.cf("pack_index"), pack.as_bytes())?
        {
            Some(v) if v.len() / ENTRY_LEN <= max => Ok(Some(decode_entries(&v)?)),
            _ => Ok(None),
        }
    }

    /// Every known pack with its size and index entries (all copies of all blobs in it).
    pub fn pack_indexes(&self) -> Result<Vec<(Id, u64, Vec<PackEntry>)>> {
        let sizes = self.pack_sizes()?;
        let mut out = Vec::with_capacity(sizes.len());
        for item in self
            .db
            .iterator_cf(self.cf("pack_index"), IteratorMode::Start)
        {
            let (k, v) = item?;
            let id = Id::from_slice(&k)?;
            if let Some(size) = sizes.get(&id) {
                out.push((id, *size, decode_entries(&v)?));
            }
        }
        Ok(out)
    }

    /// Adds to `batch` the location of the blob `e` in `pack`.
    fn put_location(&self, batch: &mut WriteBatch, pack: &Id, e: &PackEntry) {
        let loc = BlobLocation::of(*pack, e);
        batch.put_cf(
            self.cf(cf_of(e.kind)),
            e.id.as_bytes(),
            encode_location(&loc),
        );
    }

    /// Records a durable pack and every blob in it, atomically.
    ///
    /// A blob marked damaged in this pack is indexed only if it has no other location: a
    /// damaged copy never replaces a good one, while a good copy always replaces a damaged one.
    pub fn add_pack(&self, pack: &Id, size: u64, entries: &[PackEntry]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for e in entries {
            if self.is_damaged_in(e.kind, &e.id, pack)?
                && self.locate_known(e.kind, &e.id)?.is_some()
            {
                continue;
            }
            self.put_location(&mut batch, pack, e);
        }
        let mut v = size.to_le_bytes().to_vec();
        v.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        batch.put_cf(self.cf("packs"), pack.as_bytes(), v);
        batch.put_cf(
            self.cf("pack_index"),
            pack.as_bytes(),
            encode_entries(entries),
        );
        Ok(self.db.write(batch)?)
    }

    /// Where a blob of `kind` lives, if it is in a known pack, or else in a condemned pack that
    /// is still in the store (for readers; deduplication asks [`Catalog::contains`], which
    /// never answers with a condemned pack).
    pub fn locate(&self, kind: BlobKind, id: &Id) -> Result<Option<BlobLocation>> {
        match self.locate_known(kind, id)? {
            Some(loc) => Ok(Some(loc)),
            None => self.locate_condemned(kind, id),
        }
    }

    /// Where a blob of `kind` lives, if it is in a known pack.
    fn locate_known(&self, kind: BlobKind, id: &Id) -> Result<Option<BlobLocation>> {
        match self.db.get_pinned_cf(self.cf(cf_of(kind)), id.as_bytes())? {
            Some(v) => Ok(Some(decode_location(&v)?)),
            None => Ok(None),
        }
    }

    /// Where a blob is in a condemned pack still in the store, if any is.
    fn locate_condemned(&self, kind: BlobKind, id: &Id) -> Result<Option<BlobLocation>> {
        let map = {
            let mut cached = self.condemned.lock().expect("poisoned");
            match &*cached {
                Some(m) => m.clone(),
                None => {
                    let mut m = CondemnedMap::new();
                    for item in self.db.prefix_iterator_cf(self.cf("meta"), CONDEMNED_INDEX) {
                        let (k, v) = item?;
                        if !k.starts_with(CONDEMNED_INDEX) {
                            break;
                        }
                        let pack = Id::from_slice(&k[CONDEMNED_INDEX.len()..])?;
                        for e in decode_entries(&v)? {
                            m.entry((e.kind.code(), e.id))
                                .or_insert_with(|| BlobLocation::of(pack, &e));
                        }
                    }
                    let m = std::sync::Arc::new(m);
                    *cached = Some(m.clone());
                    m
                }
            }
        };
        Ok(map.get(&(kind.code(), *id)).copied())
    }

    /// Forgets packs a gc just condemned, keeping their index entries aside for readers (as the
    /// next sync would, without reading them from the store again).
    pub(crate) fn forget_condemned(&self, packs: &HashSet<Id>) -> Result<()> {
        let mut batch = WriteBatch::default();
        for pack in packs {
            if let Some(v) = self
                .db
                .get_pinned_cf(self.cf("pack_index"), pack.as_bytes())?
            {
                batch.put_cf(self.cf("meta"), condemned_index_key(pack), &*v);
            }
        }
        self.db.write(batch)?;
        *self.condemned.lock().expect("poisoned") = None;
        self.forget_packs(packs)
    }

    /// Keeps aside the index entries of the condemned packs in the store (`present`, with their
    /// sizes) and drops those of packs no longer condemned or gone. A pack the catalog knows
    /// gives its entries from `pack_index`; another one's index is read once (a ranged read).
    fn keep_condemned_index(&self, repo: &Repository, present: HashMap<Id, u64>) -> Result<()> {
        let mut batch = WriteBatch::default();
        let mut have = HashSet::new();
        for item in self.db.prefix_iterator_cf(self.cf("meta"), CONDEMNED_INDEX) {
            let (k, _) = item?;
            if !k.starts_with(CONDEMNED_INDEX) {
                break;
            }
            let pack = Id::from_slice(&k[CONDEMNED_INDEX.len()..])?;
            if present.contains_key(&pack) {
                have.insert(pack);
            } else {
                batch.delete_cf(self.cf("meta"), &k);
            }
        }
        let mut unread = Vec::new();
        for (pack, size) in &present {
            if have.contains(pack) {
                continue;
            }
            match self
                .db
                .get_pinned_cf(self.cf("pack_index"), pack.as_bytes())?
            {
                Some(v) => batch.put_cf(self.cf("meta"), condemned_index_key(pack), &*v),
                None => unread.push((*pack, *size)),
            }
        }
        let read: Vec<(Id, Result<Vec<PackEntry>>)> = unread
            .par_iter()
            .map(|(id, size)| (*id, repo.read_pack_index(id, *size)))
            .collect();
        for (pack, entries) in read {
            match entries {
                Ok(e) => batch.put_cf(
                    self.cf("meta"),
                    condemned_index_key(&pack),
                    encode_entries(&e),
                ),
                // Only readers of a damaged snapshot need these entries: no failure here may
                // stop a sync.
                Err(e) => {
                    tracing::warn!(pack = %pack, error = %e, "the index of a condemned pack cannot be read")
                }
            }
        }
        if !batch.is_empty() {
            self.db.write(batch)?;
            *self.condemned.lock().expect("poisoned") = None;
        }
        Ok(())
    }

    /// [`Catalog::locate`] for many blobs of one kind at once, in the order given: one batched
    /// lookup costs a notes folder's walk far less than a lookup per file.
    pub fn locate_many(&self, kind: BlobKind, ids: &[Id]) -> Result<Vec<Option<BlobLocation>>> {
        self.db
            .batched_multi_get_cf(self.cf(cf_of(kind)), ids.iter().map(Id::as_bytes), false)
            .into_iter()
            .zip(ids)
            .map(|(got, id)| match got? {
                Some(v) => Ok(Some(decode_location(&v)?)),
                None => self.locate_condemned(kind, id),
            })
            .collect()
    }

    /// The tree-pack cache, when the repository's packs are read by requests.
    pub fn tree_cache(&self) -> Option<&crate::catalog::tree_cache::TreeCache> {
        self.tree_cache.as_ref()
    }

    /// Whether a blob of `kind` is in a known pack.
    ///
    /// A blob whose only known copy is damaged is not: the caller stores it again.
    pub fn contains(&self, kind: BlobKind, id: &Id) -> Result<bool> {
        match self.locate_known(kind, id)? {
            Some(loc) => Ok(!self.is_damaged_in(kind, id, &loc.pack)?),
            None => Ok(false),
        }
    }

    /// Every known pack with its size.
    pub fn pack_sizes(&self) -> Result<HashMap<Id, u64>> {
        let mut out = HashMap::new();
        for item in self.db.iterator_cf(self.cf("packs"), IteratorMode::Start) {
            let (k, v) = item?;
            let size = v
                .get(..8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8")))
                .unwrap_or_default();
            out.insert(Id::from_slice(&k)?, size);
        }
        Ok(out)
    }

    /// Number of packs and of data chunks known.
    pub fn counts(&self) -> Result<(u64, u64)> {
        let n = |cf: &str| -> Result<u64> {
            let mut c = 0;
            for item in self.db.iterator_cf(self.cf(cf), IteratorMode::Start) {
                item?;
                c += 1;
            }
            Ok(c)
        };
        Ok((n("packs")?, n("chunks")?))
    }

    /// The files cache record for a source path.
    pub fn file(&self, path: &[u8]) -> Result<Option<FileRecord>> {
        Ok(self
            .db
            .get_pinned_cf(self.cf("files"), path)?
            .and_then(|v| FileRecord::decode(&v)))
    }

    /// Stores files cache records.
    pub fn put_files(&self, records: &[(Vec<u8>, FileRecord)]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (path, rec) in records {
            batch.put_cf(self.cf("files"), path, rec.encode());
        }
        Ok(self.db.write(batch)?)
    }

    /// Forgets a files cache record (the file changed while it was read, or vanished).
    pub fn forget_file(&self, path: &[u8]) -> Result<()> {
        Ok(self.db.delete_cf(self.cf("files"), path)?)
    }

    /// Records a committed snapshot.
    pub fn add_snapshot(&self, id: &Id, snap: &Snapshot) -> Result<()> {
        let v = serde_json::to_vec(snap).expect("serializes");
        Ok(self.db.put_cf(self.cf("snapshots"), id.as_bytes(), v)?)
    }

    /// Forgets a snapshot that was deleted from the store.
    pub fn remove_snapshot(&self, id: &Id) -> Result<()> {
        Ok(self.db.delete_cf(self.cf("snapshots"), id.as_bytes())?)
    }

    fn snapshot_ids(&self) -> Result<Vec<Id>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf("snapshots"), IteratorMode::Start)
        {
            let (k, _) = item?;
            out.push(Id::from_slice(&k)?);
        }
        Ok(out)
    }

    /// One known snapshot, as the catalog holds it.
    pub fn snapshot(&self, id: &Id) -> Result<Option<Snapshot>> {
        match self.db.get_pinned_cf(self.cf("snapshots"), id.as_bytes())? {
            Some(v) => Ok(Some(snapshot_record(&v)?)),
            None => Ok(None),
        }
    }

    /// Every known snapshot, oldest first.
    pub fn snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf("snapshots"), IteratorMode::Start)
        {
            let (k, v) = item?;
            let snap = snapshot_record(&v)?;
            out.push((Id::from_slice(&k)?, snap));
        }
        // By the instant, not the text: RFC 3339 fractions drop trailing zeros, so as strings
        // `…00.5Z` sorts before `…00Z`. A time that does not parse sorts first.
        out.sort_by_cached_key(|(id, s)| (s.time.parse::<jiff::Timestamp>().ok(), *id));
        Ok(out)
    }

    /// Finds one snapshot: `latest`, a date (`YYYY-MM-DD`, newest of that day), or an id or a
    /// unique id prefix of at least 4 hex digits.
    pub fn resolve_snapshot(&self, selector: &str) -> Result<(Id, Snapshot)> {
        let all = self.snapshots()?;
        let pick = |mut v: Vec<(Id, Snapshot)>, what: &str| {
            v.pop()
                .ok_or_else(|| Error::not_found(format!("no snapshot {what}")))
        };
        if selector == "latest" {
            return pick(all, "in the repository");
        }
        if jiff::civil::Date::strptime("%Y-%m-%d", selector).is_ok() {
            return pick(
                all.into_iter()
                    .filter(|(_, s)| s.date == selector)
                    .collect(),
                &format!("of {selector}"),
            );
        }
        if selector.len() < 4
            || crate::id::unhex(&format!(
                "{selector}{}",
                if selector.len() % 2 == 1 { "0" } else { "" }
            ))
            .is_none()
        {
            return Err(Error::usage(format!(
                "{selector:?} is not a snapshot selector (use latest, a date YYYY-MM-DD, or 4+ hex digits of an id)"
            )));
        }
        let sel = selector.to_ascii_lowercase();
        let mut hits: Vec<_> = all
            .into_iter()
            .filter(|(id, _)| id.to_hex().starts_with(&sel))
            .collect();
        match hits.len() {
            0 => Err(Error::not_found(format!("no snapshot with id {selector}"))),
            1 => Ok(hits.pop().expect("one")),
            n => Err(Error::usage(format!(
                "{selector} matches {n} snapshots; give more digits"
            ))),
        }
    }

    /// The newest snapshot taken at or before `t`.
    pub fn resolve_as_of(&self, t: jiff::Timestamp) -> Result<(Id, Snapshot)> {
        let mut best = None;
        for (id, s) in self.snapshots()? {
            let st: jiff::Timestamp = s.time.parse().map_err(|_| {
                Error::corrupt(format!(
                    "snapshot {} has an unreadable time {:?}",
                    id.short(),
                    s.time
                ))
            })?;
            if st <= t {
                best = Some((id, s));
            }
        }
        best.ok_or_else(|| Error::not_found(format!("no snapshot at or before {t}")))
    }

    /// Flushes memtables so that the catalog survives a crash without replaying its log.
    pub fn flush(&self) -> Result<()> {
        for cf in CFS {
            self.db.flush_cf(self.cf(cf))?;
        }
        Ok(())
    }
}

/// The catalog is the index a backup's packers dedup against and report packs to.
impl crate::repo::index::BlobIndex for Catalog {
    fn contains(&self, kind: BlobKind, id: &Id) -> Result<bool> {
        Catalog::contains(self, kind, id)
    }
    fn locate(&self, kind: BlobKind, id: &Id) -> Result<Option<BlobLocation>> {
        Catalog::locate(self, kind, id)
    }
    fn pack_stored(&self, pack: &Id, size: u64, entries: &[PackEntry]) -> Result<()> {
        self.add_pack(pack, size, entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_record_round_trip() {
        let r = FileRecord {
            size: 5,
            mtime: -3,
            mtime_ns: 9,
            ctime: 1 << 40,
            ctime_ns: 999_999_999,
            ino: u64::MAX,
            chunks: vec![Id::of(b"a"), Id::of(b"b")],
        };
        assert_eq!(FileRecord::decode(&r.encode()), Some(r));
        assert_eq!(FileRecord::decode(&[0; 41]), None);
    }
}
