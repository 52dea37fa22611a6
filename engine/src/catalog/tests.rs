//! Unit tests of the catalog's record encodings.

use crate::catalog::records::FileRecord;
use crate::id::Id;

#[test]
fn file_record_round_trip() {
    let r = FileRecord {
        size: 5,
        mtime: -3,
        mtime_ns: 9,
        ctime: 1 << 40,
        ctime_ns: 999_999_999,
        ino: u64::MAX,
        chunks: vec![Id::of(b"a"), Id::of(b"b")],
    };
    assert_eq!(FileRecord::decode(&r.encode()), Some(r));
    assert_eq!(FileRecord::decode(&[0; 41]), None);
}
