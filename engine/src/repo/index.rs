//! The seam between what writes packs and what remembers where blobs are.
//!
//! A packer needs to ask one question ("is a durable copy of this blob known?") and to say one
//! thing ("this pack is durable, with these entries"); readers ask "where is it?". [`BlobIndex`]
//! is exactly that, so a packer can be driven by the catalog in a backup, by a repack that
//! rewrites packs, or by a plain map in a test. This module knows packs' entries and nothing
//! of RocksDB or of the store.

use crate::error::Result;
use crate::format::pack::{BlobKind, PackEntry};
use crate::id::Id;

/// Where a blob lives: one frame of one pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLocation {
    /// The pack that holds it.
    pub pack: Id,
    /// Offset of its frame.
    pub offset: u32,
    /// Frame length.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
}

impl BlobLocation {
    /// The location an entry of `pack`'s trailer describes.
    pub fn of(pack: Id, e: &PackEntry) -> BlobLocation {
        BlobLocation {
            pack,
            offset: e.offset,
            length: e.length,
            raw_length: e.raw_length,
        }
    }
}

/// Where blobs are, keyed by (kind, id): a data blob may share its id with a tree.
///
/// Contract: `contains` is true only for a blob with a copy in a pack that was reported by
/// `pack_stored` (or found in the store by the implementation's own means) and is not known
/// to be damaged; `pack_stored` is called only once the pack is durable, so an index never
/// promises what the store lacks. Implementations are shared by the threads of a backup.
pub trait BlobIndex: Send + Sync {
    /// Whether a usable, durable copy of the blob is known.
    fn contains(&self, kind: BlobKind, id: &Id) -> Result<bool>;

    /// Where the blob's copy is, if one is known.
    fn locate(&self, kind: BlobKind, id: &Id) -> Result<Option<BlobLocation>>;

    /// Records that the pack `pack` of `size` bytes is durable in the store with `entries`.
    fn pack_stored(&self, pack: &Id, size: u64, entries: &[PackEntry]) -> Result<()>;
}
