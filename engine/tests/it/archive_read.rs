//! Reading a day's archive by its manifest and seek table (`exports cat`, `restore --archive DAY
//! --path P`, `exports verify`) when the target, the manifest or the names are hostile or odd: a
//! symlink planted in the target, a path near PATH_MAX, offsets exchanged in the manifest, a
//! seek table that does not end the archive, a long path with a line break, a manifest of
//! hundreds of thousands of entries.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use cairn_engine::ErrorKind;
use cairn_engine::export::{self, DayKeys, extract};
use cairn_engine::store::{Cleaned, LocalStore, ObjectInfo, Store};

use crate::alloc::peak_during;
use crate::common::*;

const DAY: &str = "2026-11-29";

/// Backs up `env.src` and publishes the day's archive into a local exports store.
fn exported(env: &Env) -> LocalStore {
    env.backup();
    let cat = env.catalog();
    let (id, snap) = cat.resolve_snapshot("latest").unwrap();
    let exports = LocalStore::open(env.dir.path().join("exports")).unwrap();
    export::export(&env.repo, &cat, &exports, (&id, &snap), &day_opts(DAY)).unwrap();
    exports
}

fn manifest_path(env: &Env) -> PathBuf {
    env.dir
        .path()
        .join("exports")
        .join(DayKeys::new(DAY).unwrap().manifest)
}

fn archive_path(env: &Env) -> PathBuf {
    env.dir
        .path()
        .join("exports")
        .join(DayKeys::new(DAY).unwrap().archive)
}

fn read_manifest_json(env: &Env) -> serde_json::Value {
    serde_json::from_slice(&fs::read(manifest_path(env)).unwrap()).unwrap()
}

fn write_manifest_json(env: &Env, m: &serde_json::Value) {
    fs::write(manifest_path(env), serde_json::to_vec_pretty(m).unwrap()).unwrap();
}

fn assert_one_line(err: &cairn_engine::Error) {
    assert_eq!(err.to_string().lines().count(), 1, "{err}");
}

/// An exports store that plants a symlink in the restore target at its first read of an
/// archive: after `restore_paths` looked at the (empty) target, before it writes anything.
#[derive(Debug)]
struct Planting {
    inner: LocalStore,
    plant: Mutex<Option<(PathBuf, PathBuf)>>,
}

impl Store for Planting {
    fn put(&self, key: &str, data: &[u8]) -> cairn_engine::Result<()> {
        self.inner.put(key, data)
    }
    fn get(&self, key: &str) -> cairn_engine::Result<Vec<u8>> {
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, offset: u64, len: u64) -> cairn_engine::Result<Vec<u8>> {
        if key.ends_with(".tar.zst")
            && let Some((link, to)) = self.plant.lock().unwrap().take()
        {
            symlink(to, link).unwrap();
        }
        self.inner.get_range(key, offset, len)
    }
    fn list(&self, prefix: &str) -> cairn_engine::Result<Vec<ObjectInfo>> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> cairn_engine::Result<()> {
        self.inner.delete(key)
    }
    fn clean_temporaries(&self, prefix: &str, older: Duration) -> cairn_engine::Result<Cleaned> {
        self.inner.clean_temporaries(prefix, older)
    }
}

/// Defect 5: `restore --archive DAY --path P` wrote by path, so a symlink planted in the empty
/// target after its check took the files outside. It goes through the descriptor-based target
/// like every other restore: the symlink is refused, nothing is written through it.
#[test]
fn restore_of_paths_never_writes_through_a_symlink_planted_in_the_target() {
    let env = Env::new();
    write(&env.src.join("notetaking/a.md"), b"note a\n");
    write(&env.src.join("notetaking/sub/b.md"), b"note b\n");
    exported(&env);
    // Files: as root, folders are restored by streaming the archive (their owners are in their
    // headers), which never takes this way.
    for (i, path) in ["notetaking/a.md", "notetaking/sub/b.md"]
        .iter()
        .enumerate()
    {
        let outside = env.dir.path().join(format!("outside-{i}"));
        fs::create_dir(&outside).unwrap();
        let target = env.dir.path().join(format!("t-{i}"));
        fs::create_dir(&target).unwrap();
        let exports = Planting {
            inner: LocalStore::open(env.dir.path().join("exports")).unwrap(),
            plant: Mutex::new(Some((target.join("notetaking"), outside.clone()))),
        };
        let res = extract::restore_paths(&exports, DAY, &[path.to_string()], &target);
        assert!(
            exports.plant.lock().unwrap().is_none(),
            "{path}: the archive was never read by its frames"
        );
        let err = res.expect_err(path);
        assert_one_line(&err);
        assert!(err.to_string().contains("notetaking"), "{path}: {err}");
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "{path}: wrote through the planted symlink"
        );
    }
}

/// Defect 5: a path of about 4,000 bytes restores by the seek table into a target whose own
/// path makes the two together longer than PATH_MAX, as the other restores do.
#[test]
fn restore_of_paths_takes_a_path_near_path_max() {
    let env = Env::new();
    let mut rel = PathBuf::from("notetaking");
    for i in 0..16 {
        rel.push(format!("d{i:02}-{}", "x".repeat(246)));
    }
    rel.push("leaf.md");
    let len = rel.as_os_str().len();
    assert!((4000..=4096).contains(&len), "{len}");
    write(&env.src.join(&rel), b"deep leaf\n");
    write(&env.src.join("notetaking/other.md"), b"other\n");
    let exports = exported(&env);
    let target = env.dir.path().join("t").join("y".repeat(200));
    assert!(target.as_os_str().len() + 1 + len > 4096);
    let report =
        extract::restore_paths(&exports, DAY, &[rel.to_str().unwrap().to_string()], &target)
            .unwrap()
            .expect("a file of the day restores by the seek table");
    assert_eq!(report.files, 1);
    // Read back component by component: the joined path is longer than PATH_MAX.
    assert_eq!(read_below(&target, &rel), b"deep leaf\n");
}

/// Reads `rel` below `root` component by component (the joined path is longer than PATH_MAX).
fn read_below(root: &Path, rel: &Path) -> Vec<u8> {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::io::AsRawFd;
    let c = |p: &OsStr| std::ffi::CString::new(p.as_bytes()).unwrap();
    // SAFETY: valid C string; the descriptor is owned below.
    let fd = unsafe { libc::open(c(root.as_os_str()).as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0);
    // SAFETY: fresh descriptor.
    let mut cur = unsafe { OwnedFd::from_raw_fd(fd) };
    for p in rel.components() {
        // SAFETY: valid descriptor and C string.
        let fd =
            unsafe { libc::openat(cur.as_raw_fd(), c(p.as_os_str()).as_ptr(), libc::O_RDONLY) };
        assert!(fd >= 0, "{p:?}");
        // SAFETY: fresh descriptor.
        cur = unsafe { OwnedFd::from_raw_fd(fd) };
    }
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut fs::File::from(cur), &mut out).unwrap();
    out
}

/// Exchanges the `offset`s of the manifest entries `a` and `b`.
fn swap_offsets(env: &Env, a: &str, b: &str) {
    let mut m = read_manifest_json(env);
    let entries = m["entries"].as_array_mut().unwrap();
    let at = |p: &str| entries.iter().position(|e| e["path"] == p).unwrap();
    let (i, j) = (at(a), at(b));
    let (oi, oj) = (entries[i]["offset"].clone(), entries[j]["offset"].clone());
    assert_ne!(oi, oj);
    entries[i]["offset"] = oj;
    entries[j]["offset"] = oi;
    write_manifest_json(env, &m);
}

/// Defect 6: two same-size files whose offsets are exchanged in the manifest made `exports
/// cat` and `restore --path` return each other's content with exit 0. The tar header's name is
/// checked against the path asked for: the ustar name for a short path, the pax `path` record
/// for a long one (whose first 100 bytes, all the ustar name holds, are the same here).
#[test]
fn offsets_exchanged_in_the_manifest_never_give_the_other_file() {
    let env = Env::new();
    let long = format!("notetaking/{}", "p".repeat(120));
    let pairs = [
        ("notetaking/a.md".to_string(), "notetaking/b.md".to_string()),
        (format!("{long}/one.md"), format!("{long}/two.md")),
    ];
    for (a, b) in &pairs {
        write(&env.src.join(a), &[b'A'; 3000]);
        write(&env.src.join(b), &[b'B'; 3000]);
    }
    let exports = exported(&env);
    for (k, (a, b)) in pairs.iter().enumerate() {
        swap_offsets(&env, a, b);
        for (n, path) in [a, b].into_iter().enumerate() {
            let mut out = Vec::new();
            let res = extract::extract(&exports, DAY, path.as_bytes(), &mut out);
            let err = res.expect_err(path);
            assert_eq!(err.kind(), ErrorKind::Corrupt, "{path}: {err}");
            assert_one_line(&err);
            assert!(err.to_string().contains(path.as_str()), "{path}: {err}");
            assert!(out.is_empty(), "{path}: bytes written before the check");

            let target = env.dir.path().join(format!("t-{k}-{n}"));
            let res = extract::restore_paths(&exports, DAY, &[path.to_string()], &target);
            let err = res.expect_err(path);
            assert!(err.to_string().contains(path.as_str()), "{path}: {err}");
            assert!(
                !target.join(path).exists(),
                "{path}: a wrong file was left in the target"
            );
        }
    }
}

/// Defect 7: a manifest whose `seek_table` starts at 0 made cat, restore and verify read the
/// whole archive into memory, and verify said ok. A table that does not sit at the archive's
/// end (its length is 17 + 8 per frame) is refused before anything is read.
#[test]
fn a_seek_table_that_does_not_end_the_archive_is_refused_unread() {
    let env = Env::new();
    write(&env.src.join("images/big.raw"), &seeded(12 << 20, 7));
    write(&env.src.join("notetaking/a.md"), b"a small note\n");
    let exports = exported(&env);
    let good = read_manifest_json(&env);
    let size = good["archive"]["size"].as_u64().unwrap();
    let frames = good["seek_table"]["frames"].as_u64().unwrap();
    let table = good["seek_table"]["length"].as_u64().unwrap();
    assert_eq!(table, 17 + 8 * frames);
    for (what, offset, length, n) in [
        ("the whole archive", 0, size, frames),
        ("a length for fewer frames", size - table, table, frames + 1),
        ("moved", size - table - 512, table, frames),
        ("a huge count", 0, size, u64::MAX / 8),
    ] {
        let mut m = good.clone();
        m["seek_table"] = serde_json::json!({"offset": offset, "length": length, "frames": n});
        write_manifest_json(&env, &m);
        let mut out = Vec::new();
        let (res, peak) =
            peak_during(|| extract::extract(&exports, DAY, b"notetaking/a.md", &mut out));
        let err = res.expect_err(what);
        assert_one_line(&err);
        assert!(
            err.to_string().contains("seek table") && err.to_string().contains(DAY),
            "{what}: {err}"
        );
        assert!(peak < 2 << 20, "{what}: cat held {peak} bytes");
        let (res, peak) = peak_during(|| export::verify(&exports, DAY));
        let err = res.expect_err(what);
        assert!(err.to_string().contains("seek table"), "{what}: {err}");
        assert!(peak < 2 << 20, "{what}: verify held {peak} bytes");
        let target = env.dir.path().join("t");
        let _ = fs::remove_dir_all(&target);
        let (res, peak) = peak_during(|| {
            extract::restore_paths(&exports, DAY, &["notetaking/a.md".into()], &target)
        });
        // The manifest only speeds a restore up: without it the archive is streamed.
        assert!(res.unwrap().is_none(), "{what}");
        assert!(peak < 2 << 20, "{what}: restore held {peak} bytes");
    }
    write_manifest_json(&env, &good);
    export::verify(&exports, DAY).unwrap();
}

/// A path over 100 bytes with a line break: its pax record is read by its length, so verify
/// passes the archive, and cat reads the file by the seek table and, with the table damaged,
/// from the archive's start.
#[test]
fn a_long_path_with_a_line_break_verifies_and_reads_back() {
    let env = Env::new();
    let name = format!("notetaking/{}\nsecond line.md", "n".repeat(120));
    write(
        &env.src.join(&name),
        b"a note with a line break in its name\n",
    );
    write(&env.src.join("notetaking/plain.md"), b"plain\n");
    let exports = exported(&env);
    export::verify(&exports, DAY).unwrap();
    let mut out = Vec::new();
    extract::extract(&exports, DAY, name.as_bytes(), &mut out).unwrap();
    assert_eq!(out, b"a note with a line break in its name\n");
    // The seek table's magic damaged: read from the start.
    let mut bytes = fs::read(archive_path(&env)).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0x40;
    fs::write(archive_path(&env), &bytes).unwrap();
    let mut out = Vec::new();
    let route = extract::extract(&exports, DAY, name.as_bytes(), &mut out).unwrap();
    assert_eq!(route, extract::Route::Scan);
    assert_eq!(out, b"a note with a line break in its name\n");
}

/// `exports cat` of one file streams the manifest: a manifest of 400,000 entries (about 40 MB)
/// costs the object reader's buffer (8 MiB ranged reads, two alive while one replaces the
/// other), not the manifest (parsed whole, it took 100 MB).
#[test]
fn cat_reads_a_large_manifest_in_bounded_memory() {
    let env = Env::new();
    write(&env.src.join("notetaking/wanted.md"), b"found me\n");
    write(&env.src.join("notetaking/zz.md"), b"after\n");
    let exports = exported(&env);
    let text = String::from_utf8(fs::read(manifest_path(&env)).unwrap()).unwrap();
    let at = text.find("\"entries\": [").unwrap() + "\"entries\": [".len();
    let mut big = String::with_capacity(45 << 20);
    big.push_str(&text[..at]);
    for i in 0..400_000u32 {
        big.push_str(&format!(
            "\n    {{\"path\":\"aaaa/filler-{i:07}.md\",\"type\":\"file\",\"size\":1,\"mtime\":0,\"mtime_ns\":0,\"mode\":420,\"offset\":512}},"
        ));
    }
    big.push_str(&text[at..]);
    assert!(big.len() > 40 << 20, "{}", big.len());
    fs::write(manifest_path(&env), &big).unwrap();
    drop((big, text));
    let mut out = Vec::new();
    let (res, peak) =
        peak_during(|| extract::extract(&exports, DAY, b"notetaking/wanted.md", &mut out));
    res.unwrap();
    assert_eq!(out, b"found me\n");
    assert!(
        peak < 20 << 20,
        "cat held {peak} bytes for a 40 MB manifest"
    );
    // Nor for a path it does not find (the whole manifest is searched).
    let (res, peak) =
        peak_during(|| extract::extract(&exports, DAY, b"notetaking/nope.md", &mut out));
    assert_eq!(res.unwrap_err().kind(), ErrorKind::NotFound);
    assert!(
        peak < 20 << 20,
        "cat held {peak} bytes for a 40 MB manifest"
    );
}
