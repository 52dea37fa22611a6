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
