//! The seekable daily archive: one file out of a day by the seek table, tools that read the
//! zstd seekable format, and a damaged table that never yields a wrong file.

use std::fs;
use std::process::Command;

use super::{Setup, seeded, stderr};

/// Two nights with notes, photos and a large file, so that the archive has many frames.
fn nights(s: &Setup) {
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    for i in 0..40 {
        fs::write(
            s.src().join(format!("notetaking/note-{i:02}.md")),
            format!("note {i}\n").repeat(50 + i),
        )
        .unwrap();
    }
    fs::write(s.src().join("images/big.raw"), seeded(24 << 20, 3)).unwrap();
    fs::write(s.src().join("backup/tail.bin"), seeded(300_000, 4)).unwrap();
    let out = s.run(&["run", "--date", "2026-11-29"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

fn archive(s: &Setup) -> std::path::PathBuf {
    s.dir
        .path()
        .join("exports/2026-11-29/shared-2026-11-29.tar.zst")
}

#[test]
fn one_file_comes_out_of_the_archive_by_its_frames() {
    let s = Setup::new();
    nights(&s);
    let size = fs::metadata(archive(&s)).unwrap().len();
    for path in ["notetaking/note-17.md", "images/big.raw", "backup/tail.bin"] {
        let out = s.run(&["-v", "exports", "cat", "2026-11-29", path]);
        assert_eq!(out.status.code(), Some(0), "{path}: {}", stderr(&out));
        assert!(
            out.stdout == fs::read(s.src().join(path)).unwrap(),
            "{path} differs"
        );
        let log = stderr(&out);
        let bytes: u64 = log
            .split("bytes: ")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{path}: no seek route logged: {log}"));
        // The frames holding the file and no more: at most its size and a group frame or two.
        let len = fs::metadata(s.src().join(path)).unwrap().len();
        assert!(
            bytes <= len + (2 << 20),
            "{path}: {bytes} bytes fetched for {len}"
        );
        if path == "notetaking/note-17.md" {
            assert!(
                bytes * 100 < size,
                "{path}: {bytes} of {size} bytes fetched"
            );
        }
    }
    // Not in the day: one line naming the path and the day, exit 1.
    let out = s.run(&["exports", "cat", "2026-11-29", "notetaking/nope.md"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("notetaking/nope.md") && err.contains("2026-11-29"),
        "{err}"
    );
    // The tools people use still read it byte for byte.
    let ok = Command::new("zstd")
        .arg("-tq")
        .arg(archive(&s))
        .status()
        .unwrap();
    assert!(ok.success());
    let out = s.run(&["exports", "verify", "2026-11-29"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn a_damaged_seek_table_falls_back_to_reading_and_never_gives_a_wrong_file() {
    let s = Setup::new();
    nights(&s);
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(
            s.dir
                .path()
                .join("exports/2026-11-29/shared-2026-11-29.manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let table_at = manifest["seek_table"]["offset"].as_u64().unwrap() as usize;
    let good = fs::read(archive(&s)).unwrap();
    // A frame size that no longer adds up, a wrong magic, a table cut short.
    for (what, damage) in [
        ("sizes", table_at + 8),
        // The first frame's decompressed size: every later frame's place in the tar shifts,
        // while the compressed sizes still add up.
        ("content size", table_at + 12),
        ("magic", good.len() - 1),
        ("count", good.len() - 9),
    ] {
        let mut bad = good.clone();
        bad[damage] ^= 0x40;
        fs::write(archive(&s), &bad).unwrap();
        for path in ["images/big.raw", "backup/tail.bin", "notetaking/note-30.md"] {
            let out = s.run(&["exports", "cat", "2026-11-29", path]);
            // Either the right file (after a warning) or one line and exit 1: never a wrong file.
            match out.status.code() {
                Some(0) => {
                    assert!(
                        out.stdout == fs::read(s.src().join(path)).unwrap(),
                        "{what}: {path}: a wrong file"
                    );
                    assert!(
                        stderr(&out).contains("seek table"),
                        "{what}: no warning: {}",
                        stderr(&out)
                    );
                }
                Some(1) => {
                    assert_eq!(
                        stderr(&out).trim_end().lines().count(),
                        1,
                        "{what}: {}",
                        stderr(&out)
                    );
                }
                other => panic!("{what}: {path}: exit {other:?}: {}", stderr(&out)),
            }
        }
        let out = s.run(&["exports", "verify", "2026-11-29"]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: verify passed a damaged table"
        );
    }
    fs::write(archive(&s), &good).unwrap();
}

/// pyzstd's SeekableZstdFile and ratarmountcore (indexed_zstd) read the archive by its table.
#[test]
#[ignore = "needs pyzstd, ratarmountcore and indexed_zstd (scripts/test.sh installs them)"]
fn tools_that_read_the_zstd_seekable_format_read_the_archive() {
    let have = Command::new("python3")
        .args(["-c", "import pyzstd, ratarmountcore, indexed_zstd"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        have,
        "python3 cannot import pyzstd, ratarmountcore or indexed_zstd (scripts/test.sh installs them through scripts/setup.sh)"
    );
    let s = Setup::new();
    nights(&s);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/archive-readers.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(archive(&s))
        .arg(
            s.dir
                .path()
                .join("exports/2026-11-29/shared-2026-11-29.manifest.json"),
        )
        .arg(s.src())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

/// `restore --archive DATE --path P` takes only P's frames, with modes and times, and names a
/// path the day does not have.
#[test]
fn restore_of_some_paths_from_a_day_reads_their_frames() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let s = Setup::new();
    nights(&s);
    let target = s.dir.path().join("restored");
    let out = s.run(&[
        "restore",
        "--archive",
        "2026-11-29",
        "--path",
        "notetaking",
        "--path",
        "images/big.raw",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for i in 0..40 {
        let p = format!("notetaking/note-{i:02}.md");
        assert_eq!(
            fs::read(target.join(&p)).unwrap(),
            fs::read(s.src().join(&p)).unwrap(),
            "{p}"
        );
    }
    let (a, b) = (
        target.join("images/big.raw"),
        s.src().join("images/big.raw"),
    );
    assert!(fs::read(&a).unwrap() == fs::read(&b).unwrap());
    let (ma, mb) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
    assert_eq!(
        (ma.mtime(), ma.permissions().mode() & 0o7777),
        (mb.mtime(), mb.permissions().mode() & 0o7777)
    );
    assert!(
        !target.join("backup").exists(),
        "more was restored than asked"
    );
    // Files only (the frames' way also as root, owners from the tar headers), logged as such.
    let files = s.dir.path().join("files");
    let out = s.run(&[
        "-v",
        "restore",
        "--archive",
        "2026-11-29",
        "--path",
        "images/big.raw",
        "--path",
        "backup/tail.bin",
        "--target",
        files.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("paths restored by the seek table"),
        "{}",
        stderr(&out)
    );
    for p in ["images/big.raw", "backup/tail.bin"] {
        let (a, b) = (files.join(p), s.src().join(p));
        assert!(fs::read(&a).unwrap() == fs::read(&b).unwrap(), "{p}");
        let (ma, mb) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
        assert_eq!(
            (ma.uid(), ma.gid(), ma.mtime()),
            (mb.uid(), mb.gid(), mb.mtime()),
            "{p}"
        );
    }

    let out = s.run(&[
        "restore",
        "--archive",
        "2026-11-29",
        "--path",
        "images/gone.raw",
        "--target",
        s.dir.path().join("t2").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("images/gone.raw") && err.contains("2026-11-29"),
        "{err}"
    );
}

/// `exports cat` takes a path that is not UTF-8 (the manifest holds it as base64), as the
/// archive and restore do.
#[test]
fn cat_takes_a_file_name_that_is_not_utf8() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let s = Setup::new();
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    let name = OsStr::from_bytes(b"notetaking/caf\xe9 \xff.md");
    fs::create_dir_all(s.src().join("notetaking")).unwrap();
    fs::write(s.src().join(name), b"latin-1 name\n").unwrap();
    let out = s.run(&["run", "--date", "2026-11-29"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = s
        .cmd(&["exports", "cat", "2026-11-29"])
        .arg(name)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(out.stdout, b"latin-1 name\n");
}
