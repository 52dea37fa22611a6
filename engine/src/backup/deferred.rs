//! The files-cache records held back until their chunks are durable ([`DeferredRecords`]): a
//! record tells the next run it may skip a file, so it is written only once the data packer has
//! stored every pack that holds the file's chunks.

use std::sync::Mutex;

use crate::catalog::{Catalog, FileRecord};
use crate::error::Result;
use crate::repo::packer::Packer;

/// Files-cache records whose chunks are not all durable yet.
///
/// A record promises the next run that the file's chunks are stored; written before their pack
/// is durable, it would make a run after a crash skip a file whose data is gone. So a record
/// waits here until the data packer has stored every chunk it names.
pub(super) struct DeferredRecords<'a> {
    catalog: &'a Catalog,
    waiting: Mutex<Vec<(Vec<u8>, FileRecord)>>,
}

impl<'a> DeferredRecords<'a> {
    /// None waiting yet; records are written to `catalog`.
    pub(super) fn new(catalog: &'a Catalog) -> DeferredRecords<'a> {
        DeferredRecords {
            catalog,
            waiting: Mutex::new(Vec::new()),
        }
    }
}

impl DeferredRecords<'_> {
    /// Writes the record now if its chunks are durable, or keeps it until they are.
    pub(super) fn file_done(
        &self,
        data: &Packer<'_>,
        path: Vec<u8>,
        record: FileRecord,
    ) -> Result<()> {
        {
            // Checked and queued under one lock that `pack_stored` also takes after the packer
            // cleared its pending set, so a record is never queued after the check that would
            // have released it.
            let mut waiting = self.waiting.lock().expect("poisoned");
            if data.any_pending(&record.chunks) {
                waiting.push((path, record));
                return Ok(());
            }
        }
        self.catalog.put_files(&[(path, record)])
    }

    /// After the data packer stored a pack: writes the records that no longer wait.
    pub(super) fn pack_stored(&self, data: &Packer<'_>) -> Result<()> {
        let ready: Vec<_> = {
            let mut waiting = self.waiting.lock().expect("poisoned");
            let (ready, still): (Vec<_>, Vec<_>) = std::mem::take(&mut *waiting)
                .into_iter()
                .partition(|(_, r)| !data.any_pending(&r.chunks));
            *waiting = still;
            ready
        };
        if ready.is_empty() {
            return Ok(());
        }
        self.catalog.put_files(&ready)
    }

    /// After the data packer's last pack: every chunk is durable, so every record goes.
    pub(super) fn finish(&self) -> Result<()> {
        let rest = std::mem::take(&mut *self.waiting.lock().expect("poisoned"));
        self.catalog.put_files(&rest)
    }
}
