//! The model behind `cairn mount` without a mount: every name of a snapshot and of its day's
//! archive is found by lookups from the root, with the snapshot's attributes (modes, owners,
//! nanosecond times, link counts, one number for all names of a hardlinked file), its bytes
//! read at odd offsets equal the source, numbers are stable across two browsers, and the node
//! table empties as the kernel forgets.

use std::collections::BTreeMap;
use std::sync::Arc;

use cairn_engine::browse::{Attr, Browser, Sources, inodes::ROOT};
use cairn_engine::catalog::Catalog;
use cairn_engine::export;
use cairn_engine::store::{LocalStore, Store};
use cairn_engine::tree::EntryKind;

use crate::common::*;

const DAY: &str = "2026-11-29";

fn browser(env: &Env, exports: &Arc<dyn Store>) -> Browser {
    let cat = Catalog::open_reader(&env.state, &env.repo)
        .unwrap()
        .unwrap();
    Browser::new(
        Sources {
            repo: Some((env.repo.clone(), env.state.clone(), cat)),
            exports: Some(exports.clone()),
        },
        (1000, 1000),
    )
    .unwrap()
}

/// Every node below `dir` (looked up from it), by path, with its attributes; each looked-up
/// node is forgotten again when `forget` is set.
fn walk(b: &Browser, dir: u64, forget: bool) -> BTreeMap<Vec<u8>, Attr> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(dir, Vec::new())];
    while let Some((ino, path)) = stack.pop() {
        let h = b.opendir(ino).unwrap();
        let items = b.readdir(h).unwrap();
        b.release(h);
        for item in items.iter() {
            let a = b.lookup(ino, &item.name).unwrap();
            assert_eq!(a.kind, item.kind);
            let mut p = path.clone();
            if !p.is_empty() {
                p.push(b'/');
            }
            p.extend_from_slice(&item.name);
            if a.kind == EntryKind::Dir {
                stack.push((a.ino, p.clone()));
            } else if forget {
                b.forget(a.ino, 1);
            }
            out.insert(p, a);
        }
    }
    out
}

/// The whole content of the file `ino`, read in pieces of `piece` bytes.
fn read_all(b: &Browser, ino: u64, piece: u32) -> Vec<u8> {
    let h = b.open(ino).unwrap();
    let mut out = Vec::new();
    loop {
        let got = b.read(h, out.len() as u64, piece).unwrap();
        if got.is_empty() {
            break;
        }
        out.extend_from_slice(&got);
    }
    b.release(h);
    out
}

/// The awkward tree backed up, and its day exported to a local exports store.
fn exported() -> (
    Env,
    Arc<dyn Store>,
    cairn_engine::Id,
    cairn_engine::snapshot::Snapshot,
) {
    let env = Env::new();
    awkward_tree(&env.src);
    env.backup();
    let cat = env.catalog();
    let (id, snap) = cat.resolve_snapshot("latest").unwrap();
    let exports: Arc<dyn Store> =
        Arc::new(LocalStore::open(env.dir.path().join("exports")).unwrap());
    export::export(
        &env.repo,
        &cat,
        exports.as_ref(),
        (&id, &snap),
        &day_opts(DAY),
    )
    .unwrap();
    drop(cat);
    (env, exports, id, snap)
}

#[test]
fn a_snapshot_and_its_archive_browse_as_the_source() {
    let (env, exports, id, snap) = exported();

    let b = browser(&env, &exports);
    let root: Vec<Vec<u8>> = {
        let h = b.opendir(ROOT).unwrap();
        let v = b
            .readdir(h)
            .unwrap()
            .iter()
            .map(|i| i.name.clone())
            .collect();
        b.release(h);
        v
    };
    assert_eq!(root, [&b"archives"[..], b"ids", b"latest", b"snapshots"]);
    let latest = b.lookup(ROOT, b"latest").unwrap();
    assert_eq!(
        b.readlink(latest.ino).unwrap(),
        format!("snapshots/{DAY}").into_bytes()
    );
    let snaps = b.lookup(ROOT, b"snapshots").unwrap();
    let day = b.lookup(snaps.ino, DAY.as_bytes()).unwrap();
    let ids = b.lookup(ROOT, b"ids").unwrap();
    let by_id = b.lookup(ids.ino, id.short().as_bytes()).unwrap();
    assert_ne!(
        by_id.ino, day.ino,
        "a directory has one parent: two views, two numbers"
    );

    let seen = walk(&b, day.ino, false);
    let want = snapshot_entries(&env, &snap.root);
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the same names"
    );
    for (path, a) in &seen {
        let e = &want[path];
        let shown = String::from_utf8_lossy(path);
        assert_eq!(a.kind, e.kind, "{shown}");
        assert_eq!(a.perm, e.mode & 0o7777, "{shown}");
        assert_eq!((a.uid, a.gid), (e.uid, e.gid), "{shown}");
        assert_eq!((a.mtime, a.mtime_ns), (e.mtime, e.mtime_ns), "{shown}");
        match e.kind {
            EntryKind::File => {
                assert_eq!(a.size, e.size, "{shown}");
                assert_eq!(read_all(&b, a.ino, 100_003), content(&env, e), "{shown}");
            }
            EntryKind::Symlink => {
                assert_eq!(
                    b.readlink(a.ino).unwrap(),
                    e.target.as_ref().unwrap().0,
                    "{shown}"
                )
            }
            _ => {}
        }
    }
    // One inode, two names: one number, two links.
    let (ha, hb) = (
        &seen[&b"backup/hard-a"[..]],
        &seen[&b"backup/sub/hard-b"[..]],
    );
    assert_eq!(ha.ino, hb.ino);
    assert_eq!((ha.nlink, hb.nlink), (2, 2));
    assert_eq!(seen[&b"notetaking/plain.txt"[..]].nlink, 1);
    // A folder's links: 2 and one per folder in it.
    let dirs_in_images = want
        .keys()
        .filter(|p| {
            p.starts_with(b"images/") && !p[7..].contains(&b'/') && want[*p].kind == EntryKind::Dir
        })
        .count() as u32;
    assert_eq!(seen[&b"images"[..]].nlink, 2 + dirs_in_images);

    // A read at an odd offset across chunk boundaries.
    let big = &seen[&b"images/album/big.raw"[..]];
    let src = std::fs::read(env.src.join("images/album/big.raw")).unwrap();
    let h = b.open(big.ino).unwrap();
    for off in [0u64, 1, 4 << 20, (9 << 20) - 7, 3_333_333] {
        let got = b.read(h, off, 131_072).unwrap();
        let end = (off as usize + 131_072).min(src.len());
        assert_eq!(got, &src[off as usize..end], "at {off}");
    }
    assert!(
        b.read(h, 9 << 20, 10).unwrap().is_empty(),
        "nothing past the end"
    );
    b.release(h);

    // The same numbers from another browser (a remount).
    let again = browser(&env, &exports);
    let snaps2 = again.lookup(ROOT, b"snapshots").unwrap();
    let day2 = again.lookup(snaps2.ino, DAY.as_bytes()).unwrap();
    assert_eq!(day2.ino, day.ino);
    let seen2 = walk(&again, day2.ino, true);
    for (p, a) in &seen2 {
        assert_eq!(a.ino, seen[p].ino, "{}", String::from_utf8_lossy(p));
    }
    // Forgotten files leave the table: only the snapshot's folder and the folders in it (never
    // forgotten here) stay; `snapshots/` itself is a fixed node, never in the table.
    let dirs = seen2.values().filter(|a| a.kind == EntryKind::Dir).count();
    assert_eq!(again.nodes(), dirs + 1);

    // The day's archive: the archived files, read by the seek table, equal the source.
    let archives = b.lookup(ROOT, b"archives").unwrap();
    let aday = b.lookup(archives.ino, DAY.as_bytes()).unwrap();
    let in_archive = walk(&b, aday.ino, false);
    for (path, a) in &in_archive {
        let shown = String::from_utf8_lossy(path);
        let e = &want[path];
        assert_eq!(a.kind, e.kind, "{shown}");
        assert_eq!(a.perm, e.mode & 0o7777, "{shown}");
        assert_eq!((a.mtime, a.mtime_ns), (e.mtime, e.mtime_ns), "{shown}");
        if a.kind == EntryKind::File {
            assert_eq!(a.size, e.size, "{shown}");
            assert_eq!(read_all(&b, a.ino, 65_536), content(&env, e), "{shown}");
        }
    }
    let (ha, hb) = (
        &in_archive[&b"backup/hard-a"[..]],
        &in_archive[&b"backup/sub/hard-b"[..]],
    );
    assert_eq!((ha.ino, ha.nlink, hb.nlink), (hb.ino, 2, 2));
    assert!(
        !in_archive.contains_key(&b"backup/fifo"[..]),
        "the archive leaves fifos out"
    );
    assert!(in_archive.contains_key(&b"images/album/big.raw"[..]));
}

/// A crafted manifest: a hardlink to a folder, one to itself, and a time past its second. Each
/// fails its own lookup as damage (never a panic, never a folder and a file sharing a number),
/// and the folder holding them still lists.
#[test]
fn a_crafted_days_bad_entries_fail_alone() {
    let (env, exports, _, _) = exported();
    let key = format!("{DAY}/shared-{DAY}.manifest.json");
    let path = env.dir.path().join("exports").join(&key);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let entries = m["entries"].as_array_mut().unwrap();
    let plain = entries
        .iter()
        .find(|e| e["path"] == "notetaking/plain.txt")
        .unwrap()
        .clone();
    let mut to_dir = plain.clone();
    to_dir["path"] = "notetaking/to-dir".into();
    to_dir["link"] = "notetaking/empty-dir".into();
    let mut to_self = plain.clone();
    to_self["path"] = "notetaking/to-self".into();
    to_self["link"] = "notetaking/to-self".into();
    let mut late = plain.clone();
    late["path"] = "notetaking/late".into();
    late["mtime"] = i64::MAX.into();
    late["mtime_ns"] = 2_000_000_000u64.into();
    entries.extend([to_dir, to_self]);
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();

    let b = browser(&env, &exports);
    let archives = b.lookup(ROOT, b"archives").unwrap();
    let day = b.lookup(archives.ino, DAY.as_bytes()).unwrap();
    let notes = b.lookup(day.ino, b"notetaking").unwrap();
    let h = b.opendir(notes.ino).unwrap();
    let names: Vec<Vec<u8>> = b
        .readdir(h)
        .unwrap()
        .iter()
        .map(|i| i.name.clone())
        .collect();
    assert!(names.contains(&b"to-dir".to_vec()) && names.contains(&b"plain.txt".to_vec()));
    for bad in [&b"to-dir"[..], b"to-self"] {
        let e = b.lookup(notes.ino, bad).unwrap_err();
        assert_eq!(e.kind(), cairn_engine::ErrorKind::Corrupt, "{e}");
    }
    let dir = b.lookup(notes.ino, b"empty-dir").unwrap();
    assert_eq!(
        dir.kind,
        EntryKind::Dir,
        "the folder keeps its own number and kind"
    );
    assert_eq!(
        b.lookup(notes.ino, b"plain.txt").unwrap().kind,
        EntryKind::File
    );

    // A time beyond its second makes the whole day refuse to index, as damage.
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["entries"].as_array_mut().unwrap().push(late);
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    let b = browser(&env, &exports);
    let archives = b.lookup(ROOT, b"archives").unwrap();
    let day = b.lookup(archives.ino, DAY.as_bytes()).unwrap();
    let e = b.lookup(day.ino, b"notetaking").unwrap_err();
    assert_eq!(e.kind(), cairn_engine::ErrorKind::Corrupt, "{e}");
}
