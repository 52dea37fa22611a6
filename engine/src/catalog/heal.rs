//! Healing: what cairn does when it finds a damaged blob. It extends the pack's note in the
//! damage register ([`crate::repo::damage`], in the store) and marks the copy in the catalog, so that
//! the next backup stores the blob again from the source; readers go through [`read_checked`].

use crate::catalog::Catalog;
use crate::error::{ErrorKind, Result};
use crate::format::pack::BlobKind;
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::damage::{DamageNote, DamagedBlob, NOTE_VERSION, note_key};
use crate::repo::index::BlobLocation;

/// Records damaged blobs of `pack`: extends its note in the store, then marks them in the
/// catalog, so that the next backup stores them again from the source.
pub fn record(
    repo: &Repository,
    catalog: &Catalog,
    pack: &Id,
    blobs: &[DamagedBlob],
) -> Result<()> {
    let key = note_key(pack);
    let mut note = match repo.store().get(&key) {
        Ok(bytes) => serde_json::from_slice::<DamageNote>(&bytes).ok(),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    }
    .filter(|n| n.pack == *pack)
    .unwrap_or(DamageNote {
        version: NOTE_VERSION,
        pack: *pack,
        blobs: Vec::new(),
        updated: String::new(),
    });
    let mut changed = false;
    for b in blobs {
        if !note.blobs.iter().any(|n| n.id == b.id && n.kind == b.kind) {
            note.blobs.push(b.clone());
            changed = true;
        }
    }
    if changed {
        note.blobs.sort_by_key(|b| b.id);
        note.updated = jiff::Timestamp::now().to_string();
        repo.store().put(
            &key,
            &serde_json::to_vec_pretty(&note).expect("notes serialize"),
        )?;
        tracing::warn!(pack = %pack, blobs = blobs.len(), "damaged blobs recorded; the next backup stores them again from the source");
    }
    catalog.mark_damaged(pack, blobs.iter().map(|b| (b.kind, b.id)))?;
    Ok(())
}

/// Withdraws the note of `pack`, whose every blob was just read intact (a pack put back from
/// another copy). Deleting needs a key that may delete; without one the note stays and only
/// costs a second copy of its blobs.
pub fn clear(repo: &Repository, catalog: &Catalog, note: &DamageNote) -> Result<()> {
    catalog.unmark_damaged(&note.pack, note.blobs.iter().map(|b| (b.kind, b.id)))?;
    if let Err(e) = repo.store().delete(&note_key(&note.pack)) {
        tracing::warn!(pack = %note.pack, error = %e, "could not delete the damage note of a pack that reads whole again");
    }
    Ok(())
}

/// Reads a blob and checks it against its id; a blob that fails the check twice is recorded as
/// damaged before the error is returned, so that the store heals on the next backup. (Once is not
/// enough: a short read on a flaky connection also fails the check, and a note costs the next
/// backup a full read of the source.)
pub fn read_checked(
    repo: &Repository,
    catalog: &Catalog,
    kind: BlobKind,
    id: &Id,
    loc: &BlobLocation,
) -> Result<Vec<u8>> {
    match repo.read_blob(kind, id, loc) {
        Err(e) if e.kind() == ErrorKind::Corrupt => match repo.read_blob(kind, id, loc) {
            Ok(data) => {
                tracing::warn!(blob = %id, pack = %loc.pack, error = %e, "a blob failed its check once and read intact the second time");
                Ok(data)
            }
            Err(e) => {
                if e.kind() == ErrorKind::Corrupt {
                    note_failure(repo, catalog, kind, id, loc, &e);
                }
                Err(e)
            }
        },
        other => other,
    }
}

/// A blob from a frame that was read ahead at `loc` (by a planned read of many, or with its
/// neighbours), checked against its id; a frame that fails, or whose read failed, is read again
/// on its own by [`read_checked`], which tells a bad transfer from damage in the store and
/// records the latter. The read again is of the copy the catalog names (`loc` when it names
/// none), so damage is noted only against that copy, never against another one `loc` may be
/// (a pack's index offers every copy, also those the catalog knows to be damaged).
pub fn open_read_ahead(
    repo: &Repository,
    catalog: &Catalog,
    kind: BlobKind,
    id: &Id,
    loc: &BlobLocation,
    frame: Result<Vec<u8>>,
) -> Result<Vec<u8>> {
    let opened = frame.and_then(|frame| repo.open_frame(kind, id, loc, &frame));
    match opened {
        Ok(data) => Ok(data),
        Err(e) => {
            tracing::debug!(blob = %id, pack = %loc.pack, error = %e, "a blob read ahead failed; reading it on its own");
            let own = catalog.locate(kind, id)?.unwrap_or(*loc);
            read_checked(repo, catalog, kind, id, &own)
        }
    }
}

/// Records a blob that failed a check on read; a failure to record is logged, never raised
/// over the original error.
pub fn note_failure(
    repo: &Repository,
    catalog: &Catalog,
    kind: BlobKind,
    id: &Id,
    loc: &BlobLocation,
    err: &crate::Error,
) {
    let blob = DamagedBlob {
        kind,
        id: *id,
        detail: err.to_string(),
    };
    if let Err(e) = record(repo, catalog, &loc.pack, &[blob]) {
        tracing::warn!(pack = %loc.pack, blob = %id, error = %e, "could not record a damaged blob");
    }
}
