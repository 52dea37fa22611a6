//! One snapshot's figures, from one walk of its trees: its files (a hardlinked file's bytes
//! counted once), the distinct chunks and trees it references with their plaintext and stored
//! bytes, and from those its deduplication and compression ratios.

use std::collections::HashSet;

use serde::Serialize;

use super::blobs::{BlobTotals, ratio};
use crate::catalog::Catalog;
use crate::error::Result;
use crate::format::pack::BlobKind;
use crate::format::snapshot::{Snapshot, Summary};
use crate::format::tree::EntryKind;
use crate::id::Id;
use crate::read::walk::{Descend, walk};
use crate::read::{HardlinkGroups, load_tree};
use crate::repo::Repository;

/// Blobs are located this many at a time ([`Catalog::locate_many`]).
const LOCATE_BATCH: usize = 4096;

/// What one snapshot holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SnapshotStats {
    /// The snapshot.
    pub id: Id,
    /// The day its run belongs to.
    pub date: String,
    /// When its backup started.
    pub time: String,
    /// Regular files, every name counted (a hardlinked file's other names too).
    pub files: u64,
    /// Of those, the names that are another link to a file counted before: their bytes are not
    /// counted again.
    pub hardlinks: u64,
    /// Directories, not counting the root.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// FIFOs, sockets and device nodes.
    pub specials: u64,
    /// The sizes of its files added up, each hardlinked file once.
    pub logical_bytes: u64,
    /// The distinct data chunks its files reference, where the catalog finds them.
    pub chunks: BlobTotals,
    /// Distinct chunks it references that are in no known pack (damage: `cairn check`).
    pub missing_chunks: u64,
    /// The distinct trees of its directories, the root's included.
    pub trees: BlobTotals,
    /// `logical_bytes` per plaintext byte of its distinct chunks: how many times over
    /// deduplication (within the snapshot) stores its data once.
    pub dedup_ratio: Option<f64>,
    /// Plaintext bytes of its distinct chunks per stored byte.
    pub compression_ratio: Option<f64>,
    /// The counters its backup recorded.
    pub summary: Summary,
}

/// How many entries of each kind a walk met, and the files' bytes.
#[derive(Debug, Default)]
struct Counts {
    files: u64,
    hardlinks: u64,
    dirs: u64,
    symlinks: u64,
    specials: u64,
    logical_bytes: u64,
}

/// The figures of the snapshot `snap` (whose id is `id`), from one walk of its trees (every
/// directory listed, a subtree met twice walked twice, so that its files count at both paths).
///
/// Memory: the distinct chunk and tree ids it references (32 bytes each, plus the set's
/// overhead: about 50 MB for a million chunks), and the chunk list of the first name of each
/// hardlinked file.
pub fn snapshot_stats(
    repo: &Repository,
    catalog: &Catalog,
    id: &Id,
    snap: &Snapshot,
) -> Result<SnapshotStats> {
    let mut chunk_ids: HashSet<Id> = HashSet::new();
    let mut tree_ids: HashSet<Id> = HashSet::new();
    let mut links: HardlinkGroups<()> = HardlinkGroups::new();
    let mut n = Counts::default();
    walk(
        &snap.root,
        b"",
        &mut |tree, _| {
            tree_ids.insert(*tree);
            load_tree(repo, catalog, tree)
        },
        &mut |path, e| {
            match e.kind {
                EntryKind::File => {
                    n.files += 1;
                    let folder = path.split(|b| *b == b'/').next().unwrap_or_default();
                    if links.link_to(folder, e, || ()).is_some() {
                        n.hardlinks += 1;
                    } else {
                        n.logical_bytes += e.size;
                        chunk_ids.extend(e.chunks.iter().copied());
                    }
                }
                EntryKind::Dir => n.dirs += 1,
                EntryKind::Symlink => n.symlinks += 1,
                _ => n.specials += 1,
            }
            Ok(Descend::Into)
        },
    )
    .map_err(|e| e.context(format!("walking snapshot {}", id.short())))?;
    let (chunks, missing_chunks) = located(catalog, BlobKind::Data, chunk_ids)?;
    let (trees, _) = located(catalog, BlobKind::Tree, tree_ids)?;
    Ok(SnapshotStats {
        id: *id,
        date: snap.date.clone(),
        time: snap.time.clone(),
        files: n.files,
        hardlinks: n.hardlinks,
        dirs: n.dirs,
        symlinks: n.symlinks,
        specials: n.specials,
        logical_bytes: n.logical_bytes,
        chunks,
        missing_chunks,
        trees,
        dedup_ratio: ratio(n.logical_bytes, chunks.raw_bytes),
        compression_ratio: chunks.compression_ratio(),
        summary: snap.summary.clone(),
    })
}

/// The totals of the blobs `ids` of `kind` where the catalog finds them, and how many it does
/// not find.
fn located(catalog: &Catalog, kind: BlobKind, ids: HashSet<Id>) -> Result<(BlobTotals, u64)> {
    let mut totals = BlobTotals::default();
    let mut missing = 0;
    let mut ids = ids.into_iter();
    let mut batch: Vec<Id> = Vec::with_capacity(LOCATE_BATCH);
    loop {
        batch.clear();
        batch.extend(ids.by_ref().take(LOCATE_BATCH));
        if batch.is_empty() {
            return Ok((totals, missing));
        }
        for loc in catalog.locate_many(kind, &batch)? {
            match loc {
                Some(loc) => totals.add(&loc),
                None => missing += 1,
            }
        }
    }
}
