//! The files cache: per source path, what the file looked like when it was last backed up and
//! which chunks hold it, so that an unchanged file costs a stat instead of a read. The record's
//! bytes are [`crate::catalog::records::FileRecord`]'s; records are dropped whenever a chunk
//! they name may be gone or damaged, since a record must never outlive its chunks.

use std::collections::HashSet;

use rocksdb::{IteratorMode, WriteBatch};

use crate::catalog::db::Catalog;
use crate::catalog::records::FileRecord;
use crate::error::Result;
use crate::id::Id;

impl Catalog {
    /// The files cache record for a source path.
    pub fn file(&self, path: &[u8]) -> Result<Option<FileRecord>> {
        Ok(self
            .db
            .get_pinned_cf(self.cf("files"), path)?
            .and_then(|v| FileRecord::decode(&v)))
    }

    /// Stores files cache records.
    pub fn put_files(&self, records: &[(Vec<u8>, FileRecord)]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (path, rec) in records {
            batch.put_cf(self.cf("files"), path, rec.encode());
        }
        Ok(self.db.write(batch)?)
    }

    /// Forgets a files cache record (the file changed while it was read, or vanished).
    pub fn forget_file(&self, path: &[u8]) -> Result<()> {
        Ok(self.db.delete_cf(self.cf("files"), path)?)
    }

    /// Drops every files cache record, in one range deletion (no batch as large as the cache).
    pub(super) fn drop_files_cache(&self) -> Result<()> {
        // Keys are paths of at most MAX_PATH_LEN bytes, all below this bound.
        let end = vec![0xffu8; crate::format::tree::MAX_PATH_LEN + 2];
        Ok(self
            .db
            .delete_range_cf(self.cf("files"), &b""[..], &end[..])?)
    }

    /// Drops the files records that name any of `chunks`.
    pub(super) fn drop_files_naming(&self, chunks: &HashSet<Id>) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for item in self.db.iterator_cf(self.cf("files"), IteratorMode::Start) {
            let (k, v) = item?;
            let stale = match FileRecord::decode(&v) {
                Some(r) => r.chunks.iter().any(|c| chunks.contains(c)),
                None => true,
            };
            if stale {
                batch.delete_cf(self.cf("files"), k);
            }
        }
        Ok(self.db.write(batch)?)
    }
}
