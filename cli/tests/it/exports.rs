//! `cairn exports`: a damaged daily archive fails `exports verify` with exit 1, naming the day.

use std::fs;

use super::{Setup, stderr};

#[test]
fn corrupt_archive_fails_verify_with_exit_1() {
    let s = Setup::new();
    fs::write(s.src().join("notetaking/n.md"), "note\n".repeat(10_000)).unwrap();
    s.run(&["init"]);
    assert_eq!(
        s.run(&["run", "--date", "2026-11-29"]).status.code(),
        Some(0)
    );
    let path = s
        .dir
        .path()
        .join("exports/2026-11-29/shared-2026-11-29.tar.zst");
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 1;
    fs::write(&path, bytes).unwrap();
    let out = s.run(&["exports", "verify", "2026-11-29"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("2026-11-29"), "{}", stderr(&out));
}
