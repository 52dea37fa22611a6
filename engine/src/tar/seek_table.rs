//! The archive's seek table, in the zstd seekable format (the zstd repository's
//! `contrib/seekable_format/zstd_seekable_compression_format.md`): a skippable frame after the
//! last frame that lists every frame's compressed and decompressed size, so that a reader finds
//! the frame holding any byte of the tar stream without scanning, and tools that read the format
//! (`pyzstd.SeekableZstdFile`, `indexed_zstd`) can seek. Decoders skip the frame: the archive
//! stays a plain `.tar.zst`. This module knows bytes; the export writes the table and readers
//! use it.

use std::ops::Range;

use crate::error::{Error, Result};

/// The skippable frame's magic (`0x184D2A5E`, the format's choice among the sixteen).
pub const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
/// The seek table footer's magic.
pub const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
/// Skippable frame header (magic, size) and footer (frame count, descriptor, magic).
const HEADER: usize = 8;
const FOOTER: usize = 9;
/// One entry without checksums: compressed size, decompressed size.
const ENTRY: usize = 8;

/// The seek table of `frames` (compressed, decompressed sizes in archive order), without
/// per-frame checksums (every frame carries its own content checksum).
pub fn encode(frames: &[(u32, u32)]) -> Vec<u8> {
    let payload = frames.len() * ENTRY + FOOTER;
    let mut v = Vec::with_capacity(HEADER + payload);
    v.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
    v.extend_from_slice(&(payload as u32).to_le_bytes());
    for (c, d) in frames {
        v.extend_from_slice(&c.to_le_bytes());
        v.extend_from_slice(&d.to_le_bytes());
    }
    v.extend_from_slice(&(frames.len() as u32).to_le_bytes());
    v.push(0); // descriptor: no checksums, reserved bits 0
    v.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
    v
}

/// One frame as the table places it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpan {
    /// Where it starts in the archive.
    pub offset: u64,
    /// Its compressed length.
    pub length: u32,
    /// Where its content starts in the decompressed stream.
    pub content_offset: u64,
    /// Its decompressed length.
    pub content_length: u32,
}

/// A parsed seek table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeekTable {
    /// Every frame, in order.
    pub frames: Vec<FrameSpan>,
    /// The table's own length (its skippable frame, header and footer included).
    pub length: u64,
}

impl SeekTable {
    /// The decompressed length of the whole stream.
    pub fn content_length(&self) -> u64 {
        self.frames
            .last()
            .map_or(0, |f| f.content_offset + u64::from(f.content_length))
    }

    /// The frames that hold the decompressed bytes `start..start + len`.
    pub fn covering(&self, start: u64, len: u64) -> Range<usize> {
        let end = start.saturating_add(len);
        let first = self
            .frames
            .partition_point(|f| f.content_offset + u64::from(f.content_length) <= start);
        let last = self.frames.partition_point(|f| f.content_offset < end);
        first..last.max(first)
    }
}

/// The footer's frame count, from the last 9 bytes of an archive (to size the read of the table).
pub fn table_length(footer: &[u8]) -> Result<u64> {
    let bad = |why: &str| Error::corrupt(format!("the archive's seek table {why}"));
    if footer.len() < FOOTER {
        return Err(bad("is cut short"));
    }
    let f = &footer[footer.len() - FOOTER..];
    if u32::from_le_bytes(f[5..9].try_into().expect("4")) != SEEKABLE_MAGIC {
        return Err(bad("has no seekable magic"));
    }
    let n = u64::from(u32::from_le_bytes(f[..4].try_into().expect("4")));
    let per = if f[4] & 0x80 != 0 { 12 } else { ENTRY as u64 };
    Ok(HEADER as u64 + n * per + FOOTER as u64)
}

/// Parses the table that ends an archive of `archive_size` bytes, given at least its last
/// [`table_length`] bytes in `tail`. Every check is made before anything is believed: the magics,
/// the reserved bits, the frame size against the count, and that the frames' compressed sizes add
/// up to exactly the bytes before the table.
pub fn parse(tail: &[u8], archive_size: u64) -> Result<SeekTable> {
    let bad = |why: String| Error::corrupt(format!("the archive's seek table {why}"));
    let length = table_length(tail)?;
    if length > tail.len() as u64 || length > archive_size {
        return Err(bad(format!("claims {length} bytes, more than there are")));
    }
    let t = &tail[tail.len() - length as usize..];
    let u32_at = |i: usize| u32::from_le_bytes(t[i..i + 4].try_into().expect("4"));
    if u32_at(0) != SKIPPABLE_MAGIC {
        return Err(bad("does not start with its skippable-frame magic".into()));
    }
    if u64::from(u32_at(4)) != length - HEADER as u64 {
        return Err(bad(
            "has a frame size that does not match its frame count".into()
        ));
    }
    let descriptor = t[t.len() - 5];
    if descriptor & 0x7c != 0 {
        return Err(bad("has reserved bits set".into()));
    }
    let per = if descriptor & 0x80 != 0 { 12 } else { ENTRY };
    let n = (t.len() - HEADER - FOOTER) / per;
    let mut frames = Vec::with_capacity(n);
    let (mut offset, mut content_offset) = (0u64, 0u64);
    for k in 0..n {
        let at = HEADER + k * per;
        let (length, content_length) = (u32_at(at), u32_at(at + 4));
        frames.push(FrameSpan {
            offset,
            length,
            content_offset,
            content_length,
        });
        offset += u64::from(length);
        content_offset += u64::from(content_length);
    }
    if offset + length != archive_size {
        return Err(bad(format!(
            "adds its frames up to {offset} bytes, but {} precede it",
            archive_size - length
        )));
    }
    Ok(SeekTable { frames, length })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_round_trip_and_lies_are_refused() {
        let frames = [(10u32, 100u32), (20, 0), (5, 7)];
        let t = encode(&frames);
        let size = 35 + t.len() as u64;
        let mut archive = vec![0u8; 35];
        archive.extend_from_slice(&t);
        let p = parse(&archive, size).unwrap();
        assert_eq!(p.frames.len(), 3);
        assert_eq!(p.frames[2].offset, 30);
        assert_eq!(p.frames[2].content_offset, 100);
        assert_eq!(p.content_length(), 107);
        assert_eq!(p.covering(0, 1), 0..1);
        assert_eq!(p.covering(99, 2), 0..3);
        assert_eq!(p.covering(100, 7), 2..3);
        // Sizes that do not add up, a wrong magic, a truncated table.
        assert!(parse(&archive, size + 1).is_err());
        let mut wrong = archive.clone();
        let n = wrong.len();
        wrong[n - 1] ^= 1;
        assert!(parse(&wrong, size).is_err());
        assert!(parse(&archive[archive.len() - 5..], size).is_err());
        let mut count = archive.clone();
        count[n - 9] = 200; // more frames than there are bytes
        assert!(parse(&count, size).is_err());
    }
}
