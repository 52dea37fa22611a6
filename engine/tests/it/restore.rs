//! Restore and check: a 20-day history restored day by day, partial and interrupted restores,
//! restores from the daily archive alone, crafted snapshots and archives that try to escape the
//! target, and `check` finding damaged and missing packs.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;

use cairn_engine::check::{self, ReadData};
use cairn_engine::export::{self, ExportOptions};
use cairn_engine::restore::{self, Overwrite, RestoreOptions};
use cairn_engine::store::{Fault, LocalStore, Op, Store};
use cairn_engine::{ErrorKind, Id};

use crate::common::*;
use crate::survey::{DEFAULT_SKIP, Kind, survey};

const FOLDERS: [&str; 3] = ["notetaking", "images", "backup"];

/// Everything restore promises to bring back about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fp {
    kind: Kind,
    mode: u32,
    owner: (u32, u32),
    mtime: (i64, u32),
    size: u64,
    hash: Option<Id>,
    target: Option<Vec<u8>>,
    /// For files with several links: the first path (in sorted order) of the same inode.
    link: Option<Vec<u8>>,
}

fn fingerprint(root: &Path) -> BTreeMap<Vec<u8>, Fp> {
    let mut nodes = BTreeMap::new();
    for f in FOLDERS {
        if root.join(f).exists() {
            nodes.append(&mut survey(root, f.as_bytes(), &DEFAULT_SKIP));
        }
    }
    let mut first: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    nodes
        .into_iter()
        // Sockets and device nodes are not restored here (devices need root).
        .filter(|(_, n)| matches!(n.kind, Kind::Dir | Kind::File | Kind::Symlink | Kind::Fifo))
        .map(|(path, n)| {
            let file = n.kind == Kind::File;
            let fp = Fp {
                kind: n.kind,
                mode: if n.kind == Kind::Symlink { 0 } else { n.mode },
                owner: (n.uid, n.gid),
                mtime: n.mtime,
                size: n.size,
                hash: file.then(|| Id::of(&n.content())),
                target: n.target.clone(),
                link: (file && n.nlink > 1)
                    .then(|| first.entry(n.ino).or_insert_with(|| path.clone()).clone()),
            };
            (path, fp)
        })
        .collect()
}

fn assert_same(want: &BTreeMap<Vec<u8>, Fp>, got: &BTreeMap<Vec<u8>, Fp>, what: &str) {
    let wk: Vec<_> = want
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    let gk: Vec<_> = got
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(gk, wk, "{what}: paths");
    for (k, w) in want {
        assert_eq!(&got[k], w, "{what}: {}", String::from_utf8_lossy(k));
    }
}

/// Changes the tree the way a day of use does.
fn live_a_day(src: &Path, day: u32) {
    write(
        &src.join(format!("notetaking/journal/day-{day:02}.md")),
        format!("day {day}\n").repeat(day as usize * 10).as_bytes(),
    );
    if day.is_multiple_of(3) {
        let _ = fs::remove_file(src.join(format!("notetaking/journal/day-{:02}.md", day - 1)));
    }
    let big = src.join("images/album/big.raw");
    let mut data = fs::read(&big).unwrap();
    data[day as usize * 1000] ^= 0x5a;
    fs::write(&big, data).unwrap();
    let private = src.join("backup/modes/private");
    fs::set_permissions(
        &private,
        fs::Permissions::from_mode(if day.is_multiple_of(2) { 0o600 } else { 0o640 }),
    )
    .unwrap();
    set_mtime(
        &src.join("notetaking/plain.txt"),
        1_700_000_000 + i64::from(day) * 86_400,
        i64::from(day) * 1_000_003,
    );
    match day {
        5 => fs::hard_link(src.join("backup/hard-a"), src.join("backup/hard-c")).unwrap(),
        7 => {
            fs::remove_file(src.join("notetaking/empty.txt")).unwrap();
            symlink("plain.txt", src.join("notetaking/empty.txt")).unwrap();
        }
        10 => fs::rename(src.join("notetaking/deep"), src.join("notetaking/deeper")).unwrap(),
        14 => fs::remove_dir_all(src.join("images/album"))
            .and_then(|_| {
                fs::create_dir_all(src.join("images/album"))?;
                fs::write(src.join("images/album/big.raw"), seeded(5 << 20, 99))
            })
            .unwrap(),
        _ => {}
    }
}

#[test]
fn every_day_of_a_20_day_history_restores_exactly() {
    let env = Env::new();
    awkward_tree(&env.src);
    let mut expected = Vec::new();
    for day in 1..=20u32 {
        live_a_day(&env.src, day);
        let mut o = env.opts();
        o.date = format!("2026-11-{day:02}");
        let out = env.backup_with(&o).unwrap();
        assert!(
            out.snapshot.warnings.is_empty(),
            "{:?}",
            out.snapshot.warnings
        );
        expected.push((o.date, fingerprint(&env.src)));
    }
    let cat = env.catalog();
    for (date, want) in &expected {
        let (_, snap) = cat.resolve_snapshot(date).unwrap();
        let target = env.dir.path().join(format!("restore-{date}"));
        let report = restore::restore(&env.repo, &cat, &snap, &restore_opts(&target)).unwrap();
        assert_eq!(report.verified, report.files);
        assert_eq!(
            report.skipped,
            ["backup/socket"],
            "sockets cannot be restored"
        );
        assert_same(want, &fingerprint(&target), date);
        // The 48 MiB image with 1 MiB of data comes back sparse.
        let img = fs::metadata(target.join("backup/disk.img")).unwrap();
        assert!(
            img.blocks() * 512 < 8 << 20,
            "disk.img uses {} bytes on disk",
            img.blocks() * 512
        );
        fs::remove_dir_all(&target).unwrap();
    }
}

#[test]
fn a_partial_restore_writes_only_that_path() {
    let env = Env::new();
    awkward_tree(&env.src);
    env.backup();
    let cat = env.catalog();
    let (_, snap) = cat.resolve_snapshot("latest").unwrap();
    let target = env.dir.path().join("t");
    let mut o = restore_opts(&target);
    o.paths = vec!["backup/modes".into(), "images/photo.jpg".into()];
    restore::restore(&env.repo, &cat, &snap, &o).unwrap();
    let got = fingerprint(&target);
    let want = fingerprint(&env.src);
    let keys: Vec<String> = got
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(
        keys,
        [
            "backup",
            "backup/modes",
            "backup/modes/private",
            "backup/modes/setuid",
            "backup/modes/sticky",
            "images",
            "images/photo.jpg"
        ]
    );
    for k in got
        .keys()
        .filter(|k| k.starts_with(b"backup/modes") || k.as_slice() == b"images/photo.jpg")
    {
        assert_eq!(got[k], want[k], "{}", String::from_utf8_lossy(k));
    }
    let err = restore::restore(
        &env.repo,
        &cat,
        &snap,
        &RestoreOptions {
            paths: vec!["nope/x".into()],
            ..restore_opts(&target)
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("nope/x"), "{err}");
}

#[test]
fn an_interrupted_restore_finishes_with_if_changed() {
    let (env, faulty) = Env::faulty();
    awkward_tree(&env.src);
    for i in 0..12 {
        write(
            &env.src.join(format!("images/burst/{i:02}.raw")),
            &seeded(700_000, 200 + i),
        );
    }
    env.backup();
    let cat = env.catalog();
    let (_, snap) = cat.resolve_snapshot("latest").unwrap();
    let target = env.dir.path().join("t");
    // Count the reads of a whole restore, then cut the last one off.
    let before = faulty.calls(Op::GetRange);
    restore::restore(
        &env.repo,
        &cat,
        &snap,
        &restore_opts(&env.dir.path().join("scratch")),
    )
    .unwrap();
    let reads = faulty.calls(Op::GetRange) - before;
    // The last read fails: trees and most contents were read, the files that needed it fail.
    faulty.inject(
        Some(Op::GetRange),
        "packs/",
        Fault::FailAfter(reads - 1, ErrorKind::Io),
    );
    assert!(
        restore::restore(&env.repo, &cat, &snap, &restore_opts(&target)).is_err(),
        "the restore should be cut short"
    );
    faulty.clear();
    assert_ne!(fingerprint(&target), fingerprint(&env.src));
    let mut o = restore_opts(&target);
    o.overwrite = Overwrite::IfChanged;
    let report = restore::restore(&env.repo, &cat, &snap, &o).unwrap();
    assert!(
        report.unchanged > 0,
        "files finished before the interruption are kept"
    );
    assert_same(
        &fingerprint(&env.src),
        &fingerprint(&target),
        "after the rerun",
    );
    // Nothing left to do on a third pass, and nothing read for the files it keeps (the store
    // is remote here: a planned read would fetch their chunks before finding them in place).
    let before = faulty.calls(Op::GetRange);
    let again = restore::restore(&env.repo, &cat, &snap, &o).unwrap();
    assert_eq!(again.files, 0);
    assert_eq!(
        faulty.calls(Op::GetRange) - before,
        0,
        "a restore that keeps every file read chunks"
    );
}

#[test]
fn restore_from_the_daily_archive_alone() {
    let env = Env::new();
    awkward_tree(&env.src);
    env.backup();
    let cat = env.catalog();
    let (id, snap) = cat.resolve_snapshot("latest").unwrap();
    let exports = LocalStore::open(env.dir.path().join("e")).unwrap();
    let eo = ExportOptions {
        date: "2026-11-29".into(),
        level: 3,
        force: false,
        hook: None,
    };
    export::export(&env.repo, &cat, &exports, (&id, &snap), &eo).unwrap();
    drop(cat);
    // Lose everything but the exports.
    fs::remove_dir_all(env.dir.path().join("store")).unwrap();
    fs::remove_dir_all(&env.state).unwrap();
    let reader =
        cairn_engine::store::ObjectReader::open(&exports, "2026-11-29/shared-2026-11-29.tar.zst")
            .unwrap();
    let target = env.dir.path().join("t");
    let report = restore::restore_archive(reader, &restore_opts(&target)).unwrap();
    assert!(report.hardlinks >= 1);
    let mut want = fingerprint(&env.src);
    want.retain(|_, fp| fp.kind != Kind::Fifo); // archives leave FIFOs out
    // The archive keeps whole seconds, as GNU tar does, except where a pax record is needed
    // anyway (before 1970); the nanoseconds are in the manifest.
    for fp in want.values_mut() {
        if fp.mtime.0 >= 0 {
            fp.mtime.1 = 0;
        }
    }
    assert_same(&want, &fingerprint(&target), "from the archive");
    // And a part of it.
    let part = env.dir.path().join("p");
    let reader =
        cairn_engine::store::ObjectReader::open(&exports, "2026-11-29/shared-2026-11-29.tar.zst")
            .unwrap();
    restore::restore_archive(
        reader,
        &RestoreOptions {
            paths: vec!["notetaking/deep".into()],
            ..restore_opts(&part)
        },
    )
    .unwrap();
    let keys: Vec<Vec<u8>> = fingerprint(&part).into_keys().collect();
    assert!(
        keys.iter()
            .all(|k| k.starts_with(b"notetaking/deep") || k == b"notetaking"),
        "{keys:?}"
    );
    assert!(keys.len() > 30);
}

/// A tar.zst with hand-made headers: (path, type, link, content).
/// One crafted tar entry: path, type flag, link name, content.
type Crafted<'a> = (&'a [u8], u8, &'a [u8], &'a [u8]);

fn crafted_archive(entries: &[Crafted<'_>]) -> Vec<u8> {
    let mut tar = Vec::new();
    for (path, kind, link, data) in entries {
        let mut h = tar::Header::new_ustar();
        {
            let u = h.as_ustar_mut().unwrap();
            u.name[..path.len()].copy_from_slice(path);
            u.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::new(*kind));
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
        tar.extend_from_slice(data);
        tar.resize(tar.len().div_ceil(512) * 512, 0);
    }
    tar.extend_from_slice(&[0; 1024]);
    zstd::encode_all(&tar[..], 3).unwrap()
}

#[test]
fn crafted_archives_cannot_write_outside_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), b"untouched").unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dot-dot",
            crafted_archive(&[(b"notetaking/../../outside/victim", b'0', b"", b"pwned")]),
        ),
        (
            "absolute",
            crafted_archive(&[(
                outside.join("victim").as_os_str().as_bytes(),
                b'0',
                b"",
                b"pwned",
            )]),
        ),
        (
            "hardlink out",
            crafted_archive(&[(
                b"notetaking/link",
                b'1',
                outside.join("victim").as_os_str().as_bytes(),
                b"",
            )]),
        ),
        (
            "hardlink up",
            crafted_archive(&[(b"notetaking/link", b'1', b"../outside/victim", b"")]),
        ),
        (
            "symlink then write through it",
            crafted_archive(&[
                (b"notetaking/esc", b'2', outside.as_os_str().as_bytes(), b""),
                (b"notetaking/esc/victim", b'0', b"", b"pwned"),
            ]),
        ),
    ];
    for (what, archive) in cases {
        let target = dir.path().join(format!("t-{}", what.replace(' ', "-")));
        let res = restore::restore_archive(
            &archive[..],
            &RestoreOptions {
                overwrite: Overwrite::Always,
                ..restore_opts(&target)
            },
        );
        let err = res.expect_err(what);
        // Damage in the archive (exit 1), not a mistake of the user's (exit 2).
        assert!(
            [ErrorKind::Corrupt, ErrorKind::Conflict].contains(&err.kind()),
            "{what}: {err}"
        );
        assert_eq!(err.to_string().lines().count(), 1, "{what}: {err}");
        assert_eq!(
            fs::read(outside.join("victim")).unwrap(),
            b"untouched",
            "{what}"
        );
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            1,
            "{what}: something was created outside"
        );
    }
}

#[test]
fn a_symlinked_parent_in_the_target_is_never_followed() {
    let env = Env::new();
    write(&env.src.join("notetaking/secret.md"), b"data");
    env.backup();
    let cat = env.catalog();
    let (_, snap) = cat.resolve_snapshot("latest").unwrap();
    let outside = env.dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let target = env.dir.path().join("t");
    fs::create_dir(&target).unwrap();
    symlink(&outside, target.join("notetaking")).unwrap();
    for mode in [Overwrite::Never, Overwrite::Always] {
        let err = restore::restore(
            &env.repo,
            &cat,
            &snap,
            &RestoreOptions {
                overwrite: mode,
                ..restore_opts(&target)
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("notetaking"), "{err}");
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "wrote through the symlink"
        );
    }
    let archive = crafted_archive(&[(b"notetaking/secret.md", b'0', b"", b"data")]);
    assert!(restore::restore_archive(&archive[..], &restore_opts(&target)).is_err());
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn crafted_snapshots_with_unsafe_names_are_refused() {
    use cairn_engine::pack::{BlobKind, PackBuilder};
    use cairn_engine::repo::pack_key;
    use cairn_engine::snapshot::{Snapshot, Summary};
    let env = Env::new();
    let cat = env.catalog();
    let outside = env.dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let data = b"pwned".to_vec();
    let did = Id::of(&data);
    for (i, name) in ["../outside/x", "/tmp/abs", "..", "a/b"].iter().enumerate() {
        // Trees are written as raw JSON here: cairn itself would never produce these names.
        let leaf = format!(
            r#"{{"entries":[{{"name":"{name}","type":"file","mode":420,"uid":0,"gid":0,"mtime":0,"mtime_ns":0,"size":5,"chunks":["{did}"]}}]}}"#
        );
        let lid = Id::of(leaf.as_bytes());
        let root = format!(
            r#"{{"entries":[{{"name":"notetaking","type":"dir","mode":493,"uid":0,"gid":0,"mtime":0,"mtime_ns":0,"tree":"{lid}"}}]}}"#
        );
        let rid = Id::of(root.as_bytes());
        let mut pb = PackBuilder::default();
        pb.add(
            BlobKind::Data,
            did,
            &cairn_engine::codec::encode(&data, 3).unwrap(),
            data.len(),
        );
        pb.add(
            BlobKind::Tree,
            lid,
            &cairn_engine::codec::encode(leaf.as_bytes(), 3).unwrap(),
            leaf.len(),
        );
        pb.add(
            BlobKind::Tree,
            rid,
            &cairn_engine::codec::encode(root.as_bytes(), 3).unwrap(),
            root.len(),
        );
        let (pid, bytes, entries) = pb.finish();
        env.repo.store().put(&pack_key(&pid), &bytes).unwrap();
        cat.add_pack(&pid, bytes.len() as u64, &entries).unwrap();
        let snap = Snapshot {
            version: 1,
            time: format!("2026-11-29T00:00:0{i}Z"),
            date: "2026-11-29".into(),
            source: "/shared".into(),
            folders: vec!["notetaking".into()],
            root: rid,
            summary: Summary::default(),
            warnings: vec![],
            skipped: vec![],
        };
        let target = env.dir.path().join(format!("t{i}"));
        let err = restore::restore(&env.repo, &cat, &snap, &restore_opts(&target)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{name}: {err}");
        assert!(err.to_string().contains("unsafe name"), "{name}: {err}");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "{name}");
        assert!(!Path::new("/tmp/abs").exists());
    }
}

#[test]
fn check_passes_when_healthy_and_names_damage_with_paths() {
    let env = Env::new();
    write(&env.src.join("images/a.raw"), &seeded(3 << 20, 300));
    write(&env.src.join("images/b.raw"), &seeded(3 << 20, 301));
    env.backup();
    // A second night puts the note into a pack of its own.
    write(&env.src.join("notetaking/n.md"), b"note");
    env.backup();
    let run_check = |read: ReadData| {
        let (cat, sync) = cairn_engine::catalog::Catalog::open_for(&env.state, &env.repo).unwrap();
        check::check(&env.repo, &cat, &sync, read, false).unwrap()
    };
    let healthy = run_check(ReadData::All);
    assert!(healthy.problems.is_empty(), "{:?}", healthy.problems);
    assert_eq!(healthy.packs_read, healthy.packs);

    // Find the data pack that holds images/a.raw.
    let cat = env.catalog();
    let (_, snap) = cat.resolve_snapshot("latest").unwrap();
    let a = cairn_engine::read::find_entry(&env.repo, &cat, &snap.root, b"images/a.raw").unwrap();
    let loc = cat
        .locate(cairn_engine::pack::BlobKind::Data, &a.chunks[0])
        .unwrap()
        .unwrap();
    drop(cat);
    let pack_path = env
        .dir
        .path()
        .join("store")
        .join(cairn_engine::repo::pack_key(&loc.pack));
    let good = fs::read(&pack_path).unwrap();
    let affected = |r: &check::CheckReport| -> Vec<String> {
        r.problems
            .iter()
            .flat_map(|p| p.affected.iter().map(|a| a.path.clone()))
            .collect()
    };

    // A flipped bit inside a.raw's frame: only reading the data finds it.
    let mut flipped = good.clone();
    flipped[loc.offset as usize + loc.length as usize / 2] ^= 0x04;
    fs::write(&pack_path, &flipped).unwrap();
    assert!(
        run_check(ReadData::None).problems.is_empty(),
        "structure alone cannot see a flipped bit"
    );
    let r = run_check(ReadData::All);
    assert!(
        affected(&r).contains(&"images/a.raw".to_string()),
        "{:?}",
        r.problems
    );
    assert!(
        r.problems
            .iter()
            .any(|p| p.object.contains(&loc.pack.to_hex()))
    );

    // A truncated pack: the structure check sees it.
    fs::write(&pack_path, &good[..good.len() / 2]).unwrap();
    let r = run_check(ReadData::None);
    assert!(
        affected(&r).contains(&"images/a.raw".to_string()),
        "{:?}",
        r.problems
    );

    // A deleted pack.
    fs::remove_file(&pack_path).unwrap();
    let r = run_check(ReadData::None);
    assert!(
        affected(&r).contains(&"images/a.raw".to_string()),
        "{:?}",
        r.problems
    );
    assert!(
        !affected(&r).contains(&"notetaking/n.md".to_string()),
        "unaffected paths are not blamed: {:?}",
        r.problems
    );

    // Put it back: healthy again.
    fs::write(&pack_path, &good).unwrap();
    assert!(run_check(ReadData::All).problems.is_empty());
}

#[test]
fn read_data_subsets_partition_the_packs() {
    let env = Env::new();
    for i in 0..12 {
        write(
            &env.src.join(format!("images/{i}.raw")),
            &seeded(5 << 20, 400 + i),
        );
    }
    env.backup();
    let (cat, sync) = cairn_engine::catalog::Catalog::open_for(&env.state, &env.repo).unwrap();
    let total = check::check(&env.repo, &cat, &sync, ReadData::All, false)
        .unwrap()
        .packs_read;
    let parts: usize = (1..=3)
        .map(|n| {
            check::check(&env.repo, &cat, &sync, ReadData::Part(n, 3), false)
                .unwrap()
                .packs_read
        })
        .sum();
    assert_eq!(parts, total);
    assert!("0/3".parse::<ReadData>().is_err());
    assert!("101%".parse::<ReadData>().is_err());
    assert_eq!("10%".parse::<ReadData>().unwrap(), ReadData::Percent(10));
}

#[test]
fn diff_and_find() {
    let env = Env::new();
    write(&env.src.join("notetaking/a.md"), b"a");
    write(&env.src.join("notetaking/b.md"), b"b");
    write(&env.src.join("images/x.jpg"), b"x");
    let mut o = env.opts();
    o.date = "2026-11-01".into();
    env.backup_with(&o).unwrap();
    write(&env.src.join("notetaking/a.md"), b"changed");
    fs::remove_file(env.src.join("notetaking/b.md")).unwrap();
    write(&env.src.join("notetaking/new/c.md"), b"c");
    fs::set_permissions(
        env.src.join("images/x.jpg"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    o.date = "2026-11-02".into();
    env.backup_with(&o).unwrap();
    let cat = env.catalog();
    let (_, a) = cat.resolve_snapshot("2026-11-01").unwrap();
    let (_, b) = cat.resolve_snapshot("2026-11-02").unwrap();
    let changes: Vec<String> = cairn_engine::query::diff(&env.repo, &cat, &a.root, &b.root)
        .unwrap()
        .into_iter()
        .map(|c| format!("{} {}", c.change, c.path))
        .collect();
    assert_eq!(
        changes,
        [
            "U images/x.jpg",
            "M notetaking/a.md",
            "- notetaking/b.md",
            "+ notetaking/new",
            "+ notetaking/new/c.md"
        ]
    );
    let found = cairn_engine::query::find(&env.repo, &cat, "b.md").unwrap();
    assert_eq!(
        found.iter().map(|f| f.date.as_str()).collect::<Vec<_>>(),
        ["2026-11-01"]
    );
    let found = cairn_engine::query::find(&env.repo, &cat, "notetaking/*.md").unwrap();
    assert_eq!(found.len(), 3);
}

/// A damaged chunk fails its file, not the restore: the error names the file, and every other
/// file, symlink and directory of the snapshot is still restored.
#[test]
fn a_damaged_file_is_named_and_the_rest_is_restored() {
    let (env, faulty) = Env::faulty();
    write(&env.src.join("images/big.raw"), &seeded(2 << 20, 900));
    fs::hard_link(
        env.src.join("images/big.raw"),
        env.src.join("images/big-link.raw"),
    )
    .unwrap();
    env.backup();
    // A second night: these land in packs of their own.
    write(&env.src.join("notetaking/a.md"), b"note a");
    write(&env.src.join("notetaking/b.md"), b"note b");
    symlink("a.md", env.src.join("notetaking/link")).unwrap();
    env.backup();
    let (_, snap) = env.catalog().resolve_snapshot("latest").unwrap();
    let big = snapshot_entries(&env, &snap.root)[&b"images/big.raw"[..]].clone();
    let cat = env.catalog();
    for id in &big.chunks {
        let loc = cat
            .locate(cairn_engine::pack::BlobKind::Data, id)
            .unwrap()
            .unwrap();
        faulty.inject(Some(Op::GetRange), &loc.pack.to_hex(), Fault::FlipBit);
    }
    let target = env.dir.path().join("t");
    let err = restore::restore(&env.repo, &cat, &snap, &restore_opts(&target)).unwrap_err();
    assert!(err.to_string().contains("images/big.raw"), "{err}");
    // The second name of the damaged file is named too, not linked to a partial file.
    assert!(err.to_string().contains("images/big-link.raw"), "{err}");
    assert!(err.to_string().starts_with("2 of 4 files"), "{err}");
    assert_eq!(fs::read(target.join("notetaking/a.md")).unwrap(), b"note a");
    assert_eq!(fs::read(target.join("notetaking/b.md")).unwrap(), b"note b");
    assert_eq!(
        fs::read_link(target.join("notetaking/link")).unwrap(),
        Path::new("a.md"),
        "symlinks are still created after a damaged file"
    );
}

/// Character devices come back as device nodes when restoring as root (mknod).
#[test]
#[ignore = "needs root to create device nodes (CI runs scripts/test.sh as root)"]
fn device_nodes_are_restored_as_root() {
    use std::os::unix::fs::FileTypeExt;
    assert!(
        // SAFETY: no preconditions.
        unsafe { libc::geteuid() } == 0,
        "not root: creating device nodes needs root; run the ignored tests as root, as CI runs scripts/test.sh"
    );
    let env = Env::new();
    write(&env.src.join("backup/keep.txt"), b"k");
    let node = env.src.join("backup/null");
    let c = std::ffi::CString::new(node.as_os_str().as_bytes()).unwrap();
    let dev = libc::makedev(1, 3);
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o640, dev) } != 0 {
        let e = std::io::Error::last_os_error();
        panic!("mknod refused here even as root ({e}): the test needs CAP_MKNOD, as CI has");
    }
    env.backup();
    let cat = env.catalog();
    let (_, snap) = cat.resolve_snapshot("latest").unwrap();
    let target = env.dir.path().join("t");
    let report = restore::restore(&env.repo, &cat, &snap, &restore_opts(&target)).unwrap();
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    let md = fs::symlink_metadata(target.join("backup/null")).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), dev);
    assert_eq!(md.mode() & 0o7777, 0o640);
}

/// A pax uid or gid beyond 32 bits is not cut to its low bits (99999999999 would become
/// 1215752191, someone else's id): the entry keeps the restoring user's owner.
#[test]
fn an_archive_owner_beyond_32_bits_is_not_truncated() {
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("uid", &b"99999999999"[..]), ("gid", &b"99999999999"[..])])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_path("notetaking/x.md").unwrap();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append(&h, &b"hello"[..]).unwrap();
    let archive = zstd::encode_all(&b.into_inner().unwrap()[..], 3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("t");
    restore::restore_archive(&archive[..], &restore_opts(&target)).unwrap();
    let md = fs::metadata(target.join("notetaking/x.md")).unwrap();
    // SAFETY: no preconditions.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    assert_eq!((md.uid(), md.gid()), (uid, gid));
    assert_eq!(fs::read(target.join("notetaking/x.md")).unwrap(), b"hello");
}

/// `check` checks the store, not the state volume: trees that a restore cached on the state
/// volume (a store read by requests) and that are damaged in the store since are found.
#[test]
fn check_reads_trees_from_the_store_not_from_the_tree_cache() {
    let (env, faulty) = Env::faulty();
    write(&env.src.join("notetaking/a.md"), b"alpha");
    write(&env.src.join("notetaking/sub/b.md"), b"beta");
    let out = env.backup();
    let (cat, sync) = cairn_engine::catalog::Catalog::open_for(&env.state, &env.repo).unwrap();
    assert!(
        cat.tree_cache().is_some(),
        "a store without local files caches tree packs"
    );
    // Reading the snapshot fills the cache.
    cairn_engine::read::walk_tree(&env.repo, &cat, &out.snapshot.root, &mut |_, _| Ok(())).unwrap();
    assert!(env.state.join("tree-packs").read_dir().unwrap().count() > 0);
    // Every read from the store now returns damaged bytes.
    faulty.inject(Some(Op::GetRange), "packs/", Fault::FlipBit);
    faulty.inject(Some(Op::Get), "packs/", Fault::FlipBit);
    let report = check::check(&env.repo, &cat, &sync, ReadData::None, false).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == check::ProblemKind::CorruptTree),
        "{:?}",
        report.problems
    );
}

/// Plans separated from execution (issue 30): a restore's plan, made from the trees alone, is
/// what its execution then does — the same counts in the report, and exactly the plan's paths
/// in the target.
#[test]
fn a_restore_carries_out_exactly_its_plan() {
    let env = Env::new();
    awkward_tree(&env.src);
    let out = env.backup();
    let cat = env.catalog();
    let plan = restore::RestorePlan::new(&env.repo, &cat, &out.snapshot, &[]).unwrap();
    let planned = plan.summary();
    assert!(
        planned.files > 0 && planned.dirs > 0 && planned.symlinks > 0 && planned.hardlinks > 0,
        "{planned:?}"
    );
    let target = env.dir.path().join("planned");
    let report = restore::execute(&env.repo, &cat, &plan, &restore_opts(&target)).unwrap();
    assert_eq!(
        (
            report.dirs,
            report.files,
            report.bytes,
            report.hardlinks,
            report.symlinks
        ),
        (
            planned.dirs,
            planned.files,
            planned.bytes,
            planned.hardlinks,
            planned.symlinks
        ),
        "report against plan"
    );
    assert_eq!(
        report.fifos + report.devices + report.skipped.len() as u64,
        planned.specials
    );
    // Every path in the target is one the plan named, and the other way round.
    let mut made = Vec::new();
    let mut stack = vec![target.clone()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(&target)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
            made.push(rel);
        }
    }
    made.sort();
    let mut named: Vec<String> = plan
        .paths()
        .into_iter()
        .filter(|(_, kind)| {
            // Sockets are never made; device nodes only as root.
            !matches!(kind, cairn_engine::tree::EntryKind::Socket)
                && (unsafe { libc_geteuid() } == 0
                    || !matches!(
                        kind,
                        cairn_engine::tree::EntryKind::Chardev
                            | cairn_engine::tree::EntryKind::Blockdev
                    ))
        })
        .map(|(p, _)| p)
        .collect();
    named.sort();
    assert_eq!(made, named);
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// A check carries out its plan (issue 30): the packs it planned to read are the ones it read,
/// a pack truncated behind its back is known damaged before anything is read and is not read,
/// and the report names it.
#[test]
fn a_check_reads_exactly_the_packs_it_planned() {
    let env = Env::new();
    for i in 0..6 {
        write(
            &env.src.join(format!("images/{i}.raw")),
            &seeded(5 << 20, 900 + i),
        );
    }
    env.backup();
    let packs = env.repo.list_packs().unwrap();
    let (victim, size) = packs[0];
    let key = cairn_engine::repo::pack_key(&victim);
    let bytes = env.repo.store().get(&key).unwrap();
    env.repo
        .store()
        .put(&key, &bytes[..bytes.len() / 2])
        .unwrap();
    let (cat, sync) = cairn_engine::catalog::Catalog::open_for(&env.state, &env.repo).unwrap();
    let plan = check::CheckPlan::new(&env.repo, &cat, &sync, ReadData::All).unwrap();
    let s = plan.summary();
    assert_eq!(s.packs, packs.len());
    assert_eq!(s.packs_known_damaged, 1, "{s:?}");
    assert!(
        !plan.read.contains(&victim),
        "a pack known damaged is planned for reading"
    );
    let planned: Vec<Id> = plan.read.clone();
    assert_eq!(
        s.bytes_to_read,
        packs
            .iter()
            .filter(|(p, _)| planned.contains(p))
            .map(|(_, n)| n)
            .sum::<u64>()
    );
    let report = check::execute(&env.repo, &cat, &sync, plan, false).unwrap();
    assert_eq!(report.packs_read, planned.len());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.object == format!("pack {victim}")),
        "{:?} (pack of {size} bytes truncated)",
        report.problems
    );
}
