//! The packer: collects blobs into packs, stores each pack when it is full, and only then
//! reports its entries to a [`BlobIndex`]. `pack` knows the byte format; this module knows the
//! order of writes that keeps an index's promise (a blob is indexed only once its pack is
//! durable) and the set of blobs on their way, so that a blob is stored once even when several
//! threads meet it at the same moment. It knows neither the catalog nor the files cache: the
//! backup defers its files-cache records with [`Packer::any_pending`] and [`Added::stored_pack`].
//!
//! Threads share one open pack, so a file's blobs would be interleaved with other files'. A
//! [`Lane`] keeps one file's blobs together instead: in packs of their own while they fill one,
//! and the rest appended to the shared pack in one piece. The export copies a run of a file's
//! frames inside an S3 server only when they lie back to back in a pack.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

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
    /// Lanes that may still be opened: each holds a pack buffer of its own.
    lanes_free: AtomicUsize,
}

/// Memory the lanes of one packer may hold at once: a file beyond what it allows is packed in
/// the shared pack (its frames then alternate with other files').
const LANES_MEMORY: usize = 64 << 20;

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
    /// Full packs that a dropped lane could not store (a drop returns no error): the next add
    /// or finish stores them.
    closed: Vec<PackBuilder>,
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
            lanes_free: AtomicUsize::new((LANES_MEMORY / (target + (4 << 20))).max(1)),
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
            if !self.claim(&mut st, &id)? {
                return Ok(Added {
                    new: false,
                    stored_pack: false,
                });
            }
            if st.current.is_empty() {
                st.current = self.builder();
            }
            st.current.add(self.kind, id, frame, raw_length);
            let mut full = std::mem::take(&mut st.closed);
            if st.current.len() >= self.target {
                full.push(std::mem::take(&mut st.current));
            }
            full
        };
        let stored_pack = !full.is_empty();
        for builder in full {
            self.store_pack(builder)?;
        }
        Ok(Added {
            new: true,
            stored_pack,
        })
    }

    /// A lane for one file's blobs (see [`Lane`]), unless as many are open as [`LANES_MEMORY`]
    /// allows (three at the default 16 MiB target, one at 64 MiB).
    pub fn lane(&self) -> Option<Lane<'_, 'a>> {
        self.lanes_free
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .ok()?;
        Some(Lane {
            packer: self,
            own: PackBuilder::default(),
        })
    }

    /// Marks a blob as on its way unless it is already stored or on its way; false then.
    /// Checked under the state lock: storing a pack reports its ids to the index before it
    /// removes them from `pending`, so an id is always visible in one of the two.
    fn claim(&self, st: &mut PackerState, id: &Id) -> Result<bool> {
        if st.pending.contains(id) || self.index.contains(self.kind, id)? {
            return Ok(false);
        }
        st.pending.insert(*id);
        Ok(true)
    }

    /// An empty pack, in the buffer of a stored one when there is one.
    fn builder(&self) -> PackBuilder {
        let spare = self.spare.lock().expect("poisoned").pop();
        PackBuilder::with_buffer(
            spare.unwrap_or_else(|| Vec::with_capacity(self.target + 4 * 1024 * 1024)),
        )
    }

    /// Appends a lane's blobs to the shared pack in one piece (the smaller of the two is copied
    /// after the larger); returns the shared pack if that filled it and `take_full` asks for it,
    /// and otherwise leaves it closed for the next add or finish to store.
    fn merge(&self, mut run: PackBuilder, take_full: bool) -> Option<PackBuilder> {
        if run.is_empty() {
            return None;
        }
        let mut st = self.state.lock().expect("poisoned");
        if run.len() > st.current.len() {
            std::mem::swap(&mut run, &mut st.current);
        }
        st.current.append(&run);
        // Closed once full, also by a drop, which cannot store it: the shared pack is below the
        // target before a rest is appended, so no pack holds twice the target.
        let mut full = None;
        if st.current.len() >= self.target {
            let closed = std::mem::take(&mut st.current);
            if take_full {
                full = Some(closed);
            } else {
                st.closed.push(closed);
            }
        }
        drop(st);
        self.recycle(run.into_buffer());
        full
    }

    /// Keeps a buffer for the next pack, unless it grew past what a pack normally needs (a
    /// shared pack with a lane's rest): kept, such buffers would stay for the whole run.
    fn recycle(&self, buf: Vec<u8>) {
        if buf.capacity() > 0 && buf.capacity() <= self.target + 4 * 1024 * 1024 {
            self.spare.lock().expect("poisoned").push(buf);
        }
    }

    /// Stores a closed pack, reports it to the index, then lets its blobs stop being pending.
    fn store_pack(&self, builder: PackBuilder) -> Result<()> {
        let (id, bytes, entries) = builder.finish();
        self.store.put(&crate::repo::pack_key(&id), &bytes)?;
        self.index.pack_stored(&id, bytes.len() as u64, &entries)?;
        self.packs.fetch_add(1, Relaxed);
        self.stored.fetch_add(bytes.len() as u64, Relaxed);
        self.recycle(bytes);
        let mut st = self.state.lock().expect("poisoned");
        for e in &entries {
            st.pending.remove(&e.id);
        }
        Ok(())
    }

    /// Stores the packs a dropped lane closed; true if there were any.
    fn store_closed(&self) -> Result<bool> {
        let closed = std::mem::take(&mut self.state.lock().expect("poisoned").closed);
        let any = !closed.is_empty();
        for c in closed {
            self.store_pack(c)?;
        }
        Ok(any)
    }

    /// Stores the last, partly filled pack: afterwards nothing is pending.
    pub fn finish(&self) -> Result<()> {
        self.store_closed()?;
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

/// One file's blobs on their way, kept together: added to a pack of the lane's own, stored
/// when the next frame would take it past the target size, and what is left when the file ends
/// is appended to the shared pack in one piece ([`Lane::finish`]). A pack therefore holds a file's frames back to
/// back, and a shared pack may reach twice the target (its own blobs, then a lane's rest).
///
/// A lane's blobs are pending like the shared pack's, so no other thread stores them again. A
/// lane dropped without `finish` (a file that failed halfway) still hands its blobs to the
/// shared pack: others may already count on them being stored.
pub struct Lane<'p, 'a> {
    packer: &'p Packer<'a>,
    own: PackBuilder,
}

impl std::fmt::Debug for Lane<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("len", &self.own.len())
            .finish()
    }
}

impl Lane<'_, '_> {
    /// Adds an encoded blob unless it is already stored or pending, storing the lane's pack
    /// first when the blob would take it past the target size.
    pub fn add(&mut self, id: Id, frame: &[u8], raw_length: usize) -> Result<Added> {
        let p = self.packer;
        // Closed before the frame that would take it past the target: at the default target a
        // lane's pack is then at most one S3 copy long (the export copies at most 16 MiB at
        // once), where a pack one frame longer would leave that frame to be sent. Stored before
        // the blob is claimed, so that a failed store leaves no claimed blob outside every pack.
        let stored_pack = !self.own.is_empty() && self.own.len() + frame.len() > p.target;
        if stored_pack {
            p.store_pack(std::mem::take(&mut self.own))?;
        }
        if !p.claim(&mut p.state.lock().expect("poisoned"), &id)? {
            return Ok(Added {
                new: false,
                stored_pack,
            });
        }
        if self.own.is_empty() {
            self.own = p.builder();
        }
        self.own.add(p.kind, id, frame, raw_length);
        Ok(Added {
            new: true,
            stored_pack,
        })
    }

    /// Appends what the lane holds to the shared pack, and stores that if it is full: true
    /// then, as [`Added::stored_pack`].
    pub fn finish(mut self) -> Result<bool> {
        let rest = std::mem::take(&mut self.own);
        let stored = match self.packer.merge(rest, true) {
            Some(full) => self.packer.store_pack(full).map(|()| true)?,
            None => false,
        };
        Ok(self.packer.store_closed()? || stored)
    }
}

impl Drop for Lane<'_, '_> {
    fn drop(&mut self) {
        self.packer.lanes_free.fetch_add(1, Relaxed);
        if std::thread::panicking() {
            // The state lock may be poisoned: taking it would turn the panic into an abort.
            return;
        }
        // Not stored here (no errors from a drop): a full shared pack is stored by the next
        // add, lane's finish, or `Packer::finish`. The backup finishes its lanes and drops one
        // only on its way out with an error.
        let rest = std::mem::take(&mut self.own);
        self.packer.merge(rest, false);
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

    /// A frame of `len` bytes that no other test frame equals (the packer never decodes it).
    fn frame(tag: u8, i: u32, len: usize) -> (Id, Vec<u8>) {
        let mut f = vec![tag; len];
        f[..4].copy_from_slice(&i.to_le_bytes());
        (Id::of(&f), f)
    }

    /// Where each blob ended up, in the order given.
    fn places(index: &MapIndex, ids: &[Id]) -> Vec<BlobLocation> {
        ids.iter()
            .map(|id| index.locate(BlobKind::Data, id).unwrap().expect("indexed"))
            .collect()
    }

    /// Counts the places where the next blob does not follow the one before in the same pack.
    fn breaks(places: &[BlobLocation]) -> usize {
        places
            .windows(2)
            .filter(|w| w[1].pack != w[0].pack || w[1].offset != w[0].offset + w[0].length)
            .count()
    }

    /// A file's blobs added through a lane lie back to back, in packs of their own while they
    /// fill one and then in one piece of the shared pack, whatever other threads add meanwhile;
    /// without the lane they alternate with the other file's.
    #[test]
    fn a_lanes_blobs_lie_back_to_back_among_other_threads_blobs() {
        let store = MemoryStore::new();
        let index = MapIndex::default();
        let packer = Packer::new(&store, &index, BlobKind::Data, 10_000);
        let (mut lane_ids, mut shared_ids) = (Vec::new(), Vec::new());
        let mut lane = packer.lane().unwrap();
        let mut lane_stored = 0;
        for i in 0..35 {
            let (id, f) = frame(1, i, 700);
            lane_stored += usize::from(lane.add(id, &f, 900).unwrap().stored_pack);
            lane_ids.push(id);
            // Pending in the lane: known to every thread, and not added twice.
            assert!(packer.has(&id).unwrap());
            assert!(!packer.add(id, &f, 900).unwrap().new);
            let (id, f) = frame(2, i, 200);
            packer.add(id, &f, 400).unwrap();
            shared_ids.push(id);
        }
        // 24,500 bytes: two packs of the lane's own (14 frames, as 15 would pass 10,000 bytes),
        // and the last 7 frames appended to the shared pack, which that fills (7,000 + 4,900).
        assert_eq!(lane_stored, 2);
        assert!(lane.finish().unwrap());
        packer.finish().unwrap();
        let lane_places = places(&index, &lane_ids);
        assert_eq!(breaks(&lane_places), 2, "{lane_places:?}");
        assert_eq!(breaks(&places(&index, &shared_ids)), 0);
        assert_eq!(index.packs.lock().unwrap().len(), 3);
    }

    /// Lanes hold a pack buffer each: no more are open at once than their memory allows, and a
    /// lane dropped frees its place.
    #[test]
    fn lanes_are_bounded_by_their_memory() {
        let store = MemoryStore::new();
        let index = MapIndex::default();
        let packer = Packer::new(&store, &index, BlobKind::Data, 16 << 20);
        let open: Vec<_> = (0..3).map(|_| packer.lane().expect("a lane")).collect();
        assert!(
            packer.lane().is_none(),
            "a fourth lane of 20 MiB past 64 MiB"
        );
        drop(open);
        assert!(packer.lane().is_some());
        let big = Packer::new(&store, &index, BlobKind::Data, 64 << 20);
        let one = big.lane();
        assert!(one.is_some() && big.lane().is_none());
    }

    /// A shared pack left full by a dropped lane is closed before the next lane's rest is
    /// appended: no pack holds more than twice the target.
    #[test]
    fn no_pack_grows_past_twice_the_target() {
        let store = MemoryStore::new();
        let index = MapIndex::default();
        let packer = Packer::new(&store, &index, BlobKind::Data, 10_000);
        for tag in [4, 5] {
            // 14 frames of 700: 9,800 bytes each, below the target, so all go to the shared
            // pack: the first by a drop (not stored), the second by a finish.
            let mut lane = packer.lane().unwrap();
            for i in 0..14 {
                let (id, f) = frame(tag, i, 700);
                lane.add(id, &f, 800).unwrap();
            }
            if tag == 4 {
                let (id, f) = frame(6, 0, 700);
                packer.add(id, &f, 800).unwrap();
                drop(lane);
            } else {
                lane.finish().unwrap();
            }
        }
        packer.finish().unwrap();
        for o in store.list("packs/").unwrap() {
            assert!(o.size <= 2 * 10_000 + 1_000, "a pack of {} bytes", o.size);
        }
    }

    /// A lane dropped halfway (a file that failed to read) hands its blobs to the shared pack:
    /// another file that met them pending counts on them being stored.
    #[test]
    fn a_dropped_lane_still_stores_its_blobs() {
        let store = MemoryStore::new();
        let index = MapIndex::default();
        let packer = Packer::new(&store, &index, BlobKind::Data, 10_000);
        let ids: Vec<Id> = {
            let mut lane = packer.lane().unwrap();
            (0..3)
                .map(|i| {
                    let (id, f) = frame(3, i, 500);
                    assert!(lane.add(id, &f, 600).unwrap().new);
                    id
                })
                .collect()
        };
        assert!(packer.any_pending(&ids));
        packer.finish().unwrap();
        assert!(!packer.any_pending(&ids));
        assert_eq!(breaks(&places(&index, &ids)), 0);
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
