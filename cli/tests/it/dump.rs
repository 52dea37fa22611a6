//! `cairn dump`: a file of a snapshot comes out byte for byte; a folder comes out as a tar stream
//! that GNU tar extracts back into the source (contents, a symlink, a hardlink pair, an empty
//! file, long, spaced and unicode names, times to the nanosecond) and that GNU tar and bsdtar
//! list alike; `/` gives the whole snapshot; a reader that goes away ends the dump quietly; an
//! unknown path, a symlink and a terminal are refused in one line.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::survey::{DEFAULT_SKIP, Kind, Node, survey};
use super::{Setup, assert_exit, on_terminal, seeded, stderr, stdout};
use super::{same_tree, set_mtime};

/// The big file's size: several chunks of 1 MiB on average.
const BIG: usize = 7 << 20;

/// A name that makes a path longer than ustar's 100 bytes below `projects/nested/`.
fn long_name() -> String {
    format!("{}.md", "n".repeat(120))
}

/// `notetaking/projects` with everything a tar stream must carry, beside a note outside it;
/// returns the folder.
fn projects(s: &Setup) -> PathBuf {
    let p = s.src().join("notetaking/projects");
    fs::create_dir_all(p.join("nested/deeper")).unwrap();
    fs::write(p.join("big.bin"), seeded(BIG, 7)).unwrap();
    fs::write(p.join("small.md"), "a small note\n").unwrap();
    fs::write(p.join("empty.txt"), "").unwrap();
    fs::write(p.join("café ☕ notes with spaces.md"), "unicode ✓\n").unwrap();
    fs::write(p.join("nested").join(long_name()), "a long path\n").unwrap();
    fs::write(p.join("nested/deeper/leaf.txt"), "leaf\n").unwrap();
    std::os::unix::fs::symlink("small.md", p.join("link")).unwrap();
    fs::write(p.join("hard-a"), "one inode, two names\n").unwrap();
    fs::hard_link(p.join("hard-a"), p.join("nested/hard-b")).unwrap();
    fs::write(s.src().join("notetaking/outside.md"), "not in projects\n").unwrap();
    // Times with nanoseconds, each directory's after its entries were made.
    set_mtime(&p.join("small.md"), 1_700_000_000, 123_456_789);
    set_mtime(&p.join("empty.txt"), 1_600_000_000, 1);
    set_mtime(&p.join("nested/deeper"), 1_500_000_000, 999_999_999);
    set_mtime(&p.join("nested"), 1_400_000_000, 500_000_000);
    set_mtime(&p, 1_300_000_000, 42);
    p
}

/// A repository with one snapshot of the source.
fn backup(s: &Setup) {
    assert_exit(&s.run(&["init"]), 0);
    assert_exit(&s.run(&["backup"]), 0);
}

/// Whether `tool` is installed. Missing, it fails the test under CI (`CI=true`:
/// scripts/setup.sh installs it) and otherwise skips that check with a note.
pub(super) fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "{tool} is not installed and CI=true (scripts/setup.sh installs it)"
        );
        eprintln!(
            "note: {tool} is not installed; skipping its check (scripts/setup.sh installs it)"
        );
    }
    found
}

/// Runs `tool ARGS` on the tar stream in `file` (as its stdin), in a UTF-8 locale so that both
/// tars print names as they are; fails unless it succeeds.
fn tar_tool(tool: &str, args: &[&str], file: &Path) -> Output {
    let out = Command::new(tool)
        .env("LC_ALL", "C.UTF-8")
        .args(args)
        .stdin(fs::File::open(file).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{tool} {args:?}: {}", stderr(&out));
    out
}

/// The names `tool -tf -` lists from the tar stream in `file`, sorted.
fn listed(tool: &str, file: &Path) -> Vec<String> {
    let mut names: Vec<String> = stdout(&tar_tool(tool, &["-tf", "-"], file))
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// The surveyed entries' paths as a tar stream names them (a directory's ending in `/`), sorted.
fn names(tree: &BTreeMap<Vec<u8>, Node>) -> Vec<String> {
    let mut names: Vec<String> = tree
        .iter()
        .map(|(p, n)| {
            let p = String::from_utf8_lossy(p).into_owned();
            if n.kind == Kind::Dir { p + "/" } else { p }
        })
        .collect();
    names.sort();
    names
}

#[test]
fn a_file_comes_out_byte_for_byte() {
    let s = Setup::new();
    projects(&s);
    backup(&s);
    let (code, v) = s.json(&["ls", "latest", "notetaking/projects/big.bin"]);
    assert_eq!(code, 0, "{v}");
    let chunks = v[0]["entry"]["chunks"].as_array().map_or(0, Vec::len);
    assert!(chunks >= 2, "the big file should span several chunks: {v}");
    let files = [
        ("notetaking/projects/big.bin", seeded(BIG, 7)),
        ("notetaking/projects/small.md", b"a small note\n".to_vec()),
        ("notetaking/projects/empty.txt", Vec::new()),
    ];
    for (path, want) in files {
        let out = s.run(&["dump", "latest", path]);
        assert_exit(&out, 0);
        assert!(
            out.stdout == want,
            "{path}: {} bytes out, {} in the source",
            out.stdout.len(),
            want.len()
        );
        assert!(stderr(&out).is_empty(), "{path}: {}", stderr(&out));
    }
}

/// `cairn dump latest notetaking/projects | tar -xf - -C DIR` gives the folder back, times to the
/// nanosecond; GNU tar and bsdtar list the same names from the stream.
#[test]
fn a_folder_piped_into_tar_is_the_source() {
    let s = Setup::new();
    let src = projects(&s);
    backup(&s);
    let out = s.dir.path().join("out");
    fs::create_dir(&out).unwrap();
    let mut dump = s
        .cmd(&["dump", "latest", "notetaking/projects"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tar = Command::new("tar")
        .env("LC_ALL", "C.UTF-8")
        .args(["-xf", "-", "-C"])
        .arg(&out)
        .stdin(Stdio::from(dump.stdout.take().unwrap()))
        .output()
        .unwrap();
    let dumped = dump.wait_with_output().unwrap();
    assert_exit(&dumped, 0);
    assert!(tar.status.success(), "tar -x: {}", stderr(&tar));
    same_tree(&src, &out.join("projects"));

    let want = survey(&s.src().join("notetaking"), b"projects", &DEFAULT_SKIP);
    let got = survey(&out, b"projects", &DEFAULT_SKIP);
    assert_eq!(names(&got), names(&want));
    for (path, w) in &want {
        let g = &got[path];
        let p = String::from_utf8_lossy(path);
        assert_eq!(g.kind, w.kind, "{p}");
        assert_eq!(g.target, w.target, "{p}: symlink target");
        if w.kind != Kind::Symlink {
            assert_eq!(g.mtime, w.mtime, "{p}: mtime to the nanosecond");
        }
    }
    let ino = |p: &str| got[p.as_bytes()].ino;
    assert_eq!(
        ino("projects/hard-a"),
        ino("projects/nested/hard-b"),
        "the hardlink pair is one inode"
    );
    let long = format!("projects/nested/{}", long_name());
    assert!(long.len() > 100 && got.contains_key(long.as_bytes()));

    // The same stream, read by both tars from stdin, lists the same names.
    let stream = s.dir.path().join("projects.tar");
    let again = s.run(&["dump", "latest", "notetaking/projects"]);
    assert_exit(&again, 0);
    fs::write(&stream, &again.stdout).unwrap();
    assert_eq!(listed("tar", &stream), names(&want));
    if have("bsdtar") {
        assert_eq!(listed("bsdtar", &stream), names(&want));
        let verbose = stdout(&tar_tool("bsdtar", &["-tvf", "-"], &stream));
        assert_eq!(verbose.lines().count(), want.len(), "{verbose}");
        assert!(
            verbose.lines().any(
                |l| l.ends_with("projects/nested/hard-b link to projects/hard-a")
                    || l.ends_with("projects/hard-a link to projects/nested/hard-b")
            ),
            "{verbose}"
        );
    }
}

/// `/` is the whole snapshot, its top-level folders at the top of the stream; `--archive tar`
/// makes a stream of a single file too.
#[test]
fn the_whole_snapshot_and_a_single_file_as_tar() {
    let s = Setup::new();
    projects(&s);
    fs::write(s.src().join("images/cat.jpg"), seeded(100_000, 3)).unwrap();
    backup(&s);
    let whole = s.run(&["dump", "latest", "/"]);
    assert_exit(&whole, 0);
    let stream = s.dir.path().join("whole.tar");
    fs::write(&stream, &whole.stdout).unwrap();
    let out = s.dir.path().join("whole");
    fs::create_dir(&out).unwrap();
    tar_tool("tar", &["-xf", "-", "-C", out.to_str().unwrap()], &stream);
    same_tree(&s.src(), &out);
    let listing = listed("tar", &stream);
    for top in ["backup/", "images/", "notetaking/"] {
        assert!(listing.iter().any(|n| n == top), "{top}: {listing:?}");
    }
    let ino = |p: &str| fs::symlink_metadata(out.join(p)).unwrap().ino();
    assert_eq!(
        ino("notetaking/projects/hard-a"),
        ino("notetaking/projects/nested/hard-b"),
        "the hardlink pair is one inode"
    );

    let one = s.run(&[
        "dump",
        "--archive",
        "tar",
        "latest",
        "notetaking/projects/small.md",
    ]);
    assert_exit(&one, 0);
    let stream = s.dir.path().join("one.tar");
    fs::write(&stream, &one.stdout).unwrap();
    assert_eq!(listed("tar", &stream), ["small.md"]);
    let got = stdout(&tar_tool("tar", &["-xOf", "-"], &stream));
    assert_eq!(got, "a small note\n");
}

/// An unknown path: one line naming it, exit 1 (not found), nothing on stdout. A symlink: a
/// usage error naming it. A tar stream to a terminal: refused. A reader that stops reading ends
/// the dump quietly with exit 0.
#[test]
fn refusals_and_a_reader_that_goes_away() {
    let s = Setup::new();
    projects(&s);
    backup(&s);
    let out = s.run(&["dump", "latest", "notetaking/nope/missing.md"]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("notetaking/nope/missing.md"), "{err}");
    assert!(out.stdout.is_empty());

    let out = s.run(&["dump", "latest", "notetaking/projects/link"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("notetaking/projects/link") && err.contains("symbolic link"),
        "{err}"
    );

    if have("script") {
        // `script` gives the command a terminal as its stdout.
        let out = on_terminal(&s, &["dump", "latest", "notetaking/projects"]);
        assert_exit(&out, 2);
        assert!(
            stdout(&out).contains("refusing to write a tar stream"),
            "{}",
            stdout(&out)
        );
    }

    for path in ["notetaking/projects/big.bin", "notetaking/projects"] {
        let mut child = s
            .cmd(&["dump", "latest", path])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut head = [0u8; 10];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut head)
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert_exit(&out, 0);
        assert!(stderr(&out).is_empty(), "{path}: {}", stderr(&out));
    }
}
