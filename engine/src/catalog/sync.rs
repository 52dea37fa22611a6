//! Matching the catalog to the store, which is the source of truth: packs that appeared are
//! indexed from their trailers, packs that vanished, changed size or were condemned are
//! forgotten, damage found elsewhere is marked, and the snapshot records follow the store's
//! snapshot objects. [`Catalog::sync`] runs these steps in an order that matters (each step says
//! why it comes where it does); [`SyncReport`] says what they did.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;
use rocksdb::WriteBatch;

use crate::catalog::db::Catalog;
use crate::error::{ErrorKind, Result};
use crate::format::pack::PackEntry;
use crate::id::Id;
use crate::repo::Repository;

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

/// How the store's packs differ from the catalog's, found before anything but the condemned
/// packs' kept index is written.
#[derive(Debug)]
struct PackDiff {
    /// Packs in the store with their sizes, condemned ones left out.
    in_store: HashMap<Id, u64>,
    /// Packs the catalog knew, with the sizes it recorded.
    known: HashMap<Id, u64>,
    /// Known packs whose size in the store is another: forgotten, then indexed again.
    resized: HashSet<Id>,
    /// Known packs to forget: gone, resized or condemned.
    forget: HashSet<Id>,
}

impl Catalog {
    /// Matches an open catalog to the store again: what a long command (gc) does after taking
    /// its lease and again before deleting, to see what others committed meanwhile.
    pub fn resync(&self, repo: &Repository) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        self.sync(repo, &mut report)?;
        Ok(report)
    }

    pub(super) fn sync(&self, repo: &Repository, report: &mut SyncReport) -> Result<()> {
        let diff = self.compare_packs(repo, report)?;
        self.record_missing_pack_indexes(repo, &diff)?;
        // A resized pack is forgotten before it is indexed again; gone and collected packs
        // after the new ones are indexed, so that a blob a repack moved finds its new copy and
        // no files record is dropped for it.
        if !diff.resized.is_empty() {
            self.forget_packs(&diff.resized)?;
        }
        // Damage found by another machine, or before this catalog was rebuilt: marked before
        // packs are indexed, so that a damaged copy never replaces a good one.
        for (pack, note) in crate::repo::damage::load_all(repo)? {
            report.blobs_damaged +=
                self.mark_damaged(&pack, note.blobs.iter().map(|b| (b.kind, b.id)))?;
        }
        let PackDiff {
            in_store,
            known,
            resized,
            forget,
        } = diff;
        self.index_new_packs(repo, in_store, &known, &resized, report)?;
        let forget: HashSet<Id> = forget.difference(&resized).copied().collect();
        if !forget.is_empty() {
            self.forget_packs(&forget)?;
        }
        self.sync_snapshots(repo, report)
    }

    /// Compares the store's pack listing with the known packs, and keeps the index of the
    /// condemned packs still in the store aside; reports the packs collected and removed.
    fn compare_packs(&self, repo: &Repository, report: &mut SyncReport) -> Result<PackDiff> {
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
        Ok(PackDiff {
            in_store,
            known,
            resized,
            forget,
        })
    }

    /// Catalogs written before `pack_index` existed learn their packs' entries once, so that
    /// a forgotten pack's blobs can be looked for in the others afterwards.
    fn record_missing_pack_indexes(&self, repo: &Repository, diff: &PackDiff) -> Result<()> {
        let unlisted: Vec<(Id, u64)> = diff
            .known
            .iter()
            .filter(|(id, _)| {
                !diff.forget.contains(id) && !self.has_pack_index(id).unwrap_or(false)
            })
            .map(|(id, size)| (*id, *size))
            .collect();
        if unlisted.is_empty() {
            return Ok(());
        }
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
        Ok(())
    }

    /// Indexes the packs of the store the catalog does not know (or knew at another size) from
    /// their trailers. A trailer that is damaged or gone leaves its pack out, reported: `check`
    /// names it, and one bad pack must not stop every backup.
    fn index_new_packs(
        &self,
        repo: &Repository,
        in_store: HashMap<Id, u64>,
        known: &HashMap<Id, u64>,
        resized: &HashSet<Id>,
        report: &mut SyncReport,
    ) -> Result<()> {
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
        Ok(())
    }

    /// Makes the snapshot records those of the store: records of deleted snapshots go, new
    /// snapshot objects are loaded, all in one batch.
    fn sync_snapshots(&self, repo: &Repository, report: &mut SyncReport) -> Result<()> {
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
}
