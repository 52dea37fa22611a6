//! The index of condemned packs still in the store. A sync forgets such packs (no backup may
//! deduplicate against a pack a gc may delete) but keeps their index entries aside in `meta`,
//! so that [`Catalog::locate`] still finds a blob there when no other pack has it: a snapshot
//! that needs a condemned pack keeps reading until the gc that condemned it takes it back.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;
use rocksdb::WriteBatch;

use crate::catalog::db::{Catalog, CondemnedMap};
use crate::catalog::records::{
    CONDEMNED_INDEX, condemned_index_key, decode_entries, encode_entries,
};
use crate::error::Result;
use crate::format::pack::{BlobKind, PackEntry};
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::index::BlobLocation;

impl Catalog {
    /// Where a blob is in a condemned pack still in the store, if any is.
    pub(super) fn locate_condemned(&self, kind: BlobKind, id: &Id) -> Result<Option<BlobLocation>> {
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

    /// The condemned packs that were still in the store at the last sync (or that a gc on this
    /// state volume condemned since), each with the bytes of its blobs' frames, from their kept
    /// index entries (the pack's own index is not counted), without a request.
    pub fn condemned_packs(&self) -> Result<Vec<(Id, u64)>> {
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(self.cf("meta"), CONDEMNED_INDEX) {
            let (k, v) = item?;
            if !k.starts_with(CONDEMNED_INDEX) {
                break;
            }
            let pack = Id::from_slice(&k[CONDEMNED_INDEX.len()..])?;
            let frames: u64 = decode_entries(&v)?
                .iter()
                .map(|e| u64::from(e.length))
                .sum();
            out.push((pack, frames));
        }
        Ok(out)
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
    pub(super) fn keep_condemned_index(
        &self,
        repo: &Repository,
        present: HashMap<Id, u64>,
    ) -> Result<()> {
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
}
