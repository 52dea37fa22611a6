//! zstd frames: how every blob (chunk or tree) is stored.
//!
//! Each blob is one standalone zstd frame with its content size and a content checksum, no
//! dictionary, and a window of at most 8 MiB, so any zstd decoder reads it on its own and the
//! daily archive can copy frames without re-encoding them. Data that a cheap probe finds
//! incompressible (photos, archives) is written as a frame of raw blocks, which costs a copy and
//! an XXH64 pass instead of a compression attempt.

use std::cell::RefCell;

use xxhash_rust::xxh64::xxh64;
use zstd::bulk::{Compressor, Decompressor};
use zstd::zstd_safe::CParameter;

use crate::error::{Error, Result};
use crate::id::Id;

/// Frame magic number of a zstd frame.
pub const ZSTD_MAGIC: u32 = 0xFD2F_B528;
/// Largest window a stored frame may need; decoders with default limits accept it.
pub const MAX_WINDOW_LOG: u32 = 23;
const RAW_BLOCK_MAX: usize = 128 * 1024;
/// Above this, a raw frame would need a window larger than 8 MiB, so data is always compressed.
const RAW_FRAME_MAX: usize = 1 << MAX_WINDOW_LOG;
/// Bytes sampled by the compressibility probe, from three places in the data.
const PROBE_SAMPLE: usize = 16 * 1024;

thread_local! {
    static COMPRESSOR: RefCell<Option<(i32, Compressor<'static>)>> = const { RefCell::new(None) };
    static PROBE: RefCell<Option<Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<Decompressor<'static>>> = const { RefCell::new(None) };
}

fn new_compressor(level: i32) -> Result<Compressor<'static>> {
    let mut c = Compressor::new(level)
        .map_err(|e| Error::config(format!("zstd level {level}")).with_source(e))?;
    let mut setup = || -> std::io::Result<()> {
        c.include_checksum(true)?;
        c.include_contentsize(true)?;
        c.include_dictid(false)?;
        c.set_parameter(CParameter::WindowLog(MAX_WINDOW_LOG))?;
        Ok(())
    };
    setup().map_err(|e| Error::config("zstd parameters").with_source(e))?;
    Ok(c)
}

/// Whether compressing `data` is worth it: compresses three small samples at level 1 and asks
/// for at least 3% savings. Costs well under 1% of compressing the whole chunk.
pub fn looks_compressible(data: &[u8]) -> bool {
    if data.len() <= 3 * PROBE_SAMPLE {
        return true; // small: just compress, the attempt is cheap and the frame overhead matters
    }
    let mid = data.len() / 2 - PROBE_SAMPLE / 2;
    let samples = [
        &data[..PROBE_SAMPLE],
        &data[mid..mid + PROBE_SAMPLE],
        &data[data.len() - PROBE_SAMPLE..],
    ];
    PROBE.with(|p| {
        let mut p = p.borrow_mut();
        let c = p.get_or_insert_with(|| Compressor::new(1).expect("zstd level 1 is valid"));
        let mut packed = 0;
        for (i, sample) in samples.iter().enumerate() {
            packed += c.compress(sample).map_or(sample.len(), |v| v.len());
            // Compressible whatever the samples left give (at most zstd's bound for them, 120
            // bytes over their size): stop probing, the answer cannot change.
            let rest = (samples.len() - 1 - i) * (PROBE_SAMPLE + 128);
            if (packed + rest) * 100 < 97 * 3 * PROBE_SAMPLE {
                return true;
            }
        }
        packed * 100 < 97 * 3 * PROBE_SAMPLE
    })
}

/// Encodes `data` as one standalone zstd frame at `level`, or as raw blocks if it does not
/// compress. Either way the frame carries the content size and an XXH64 content checksum.
pub fn encode(data: &[u8], level: i32) -> Result<Vec<u8>> {
    if data.len() <= RAW_FRAME_MAX && !looks_compressible(data) {
        return Ok(raw_frame(data));
    }
    let frame = COMPRESSOR.with(|cell| -> Result<Vec<u8>> {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().map(|(l, _)| *l) != Some(level) {
            *cell = Some((level, new_compressor(level)?));
        }
        let (_, c) = cell.as_mut().expect("set above");
        c.compress(data)
            .map_err(|e| Error::new(crate::ErrorKind::Io, "zstd compression failed").with_source(e))
    })?;
    // A compressed frame may come out larger than raw blocks (e.g. a probe that guessed wrong).
    if frame.len() > data.len() + 32 && data.len() <= RAW_FRAME_MAX {
        return Ok(raw_frame(data));
    }
    Ok(frame)
}

/// A zstd frame made of raw (stored) blocks: header, blocks of at most 128 KiB, checksum.
pub fn raw_frame(data: &[u8]) -> Vec<u8> {
    assert!(
        data.len() <= RAW_FRAME_MAX,
        "raw frames are limited to the 8 MiB window"
    );
    let blocks = data.len().div_ceil(RAW_BLOCK_MAX).max(1);
    let mut out = Vec::with_capacity(data.len() + 14 + 3 * blocks + 4);
    out.extend_from_slice(&ZSTD_MAGIC.to_le_bytes());
    // Frame header descriptor: 8-byte content size (bits 7-6 = 3), single segment (bit 5),
    // content checksum (bit 2). Single segment means the window is the content size (≤ 8 MiB).
    out.push(0b1110_0100);
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    let mut pieces = data.chunks(RAW_BLOCK_MAX).peekable();
    if pieces.peek().is_none() {
        out.extend_from_slice(&block_header(true, 0));
    }
    while let Some(piece) = pieces.next() {
        out.extend_from_slice(&block_header(pieces.peek().is_none(), piece.len()));
        out.extend_from_slice(piece);
    }
    out.extend_from_slice(&(xxh64(data, 0) as u32).to_le_bytes());
    out
}

fn block_header(last: bool, size: usize) -> [u8; 3] {
    // Block type 0 (raw) in bits 1-2, size in bits 3-23.
    let v = (size as u32) << 3 | u32::from(last);
    let b = v.to_le_bytes();
    [b[0], b[1], b[2]]
}

/// The most bytes any stored blob decodes to: a tree's limit, which is above a chunk's. A
/// reader refuses to allocate for more whatever an index or a catalog claims.
pub const MAX_BLOB_LEN: usize = crate::format::tree::MAX_TREE_LEN;

/// Decodes one frame that must expand to exactly `raw_len` bytes.
///
/// The length is checked before anything is allocated for it: against [`MAX_BLOB_LEN`], and
/// against the content size that every cairn frame states in its header. A damaged index that
/// claims 4 GiB for a small frame is then an error, not a 4 GiB buffer.
pub fn decode(frame: &[u8], raw_len: usize) -> Result<Vec<u8>> {
    if raw_len > MAX_BLOB_LEN {
        return Err(Error::corrupt(format!(
            "blob claims {raw_len} bytes, more than the {MAX_BLOB_LEN} any blob may hold"
        )));
    }
    match zstd::zstd_safe::get_frame_content_size(frame) {
        Ok(Some(n)) if n == raw_len as u64 => {}
        Ok(Some(n)) => {
            return Err(Error::corrupt(format!(
                "frame header says {n} bytes, index says {raw_len}"
            )));
        }
        Ok(None) => {
            return Err(Error::corrupt(
                "stored zstd frame does not state its content size",
            ));
        }
        Err(_) => return Err(Error::corrupt("stored zstd frame header is damaged")),
    }
    // One decoder per thread: creating a zstd context per blob showed up at 3% of an export.
    let out = DECOMPRESSOR.with(|cell| -> Result<Vec<u8>> {
        let mut cell = cell.borrow_mut();
        if cell.is_none() {
            *cell = Some(
                Decompressor::new().map_err(|e| Error::corrupt("zstd decoder").with_source(e))?,
            );
        }
        let d = cell.as_mut().expect("set above");
        d.decompress(frame, raw_len.max(1))
            .map_err(|e| Error::corrupt("stored zstd frame does not decode").with_source(e))
    })?;
    if out.len() != raw_len {
        return Err(Error::corrupt(format!(
            "frame decoded to {} bytes, index says {raw_len}",
            out.len()
        )));
    }
    Ok(out)
}

/// Checks that `frame` is one whole zstd frame that decodes to exactly `raw_len` bytes whose
/// XXH64 matches the frame's content checksum (as `zstd -t` would) and whose BLAKE3 is `id`,
/// without keeping the content.
///
/// Used by the export on every stored frame it copies. Frames of raw blocks (incompressible data,
/// most of a photo share) are checked by hashing their blocks in place, with no decoding and no
/// copy; other frames are decoded into a reused buffer.
pub fn verify_frame(frame: &[u8], raw_len: usize, id: &Id) -> Result<()> {
    if let Some(ok) = verify_raw_frame(frame, raw_len, id) {
        return if ok {
            Ok(())
        } else {
            Err(Error::corrupt(
                "stored frame fails its content checksum, length or id",
            ))
        };
    }
    VERIFY_BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        // One byte of room beyond the expected length tells "longer than promised" apart.
        buf.reserve(raw_len + 1);
        DECOMPRESSOR.with(|cell| -> Result<()> {
            let mut cell = cell.borrow_mut();
            if cell.is_none() {
                *cell = Some(
                    Decompressor::new()
                        .map_err(|e| Error::corrupt("zstd decoder").with_source(e))?,
                );
            }
            let d = cell.as_mut().expect("set above");
            let n = d
                .decompress_to_buffer(frame, &mut *buf)
                .map_err(|e| Error::corrupt("stored zstd frame does not decode").with_source(e))?;
            if n != raw_len {
                return Err(Error::corrupt(format!(
                    "frame decoded to {n} bytes, index says {raw_len}"
                )));
            }
            if Id::of(&buf) != *id {
                return Err(Error::corrupt(format!(
                    "blob {} does not hash to its id",
                    id.short()
                )));
            }
            Ok(())
        })
    })
}

thread_local! {
    static VERIFY_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// For a frame made only of raw blocks with a content checksum: whether its blocks, content size
/// and checksum agree with each other and with `raw_len`. `None` for any other frame (those are
/// decoded instead).
fn verify_raw_frame(frame: &[u8], raw_len: usize, id: &Id) -> Option<bool> {
    if frame.len() < 5 || u32::from_le_bytes(frame[..4].try_into().ok()?) != ZSTD_MAGIC {
        return None;
    }
    let fhd = frame[4];
    let (fcs_flag, single, checksum, dict) =
        (fhd >> 6, fhd & 0x20 != 0, fhd & 0x04 != 0, fhd & 0x03);
    if !checksum || fhd & 0x08 != 0 {
        return None;
    }
    let mut at = 5 + usize::from(!single) + [0, 1, 2, 4][usize::from(dict)];
    let fcs_len = match fcs_flag {
        0 => usize::from(single),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    let fcs = frame.get(at..at + fcs_len)?;
    at += fcs_len;
    if fcs_len > 0 {
        let mut v = [0u8; 8];
        v[..fcs_len].copy_from_slice(fcs);
        let size = u64::from_le_bytes(v) + if fcs_len == 2 { 256 } else { 0 };
        if size != raw_len as u64 {
            return Some(false);
        }
    }
    let mut hash = xxhash_rust::xxh64::Xxh64::new(0);
    let mut blake = blake3::Hasher::new();
    let mut content = 0usize;
    loop {
        let h = frame.get(at..at + 3)?;
        let v = u32::from(h[0]) | u32::from(h[1]) << 8 | u32::from(h[2]) << 16;
        let (last, kind, size) = (v & 1 == 1, (v >> 1) & 3, (v >> 3) as usize);
        if kind != 0 {
            return None;
        }
        at += 3;
        let Some(data) = frame.get(at..at + size) else {
            return Some(false);
        };
        hash.update(data);
        blake.update(data);
        content += size;
        at += size;
        if last {
            break;
        }
    }
    let Some(stored) = frame.get(at..at + 4) else {
        return Some(false);
    };
    Some(
        at + 4 == frame.len()
            && content == raw_len
            && stored == (hash.digest() as u32).to_le_bytes()
            && Id(*blake.finalize().as_bytes()) == *id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_frames_decode_with_zstd() {
        for len in [0, 1, 131_071, 131_072, 131_073, 1 << 20, (4 << 20) + 5] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7919 % 251) as u8).collect();
            let frame = raw_frame(&data);
            assert_eq!(
                zstd::stream::decode_all(&frame[..]).unwrap(),
                data,
                "len {len}"
            );
            assert_eq!(decode(&frame, len).unwrap(), data);
        }
    }

    #[test]
    fn text_compresses_and_noise_is_stored_raw() {
        let text = b"the quick brown fox jumps over the lazy dog\n".repeat(20_000);
        let f = encode(&text, 3).unwrap();
        assert!(f.len() < text.len() / 10);
        assert_eq!(decode(&f, text.len()).unwrap(), text);

        let noise = crate::format::chunk::tests_support::seeded(1 << 20, 3);
        let f = encode(&noise, 3).unwrap();
        assert_eq!(
            f.len(),
            raw_frame(&noise).len(),
            "noise should be stored raw"
        );
        assert_eq!(decode(&f, noise.len()).unwrap(), noise);

        // Empty content still states its size: decode relies on it.
        assert_eq!(decode(&encode(b"", 3).unwrap(), 0).unwrap(), b"");
    }

    #[test]
    fn verify_frame_agrees_with_decoding() {
        let text = b"the quick brown fox jumps over the lazy dog\n".repeat(5_000);
        let noise = crate::format::chunk::tests_support::seeded(300_000, 9);
        for (data, frame) in [
            (&text[..], encode(&text, 3).unwrap()),
            (&noise[..], raw_frame(&noise)),
            (&b""[..], raw_frame(b"")),
        ] {
            let id = Id::of(data);
            verify_frame(&frame, data.len(), &id).unwrap();
            assert!(verify_frame(&frame, data.len() + 1, &id).is_err());
            assert!(verify_frame(&frame, data.len(), &Id::of(b"another blob")).is_err());
            // Every single flipped byte is found, in compressed and in raw frames alike.
            for i in (0..frame.len()).step_by(frame.len() / 97 + 1) {
                let mut bad = frame.clone();
                bad[i] ^= 0x10;
                let decodes = decode(&bad, data.len()).is_ok_and(|d| d == data);
                assert_eq!(
                    verify_frame(&bad, data.len(), &id).is_ok(),
                    decodes,
                    "flip at {i} of {}",
                    frame.len()
                );
            }
            assert!(verify_frame(&frame[..frame.len() - 1], data.len(), &id).is_err());
        }
    }

    #[test]
    fn corruption_is_detected() {
        let text = b"abcdefgh".repeat(10_000);
        let mut f = encode(&text, 3).unwrap();
        let n = f.len();
        f[n - 2] ^= 1; // inside the checksum
        assert!(decode(&f, text.len()).is_err());
        let mut r = raw_frame(&text);
        r[100] ^= 0x10; // inside the content of a raw block
        assert!(decode(&r, text.len()).is_err());
        assert!(decode(&encode(&text, 3).unwrap(), text.len() + 1).is_err());
    }
}
