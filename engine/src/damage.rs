//! The damage register: blobs found damaged inside a pack, recorded in the store so that the
//! store heals.
//!
//! Blob ids are content hashes, so healing a damaged blob means storing a good copy of the same
//! id in a new pack, after which every snapshot that names the id reads the good copy. A note
//! `damaged/<pack id>` in the store lists the bad blobs of that pack; the catalog then never
//! deduplicates against those copies (and drops its files cache, so the next backup reads the
//! source again and stores the chunks anew), prefers any other copy, and every catalog sync,
//! including a rebuild on another machine, applies the notes before it indexes packs. Readers keep
//! a noted location while no other copy exists: a note made after a read error that was not
//! really damage in the store must never cost a restorable blob. Notes are written by
//! `check --read-data` and by any reader that finds a blob that does not decode to its id, and
//! removed by `check --read-data` when the pack reads whole again.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::{ErrorKind, Result};
use crate::id::Id;
use crate::pack::BlobKind;
use crate::repo::{BlobLocation, Repository};

/// Prefix of damage notes in the store.
pub const DAMAGED: &str = "damaged/";
/// Version of the note format.
pub const NOTE_VERSION: u32 = 1;
/// The largest object read as a note.
pub const MAX_NOTE: u64 = 16 << 20;

/// One damaged blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedBlob {
    /// Data or tree.
    pub kind: BlobKind,
    /// The blob's id.
    pub id: Id,
    /// What was wrong, as found.
    pub detail: String,
}

/// `damaged/<pack id>`: the damaged blobs of one pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamageNote {
    /// [`NOTE_VERSION`].
    pub version: u32,
    /// The pack.
    pub pack: Id,
    /// Its damaged blobs.
    pub blobs: Vec<DamagedBlob>,
    /// When the note was last extended (RFC 3339).
    pub updated: String,
}

/// The store key of a pack's damage note.
pub fn note_key(pack: &Id) -> String {
    format!("{DAMAGED}{pack}")
}

/// Every damage note in the store, by pack. A note that cannot be read is skipped with a
/// warning: it can only make cairn trust a blob that is also checked on every read.
pub fn load_all(repo: &Repository) -> Result<HashMap<Id, DamageNote>> {
    let mut out = HashMap::new();
    for o in repo.store().list(DAMAGED)? {
        // A note lists at most the blobs of one pack (a few thousand, ~200 bytes each): a larger
        // object is not a note and is not read.
        if o.size > MAX_NOTE {
            tracing::warn!(key = %o.key, size = o.size, "ignoring an object too large to be a damage note");
            continue;
        }
        let bytes = match repo.store().get(&o.key) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        match serde_json::from_slice::<DamageNote>(&bytes) {
            Ok(n) if note_key(&n.pack) == o.key => {
                out.insert(n.pack, n);
            }
            _ => tracing::warn!(key = %o.key, "ignoring an unreadable damage note"),
        }
    }
    Ok(out)
}

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
