//! Tree packs cached on the state volume, for repositories whose packs are read by requests.
//!
//! Every reader of a snapshot walks its trees one directory at a time, and each tree is a
//! ranged GET on S3: a share of 2,000 directories costs 2,000 round trips before the first byte
//! of content, for a restore, an export or a `cairn ls`. Trees live in packs of their own, a few
//! MiB each, so the first read of a tree fetches its whole pack once, checks it against its id
//! (a pack is named by the BLAKE3 of its bytes) and keeps it in `STATE/tree-packs/<id>`; later
//! reads are local. Packs are immutable, so a cached one never goes stale; the catalog's sync
//! removes cached packs the store no longer has. A cached file that was damaged on disk only
//! costs a read from the store: readers check every blob against its id and fall back.

use std::fs;
use std::io::ErrorKind as IoKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::index::BlobLocation;
use crate::store::Store;

/// The tree-pack cache of one state directory.
#[derive(Debug)]
pub struct TreeCache {
    dir: PathBuf,
    /// Packs not to cache (they did not hash to their id): their trees are read by ranges.
    refused: std::sync::Mutex<std::collections::HashSet<Id>>,
    /// Set when a pack could not be written (a full or read-only state volume): from then on
    /// trees are read by ranges, instead of a whole pack fetched for each.
    unwritable: std::sync::atomic::AtomicBool,
}

/// A pack larger than this is not a tree pack (those are a quarter of the pack size, at most
/// 16 MiB) and is read by ranges instead of being cached whole.
const MAX_CACHED_PACK: u64 = 64 << 20;

impl TreeCache {
    /// The cache below `state_dir` (created on first use).
    pub fn at(state_dir: &Path) -> TreeCache {
        TreeCache::in_dir(state_dir.join("tree-packs"))
    }

    fn in_dir(dir: PathBuf) -> TreeCache {
        TreeCache {
            dir,
            refused: Default::default(),
            unwritable: Default::default(),
        }
    }

    /// An empty cache in the folder `name` beside this one, for one command that must read
    /// the store's own bytes (`check`): whatever an earlier command left there is removed first,
    /// and [`TreeCache::remove`] removes the folder when the command is done.
    pub fn fresh_beside(&self, name: &str) -> TreeCache {
        let dir = self
            .dir
            .parent()
            .map_or_else(|| PathBuf::from(name), |p| p.join(name));
        let _ = fs::remove_dir_all(&dir);
        TreeCache::in_dir(dir)
    }

    /// Removes the cache's folder and everything in it.
    pub fn remove(&self) {
        if let Err(e) = fs::remove_dir_all(&self.dir)
            && e.kind() != IoKind::NotFound
        {
            tracing::warn!(path = %self.dir.display(), error = %e, "could not remove a tree-pack copy");
        }
    }

    fn path(&self, pack: &Id) -> PathBuf {
        self.dir.join(pack.to_hex())
    }

    /// The frame at `loc`, from the cached copy of its pack; the pack is fetched whole and
    /// checked on first use. `None` when the pack is too large to be a tree pack, did not hash
    /// to its id, or the cache cannot be written: the caller reads the range from the store.
    pub fn frame(&self, store: &dyn Store, loc: &BlobLocation) -> Result<Option<Vec<u8>>> {
        let path = self.path(&loc.pack);
        let (offset, len) = (u64::from(loc.offset), loc.length as usize);
        match fs::File::open(&path) {
            Ok(f) => {
                let mut buf = vec![0u8; len];
                match f.read_exact_at(&mut buf, offset) {
                    Ok(()) => return Ok(Some(buf)),
                    // Shorter than the pack (a crash before the data reached the disk): fetched
                    // again below.
                    Err(e) => {
                        tracing::warn!(pack = %loc.pack, error = %e, "dropping an unreadable cached tree pack");
                        self.forget(&loc.pack);
                    }
                }
            }
            Err(e) if e.kind() == IoKind::NotFound => {}
            // The folder is unusable (not a folder, no permission): trees are read by ranges.
            Err(e) => {
                if !self
                    .unwritable
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!(path = %path.display(), error = %e, "tree-pack cache unusable; reading trees by ranges");
                }
                return Ok(None);
            }
        }
        let refused = self.refused.lock().expect("poisoned").contains(&loc.pack);
        if refused || self.unwritable.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(None);
        }
        let key = crate::repo::pack_key(&loc.pack);
        if store.size(&key)? > MAX_CACHED_PACK {
            return Ok(None);
        }
        let bytes = store.get(&key)?;
        if Id::of(&bytes) != loc.pack {
            self.refused.lock().expect("poisoned").insert(loc.pack);
            return Err(Error::corrupt(format!(
                "pack {} does not hash to its name",
                loc.pack.short()
            )));
        }
        // A cache that cannot be written (a full or read-only state volume) costs speed only.
        if let Err(e) = self.keep(&loc.pack, &bytes) {
            tracing::warn!(pack = %loc.pack, error = %e, "could not cache a tree pack; reading trees by ranges from now on");
            self.unwritable
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let frame = bytes
            .get(offset as usize..offset as usize + len)
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "tree at {offset}+{len} is beyond the end of pack {}",
                    loc.pack.short()
                ))
            })?;
        Ok(Some(frame.to_vec()))
    }

    /// Writes a checked pack under its name: to a temporary file first, so that a reader (or a
    /// second process) never sees half of it.
    fn keep(&self, pack: &Id, bytes: &[u8]) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        // Not fsynced: a cached pack lost to a power cut is fetched again.
        crate::atomic_file::write_whole(&self.path(pack), bytes, false)
    }

    /// Drops the cached copy of a pack (it failed a read or a check): the next read fetches it
    /// again.
    pub fn forget(&self, pack: &Id) {
        let _ = fs::remove_file(self.path(pack));
    }

    /// Removes the cached packs for which `known` is false (the store no longer has them), and
    /// temporary files left by a killed reader. Returns how many files went.
    pub fn retain(&self, known: impl Fn(&Id) -> bool) -> Result<usize> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == IoKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(format!("listing {}", self.dir.display()), e)),
        };
        let mut removed = 0;
        for ent in rd.flatten() {
            let name = ent.file_name();
            let name = name.to_string_lossy();
            let stale = match Id::from_hex(&name) {
                Ok(id) => !known(&id),
                // Temporary files of a reader that died, or anything else that is not ours to keep.
                Err(_) => name.starts_with('.'),
            };
            if stale && fs::remove_file(ent.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::pack::{BlobKind, PackBuilder};
    use crate::store::{FaultStore, MemoryStore, Op};

    #[test]
    fn a_tree_pack_is_fetched_once_checked_and_then_read_locally() {
        let state = tempfile::tempdir().unwrap();
        let cache = TreeCache::at(state.path());
        let store = FaultStore::new(MemoryStore::new());
        let mut b = PackBuilder::with_capacity(1 << 16);
        let frames: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + usize::from(i)]).collect();
        for (i, f) in frames.iter().enumerate() {
            b.add(BlobKind::Tree, Id::of(&[i as u8]), f, f.len());
        }
        let (pack, bytes, entries) = b.finish();
        store.put(&crate::repo::pack_key(&pack), &bytes).unwrap();
        for (e, want) in entries.iter().zip(&frames) {
            let got = cache
                .frame(&store, &BlobLocation::of(pack, e))
                .unwrap()
                .unwrap();
            assert_eq!(&got, want);
        }
        assert_eq!(store.calls(Op::Get), 1, "the pack is fetched once");
        assert_eq!(cache.retain(|id| *id == pack).unwrap(), 0);
        assert_eq!(cache.retain(|_| false).unwrap(), 1);

        // A pack that does not hash to its name is refused, and not cached.
        let mut bad = bytes.clone();
        bad[10] ^= 1;
        store.put(&crate::repo::pack_key(&pack), &bad).unwrap();
        let err = cache
            .frame(&store, &BlobLocation::of(pack, &entries[0]))
            .unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Corrupt, "{err}");
        assert!(!cache.path(&pack).exists());
        // ...and not fetched whole again: its trees are read by ranges from now on.
        let gets = store.calls(Op::Get);
        assert_eq!(
            cache
                .frame(&store, &BlobLocation::of(pack, &entries[0]))
                .unwrap(),
            None
        );
        assert_eq!(store.calls(Op::Get), gets);
    }

    #[test]
    fn a_short_cached_pack_is_fetched_again_and_an_unwritable_cache_is_given_up() {
        let state = tempfile::tempdir().unwrap();
        let store = FaultStore::new(MemoryStore::new());
        let pack_of = |seed: u8| {
            let mut b = PackBuilder::with_capacity(1 << 16);
            b.add(BlobKind::Tree, Id::of(&[seed]), &[seed; 300], 300);
            let (pack, bytes, entries) = b.finish();
            store.put(&crate::repo::pack_key(&pack), &bytes).unwrap();
            BlobLocation::of(pack, &entries[0])
        };
        let (a, b) = (pack_of(1), pack_of(2));
        let cache = TreeCache::at(state.path());
        assert_eq!(cache.frame(&store, &a).unwrap().unwrap(), [1u8; 300]);
        // A crash left the cached file short: it is dropped and fetched again.
        fs::OpenOptions::new()
            .write(true)
            .open(cache.path(&a.pack))
            .unwrap()
            .set_len(10)
            .unwrap();
        assert_eq!(cache.frame(&store, &a).unwrap().unwrap(), [1u8; 300]);
        assert_eq!(store.calls(Op::Get), 2);
        // A cache folder that cannot be used: trees are read by ranges, no pack is fetched whole.
        let blocked = tempfile::tempdir().unwrap();
        fs::write(blocked.path().join("tree-packs"), b"not a folder").unwrap();
        let cache = TreeCache::at(blocked.path());
        assert_eq!(cache.frame(&store, &b).unwrap(), None);
        assert_eq!(cache.frame(&store, &b).unwrap(), None);
        assert_eq!(store.calls(Op::Get), 2);
    }
}
