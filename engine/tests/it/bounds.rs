//! Resource bounds on crafted or damaged input (issue 10, items 5–8): decoded sizes bounded by
//! the format and checked before allocating, walks that neither overflow the stack nor follow a
//! path beyond PATH_MAX, archive paths bounded, and a bounded config file.

use std::fs;
use std::path::Path;

use cairn_engine::ErrorKind;
use cairn_engine::config::Config;

use crate::alloc::peak_during;

/// An error message fit for a terminal: one line, and short even when it names a huge path.
fn assert_one_short_line(msg: &str) {
    assert!(!msg.contains('\n'), "more than one line: {msg}");
    assert!(msg.len() < 400, "{} bytes long: {msg:.400}", msg.len());
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
