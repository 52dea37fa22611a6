//! The damage register: blobs found damaged inside a pack, recorded in the store so that the
//! store heals. This module is the register's format and reading; [`crate::catalog::heal`] writes it.
//!
//! Blob ids are content hashes, so healing a damaged blob means storing a good copy of the same
//! id in a new pack, after which every snapshot that names the id reads the good copy. A note
//! `damaged/<pack id>` in the store lists the bad blobs of that pack; the catalog then never
//! deduplicates against those copies (and drops its files cache, so the next backup reads the
//! source again and stores the chunks anew), prefers any other copy, and every catalog sync,
//! including a rebuild on another machine, applies the notes before it indexes packs. Readers keep
//! a noted location while no other copy exists: a note made after a read error that was not
//! really damage in the store must never cost a restorable blob.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, Result};
use crate::format::pack::BlobKind;
use crate::id::Id;
use crate::repo::Repository;

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
