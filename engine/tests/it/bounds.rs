//! Resource bounds on crafted or damaged input (issue 10, items 5–8): decoded sizes bounded by
//! the format and checked before allocating, walks that neither overflow the stack nor follow a
//! path beyond PATH_MAX, archive paths bounded, and a bounded config file.

use std::fs;
use std::path::Path;

use cairn_engine::catalog::Catalog;
use cairn_engine::codec;
use cairn_engine::config::Config;
use cairn_engine::pack::{self, BlobKind, PackBuilder, PackEntry};
use cairn_engine::repo::pack_key;
use cairn_engine::{ErrorKind, Id};

use crate::alloc::peak_during;
use crate::common::*;

/// An error message fit for a terminal: one line, and short even when it names a huge path.
fn assert_one_short_line(msg: &str) {
    assert!(!msg.contains('\n'), "more than one line: {msg}");
    assert!(msg.len() < 400, "{} bytes long: {msg:.400}", msg.len());
}

// ---- item 5: decoded sizes ------------------------------------------------------------------

fn one_blob_pack(kind: BlobKind, data: &[u8], claimed: usize) -> (Id, Vec<u8>, Vec<PackEntry>) {
    let mut b = PackBuilder::default();
    b.add(
        kind,
        Id::of(data),
        &codec::encode(data, 3).unwrap(),
        claimed,
    );
    b.finish()
}

#[test]
fn a_pack_index_claiming_more_than_a_blob_may_hold_is_corrupt() {
    // 4 GiB - 1 for a 5-byte frame; 17 MiB for a chunk (FastCDC's largest is 16 MiB); 65 MiB
    // for a tree (the format's limit is 64 MiB).
    for (kind, claimed) in [
        (BlobKind::Data, u32::MAX as usize),
        (BlobKind::Data, 17 << 20),
        (BlobKind::Tree, 65 << 20),
    ] {
        let (_, bytes, _) = one_blob_pack(kind, b"hello", claimed);
        let (res, peak) = peak_during(|| pack::parse_trailer(&bytes, bytes.len() as u64));
        let err = res.expect_err(&format!("{kind:?} claiming {claimed} bytes"));
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert_one_short_line(&err.to_string());
        assert!(peak < 1 << 20, "parsing allocated {peak} bytes");
    }
    // The catalog does not index such a pack: nothing can then be read through it.
    let env = Env::new();
    let (pid, bytes, _) = one_blob_pack(BlobKind::Data, b"hello", u32::MAX as usize);
    env.repo.store().put(&pack_key(&pid), &bytes).unwrap();
    let (cat, sync) = Catalog::open_for(&env.state, &env.repo).unwrap();
    assert_eq!(sync.packs_unreadable, vec![pid.to_hex()]);
    assert!(
        cat.locate(BlobKind::Data, &Id::of(b"hello"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_frame_is_checked_against_its_header_before_allocating() {
    let data = b"hello";
    let frame = codec::encode(data, 3).unwrap();
    // A length within the bounds, but not what the frame header says.
    let (res, peak) = peak_during(|| codec::decode(&frame, 16 << 20));
    assert!(res.is_err());
    assert!(
        peak < 1 << 20,
        "decode allocated {peak} bytes before failing"
    );
    // A length beyond any blob.
    let (res, peak) = peak_during(|| codec::decode(&frame, u32::MAX as usize));
    assert!(res.is_err());
    assert!(
        peak < 1 << 20,
        "decode allocated {peak} bytes before failing"
    );
    // An index entry that lies, read through the blob opener (check, restore, export).
    for kind in [BlobKind::Data, BlobKind::Tree] {
        let e = PackEntry {
            kind,
            id: Id::of(data),
            offset: 0,
            length: frame.len() as u32,
            raw_length: u32::MAX,
        };
        let (res, peak) = peak_during(|| pack::open_blob(&e, &frame));
        let err = res.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(
            peak < 1 << 20,
            "open_blob allocated {peak} bytes before failing"
        );
    }
    assert_eq!(codec::decode(&frame, data.len()).unwrap(), data);
}

// ---- item 8: config size ------------------------------------------------------------------

#[test]
fn a_config_file_larger_than_1_mib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    let mut text = b"[source]\nroot = \"/shared\"\nfolders = [\"a\"]\n".to_vec();
    while text.len() <= 1 << 20 {
        text.extend_from_slice(b"# a comment line, repeated until the file passes 1 MiB\n");
    }
    fs::write(&big, &text).unwrap();
    for path in [big.as_path(), Path::new("/dev/zero")] {
        let (res, peak) = peak_during(|| Config::load(Some(path), &[], &[]));
        let err = res.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        let msg = err.to_string();
        assert_one_short_line(&msg);
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("1 MiB"), "{msg}");
        assert!(peak < 8 << 20, "reading the config allocated {peak} bytes");
    }
}
