//! The bytes of the catalog's records, in one place: blob locations (`chunks`, `trees`), pack
//! records (`packs`), pack index entries (`pack_index`, and the condemned packs' entries kept in
//! `meta`), damage-marker keys, files cache records and snapshot records. A change here is a
//! change of the on-disk format and needs a new [`super::SCHEMA_VERSION`]; nothing here touches
//! the database.

use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::{BlobKind, ENTRY_LEN, PackEntry};
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::repo::index::BlobLocation;

/// Prefix of damage markers in `meta`. Kept there rather than in a column family of their own:
/// a catalog with a column family an older cairn does not know cannot be opened by it at all.
pub(super) const DAMAGED: &[u8] = b"damaged/";
/// Prefix in `meta` of the index entries of condemned packs still in the store.
pub(super) const CONDEMNED_INDEX: &[u8] = b"condemned-index/";

/// What the files cache remembers about a file that was backed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Size when read.
    pub size: u64,
    /// mtime seconds.
    pub mtime: i64,
    /// mtime nanoseconds.
    pub mtime_ns: u32,
    /// ctime seconds.
    pub ctime: i64,
    /// ctime nanoseconds.
    pub ctime_ns: u32,
    /// Inode number.
    pub ino: u64,
    /// Content.
    pub chunks: Vec<Id>,
}

impl FileRecord {
    pub(super) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(40 + 32 * self.chunks.len());
        v.extend_from_slice(&self.size.to_le_bytes());
        v.extend_from_slice(&self.mtime.to_le_bytes());
        v.extend_from_slice(&self.mtime_ns.to_le_bytes());
        v.extend_from_slice(&self.ctime.to_le_bytes());
        v.extend_from_slice(&self.ctime_ns.to_le_bytes());
        v.extend_from_slice(&self.ino.to_le_bytes());
        for c in &self.chunks {
            v.extend_from_slice(c.as_bytes());
        }
        v
    }

    /// Parses a files cache record; `None` if its length is not that of a record. Public for
    /// the fuzz tests, which feed it arbitrary bytes.
    #[doc(hidden)]
    pub fn decode(v: &[u8]) -> Option<FileRecord> {
        if v.len() < 40 || !(v.len() - 40).is_multiple_of(32) {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(v[i..i + 8].try_into().expect("8"));
        let u32_at = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().expect("4"));
        Some(FileRecord {
            size: u64_at(0),
            mtime: u64_at(8) as i64,
            mtime_ns: u32_at(16),
            ctime: u64_at(20) as i64,
            ctime_ns: u32_at(28),
            ino: u64_at(32),
            chunks: v[40..]
                .chunks_exact(32)
                .map(|c| Id::from_slice(c).expect("32 bytes"))
                .collect(),
        })
    }
}

/// A snapshot as the catalog's `snapshots` column family holds it.
pub(super) fn snapshot_record(v: &[u8]) -> Result<Snapshot> {
    serde_json::from_slice(v).map_err(|e| {
        Error::new(
            ErrorKind::Catalog,
            "catalog snapshot record is not valid JSON",
        )
        .with_source(e)
    })
}

/// Key in `meta` of a condemned pack's kept index entries.
pub(super) fn condemned_index_key(pack: &Id) -> Vec<u8> {
    let mut k = CONDEMNED_INDEX.to_vec();
    k.extend_from_slice(pack.as_bytes());
    k
}

/// Key of a damage marker in `meta`: `damaged/`, kind code, blob id, pack id.
pub(super) fn damaged_key(kind: BlobKind, id: &Id, pack: &Id) -> Vec<u8> {
    let mut k = Vec::with_capacity(DAMAGED.len() + 65);
    k.extend_from_slice(DAMAGED);
    k.push(kind.code());
    k.extend_from_slice(id.as_bytes());
    k.extend_from_slice(pack.as_bytes());
    k
}

/// The column family of blobs of `kind`.
pub(super) fn cf_of(kind: BlobKind) -> &'static str {
    match kind {
        BlobKind::Data => "chunks",
        BlobKind::Tree => "trees",
    }
}

/// A `packs` record: the pack's size, then how many blobs it holds.
pub(super) fn encode_pack(size: u64, blobs: usize) -> Vec<u8> {
    let mut v = size.to_le_bytes().to_vec();
    v.extend_from_slice(&(blobs as u32).to_le_bytes());
    v
}

/// The size in a `packs` record (0 for a record too short to hold one).
pub(super) fn pack_size(v: &[u8]) -> u64 {
    v.get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8")))
        .unwrap_or_default()
}

pub(super) fn encode_location(loc: &BlobLocation) -> [u8; 44] {
    let mut v = [0u8; 44];
    v[..32].copy_from_slice(loc.pack.as_bytes());
    v[32..36].copy_from_slice(&loc.offset.to_le_bytes());
    v[36..40].copy_from_slice(&loc.length.to_le_bytes());
    v[40..44].copy_from_slice(&loc.raw_length.to_le_bytes());
    v
}

pub(super) fn decode_location(v: &[u8]) -> Result<BlobLocation> {
    if v.len() != 44 {
        return Err(Error::new(
            ErrorKind::Catalog,
            "catalog blob record has the wrong length",
        ));
    }
    let u = |i: usize| u32::from_le_bytes(v[i..i + 4].try_into().expect("4"));
    Ok(BlobLocation {
        pack: Id::from_slice(&v[..32])?,
        offset: u(32),
        length: u(36),
        raw_length: u(40),
    })
}

/// A `pack_index` record: the pack's entries in the pack trailer's own encoding
/// ([`PackEntry::encode_into`]), one after the other.
pub(super) fn encode_entries(entries: &[PackEntry]) -> Vec<u8> {
    let mut v = Vec::with_capacity(ENTRY_LEN * entries.len());
    for e in entries {
        e.encode_into(&mut v);
    }
    v
}

pub(super) fn decode_entries(v: &[u8]) -> Result<Vec<PackEntry>> {
    if !v.len().is_multiple_of(ENTRY_LEN) {
        return Err(Error::new(
            ErrorKind::Catalog,
            "catalog pack index record has the wrong length",
        ));
    }
    v.chunks_exact(ENTRY_LEN)
        .map(|e| {
            // An entry's only failure is its kind byte (an id of 32 bytes always reads): a
            // record of the catalog's says so as a catalog error, not as a damaged pack.
            PackEntry::decode(e.try_into().expect("chunks of ENTRY_LEN")).map_err(|_| {
                Error::new(
                    ErrorKind::Catalog,
                    "catalog pack index record has an unknown kind",
                )
            })
        })
        .collect()
}
