//! The packer: collects blobs into packs, stores each pack when it is full, and only then
//! reports its entries to a [`BlobIndex`]. `pack` knows the byte format; this module knows the
//! order of writes that keeps an index's promise (a blob is indexed only once its pack is
//! durable) and the set of blobs on their way, so that a blob is stored once even when several
//! threads meet it at the same moment. It knows neither the catalog nor the files cache: the
//! backup defers its files-cache records with [`Packer::any_pending`] and [`Added::stored_pack`].

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::error::Result;
use crate::format::pack::{BlobKind, PackBuilder};
use crate::id::Id;
use crate::repo::index::BlobIndex;
use crate::store::Store;

/// What [`Packer::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    /// The blob was neither known to the index nor on its way, and is now on its way.
    pub new: bool,
    /// This call stored a pack: blobs that were pending may now be durable.
    pub stored_pack: bool,
}

/// Collects blobs of one kind into packs and stores each pack when it is full.
///
/// Shared by all backup threads. A blob reaches the index only after its pack is durable in
/// the store, so a crash at any moment leaves an index that promises nothing the store lacks.
pub struct Packer<'a> {
    store: &'a dyn Store,
    index: &'a dyn BlobIndex,
    kind: BlobKind,
    target: usize,
    state: Mutex<PackerState>,
    /// Buffers of stored packs, for the next packs: with a fresh 20 MiB allocation per pack,
    /// glibc's per-thread arenas kept ~50 MiB more resident during a backup.
    spare: Mutex<Vec<Vec<u8>>>,
    packs: AtomicU64,
    stored: AtomicU64,
}

impl std::fmt::Debug for Packer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packer")
            .field("kind", &self.kind)
            .field("target", &self.target)
            .field("packs", &self.packs)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct PackerState {
    current: PackBuilder,
    /// Blobs added to a pack that is not yet durable.
    pending: HashSet<Id>,
}

impl<'a> Packer<'a> {
    /// A packer for blobs of `kind` into `store`, closing packs at `target` bytes and
    /// reporting them to `index`.
    pub fn new(
        store: &'a dyn Store,
        index: &'a dyn BlobIndex,
        kind: BlobKind,
        target: usize,
    ) -> Self {
        Packer {
            store,
            index,
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
        if self.any_pending(std::slice::from_ref(id)) {
            return Ok(true);
        }
        self.index.contains(self.kind, id)
    }

    /// Whether any of the blobs is in a pack that is not yet durable.
    pub fn any_pending(&self, ids: &[Id]) -> bool {
        let st = self.state.lock().expect("poisoned");
        ids.iter().any(|id| st.pending.contains(id))
    }

    /// Adds an encoded blob unless it is already stored or pending, and stores the current pack
    /// when it reaches the target size.
    pub fn add(&self, id: Id, frame: &[u8], raw_length: usize) -> Result<Added> {
        let full = {
            let mut st = self.state.lock().expect("poisoned");
            // Checked under the lock: storing a pack reports its ids to the index before it
            // removes them from `pending`, so an id is always visible in one of the two.
            if st.pending.contains(&id) || self.index.contains(self.kind, &id)? {
                return Ok(Added {
                    new: false,
                    stored_pack: false,
                });
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
        let stored_pack = full.is_some();
        if let Some(builder) = full {
            self.store_pack(builder)?;
        }
        Ok(Added {
            new: true,
            stored_pack,
        })
    }

    /// Stores a closed pack, reports it to the index, then lets its blobs stop being pending.
    fn store_pack(&self, builder: PackBuilder) -> Result<()> {
        let (id, bytes, entries) = builder.finish();
        self.store.put(&crate::repo::pack_key(&id), &bytes)?;
        self.index.pack_stored(&id, bytes.len() as u64, &entries)?;
        self.packs.fetch_add(1, Relaxed);
        self.stored.fetch_add(bytes.len() as u64, Relaxed);
        self.spare.lock().expect("poisoned").push(bytes);
        let mut st = self.state.lock().expect("poisoned");
        for e in &entries {
            st.pending.remove(&e.id);
        }
        Ok(())
    }

    /// Stores the last, partly filled pack: afterwards nothing is pending.
    pub fn finish(&self) -> Result<()> {
        let last = std::mem::take(&mut self.state.lock().expect("poisoned").current);
        if !last.is_empty() {
            self.store_pack(last)?;
        }
        Ok(())
    }

    /// Packs stored and their total size.
    pub fn written(&self) -> (u64, u64) {
        (self.packs.load(Relaxed), self.stored.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::format::pack::PackEntry;
    use crate::repo::index::BlobLocation;
    use crate::store::{Fault, FaultStore, MemoryStore, Op};

    /// An index in a map, which also records the order of what it was told.
    #[derive(Default)]
    struct MapIndex {
        blobs: Mutex<HashMap<(BlobKind, Id), BlobLocation>>,
        packs: Mutex<Vec<Id>>,
    }

    impl BlobIndex for MapIndex {
        fn contains(&self, kind: BlobKind, id: &Id) -> Result<bool> {
            Ok(self.blobs.lock().unwrap().contains_key(&(kind, *id)))
        }
        fn locate(&self, kind: BlobKind, id: &Id) -> Result<Option<BlobLocation>> {
            Ok(self.blobs.lock().unwrap().get(&(kind, *id)).copied())
        }
        fn pack_stored(&self, pack: &Id, _size: u64, entries: &[PackEntry]) -> Result<()> {
            let mut blobs = self.blobs.lock().unwrap();
            for e in entries {
                blobs.insert((e.kind, e.id), BlobLocation::of(*pack, e));
            }
            self.packs.lock().unwrap().push(*pack);
            Ok(())
        }
    }

    fn blob(i: u32) -> (Id, Vec<u8>) {
        let data = format!("blob number {i}").repeat(50).into_bytes();
        (
            Id::of(&data),
            crate::format::codec::encode(&data, 3).unwrap(),
        )
    }

    #[test]
    fn blobs_are_indexed_only_once_their_pack_is_stored_and_once_each() {
        let store = MemoryStore::new();
        let index = MapIndex::default();
        let packer = Packer::new(&store, &index, BlobKind::Data, 1000);
        let (id0, f0) = blob(0);
        let a = packer.add(id0, &f0, 800).unwrap();
        assert!(a.new && !a.stored_pack);
        assert!(packer.any_pending(&[id0]) && packer.has(&id0).unwrap());
        assert!(!index.contains(BlobKind::Data, &id0).unwrap());
        assert!(store.list("packs/").unwrap().is_empty());
        // The same blob again, from another thread's point of view: not added twice.
        assert_eq!(
            packer.add(id0, &f0, 800).unwrap(),
            Added {
                new: false,
                stored_pack: false
            }
        );
        let mut stored = 0;
        for i in 1..40 {
            let (id, f) = blob(i);
            stored += usize::from(packer.add(id, &f, 800).unwrap().stored_pack);
        }
        assert!(stored > 0);
        packer.finish().unwrap();
        assert!(!packer.any_pending(&[id0]));
        let packs = index.packs.lock().unwrap().clone();
        assert_eq!(packer.written().0 as usize, packs.len());
        // Every reported pack is in the store, and every blob reads back from where it is said
        // to be.
        for i in 0..40 {
            let (id, f) = blob(i);
            let loc = index.locate(BlobKind::Data, &id).unwrap().expect("indexed");
            let key = crate::repo::pack_key(&loc.pack);
            let got = store
                .get_range(&key, loc.offset.into(), loc.length.into())
                .unwrap();
            assert_eq!(got, f);
        }
        assert_eq!(store.list("packs/").unwrap().len(), packs.len());
    }

    #[test]
    fn a_pack_that_fails_to_store_reaches_no_index() {
        let store = FaultStore::new(MemoryStore::new());
        store.inject(
            Some(Op::Put),
            "packs/",
            Fault::FailAlways(crate::ErrorKind::Io),
        );
        let index = MapIndex::default();
        let packer = Packer::new(&store, &index, BlobKind::Tree, 1);
        let (id, f) = blob(7);
        assert_eq!(
            packer.add(id, &f, 800).unwrap_err().kind(),
            crate::ErrorKind::Io
        );
        assert!(index.packs.lock().unwrap().is_empty());
        assert!(!index.contains(BlobKind::Tree, &id).unwrap());
        assert_eq!(packer.written(), (0, 0));
    }

    #[test]
    fn threads_adding_the_same_blobs_store_each_once() {
        let store = MemoryStore::new();
        let index = MapIndex::default();
        let packer = Packer::new(&store, &index, BlobKind::Data, 4000);
        let blobs: Vec<_> = (0..64).map(blob).collect();
        let new = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for (id, f) in &blobs {
                        if packer.add(*id, f, 800).unwrap().new {
                            new.fetch_add(1, Relaxed);
                        }
                    }
                });
            }
        });
        packer.finish().unwrap();
        assert_eq!(new.load(Relaxed), 64);
        let entries: usize = store
            .list("packs/")
            .unwrap()
            .iter()
            .map(|o| {
                let bytes = store.get(&o.key).unwrap();
                crate::format::pack::parse_trailer(&bytes, bytes.len() as u64)
                    .unwrap()
                    .len()
            })
            .sum();
        assert_eq!(entries, 64);
    }
}
