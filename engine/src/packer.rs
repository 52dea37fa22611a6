//! The packer: collects the blobs a backup stores into packs, uploads each pack when it is full,
//! and only then tells the catalog where its blobs are. `pack` knows the byte format; this module
//! knows the order of writes that keeps the catalog's promises (a blob is indexed only once its
//! pack is durable, a files-cache record only once every chunk it names is).

use crate::error::Result;
use crate::id::Id;
use crate::pack::{BlobKind, PackBuilder};

/// Collects blobs of one kind into packs and uploads each pack when it is full.
///
/// Shared by all backup threads. A blob's catalog entry is written only after its pack is
/// durable in the store, and files cache records wait until every chunk they name is durable,
/// so a crash at any moment leaves a catalog that promises nothing the store lacks.
#[derive(Debug)]
pub struct Packer<'a> {
    repo: &'a crate::repo::Repository,
    catalog: &'a crate::catalog::Catalog,
    kind: BlobKind,
    target: usize,
    state: std::sync::Mutex<PackerState>,
    /// Buffers of uploaded packs, for the next packs: with a fresh 20 MiB allocation per pack,
    /// glibc's per-thread arenas kept ~50 MiB more resident during a backup.
    spare: std::sync::Mutex<Vec<Vec<u8>>>,
    packs: std::sync::atomic::AtomicU64,
    stored: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
struct PackerState {
    current: PackBuilder,
    /// Blobs added to a pack that is not yet durable.
    pending: std::collections::HashSet<Id>,
    /// Files cache records that name pending chunks.
    waiting: Vec<(Vec<u8>, crate::catalog::FileRecord)>,
}

impl<'a> Packer<'a> {
    /// A packer for blobs of `kind`, closing packs at `target` bytes.
    pub fn new(
        repo: &'a crate::repo::Repository,
        catalog: &'a crate::catalog::Catalog,
        kind: BlobKind,
        target: usize,
    ) -> Self {
        Packer {
            repo,
            catalog,
            kind,
            target,
            state: Default::default(),
            spare: Default::default(),
            packs: Default::default(),
            stored: Default::default(),
        }
    }

    /// Whether the blob is already stored or on its way: then it need not be encoded again.
    pub fn has(&self, id: &Id) -> Result<bool> {
        if self.state.lock().expect("poisoned").pending.contains(id) {
            return Ok(true);
        }
        self.catalog.contains(self.kind, id)
    }

    /// Adds an encoded blob unless it is already stored or pending; returns whether it was added.
    /// Uploads the current pack when it reaches the target size.
    pub fn add(&self, id: Id, frame: &[u8], raw_length: usize) -> Result<bool> {
        let full = {
            let mut st = self.state.lock().expect("poisoned");
            // Checked under the lock: an upload moves ids from `pending` to the catalog before
            // it removes them from `pending`, so an id is always visible in one of the two.
            if st.pending.contains(&id) || self.catalog.contains(self.kind, &id)? {
                return Ok(false);
            }
            if st.current.is_empty() {
                let spare = self.spare.lock().expect("poisoned").pop();
                st.current = PackBuilder::with_buffer(
                    spare.unwrap_or_else(|| Vec::with_capacity(self.target + 4 * 1024 * 1024)),
                );
            }
            st.current.add(self.kind, id, frame, raw_length);
            st.pending.insert(id);
            (st.current.len() >= self.target).then(|| std::mem::take(&mut st.current))
        };
        if let Some(builder) = full {
            self.upload(builder)?;
        }
        Ok(true)
    }

    /// Records a files cache entry as soon as every chunk it names is durable.
    pub fn file_done(&self, path: Vec<u8>, record: crate::catalog::FileRecord) -> Result<()> {
        {
            let mut st = self.state.lock().expect("poisoned");
            if record.chunks.iter().any(|c| st.pending.contains(c)) {
                st.waiting.push((path, record));
                return Ok(());
            }
        }
        self.catalog.put_files(&[(path, record)])
    }

    fn upload(&self, builder: PackBuilder) -> Result<()> {
        let (id, bytes, entries) = builder.finish();
        self.repo.store().put(&crate::repo::pack_key(&id), &bytes)?;
        self.catalog.add_pack(&id, bytes.len() as u64, &entries)?;
        self.packs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.stored
            .fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.spare.lock().expect("poisoned").push(bytes);
        let ready: Vec<_> = {
            let mut st = self.state.lock().expect("poisoned");
            for e in &entries {
                st.pending.remove(&e.id);
            }
            let waiting = std::mem::take(&mut st.waiting);
            let (ready, still): (Vec<_>, Vec<_>) = waiting
                .into_iter()
                .partition(|(_, r)| !r.chunks.iter().any(|c| st.pending.contains(c)));
            st.waiting = still;
            ready
        };
        if !ready.is_empty() {
            self.catalog.put_files(&ready)?;
        }
        Ok(())
    }

    /// Uploads the last, partly filled pack and writes the remaining files cache records.
    pub fn finish(&self) -> Result<()> {
        let last = std::mem::take(&mut self.state.lock().expect("poisoned").current);
        if !last.is_empty() {
            self.upload(last)?;
        }
        let rest = std::mem::take(&mut self.state.lock().expect("poisoned").waiting);
        self.catalog.put_files(&rest)
    }

    /// Packs uploaded and their total size.
    pub fn written(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.packs.load(Relaxed), self.stored.load(Relaxed))
    }
}
