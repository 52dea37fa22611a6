//! What the next gc would condemn and repack, judged from the catalog alone, for `cairn stats`:
//! the snapshots the catalog knows marked as a gc marks them and the packs it relies on weighed
//! as a gc weighs them (the same `mark` and `weigh`), with no listing of the store, no lease and
//! nothing written. `cairn gc --dry-run` gives the exact plan, from the store's listings.

use std::collections::HashMap;

use serde::Serialize;

use super::mark::{Condemned, Live};
use super::weigh::{Weighed, weigh};
use crate::catalog::Catalog;
use crate::error::Result;
use crate::id::Id;
use crate::repo::Repository;

/// What the next gc would find, as [`estimate`] weighs it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcEstimate {
    /// Snapshots walked: every one the catalog knows.
    pub snapshots: usize,
    /// Distinct live trees.
    pub trees: usize,
    /// Distinct live chunks.
    pub chunks: usize,
    /// Bytes of the frames a gc keeps where they are: live blobs, in the packs the catalog
    /// relies on for them.
    pub live_bytes: u64,
    /// Bytes of the frames no snapshot needs (or extra copies of ones it does).
    pub dead_bytes: u64,
    /// Packs with no live blob, which the next gc condemns.
    pub condemn_packs: usize,
    /// Their bytes, freed by a gc once the grace has passed.
    pub condemn_bytes: u64,
    /// Packs whose dead frames reach `gc.repack_dead_percent`, which the next gc repacks.
    pub repack_packs: usize,
    /// Their bytes.
    pub repack_bytes: u64,
    /// The bytes of the live frames in them, which the repacking copies into new packs.
    pub repack_live_bytes: u64,
}

/// Weighs the repository as the next gc would with `repack_dead_percent`, from the catalog
/// alone: every snapshot it knows is marked (each distinct tree read once) and every pack it
/// relies on weighed. Condemned packs are not weighed (the catalog forgot them), and a tree the
/// catalog cannot find fails it as it fails a gc. Like a gc, it holds every live tree and chunk
/// id in memory (32 bytes each, plus the sets' overhead) and the catalog's pack indexes.
pub fn estimate(
    repo: &Repository,
    catalog: &Catalog,
    repack_dead_percent: u8,
) -> Result<GcEstimate> {
    let mut live = Live::default();
    // No condemned pack's index is read from the store: the catalog finds the trees in them
    // itself (`Catalog::locate`), and the store's condemned packs would need its listing.
    live.mark(repo, catalog, &mut Condemned::new(repo, Vec::new()))?;
    let packs = catalog.pack_indexes()?;
    let sizes: HashMap<Id, u64> = packs.iter().map(|(id, size, _)| (*id, *size)).collect();
    // No markers: the packs the catalog relies on are not condemned, as far as it knows.
    let markers = HashMap::new();
    let Weighed {
        unreferenced,
        repack,
        needed_bytes,
        dead_bytes,
    } = weigh(catalog, &live, packs, &markers, repack_dead_percent)?;
    let size = |p: &Id| sizes.get(p).copied().unwrap_or_default();
    Ok(GcEstimate {
        snapshots: live.walked.len(),
        trees: live.trees.len(),
        chunks: live.chunks.len(),
        live_bytes: needed_bytes,
        dead_bytes,
        condemn_packs: unreferenced.len(),
        condemn_bytes: unreferenced.iter().map(size).sum(),
        repack_packs: repack.len(),
        repack_bytes: repack.iter().map(|(p, _)| size(p)).sum(),
        repack_live_bytes: repack
            .iter()
            .flat_map(|(_, keep)| keep)
            .map(|e| u64::from(e.length))
            .sum(),
    })
}
