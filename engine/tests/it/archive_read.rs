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

/// What a [`Planting`] store does to the restore target at its first read of an archive.
type Plant = Box<dyn FnOnce() + Send>;

/// An exports store that plants something in the restore target at its first read of an
/// archive: after `restore_paths` looked at the (empty) target, before it writes anything.
struct Planting {
    inner: LocalStore,
    plant: Mutex<Option<Plant>>,
}

impl std::fmt::Debug for Planting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Planting")
    }
}

/// A [`Planting`] store that plants a symlink `link` to `to`.
fn planting_symlink(inner: LocalStore, link: PathBuf, to: PathBuf) -> Planting {
    Planting {
        inner,
        plant: Mutex::new(Some(Box::new(move || symlink(to, link).unwrap()))),
    }
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
            && let Some(plant) = self.plant.lock().unwrap().take()
        {
            plant();
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
        let exports = planting_symlink(
            LocalStore::open(env.dir.path().join("exports")).unwrap(),
            target.join("notetaking"),
            outside.clone(),
        );
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

/// Appends `entry` to the day's manifest.
fn add_manifest_entry(env: &Env, entry: serde_json::Value) {
    let mut m = read_manifest_json(env);
    m["entries"].as_array_mut().unwrap().push(entry);
    write_manifest_json(env, &m);
}

/// The manifest entry of `path`.
fn manifest_entry(env: &Env, path: &str) -> serde_json::Value {
    let m = read_manifest_json(env);
    m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
        .unwrap_or_else(|| panic!("{path} is not in the manifest"))
        .clone()
}

/// Review 8, defect 1: a hardlink entry whose first name is a folder (or a symlink) printed
/// nothing with exit 0; only its own kind was checked. Its target must be a file too.
#[test]
fn a_hardlink_to_a_folder_or_symlink_is_refused() {
    let env = Env::new();
    write(&env.src.join("notetaking/a.md"), b"note a\n");
    symlink("a.md", env.src.join("notetaking/ln")).unwrap();
    let exports = exported(&env);
    for (name, to) in [
        ("notetaking/to-dir", "notetaking"),
        ("notetaking/to-symlink", "notetaking/ln"),
    ] {
        add_manifest_entry(
            &env,
            serde_json::json!({"path": name, "type": "file", "size": 0, "mtime": 0,
                "mtime_ns": 0, "mode": 420, "link": to}),
        );
        let mut out = Vec::new();
        let err = extract::extract(&exports, DAY, name.as_bytes(), &mut out).expect_err(name);
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{name}: {err}");
        assert_one_line(&err);
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
}

/// Review 8, defect 1: an empty file was taken from the manifest without reading any header,
/// so an entry the archive does not have gave empty output with exit 0. The writer now gives
/// empty files an `offset` too, and readers check the header there like any file's.
#[test]
fn an_empty_file_is_checked_against_its_header() {
    let env = Env::new();
    write(&env.src.join("notetaking/a.md"), b"note a\n");
    write(&env.src.join("notetaking/empty.md"), b"");
    let exports = exported(&env);
    let a = manifest_entry(&env, "notetaking/a.md");
    // An empty file the archive does not have, placed on another file's header.
    add_manifest_entry(
        &env,
        serde_json::json!({"path": "notetaking/ghost.md", "type": "file", "size": 0, "mtime": 0,
            "mtime_ns": 0, "mode": 420, "offset": a["offset"]}),
    );
    let mut out = Vec::new();
    let err = extract::extract(&exports, DAY, b"notetaking/ghost.md", &mut out)
        .expect_err("an empty file that is not in the archive");
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert_one_line(&err);
    assert!(err.to_string().contains("notetaking/ghost.md"), "{err}");
    let target = env.dir.path().join("t-ghost");
    let err = extract::restore_paths(&exports, DAY, &["notetaking/ghost.md".into()], &target)
        .expect_err("an empty file that is not in the archive");
    assert!(err.to_string().contains("notetaking/ghost.md"), "{err}");
    assert!(!target.join("notetaking/ghost.md").exists());
    // A real empty file has its offset, and reads and restores (as root too) by the table.
    let empty = manifest_entry(&env, "notetaking/empty.md");
    assert!(empty["offset"].is_u64(), "{empty}");
    let mut out = Vec::new();
    let route = extract::extract(&exports, DAY, b"notetaking/empty.md", &mut out).unwrap();
    assert!(matches!(route, extract::Route::Seek { .. }), "{route:?}");
    assert!(out.is_empty());
    let target = env.dir.path().join("t-empty");
    let report = extract::restore_paths(&exports, DAY, &["notetaking/empty.md".into()], &target)
        .unwrap()
        .expect("an empty file with an offset restores by the seek table");
    assert_eq!(report.files, 1);
    assert_eq!(fs::read(target.join("notetaking/empty.md")).unwrap(), b"");
}

/// Review 8, defect 2: the mode came from the manifest unchecked (as root, setuid bits
/// included) while the owner came from the tar header. The header's mode must be the
/// manifest's; a mismatch is refused in one line and nothing is written.
#[test]
fn a_manifest_mode_other_than_the_header_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let p = env.src.join("notetaking/a.md");
    write(&p, b"note a\n");
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    let exports = exported(&env);
    let mut m = read_manifest_json(&env);
    for e in m["entries"].as_array_mut().unwrap() {
        if e["path"] == "notetaking/a.md" {
            e["mode"] = serde_json::json!(0o4755);
        }
    }
    write_manifest_json(&env, &m);
    let target = env.dir.path().join("t");
    let res = extract::restore_paths(&exports, DAY, &["notetaking/a.md".into()], &target);
    let err = res.expect_err("a set-uid mode the header does not have");
    assert_one_line(&err);
    assert!(err.to_string().contains("notetaking/a.md"), "{err}");
    assert!(!target.join("notetaking/a.md").exists());
    let mut out = Vec::new();
    let err = extract::extract(&exports, DAY, b"notetaking/a.md", &mut out).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}

/// A pax record `key=value` with its length prefix.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 2;
    let mut len = body + 2;
    while len.to_string().len() + 1 + body != len {
        len = len.to_string().len() + 1 + body;
    }
    [format!("{len} {key}=").as_bytes(), value, b"\n"].concat()
}

/// An extension header of `kind` with `data`, padded to a block.
fn extension(kind: tar::EntryType, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_path("PaxHeader").unwrap();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().next_multiple_of(512), 0);
    out
}

/// A regular file's ustar header named `name` (its first 100 bytes) and its content, after
/// `before`; returns the tar stream (ended) and where the content starts.
fn tar_file(before: &[u8], name: &[u8], content: &[u8]) -> (Vec<u8>, u64) {
    let mut h = tar::Header::new_ustar();
    let n = name.len().min(100);
    h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    let mut out = before.to_vec();
    out.extend_from_slice(h.as_bytes());
    let offset = out.len() as u64;
    out.extend_from_slice(content);
    out.resize(out.len().next_multiple_of(512) + 1024, 0);
    (out, offset)
}

/// Replaces the day's archive by the tar stream `tar` in one frame with its seek table, and the
/// manifest's entries by the one file `path` of `size` bytes at `offset`: an archive crafted
/// by hand, as a holder of the exports' key could write one.
fn plant_archive(env: &Env, tar: &[u8], path: &[u8], size: u64, offset: u64) {
    let frame = cairn_engine::codec::encode(tar, 3).unwrap();
    let table = cairn_engine::tar::seek_table::encode(&[(frame.len() as u32, tar.len() as u32)]);
    let mut bytes = frame;
    let at = bytes.len();
    bytes.extend_from_slice(&table);
    fs::write(archive_path(env), &bytes).unwrap();
    let mut m = read_manifest_json(env);
    m["archive"]["size"] = serde_json::json!(bytes.len());
    m["seek_table"] = serde_json::json!({"offset": at, "length": table.len(), "frames": 1});
    m["entries"] = serde_json::json!([{"path": std::str::from_utf8(path).unwrap(),
        "type": "file", "size": size, "mtime": 1_700_000_000, "mtime_ns": 0, "mode": 420,
        "offset": offset}]);
    write_manifest_json(env, &m);
}

/// Review 8, defect 4: cat's check read a pax `path` record only for paths over 100 bytes (a
/// ustar name `a` with a pax `path=b`, which GNU tar and the tar crate read as `b`, passed `cat
/// a`), let the last of two records win where the crate takes the first, and cut a GNU long
/// name at its first NUL where the crate keeps the rest. Each is refused.
#[test]
fn cat_refuses_names_that_other_readers_read_otherwise() {
    let env = Env::new();
    write(&env.src.join("notetaking/a.md"), b"note a\n");
    exported(&env);
    let exports = LocalStore::open(env.dir.path().join("exports")).unwrap();
    let short = b"notetaking/a.md".to_vec();
    let long = format!("notetaking/{}/a.md", "p".repeat(120)).into_bytes();
    let other_long = format!("notetaking/{}/b.md", "p".repeat(120)).into_bytes();
    // The helpers write what cat reads: a plain short name, and a long one in its pax record.
    for (name, before) in [
        (&short, Vec::new()),
        (
            &long,
            extension(tar::EntryType::XHeader, &pax_record("path", &long)),
        ),
    ] {
        let (tar, offset) = tar_file(&before, name, b"AAAAA");
        plant_archive(&env, &tar, name, 5, offset);
        let mut out = Vec::new();
        extract::extract(&exports, DAY, name, &mut out).unwrap();
        assert_eq!(out, b"AAAAA");
    }
    let with_nul = [&long[..], b"\0", &other_long[..], b"\0"].concat();
    for (what, name, before) in [
        (
            "a pax path other than the short ustar name",
            &short,
            extension(
                tar::EntryType::XHeader,
                &pax_record("path", b"notetaking/b.md"),
            ),
        ),
        (
            "two pax path records",
            &long,
            extension(
                tar::EntryType::XHeader,
                &[pax_record("path", &other_long), pax_record("path", &long)].concat(),
            ),
        ),
        (
            "a GNU long name with a NUL inside",
            &long,
            extension(tar::EntryType::GNULongName, &with_nul),
        ),
    ] {
        let (tar, offset) = tar_file(&before, name, b"AAAAA");
        plant_archive(&env, &tar, name, 5, offset);
        let mut out = Vec::new();
        let err = extract::extract(&exports, DAY, name, &mut out).expect_err(what);
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
        assert_one_line(&err);
        assert!(out.is_empty(), "{what}: bytes written");
    }
}

/// Review 8, defect 5: the streamed manifest reader let a repeated top-level key win (entries
/// counted twice) where `read_manifest` refuses it.
#[test]
fn a_manifest_with_a_repeated_top_level_key_is_refused() {
    let env = Env::new();
    write(&env.src.join("notetaking/a.md"), b"note a\n");
    let exports = exported(&env);
    let good = fs::read_to_string(manifest_path(&env)).unwrap();
    for (what, from, to) in [
        (
            "date",
            "\n  \"date\": ",
            "\n  \"date\": \"2026-11-28\",\n  \"date\": ",
        ),
        (
            "entries",
            "\n  \"entries\": ",
            "\n  \"entries\": [],\n  \"entries\": ",
        ),
    ] {
        assert!(good.contains(from), "{what}");
        fs::write(manifest_path(&env), good.replacen(from, to, 1)).unwrap();
        let mut out = Vec::new();
        let err = extract::extract(&exports, DAY, b"notetaking/a.md", &mut out).expect_err(what);
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{what}: {err}");
        assert_one_line(&err);
        assert!(
            err.to_string().contains("manifest.json") && err.to_string().contains(what),
            "{what}: {err}"
        );
    }
}

/// Review 8, defect 6: a file that appeared in the target after the fast path found it empty
/// was "left as it was" with exit 0. It is an error: the restore did not give that file.
#[test]
fn restore_of_paths_refuses_a_file_that_appears_in_the_target() {
    let env = Env::new();
    write(&env.src.join("notetaking/a.md"), b"note a\n");
    exported(&env);
    let target = env.dir.path().join("t");
    let planted = target.join("notetaking/a.md");
    let exports = Planting {
        inner: LocalStore::open(env.dir.path().join("exports")).unwrap(),
        plant: Mutex::new(Some(Box::new({
            let planted = planted.clone();
            move || write(&planted, b"planted\n")
        }))),
    };
    let res = extract::restore_paths(&exports, DAY, &["notetaking/a.md".into()], &target);
    assert!(
        exports.plant.lock().unwrap().is_none(),
        "never read by frames"
    );
    let err = res.expect_err("a file that appeared in the target");
    assert_one_line(&err);
    assert!(err.to_string().contains("notetaking/a.md"), "{err}");
    assert_eq!(fs::read(&planted).unwrap(), b"planted\n");
}

/// Review 8, defect 7: the export reused the newest complete day other than its own, a future
/// one included, and read that day's manifest whole; `exports verify` read any manifest whole.
/// A planted manifest past the bound (a sparse file here) ran both out of memory. Days after
/// the export's own are not drawn on, and a manifest past the bound is refused before it is
/// read.
#[test]
fn a_planted_huge_manifest_is_never_read_whole() {
    let env = Env::new();
    write(&env.src.join("notetaking/a.md"), b"note a\n");
    env.backup();
    let root = env.dir.path().join("exports");
    let exports = LocalStore::open(&root).unwrap();
    let plant = |date: &str| {
        let keys = DayKeys::new(date).unwrap();
        let p = root.join(&keys.manifest);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        let f = fs::File::create(&p).unwrap();
        f.set_len(export::MAX_MANIFEST + 1).unwrap();
        keys.manifest
    };
    let future = plant("2099-01-01");
    // An earlier day is drawn on: its manifest is refused unread and the export goes on.
    let earlier = plant("2026-11-28");
    let cat = env.catalog();
    let (id, snap) = cat.resolve_snapshot("latest").unwrap();
    let (res, peak) =
        peak_during(|| export::export(&env.repo, &cat, &exports, (&id, &snap), &day_opts(DAY)));
    let published = res.unwrap();
    assert!(peak < 256 << 20, "the export held {peak} bytes");
    match published {
        export::Published::Written(_, reused) => {
            assert_ne!(reused.from.as_deref(), Some("2099-01-01"))
        }
        other => panic!("{other:?}"),
    }
    for (date, key) in [("2099-01-01", &future), ("2026-11-28", &earlier)] {
        let (res, peak) = peak_during(|| export::verify(&exports, date));
        let err = res.expect_err(date);
        assert_one_line(&err);
        assert!(err.to_string().contains(key.as_str()), "{date}: {err}");
        assert!(peak < 16 << 20, "{date}: verify held {peak} bytes");
    }
    // The export's own day planted so: its rerun check refuses it in one line, unread.
    let (id, snap) = cat.resolve_snapshot("latest").unwrap();
    let mut opts = day_opts("2026-11-30");
    opts.force = true;
    let key = plant("2026-11-30");
    let (res, peak) =
        peak_during(|| export::export(&env.repo, &cat, &exports, (&id, &snap), &opts));
    let err = res.expect_err("a huge manifest of the day");
    assert_one_line(&err);
    assert!(err.to_string().contains(key.as_str()), "{err}");
    assert!(peak < 16 << 20, "the rerun check held {peak} bytes");
}

/// Review 8, defect 8: `restore_paths` stripped every leading `./` where the streaming restore
/// strips one, so `././a` restored by the table and was refused by the stream. Both read a
/// path the same way now.
#[test]
fn restore_of_paths_reads_a_path_as_the_streaming_restore_does() {
    let env = Env::new();
    write(&env.src.join("notetaking/a.md"), b"note a\n");
    let exports = exported(&env);
    for (i, path) in ["./notetaking/a.md", "././notetaking/a.md"]
        .iter()
        .enumerate()
    {
        let fast = env.dir.path().join(format!("fast-{i}"));
        let by_table = extract::restore_paths(&exports, DAY, &[path.to_string()], &fast);
        let slow = env.dir.path().join(format!("slow-{i}"));
        let mut opts = restore_opts(&slow);
        opts.paths = vec![path.to_string()];
        opts.verify = false;
        let archive =
            cairn_engine::store::ObjectReader::open(&exports, &DayKeys::new(DAY).unwrap().archive)
                .unwrap();
        let streamed = cairn_engine::restore::restore_archive(archive, &opts);
        match (by_table, streamed) {
            (Ok(Some(a)), Ok(b)) => {
                assert_eq!((a.files, b.files), (1, 1), "{path}");
                assert_eq!(fs::read(fast.join("notetaking/a.md")).unwrap(), b"note a\n");
            }
            (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "{path}: {a} / {b}"),
            (a, b) => panic!("{path}: by the table {a:?}, streamed {b:?}"),
        }
    }
}
