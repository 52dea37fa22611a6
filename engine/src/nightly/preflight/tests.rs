//! Unit tests of the preflight checks that need no store: the source sample and the state
//! directory.

use std::path::Path;

use super::Status;
use super::source::{Identity, source_folder};
use super::state_dir::state_dir;

#[test]
fn a_missing_folder_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let ex = crate::backup::scan::Excludes::new(&[]).unwrap();
    let f = source_folder(dir.path(), "notetaking", &ex, &Identity::current());
    assert_eq!(f.status, Status::Fail);
    assert!(f.detail.contains("notetaking"), "{}", f.detail);
}

/// A top level of many files does not hide the folders below it, and the work is bounded.
#[test]
fn the_sample_reaches_below_a_crowded_top_level_and_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().join("images");
    std::fs::create_dir(&top).unwrap();
    for i in 0..2100 {
        std::fs::write(top.join(format!("{i:05}")), b"x").unwrap();
    }
    std::fs::create_dir(top.join("zz")).unwrap();
    std::fs::write(top.join("zz/notes.md"), b"x").unwrap();
    let ex = crate::backup::scan::Excludes::new(&[]).unwrap();
    let f = source_folder(dir.path(), "images", &ex, &Identity::current());
    assert_eq!(f.status, Status::Ok, "{}", f.detail);
    assert!(
        f.detail
            .starts_with("2 directories listed and 9 files opened"),
        "{}",
        f.detail
    );
}

#[test]
fn a_state_directory_that_cannot_be_made_fails() {
    let f = state_dir(Path::new("/nonexistent-cairn/state"));
    assert_eq!(f.status, Status::Fail);
}
