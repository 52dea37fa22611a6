//! Property tests: round trips of the codec, packs and trees over arbitrary input.

use cairn_engine::codec;
use cairn_engine::id::Id;
use cairn_engine::pack::{BlobKind, PackBuilder, open_blob, parse_trailer};
use cairn_engine::tree::{Entry, EntryKind, RawBytes, Tree};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn codec_round_trip(data in prop::collection::vec(any::<u8>(), 0..300_000), level in 1i32..6) {
        let frame = codec::encode(&data, level).unwrap();
        prop_assert_eq!(codec::decode(&frame, data.len()).unwrap(), data.clone());
        prop_assert_eq!(zstd::stream::decode_all(&frame[..]).unwrap(), data);
    }

    #[test]
    fn pack_round_trip(blobs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..5000), 1..20)) {
        let mut b = PackBuilder::default();
        for (i, blob) in blobs.iter().enumerate() {
            let kind = if i % 3 == 0 { BlobKind::Tree } else { BlobKind::Data };
            b.add(kind, Id::of(blob), &codec::encode(blob, 3).unwrap(), blob.len());
        }
        let (id, bytes, entries) = b.finish();
        prop_assert_eq!(id, Id::of(&bytes));
        let parsed = parse_trailer(&bytes, bytes.len() as u64).unwrap();
        prop_assert_eq!(&parsed, &entries);
        for (e, blob) in parsed.iter().zip(&blobs) {
            let frame = &bytes[e.offset as usize..(e.offset + e.length) as usize];
            prop_assert_eq!(&open_blob(e, frame).unwrap(), blob);
        }
    }

    #[test]
    fn tree_round_trip(
        names in prop::collection::btree_set(
            prop::collection::vec(any::<u8>(), 1..40)
                .prop_filter("valid name", |n| cairn_engine::tree::valid_name(n)), 0..30),
        mtime in any::<i64>(), ns in 0u32..1_000_000_000, mode in 0u32..0o7777,
        target in prop::collection::vec(any::<u8>(), 1..60),
    ) {
        let entries = names.into_iter().enumerate().map(|(i, n)| Entry {
            name: RawBytes(n),
            kind: if i % 2 == 0 { EntryKind::File } else { EntryKind::Symlink },
            mode, uid: i as u32, gid: 7, mtime, mtime_ns: ns,
            size: i as u64, chunks: vec![Id::of(&[i as u8])], tree: None,
            target: (i % 2 == 1).then(|| RawBytes(target.clone())),
            hardlink: (i % 5 == 0).then_some(i as u64), rdev: None,
        }).collect();
        let mut t = Tree { entries };
        t.sort();
        let (id, bytes) = t.encode();
        let back = Tree::decode(&bytes).unwrap();
        prop_assert_eq!(back.encode().0, id);
        prop_assert_eq!(back, t);
    }
}

// ---- Fuzzing the decoders of stored bytes ---------------------------------------------------
//
// Arbitrary and mutated input for every parser that reads bytes cairn did not just write: the
// pack trailer, the tree decoder, the blob opener (with any claimed raw length) and the files
// cache record. Each case must return (an error is fine) without panicking, and the calling
// thread must not have held more than `INPUT_BUDGET` (100 MiB) at once while decoding it; the
// counting allocator in `alloc.rs` measures that (these decoders allocate on the calling thread).

use crate::alloc::{INPUT_BUDGET, peak_during};
use cairn_engine::catalog::FileRecord;
use cairn_engine::pack::{PackEntry, trailer_len};

/// A valid pack of a few blobs, to mutate.
fn sample_pack(n: usize) -> Vec<u8> {
    let mut b = PackBuilder::default();
    for i in 0..n {
        let blob = vec![i as u8; 100 + i];
        let kind = if i % 2 == 0 {
            BlobKind::Data
        } else {
            BlobKind::Tree
        };
        b.add(
            kind,
            Id::of(&blob),
            &codec::encode(&blob, 3).unwrap(),
            blob.len(),
        );
    }
    b.finish().1
}

/// A valid tree of a few entries, to mutate.
fn sample_tree() -> Vec<u8> {
    let entries = (0..4u8)
        .map(|i| Entry {
            name: RawBytes(vec![b'a' + i]),
            kind: if i == 3 {
                EntryKind::Dir
            } else {
                EntryKind::File
            },
            mode: 0o644,
            uid: 1,
            gid: 2,
            mtime: 3,
            mtime_ns: 4,
            size: u64::from(i),
            chunks: vec![Id::of(&[i])],
            tree: (i == 3).then(|| Id::of(b"t")),
            target: None,
            hardlink: None,
            rdev: None,
        })
        .collect();
    Tree { entries }.encode().1
}

fn mutate(mut bytes: Vec<u8>, flips: &[(usize, u8)]) -> Vec<u8> {
    if bytes.is_empty() {
        return bytes;
    }
    for (at, x) in flips {
        let n = bytes.len();
        bytes[at % n] ^= x;
    }
    bytes
}

/// Rewrites the trailer checksum of `pack` so that a mutated index reaches the entry checks.
fn reseal(mut pack: Vec<u8>) -> Vec<u8> {
    let n = pack.len();
    if n < 20 {
        return pack;
    }
    let payload_len = u32::from_le_bytes(pack[n - 12..n - 8].try_into().unwrap()) as usize;
    if payload_len < 20 || payload_len > n {
        return pack;
    }
    let body = n - payload_len..n - 20;
    let sum = xxhash_rust::xxh64::xxh64(&pack[body.clone()], 0);
    pack[body.end..body.end + 8].copy_from_slice(&sum.to_le_bytes());
    pack
}

fn within_budget<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    let (out, peak) = peak_during(f);
    prop_assert!(
        peak <= INPUT_BUDGET,
        "{what} allocated {peak} bytes for one input"
    );
    Ok(out)
}

fn open_any(kind: BlobKind, frame: &[u8], raw_length: u32) -> Result<(), TestCaseError> {
    let e = PackEntry {
        kind,
        id: Id::of(b"x"),
        offset: 0,
        length: frame.len() as u32,
        raw_length,
    };
    within_budget("open_blob", || {
        let _ = open_blob(&e, frame);
        let _ = codec::decode(frame, raw_length as usize);
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn fuzz_pack_trailer(bytes in prop::collection::vec(any::<u8>(), 0..2048), pack_len in any::<u64>()) {
        within_budget("parse_trailer", || {
            let _ = trailer_len(&bytes);
            let _ = parse_trailer(&bytes, pack_len);
            let _ = parse_trailer(&bytes, bytes.len() as u64);
        })?;
    }

    #[test]
    fn fuzz_mutated_pack_trailer(
        n in 1usize..6,
        flips in prop::collection::vec((any::<usize>(), 1u8..), 1..4),
        tail in any::<usize>(),
        sealed in any::<bool>(),
    ) {
        let pack = mutate(sample_pack(n), &flips);
        let pack = if sealed { reseal(pack) } else { pack };
        let t = &pack[tail % pack.len()..];
        within_budget("parse_trailer", || {
            if let Ok(entries) = parse_trailer(&pack, pack.len() as u64) {
                // Whatever the index says, every entry lies inside the pack and opens safely.
                for e in entries {
                    let frame = &pack[e.offset as usize..(e.offset as usize + e.length as usize)];
                    let _ = open_blob(&e, frame);
                }
            }
            let _ = trailer_len(t);
            let _ = parse_trailer(t, pack.len() as u64);
        })?;
    }

    #[test]
    fn fuzz_tree_decoder(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        within_budget("Tree::decode", || { let _ = Tree::decode(&bytes); })?;
    }

    #[test]
    fn fuzz_mutated_tree(flips in prop::collection::vec((any::<usize>(), 1u8..), 1..4), cut in any::<usize>()) {
        let tree = mutate(sample_tree(), &flips);
        within_budget("Tree::decode", || {
            let _ = Tree::decode(&tree);
            let _ = Tree::decode(&tree[..cut % (tree.len() + 1)]);
        })?;
    }

    #[test]
    fn fuzz_blob_opener(
        frame in prop::collection::vec(any::<u8>(), 0..2048),
        raw_length in any::<u32>(),
        tree in any::<bool>(),
    ) {
        let kind = if tree { BlobKind::Tree } else { BlobKind::Data };
        open_any(kind, &frame, raw_length)?;
    }

    #[test]
    fn fuzz_mutated_frame(
        len in 0usize..5000,
        flips in prop::collection::vec((any::<usize>(), 1u8..), 0..3),
        claimed in prop_oneof![Just(None), any::<u32>().prop_map(Some)],
        tree in any::<bool>(),
    ) {
        let data: Vec<u8> = (0..len).map(|i| (i % 7) as u8).collect();
        let frame = mutate(codec::encode(&data, 3).unwrap(), &flips);
        let kind = if tree { BlobKind::Tree } else { BlobKind::Data };
        open_any(kind, &frame, claimed.unwrap_or(len as u32))?;
    }

    #[test]
    fn fuzz_files_cache_record(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        let rec = within_budget("FileRecord::decode", || FileRecord::decode(&bytes))?;
        if let Some(r) = rec {
            prop_assert_eq!(bytes.len(), 40 + 32 * r.chunks.len());
        }
    }
}
