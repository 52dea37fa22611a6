//! The plan's core, computed from what is live and the catalog alone: every pack the catalog
//! relies on weighed by the bytes of its live blobs. A pack with none is to be condemned; one
//! whose dead bytes reach the threshold is to be repacked.

use std::collections::HashMap;

use super::mark::Live;
use crate::catalog::Catalog;
use crate::error::Result;
use crate::format::pack::PackEntry;
use crate::id::Id;
use crate::repo::condemn::Marker;

/// The packs a gc is to condemn as unreferenced, and those to repack with the blobs they must
/// keep; both sorted. With the bytes of the frames weighed: needed where they are, and not.
pub(super) struct Weighed {
    pub(super) unreferenced: Vec<Id>,
    pub(super) repack: Vec<(Id, Vec<PackEntry>)>,
    pub(super) needed_bytes: u64,
    pub(super) dead_bytes: u64,
}

/// Weighs every pack: `weighed` is the catalog's pack indexes (none beside a backup); packs already
/// condemned are left alone.
pub(super) fn weigh(
    catalog: &Catalog,
    live: &Live,
    weighed: Vec<(Id, u64, Vec<PackEntry>)>,
    markers: &HashMap<Id, Marker>,
    repack_dead_percent: u8,
) -> Result<Weighed> {
    let mut unreferenced = Vec::new();
    let mut repack = Vec::new();
    let (mut all_needed, mut all_dead) = (0u64, 0u64);
    for (pack, _size, entries) in weighed {
        if markers.contains_key(&pack) {
            continue;
        }
        let mut needed = Vec::new();
        let (mut needed_bytes, mut dead_bytes) = (0u64, 0u64);
        for e in &entries {
            // Needed here: live, and this is the copy the catalog relies on — or the copy it
            // relies on is damaged, and then every copy stays.
            let relied_on = catalog
                .locate(e.kind, &e.id)?
                .is_some_and(|l| l.pack == pack);
            if live.contains(e.kind, &e.id) && (relied_on || !catalog.contains(e.kind, &e.id)?) {
                needed_bytes += u64::from(e.length);
                needed.push(*e);
            } else {
                dead_bytes += u64::from(e.length);
            }
        }
        all_needed += needed_bytes;
        all_dead += dead_bytes;
        // Frames only: a pack's index costs the same in its repacked copy, so counting it
        // as dead would repack small packs forever.
        if needed.is_empty() {
            unreferenced.push(pack);
        } else if dead_bytes * 100 >= (needed_bytes + dead_bytes) * u64::from(repack_dead_percent) {
            repack.push((pack, needed));
        }
    }
    repack.sort_by_key(|(p, _)| *p);
    unreferenced.sort();
    Ok(Weighed {
        unreferenced,
        repack,
        needed_bytes: all_needed,
        dead_bytes: all_dead,
    })
}
