//! Packs: many blob frames in one object, indexed by a trailer.
//!
//! A pack is a sequence of zstd frames (one blob each) followed by a zstd *skippable frame* that
//! lists the blobs, so the whole pack is still a valid zstd stream and the catalog can be rebuilt
//! from the packs alone by reading each pack's tail. A pack is named by the BLAKE3 hash of all
//! its bytes. The byte layout is specified in docs/FORMAT.md; this module is its only writer.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh64::xxh64;

use crate::error::{Error, Result};
use crate::id::Id;

/// Magic of the skippable frame that holds a pack's index (0x184D2A50 | 0xC, "c" for cairn).
pub const SKIPPABLE_MAGIC: u32 = 0x184D_2A5C;
/// Identifies the index payload and its version.
pub const INDEX_MAGIC: &[u8; 8] = b"CAIRNIX1";
/// Last 8 bytes of every pack.
pub const END_MAGIC: &[u8; 8] = b"CAIRNPK1";
/// Size of one index entry: kind, id, offset, length, raw length.
pub const ENTRY_LEN: usize = 1 + 32 + 4 + 4 + 4;
/// Footer inside the payload: xxh64 of header + entries, payload length, end magic.
pub const FOOTER_LEN: usize = 8 + 4 + 8;
const HEADER_LEN: usize = 8 + 4;

/// What a blob holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobKind {
    /// File content.
    Data,
    /// A directory listing.
    Tree,
}

impl BlobKind {
    /// `data` or `tree`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            BlobKind::Data => "data",
            BlobKind::Tree => "tree",
        }
    }

    /// The kind's byte in a pack index (and in the catalog's damage markers).
    pub(crate) fn code(self) -> u8 {
        match self {
            BlobKind::Data => 0,
            BlobKind::Tree => 1,
        }
    }
    /// The most bytes a blob of this kind may decode to, whatever its index entry says:
    /// FastCDC's largest chunk, or the format's tree limit.
    pub fn max_raw_len(self) -> usize {
        match self {
            BlobKind::Data => crate::format::chunk::MAX_CHUNK_LEN,
            BlobKind::Tree => crate::format::tree::MAX_TREE_LEN,
        }
    }

    pub(crate) fn from_code(c: u8) -> Result<BlobKind> {
        match c {
            0 => Ok(BlobKind::Data),
            1 => Ok(BlobKind::Tree),
            _ => Err(Error::corrupt(format!(
                "unknown blob kind {c} in pack index"
            ))),
        }
    }
}

/// One blob in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackEntry {
    /// Data or tree.
    pub kind: BlobKind,
    /// BLAKE3 of the plaintext.
    pub id: Id,
    /// Where the frame starts in the pack.
    pub offset: u32,
    /// Length of the frame.
    pub length: u32,
    /// Length of the plaintext.
    pub raw_length: u32,
}

/// The one encoding of an entry, [`ENTRY_LEN`] bytes: the pack trailer lists its blobs with it,
/// and the catalog's `pack_index` records keep the same bytes, so the two cannot drift apart.
impl PackEntry {
    /// Appends the entry's bytes: kind code, id, then offset, length and raw length as
    /// little-endian `u32`s.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        out.push(self.kind.code());
        out.extend_from_slice(self.id.as_bytes());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.extend_from_slice(&self.raw_length.to_le_bytes());
    }

    /// Reads an entry written by [`PackEntry::encode_into`]. Only an unknown kind byte fails
    /// (`Corrupt`): every other field takes any value, and the caller checks them against
    /// what holds the entry.
    pub(crate) fn decode(raw: &[u8; ENTRY_LEN]) -> Result<PackEntry> {
        let u = |r: std::ops::Range<usize>| u32::from_le_bytes(raw[r].try_into().expect("4"));
        Ok(PackEntry {
            kind: BlobKind::from_code(raw[0])?,
            id: Id::from_slice(&raw[1..33])?,
            offset: u(33..37),
            length: u(37..41),
            raw_length: u(41..45),
        })
    }
}

/// Builds one pack in memory.
#[derive(Debug, Default)]
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl PackBuilder {
    /// An empty pack with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_buffer(Vec::with_capacity(capacity))
    }

    /// An empty pack that writes into `buf` (cleared first), so that a buffer can serve pack
    /// after pack.
    pub fn with_buffer(mut buf: Vec<u8>) -> Self {
        buf.clear();
        PackBuilder {
            buf,
            entries: Vec::new(),
        }
    }

    /// Appends one encoded blob.
    pub fn add(&mut self, kind: BlobKind, id: Id, frame: &[u8], raw_length: usize) {
        let offset = u32::try_from(self.buf.len()).expect("packs stay far below 4 GiB");
        self.buf.extend_from_slice(frame);
        self.entries.push(PackEntry {
            kind,
            id,
            offset,
            length: frame.len() as u32,
            raw_length: u32::try_from(raw_length).expect("blobs stay below 4 GiB"),
        });
    }

    /// Appends every blob of `other` after this pack's, in `other`'s order: a run that was
    /// contiguous there stays contiguous here.
    pub fn append(&mut self, other: &PackBuilder) {
        let base = u32::try_from(self.buf.len()).expect("packs stay far below 4 GiB");
        self.buf.extend_from_slice(&other.buf);
        self.entries.extend(other.entries.iter().map(|e| PackEntry {
            offset: e.offset + base,
            ..*e
        }));
    }

    /// The buffer of a pack that is not needed any more, cleared, for the next pack.
    pub fn into_buffer(mut self) -> Vec<u8> {
        self.buf.clear();
        self.buf
    }

    /// Bytes of frames so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends the index trailer and returns the pack's bytes, its id and its entries.
    pub fn finish(mut self) -> (Id, Vec<u8>, Vec<PackEntry>) {
        let mut payload =
            Vec::with_capacity(HEADER_LEN + self.entries.len() * ENTRY_LEN + FOOTER_LEN);
        payload.extend_from_slice(INDEX_MAGIC);
        payload.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            e.encode_into(&mut payload);
        }
        let checksum = xxh64(&payload, 0);
        payload.extend_from_slice(&checksum.to_le_bytes());
        let payload_len = (payload.len() + 4 + 8) as u32;
        payload.extend_from_slice(&payload_len.to_le_bytes());
        payload.extend_from_slice(END_MAGIC);
        self.buf.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
        self.buf.extend_from_slice(&payload_len.to_le_bytes());
        self.buf.extend_from_slice(&payload);
        let id = Id::of(&self.buf);
        (id, self.buf, self.entries)
    }
}

/// How many bytes at the end of a pack hold its whole index, given the last
/// [`FOOTER_LEN`] bytes. Lets a reader fetch the tail first and then exactly the index.
pub fn trailer_len(footer: &[u8]) -> Result<usize> {
    if footer.len() < FOOTER_LEN || &footer[footer.len() - 8..] != END_MAGIC {
        return Err(Error::corrupt(
            "pack does not end with the cairn pack magic",
        ));
    }
    let n = footer.len();
    let payload_len =
        u32::from_le_bytes(footer[n - 12..n - 8].try_into().expect("4 bytes")) as usize;
    if payload_len < HEADER_LEN + FOOTER_LEN {
        return Err(Error::corrupt("pack index length is impossibly small"));
    }
    Ok(payload_len + 8)
}

/// Parses the index from the tail of a pack: `tail` must be the last bytes of the pack, at least
/// [`trailer_len`] of them; `pack_len` is the pack's full size, to check offsets.
pub fn parse_trailer(tail: &[u8], pack_len: u64) -> Result<Vec<PackEntry>> {
    let tlen = trailer_len(tail)?;
    if tail.len() < tlen || (tlen as u64) > pack_len {
        return Err(Error::corrupt("pack index is longer than the data read"));
    }
    let t = &tail[tail.len() - tlen..];
    if u32::from_le_bytes(t[0..4].try_into().expect("4")) != SKIPPABLE_MAGIC
        || u32::from_le_bytes(t[4..8].try_into().expect("4")) as usize != tlen - 8
    {
        return Err(Error::corrupt("pack index frame header is damaged"));
    }
    let payload = &t[8..];
    let body = &payload[..payload.len() - FOOTER_LEN];
    let stored = u64::from_le_bytes(payload[body.len()..body.len() + 8].try_into().expect("8"));
    if xxh64(body, 0) != stored {
        return Err(Error::corrupt("pack index checksum mismatch"));
    }
    if body.len() < HEADER_LEN || &body[..8] != INDEX_MAGIC {
        return Err(Error::corrupt("unknown pack index version"));
    }
    // The count is checked against the bytes that hold the entries before anything is
    // allocated for them: a damaged count cannot ask for more than the index itself.
    let count = u32::from_le_bytes(body[8..12].try_into().expect("4")) as usize;
    if Some(body.len() - HEADER_LEN) != count.checked_mul(ENTRY_LEN) {
        return Err(Error::corrupt(format!(
            "pack index claims {count} entries, its length does not fit"
        )));
    }
    let data_end = pack_len - tlen as u64;
    let mut out: Vec<PackEntry> = Vec::with_capacity(count);
    for raw in body[HEADER_LEN..].chunks_exact(ENTRY_LEN) {
        let e = PackEntry::decode(raw.try_into().expect("chunks of ENTRY_LEN"))?;
        check_raw_len(&e)?;
        if u64::from(e.offset) + u64::from(e.length) > data_end {
            return Err(Error::corrupt(format!(
                "blob {} lies outside its pack",
                e.id.short()
            )));
        }
        // Frames follow each other in index order (the writer appends): one that starts before
        // the previous one ends would let two blobs share bytes.
        if let Some(prev) = out.last()
            && u64::from(e.offset) < u64::from(prev.offset) + u64::from(prev.length)
        {
            return Err(Error::corrupt(format!(
                "blob {} overlaps the frame before it in its pack",
                e.id.short()
            )));
        }
        out.push(e);
    }
    Ok(out)
}

/// Refuses an entry that claims more bytes than a blob of its kind may hold: such an index is
/// damaged (or crafted), and nothing is allocated for it.
fn check_raw_len(e: &PackEntry) -> Result<()> {
    if e.raw_length as usize > e.kind.max_raw_len() {
        return Err(Error::corrupt(format!(
            "blob {} claims {} bytes, more than the {} a {} blob may hold",
            e.id.short(),
            e.raw_length,
            e.kind.max_raw_len(),
            e.kind.name()
        )));
    }
    Ok(())
}

/// Decodes the blob `e` from `frame` (its exact bytes) and checks its id.
pub fn open_blob(e: &PackEntry, frame: &[u8]) -> Result<Vec<u8>> {
    check_raw_len(e)?;
    let data = crate::format::codec::decode(frame, e.raw_length as usize)?;
    if Id::of(&data) != e.id {
        return Err(Error::corrupt(format!(
            "blob {} does not hash to its id",
            e.id.short()
        )));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip_and_is_a_zstd_stream() {
        let blobs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 1000 * (i as usize + 1)]).collect();
        let mut b = PackBuilder::with_capacity(1 << 16);
        for (i, blob) in blobs.iter().enumerate() {
            let kind = if i == 4 {
                BlobKind::Tree
            } else {
                BlobKind::Data
            };
            b.add(
                kind,
                Id::of(blob),
                &crate::format::codec::encode(blob, 3).unwrap(),
                blob.len(),
            );
        }
        let (id, bytes, entries) = b.finish();
        assert_eq!(id, Id::of(&bytes));
        let parsed = parse_trailer(&bytes, bytes.len() as u64).unwrap();
        assert_eq!(parsed, entries);
        for (e, blob) in parsed.iter().zip(&blobs) {
            let frame = &bytes[e.offset as usize..(e.offset + e.length) as usize];
            assert_eq!(&open_blob(e, frame).unwrap(), blob);
        }
        // The concatenation of every blob, as any zstd decoder sees the pack.
        let all: Vec<u8> = blobs.concat();
        assert_eq!(zstd::stream::decode_all(&bytes[..]).unwrap(), all);
        // Reading only the tail is enough.
        let tl = trailer_len(&bytes[bytes.len() - FOOTER_LEN..]).unwrap();
        let tail = &bytes[bytes.len() - tl..];
        assert_eq!(parse_trailer(tail, bytes.len() as u64).unwrap(), entries);
    }

    /// An index whose frames overlap (two blobs sharing bytes) is refused.
    #[test]
    fn overlapping_frames_are_rejected() {
        let mut b = PackBuilder::default();
        for blob in [&b"first"[..], b"second"] {
            b.add(
                BlobKind::Data,
                Id::of(blob),
                &crate::format::codec::raw_frame(blob),
                blob.len(),
            );
        }
        let (_, mut bytes, entries) = b.finish();
        assert!(parse_trailer(&bytes, bytes.len() as u64).is_ok());
        // Point the second entry at the first frame and fix the index checksum.
        let tlen = trailer_len(&bytes[bytes.len() - FOOTER_LEN..]).unwrap();
        let start = bytes.len() - tlen;
        let body = start + 8;
        let second = body + HEADER_LEN + ENTRY_LEN;
        bytes[second + 33..second + 37].copy_from_slice(&entries[0].offset.to_le_bytes());
        let body_end = body + HEADER_LEN + 2 * ENTRY_LEN;
        let sum = xxh64(&bytes[body..body_end], 0);
        bytes[body_end..body_end + 8].copy_from_slice(&sum.to_le_bytes());
        let err = parse_trailer(&bytes, bytes.len() as u64).unwrap_err();
        assert!(err.to_string().contains("overlaps"), "{err}");
    }

    #[test]
    fn damaged_index_is_rejected() {
        let mut b = PackBuilder::default();
        b.add(
            BlobKind::Data,
            Id::of(b"x"),
            &crate::format::codec::encode(b"x", 3).unwrap(),
            1,
        );
        let (_, bytes, _) = b.finish();
        for i in [bytes.len() - 30, bytes.len() - 1, bytes.len() - 15] {
            let mut bad = bytes.clone();
            bad[i] ^= 4;
            assert!(
                parse_trailer(&bad, bad.len() as u64).is_err(),
                "flip at {i}"
            );
        }
        assert!(parse_trailer(&bytes[..bytes.len() - 1], bytes.len() as u64 - 1).is_err());
    }
}
