//! Packs and blob locations: recording a durable pack with every blob in it, finding where a
//! blob is (what a backup deduplicates against and a reader fetches from), listing the packs
//! and their index entries without a request, and forgetting packs, after which each of their
//! blobs takes its location in another pack that has a copy. The catalog is the
//! [`crate::repo::index::BlobIndex`] a backup's packers use.

use std::collections::{HashMap, HashSet};

use rocksdb::{IteratorMode, WriteBatch};

use crate::catalog::db::Catalog;
use crate::catalog::records::{
    DAMAGED, cf_of, decode_entries, decode_location, encode_entries, encode_location, encode_pack,
    pack_size,
};
use crate::error::Result;
use crate::format::pack::{BlobKind, ENTRY_LEN, PackEntry};
use crate::id::Id;
use crate::repo::index::BlobLocation;

/// For a blob left without a location, the copy found in another pack: that pack, the entry,
/// and whether the copy is marked damaged.
type Copies = HashMap<(u8, Id), (Id, PackEntry, bool)>;

impl Catalog {
    /// Adds to `batch` the location of the blob `e` in `pack`.
    fn put_location(&self, batch: &mut WriteBatch, pack: &Id, e: &PackEntry) {
        let loc = BlobLocation::of(*pack, e);
        batch.put_cf(
            self.cf(cf_of(e.kind)),
            e.id.as_bytes(),
            encode_location(&loc),
        );
    }

    /// Records a durable pack and every blob in it, atomically.
    ///
    /// A blob marked damaged in this pack is indexed only if it has no other location: a
    /// damaged copy never replaces a good one, while a good copy always replaces a damaged one.
    pub fn add_pack(&self, pack: &Id, size: u64, entries: &[PackEntry]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for e in entries {
            if self.is_damaged_in(e.kind, &e.id, pack)?
                && self.locate_known(e.kind, &e.id)?.is_some()
            {
                continue;
            }
            self.put_location(&mut batch, pack, e);
        }
        batch.put_cf(
            self.cf("packs"),
            pack.as_bytes(),
            encode_pack(size, entries.len()),
        );
        batch.put_cf(
            self.cf("pack_index"),
            pack.as_bytes(),
            encode_entries(entries),
        );
        Ok(self.db.write(batch)?)
    }

    /// Where a blob of `kind` lives, if it is in a known pack, or else in a condemned pack that
    /// is still in the store (for readers; deduplication asks [`Catalog::contains`], which
    /// never answers with a condemned pack).
    pub fn locate(&self, kind: BlobKind, id: &Id) -> Result<Option<BlobLocation>> {
        match self.locate_known(kind, id)? {
            Some(loc) => Ok(Some(loc)),
            None => self.locate_condemned(kind, id),
        }
    }

    /// Where a blob of `kind` lives, if it is in a known pack.
    pub(super) fn locate_known(&self, kind: BlobKind, id: &Id) -> Result<Option<BlobLocation>> {
        match self.db.get_pinned_cf(self.cf(cf_of(kind)), id.as_bytes())? {
            Some(v) => Ok(Some(decode_location(&v)?)),
            None => Ok(None),
        }
    }

    /// [`Catalog::locate`] for many blobs of one kind at once, in the order given: one batched
    /// lookup costs a notes folder's walk far less than a lookup per file.
    pub fn locate_many(&self, kind: BlobKind, ids: &[Id]) -> Result<Vec<Option<BlobLocation>>> {
        self.db
            .batched_multi_get_cf(self.cf(cf_of(kind)), ids.iter().map(Id::as_bytes), false)
            .into_iter()
            .zip(ids)
            .map(|(got, id)| match got? {
                Some(v) => Ok(Some(decode_location(&v)?)),
                None => self.locate_condemned(kind, id),
            })
            .collect()
    }

    /// Whether a blob of `kind` is in a known pack.
    ///
    /// A blob whose only known copy is damaged is not: the caller stores it again.
    pub fn contains(&self, kind: BlobKind, id: &Id) -> Result<bool> {
        match self.locate_known(kind, id)? {
            Some(loc) => Ok(!self.is_damaged_in(kind, id, &loc.pack)?),
            None => Ok(false),
        }
    }

    /// Every known pack with its size.
    pub fn pack_sizes(&self) -> Result<HashMap<Id, u64>> {
        let mut out = HashMap::new();
        for item in self.db.iterator_cf(self.cf("packs"), IteratorMode::Start) {
            let (k, v) = item?;
            out.insert(Id::from_slice(&k)?, pack_size(&v));
        }
        Ok(out)
    }

    /// Calls `f` with every blob of `kind` the catalog relies on and its location (one copy a
    /// blob; copies in condemned packs are not among them), in id order, without a request.
    pub fn for_each_location(
        &self,
        kind: BlobKind,
        f: &mut dyn FnMut(&Id, &BlobLocation),
    ) -> Result<()> {
        let cf = self.cf(cf_of(kind));
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, v) = item?;
            f(&Id::from_slice(&k)?, &decode_location(&v)?);
        }
        Ok(())
    }

    /// Number of packs and of data chunks known.
    pub fn counts(&self) -> Result<(u64, u64)> {
        let n = |cf: &str| -> Result<u64> {
            let mut c = 0;
            for item in self.db.iterator_cf(self.cf(cf), IteratorMode::Start) {
                item?;
                c += 1;
            }
            Ok(c)
        };
        Ok((n("packs")?, n("chunks")?))
    }

    pub(super) fn has_pack_index(&self, pack: &Id) -> Result<bool> {
        Ok(self
            .db
            .get_pinned_cf(self.cf("pack_index"), pack.as_bytes())?
            .is_some())
    }

    pub(super) fn put_pack_index(&self, pack: &Id, entries: &[PackEntry]) -> Result<()> {
        Ok(self.db.put_cf(
            self.cf("pack_index"),
            pack.as_bytes(),
            encode_entries(entries),
        )?)
    }

    /// The index entries of one known pack (every blob in it, damaged copies included), without
    /// a request; `None` for an unknown pack or one of more than `max` entries (counted before
    /// they are decoded).
    pub fn pack_entries(&self, pack: &Id, max: usize) -> Result<Option<Vec<PackEntry>>> {
        match self
            .db
            .get_pinned_cf(self.cf("pack_index"), pack.as_bytes())?
        {
            Some(v) if v.len() / ENTRY_LEN <= max => Ok(Some(decode_entries(&v)?)),
            _ => Ok(None),
        }
    }

    /// Every known pack with its size and index entries (all copies of all blobs in it).
    pub fn pack_indexes(&self) -> Result<Vec<(Id, u64, Vec<PackEntry>)>> {
        let sizes = self.pack_sizes()?;
        let mut out = Vec::with_capacity(sizes.len());
        for item in self
            .db
            .iterator_cf(self.cf("pack_index"), IteratorMode::Start)
        {
            let (k, v) = item?;
            let id = Id::from_slice(&k)?;
            if let Some(size) = sizes.get(&id) {
                out.push((id, *size, decode_entries(&v)?));
            }
        }
        Ok(out)
    }

    /// Forgets `gone` packs: their blobs take a location in another known pack that has a copy
    /// (from `pack_index`, without a request), and the files records that name a chunk left
    /// without any copy are dropped, so that a record never outlives its chunks. A gc deletes
    /// only blobs that no snapshot reaches, so after one nothing but stale records goes.
    pub(crate) fn forget_packs(&self, gone: &HashSet<Id>) -> Result<()> {
        let mut batch = WriteBatch::default();
        let mut homeless: HashSet<(u8, Id)> = HashSet::new();
        for (kind, cf) in [(BlobKind::Data, "chunks"), (BlobKind::Tree, "trees")] {
            for item in self.db.iterator_cf(self.cf(cf), IteratorMode::Start) {
                let (k, v) = item?;
                if gone.contains(&decode_location(&v)?.pack) {
                    batch.delete_cf(self.cf(cf), &k);
                    homeless.insert((kind.code(), Id::from_slice(&k)?));
                }
            }
        }
        let found = if homeless.is_empty() {
            Copies::new()
        } else {
            self.other_copies(gone, &homeless)?
        };
        let mut lost_chunks: HashSet<Id> = HashSet::new();
        for key in &homeless {
            // A chunk left with only a damaged copy counts as lost for the files records: the
            // next backup must read its file and store it again.
            let damaged_only = match found.get(key) {
                Some((pack, e, damaged)) => {
                    self.put_location(&mut batch, pack, e);
                    *damaged
                }
                None => true,
            };
            if damaged_only && key.0 == BlobKind::Data.code() {
                lost_chunks.insert(key.1);
            }
        }
        for id in gone {
            batch.delete_cf(self.cf("packs"), id.as_bytes());
            batch.delete_cf(self.cf("pack_index"), id.as_bytes());
        }
        for item in self.db.prefix_iterator_cf(self.cf("meta"), DAMAGED) {
            let (k, _) = item?;
            if !k.starts_with(DAMAGED) {
                break;
            }
            if k.len() == DAMAGED.len() + 65 && gone.contains(&Id::from_slice(&k[k.len() - 32..])?)
            {
                batch.delete_cf(self.cf("meta"), k);
            }
        }
        // Records first: a crash in between leaves at worst records dropped for nothing.
        self.drop_files_naming(&lost_chunks)?;
        self.db.write(batch)?;
        Ok(())
    }

    /// Other copies of the `homeless` blobs, in packs that stay: the first one found becomes
    /// the location (damaged copies only when there is no other).
    fn other_copies(&self, gone: &HashSet<Id>, homeless: &HashSet<(u8, Id)>) -> Result<Copies> {
        let mut found = Copies::new();
        // Only packs still known: an older cairn forgets packs but not their index rows.
        let known = self.pack_sizes()?;
        for item in self
            .db
            .iterator_cf(self.cf("pack_index"), IteratorMode::Start)
        {
            let (k, v) = item?;
            let pack = Id::from_slice(&k)?;
            if gone.contains(&pack) || !known.contains_key(&pack) {
                continue;
            }
            for e in decode_entries(&v)? {
                let key = (e.kind.code(), e.id);
                if !homeless.contains(&key) {
                    continue;
                }
                let damaged = self.is_damaged_in(e.kind, &e.id, &pack)?;
                match found.get(&key) {
                    Some((_, _, false)) => {}
                    Some((_, _, true)) if damaged => {}
                    _ => {
                        found.insert(key, (pack, e, damaged));
                    }
                }
            }
        }
        Ok(found)
    }
}

/// The catalog is the index a backup's packers dedup against and report packs to.
impl crate::repo::index::BlobIndex for Catalog {
    fn contains(&self, kind: BlobKind, id: &Id) -> Result<bool> {
        Catalog::contains(self, kind, id)
    }
    fn locate(&self, kind: BlobKind, id: &Id) -> Result<Option<BlobLocation>> {
        Catalog::locate(self, kind, id)
    }
    fn pack_stored(&self, pack: &Id, size: u64, entries: &[PackEntry]) -> Result<()> {
        self.add_pack(pack, size, entries)
    }
}
