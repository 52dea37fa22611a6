//! Damage markers: a blob's copy in one pack found damaged is never used for deduplication
//! again, while readers keep it as long as there is no other copy. The markers live in `meta`
//! (see [`crate::catalog::records`] for their keys); the damage register in the store
//! ([`crate::repo::damage`]) is what a sync marks them from.

use rocksdb::WriteBatch;

use crate::catalog::db::Catalog;
use crate::catalog::records::damaged_key;
use crate::error::Result;
use crate::format::pack::BlobKind;
use crate::id::Id;

impl Catalog {
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

    pub(super) fn is_damaged_in(&self, kind: BlobKind, id: &Id, pack: &Id) -> Result<bool> {
        if !self.any_damaged.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(false);
        }
        Ok(self
            .db
            .get_pinned_cf(self.cf("meta"), damaged_key(kind, id, pack))?
            .is_some())
    }
}
