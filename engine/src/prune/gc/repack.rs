//! Repacking: the live blobs of mostly dead packs copied, frame for frame and each checked
//! against its id, into new packs that are stored and indexed before the old ones are condemned.

use std::collections::HashSet;

use crate::catalog::Catalog;
use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::{BlobKind, PackEntry};
use crate::id::Id;
use crate::repo::index::{BlobIndex, BlobLocation};
use crate::repo::packer::Packer;
use crate::repo::{Repository, pack_key};

/// The index a repack writes through: a blob counts as stored only where it stays, so the live
/// blobs of the packs being left are stored again.
struct Staying<'a> {
    catalog: &'a Catalog,
    leaving: &'a HashSet<Id>,
}

impl BlobIndex for Staying<'_> {
    fn contains(&self, kind: BlobKind, id: &Id) -> Result<bool> {
        Ok(self.catalog.contains(kind, id)?
            && self
                .catalog
                .locate(kind, id)?
                .is_some_and(|l| !self.leaving.contains(&l.pack)))
    }

    fn locate(&self, kind: BlobKind, id: &Id) -> Result<Option<BlobLocation>> {
        self.catalog.locate(kind, id)
    }

    fn pack_stored(&self, pack: &Id, size: u64, entries: &[PackEntry]) -> Result<()> {
        self.catalog.pack_stored(pack, size, entries)
    }
}

/// Copies the needed blobs of `packs` into new packs. Returns the packs done (all their needed
/// blobs are now stored elsewhere), new packs written, their bytes, and packs skipped as damaged.
pub(super) fn repack_packs(
    repo: &Repository,
    catalog: &Catalog,
    packs: &[(Id, Vec<PackEntry>)],
) -> Result<(Vec<Id>, usize, u64, usize)> {
    let leaving: HashSet<Id> = packs.iter().map(|(p, _)| *p).collect();
    let index = Staying {
        catalog,
        leaving: &leaving,
    };
    let store = repo.store().as_ref();
    let size = repo.config().pack_size as usize;
    let data = Packer::new(store, &index, BlobKind::Data, size);
    let trees = Packer::new(store, &index, BlobKind::Tree, size / 4);
    let mut done = Vec::new();
    let mut damaged = 0;
    let meter = crate::progress::meter();
    meter.begin(
        "gc: repacking",
        "packs",
        Some(packs.len() as u64),
        None,
        &[],
    );
    for (pack, needed) in packs {
        meter.items(1);
        let bytes = store
            .get(&pack_key(pack))
            .map_err(|e| e.context(format!("reading pack {} to repack it", pack.short())))?;
        meter.bytes(bytes.len() as u64);
        // Every frame is checked before any is copied: a damaged pack stays, for check to
        // report and a backup to heal, and nothing of it is half moved.
        let mut frames = Vec::with_capacity(needed.len());
        let mut bad = false;
        for e in needed {
            let loc = BlobLocation::of(*pack, e);
            let frame = bytes
                .get(e.offset as usize..(e.offset as usize).saturating_add(e.length as usize))
                .ok_or_else(|| Error::new(ErrorKind::Corrupt, "frame beyond the pack"));
            match frame.and_then(|f| repo.open_frame(e.kind, &e.id, &loc, f).map(|_| f)) {
                Ok(f) => frames.push((e, f)),
                Err(err) => {
                    tracing::warn!(pack = %pack, blob = %e.id, error = %err, "not repacking a pack with a damaged blob");
                    if err.kind() == ErrorKind::Corrupt {
                        // Recorded like check's finding: the catalog stops relying on this
                        // copy and the next backup stores the blob again from the source.
                        crate::catalog::heal::record(
                            repo,
                            catalog,
                            pack,
                            &[crate::repo::damage::DamagedBlob {
                                kind: e.kind,
                                id: e.id,
                                detail: err.to_string(),
                            }],
                        )?;
                    }
                    bad = true;
                    break;
                }
            }
        }
        if bad {
            damaged += 1;
            continue;
        }
        for (e, frame) in frames {
            let packer = match e.kind {
                BlobKind::Data => &data,
                BlobKind::Tree => &trees,
            };
            packer.add(e.id, frame, e.raw_length as usize)?;
        }
        done.push(*pack);
    }
    data.finish()?;
    trees.finish()?;
    let (dp, db) = data.written();
    let (tp, tb) = trees.written();
    Ok((done, (dp + tp) as usize, db + tb, damaged))
}
