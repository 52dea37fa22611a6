//! The daily archive, checked with the tools people will use on it: GNU tar, bsdtar, zstd and
//! sha256sum; determinism; publication under failures; size against `tar | zstd -3`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_engine::ErrorKind;
use cairn_engine::export::{self, DayKeys, ExportOptions, Published};
use cairn_engine::store::{Fault, FaultStore, LocalStore, Op, Store};

use crate::common::*;
use crate::survey::{DEFAULT_SKIP, Kind, Node, survey};

fn run_tool(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn export_latest(
    env: &Env,
    exports: &dyn Store,
    date: &str,
    force: bool,
) -> cairn_engine::Result<Published> {
    let cat = env.catalog();
    let (id, snap) = cat.resolve_snapshot("latest")?;
    let opts = ExportOptions {
        date: date.into(),
        level: 3,
        force,
        hook: None,
    };
    export::export(&env.repo, &cat, exports, (&id, &snap), &opts)
}

/// Asserts that `extracted` holds the selected folders of `src` with equal content, modes,
/// mtimes to the second, symlink targets and hardlink groups.
fn assert_tree_equal(src: &Path, extracted: &Path, folders: &[&str]) {
    // Sockets and FIFOs are left out of archives; a folder's own entry is not compared.
    let tree = |root: &Path| {
        let mut m = BTreeMap::new();
        for f in folders {
            m.extend(
                survey(root, f.as_bytes(), &DEFAULT_SKIP)
                    .into_iter()
                    .filter(|(p, n)| {
                        p.as_slice() != f.as_bytes()
                            && matches!(n.kind, Kind::Dir | Kind::File | Kind::Symlink)
                    }),
            );
        }
        m
    };
    let (a, b) = (tree(src), tree(extracted));
    let keys = |m: &BTreeMap<Vec<u8>, Node>| {
        m.keys()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&b), keys(&a), "extracted paths differ from the source");
    let mut groups: BTreeMap<u64, u64> = BTreeMap::new();
    for (path, want) in &a {
        let got = &b[path];
        let p = String::from_utf8_lossy(path);
        assert_eq!(got.kind, want.kind, "{p}");
        if want.kind != Kind::Symlink {
            assert_eq!(got.mode, want.mode, "{p}: mode");
            assert_eq!(got.mtime.0, want.mtime.0, "{p}: mtime");
        }
        if want.kind == Kind::File {
            assert!(got.content() == want.content(), "{p}: content");
        }
        assert_eq!(got.target, want.target, "{p}: target");
        if want.kind == Kind::File && want.nlink > 1 {
            assert!(got.nlink > 1, "{p}: hardlink lost");
            assert_eq!(
                *groups.entry(want.ino).or_insert(got.ino),
                got.ino,
                "{p}: hardlink group"
            );
        }
    }
}

#[test]
fn archive_of_the_awkward_tree_passes_gnu_tar_bsdtar_zstd_and_sha256sum() {
    let env = Env::new();
    awkward_tree(&env.src);
    env.backup();
    let exports_dir = env.dir.path().join("exports");
    let exports = LocalStore::open(&exports_dir).unwrap();
    let published = export_latest(&env, &exports, "2026-11-29", false).unwrap();
    assert!(matches!(published, Published::Written(..)));
    // The export's own manifest holds no entries (they went to the store as they were walked);
    // the one it wrote has them all.
    assert!(published.manifest().entries.is_empty());
    let m = export::read_manifest(&exports, &DayKeys::new("2026-11-29").unwrap()).unwrap();
    assert_eq!(m.entry_count, published.manifest().entry_count);
    let day = exports_dir.join("2026-11-29");
    let archive = day.join("shared-2026-11-29.tar.zst");
    assert_eq!(fs::metadata(&archive).unwrap().len(), m.archive.size);

    run_tool(
        Command::new("sha256sum")
            .arg("-c")
            .arg("shared-2026-11-29.tar.zst.sha256")
            .current_dir(&day),
    );
    run_tool(Command::new("zstd").arg("-tq").arg(&archive));
    let listing = run_tool(Command::new("tar").arg("-tf").arg(&archive));
    assert!(
        listing.lines().any(|l| l == "notetaking/plain.txt"),
        "{listing}"
    );
    // Entries are in bytewise path order.
    let mut sorted: Vec<&[u8]> = m.entries.iter().map(|e| e.path.0.as_slice()).collect();
    sorted.sort();
    assert_eq!(
        sorted,
        m.entries
            .iter()
            .map(|e| e.path.0.as_slice())
            .collect::<Vec<_>>()
    );
    // Sockets and FIFOs are left out, and said so.
    let left_out: Vec<_> = m
        .skipped
        .iter()
        .map(|s| (s.path.lossy().into_owned(), s.reason.clone()))
        .collect();
    assert_eq!(
        left_out,
        [
            ("backup/fifo".to_string(), "fifo".to_string()),
            ("backup/socket".into(), "socket".into())
        ]
    );

    let folders = ["notetaking", "images", "backup"];
    let gnu = env.dir.path().join("x-gnu");
    fs::create_dir(&gnu).unwrap();
    run_tool(
        Command::new("tar")
            .arg("--zstd")
            .arg("-xpf")
            .arg(&archive)
            .arg("-C")
            .arg(&gnu),
    );
    assert_tree_equal(&env.src, &gnu, &folders);
    let bsd = env.dir.path().join("x-bsd");
    fs::create_dir(&bsd).unwrap();
    run_tool(
        Command::new("bsdtar")
            .arg("-xpf")
            .arg(&archive)
            .arg("-C")
            .arg(&bsd),
    );
    assert_tree_equal(&env.src, &bsd, &folders);
    // zstd -d | tar: the stream is one ordinary zstd stream.
    let piped = env.dir.path().join("x-pipe");
    fs::create_dir(&piped).unwrap();
    run_tool(Command::new("sh").arg("-c").arg(format!(
        "zstd -dc '{}' | tar -xpf - -C '{}'",
        archive.display(),
        piped.display()
    )));
    assert_tree_equal(&env.src, &piped, &folders);

    let report = export::verify(&exports, "2026-11-29").unwrap();
    assert_eq!(report.entries as usize, m.entries.len());
}

#[test]
fn the_same_snapshot_always_gives_the_same_bytes() {
    let env = Env::new();
    awkward_tree(&env.src);
    env.backup();
    let a = LocalStore::open(env.dir.path().join("ea")).unwrap();
    let b = LocalStore::open(env.dir.path().join("eb")).unwrap();
    let ma = export_latest(&env, &a, "2026-11-29", false)
        .unwrap()
        .manifest()
        .clone();
    // A fresh catalog (rebuilt from the store) must not change a byte either.
    fs::remove_dir_all(env.state.join("catalog")).unwrap();
    let mb = export_latest(&env, &b, "2026-11-29", false)
        .unwrap()
        .manifest()
        .clone();
    assert_eq!(ma.archive, mb.archive);
    let key = "2026-11-29/shared-2026-11-29.tar.zst";
    assert!(a.get(key).unwrap() == b.get(key).unwrap());
    // A second backup of the unchanged tree has another snapshot id but the same root, so the
    // day's archive is kept as it is.
    env.backup();
    assert!(matches!(
        export_latest(&env, &a, "2026-11-29", false).unwrap(),
        Published::Unchanged(_)
    ));
}

#[test]
fn a_different_archive_for_the_same_day_needs_force() {
    let env = Env::new();
    write(&env.src.join("notetaking/a.md"), b"morning");
    env.backup();
    let exports = LocalStore::open(env.dir.path().join("e")).unwrap();
    export_latest(&env, &exports, "2026-11-29", false).unwrap();
    let first = export::read_manifest(&exports, &DayKeys::new("2026-11-29").unwrap()).unwrap();
    write(&env.src.join("notetaking/a.md"), b"evening");
    env.backup();
    let err = export_latest(&env, &exports, "2026-11-29", false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(
        export::read_manifest(&exports, &DayKeys::new("2026-11-29").unwrap()).unwrap(),
        first
    );
    let forced = export_latest(&env, &exports, "2026-11-29", true)
        .unwrap()
        .manifest()
        .clone();
    assert_ne!(forced.archive.sha256, first.archive.sha256);
    export::verify(&exports, "2026-11-29").unwrap();
}

#[test]
fn failures_while_publishing_leave_no_complete_looking_day() {
    let env = Env::new();
    write(&env.src.join("images/p.raw"), &seeded(6 << 20, 40));
    env.backup();
    let dir = env.dir.path().join("e");
    let faulty = FaultStore::new(LocalStore::open(&dir).unwrap());
    export_latest(&env, &faulty, "2026-11-28", false).unwrap();
    let day1: Vec<_> = faulty.list("2026-11-28/").unwrap();

    // The connection drops while the archive streams: no archive object appears at all.
    faulty.inject(Some(Op::Put), "2026-11-29", Fault::Truncate);
    assert!(export_latest(&env, &faulty, "2026-11-29", false).is_err());
    assert!(
        faulty.list("2026-11-29/").unwrap().is_empty(),
        "{:?}",
        faulty.list("2026-11-29/").unwrap()
    );

    // The manifest cannot be written: the archive is there, but the day is not complete.
    faulty.clear();
    faulty.inject(
        Some(Op::Put),
        ".manifest.json",
        Fault::FailAlways(ErrorKind::Io),
    );
    assert!(export_latest(&env, &faulty, "2026-11-29", false).is_err());
    let days = export::list_days(&faulty).unwrap();
    assert_eq!(
        days.iter()
            .map(|d| (d.date.as_str(), d.complete))
            .collect::<Vec<_>>(),
        [("2026-11-28", true), ("2026-11-29", false)]
    );
    assert_eq!(
        export::verify(&faulty, "2026-11-29").unwrap_err().kind(),
        ErrorKind::NotFound
    );

    // The previous day is untouched; a rerun completes the day.
    assert_eq!(faulty.list("2026-11-28/").unwrap(), day1);
    export::verify(&faulty, "2026-11-28").unwrap();
    faulty.clear();
    assert!(matches!(
        export_latest(&env, &faulty, "2026-11-29", false).unwrap(),
        Published::Written(..)
    ));
    export::verify(&faulty, "2026-11-29").unwrap();
}

/// A replace whose new archive cannot be built (a pack of the store does not read) leaves the
/// day's previous archive complete: the manifest goes only right before the new archive is
/// published.
#[test]
fn a_replace_that_fails_leaves_the_old_day_whole() {
    let (env, faulty) = Env::faulty();
    write(&env.src.join("images/p.raw"), &seeded(3 << 20, 41));
    env.backup();
    let exports = LocalStore::open(env.dir.path().join("e")).unwrap();
    let day = "2026-11-28";
    let first = export_latest(&env, &exports, day, false)
        .unwrap()
        .manifest()
        .clone();
    write(&env.src.join("images/q.raw"), &seeded(3 << 20, 42));
    env.backup();
    faulty.inject(
        Some(Op::GetRange),
        "packs/",
        Fault::FailAlways(ErrorKind::Io),
    );
    assert!(export_latest(&env, &exports, day, true).is_err());
    faulty.clear();
    let days = export::list_days(&exports).unwrap();
    assert!(days[0].complete, "the old day is still complete");
    let now = export::read_manifest(&exports, &DayKeys::new(day).unwrap()).unwrap();
    assert_eq!(now.snapshot, first.snapshot);
    export::verify(&exports, day).unwrap();
}

#[test]
fn verify_finds_a_flipped_bit_and_a_truncated_archive() {
    let env = Env::new();
    write(
        &env.src.join("notetaking/n.md"),
        &b"words and more words\n".repeat(50_000),
    );
    env.backup();
    let dir = env.dir.path().join("e");
    let exports = LocalStore::open(&dir).unwrap();
    export_latest(&env, &exports, "2026-11-29", false).unwrap();
    let path = dir.join("2026-11-29/shared-2026-11-29.tar.zst");
    let good = fs::read(&path).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x20;
    fs::write(&path, &bad).unwrap();
    assert_eq!(
        export::verify(&exports, "2026-11-29").unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    fs::write(&path, &good[..good.len() - 100]).unwrap();
    assert_eq!(
        export::verify(&exports, "2026-11-29").unwrap_err().kind(),
        ErrorKind::Corrupt
    );
    fs::write(&path, &good).unwrap();
    export::verify(&exports, "2026-11-29").unwrap();
}

/// A backup of `env` whose one note grows while it is read: committed with a `changed`
/// warning, as a night with an unreadable file is.
fn backup_with_a_warning(env: &Env) {
    use cairn_engine::backup::{Hook, HookPoint};
    let mut opts = env.opts();
    opts.hook = Some(Hook(std::sync::Arc::new(|point, p: &Path| {
        if point == HookPoint::AfterRead && p.ends_with("notetaking/grows.log") {
            use std::io::Write;
            let mut f = fs::OpenOptions::new().append(true).open(p).unwrap();
            f.write_all(b"more\n").unwrap();
        }
    })));
    let out = env.backup_with(&opts).unwrap();
    assert!(!out.snapshot.warnings.is_empty());
}

/// A day whose night had warnings is replaced by a rerun of the same repository without
/// `--force` (the operator fixed a permission and reran the Job); the day's `archive.json`
/// says which snapshot and how many warnings. Another repository's day with warnings is still
/// refused.
#[test]
fn a_rerun_of_a_night_with_warnings_replaces_its_day_without_force() {
    let env = Env::new();
    write(&env.src.join("notetaking/grows.log"), b"line\n");
    backup_with_a_warning(&env);
    let exports = LocalStore::open(env.dir.path().join("e")).unwrap();
    let day = "2026-12-07";
    let first = export_latest(&env, &exports, day, false)
        .unwrap()
        .manifest()
        .clone();
    let status = export::read_status(&exports, day).unwrap().unwrap();
    assert_eq!(status.snapshot, first.snapshot);
    assert_eq!(status.repository, env.repo.config().id);
    assert_eq!(status.warnings, 1);
    let listed = export::list_days_with_status(&exports).unwrap();
    assert_eq!(listed[0].state(), "warnings");

    // The fixed night: a clean snapshot of other content, exported without --force.
    write(&env.src.join("notetaking/fixed.md"), b"fixed");
    env.backup();
    let second = export_latest(&env, &exports, day, false)
        .unwrap()
        .manifest()
        .clone();
    assert_ne!(second.snapshot, first.snapshot);
    assert!(second.warnings.is_empty());
    assert_eq!(
        export::list_days_with_status(&exports).unwrap()[0].state(),
        "complete"
    );
    export::verify(&exports, day).unwrap();

    // Now the day is clean: a changed tree needs --force again.
    write(&env.src.join("notetaking/fixed.md"), b"changed again");
    env.backup();
    let err = export_latest(&env, &exports, day, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");

    // Another repository's night with warnings, for another day: this repository may not
    // replace it without --force.
    let other = Env::new();
    write(&other.src.join("notetaking/grows.log"), b"line\n");
    backup_with_a_warning(&other);
    let theirs = "2026-12-08";
    export_latest(&other, &exports, theirs, false).unwrap();
    let err = export_latest(&env, &exports, theirs, false).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
}

/// Retention counts only days whose night read every configured folder: a day whose
/// `archive.json` names a failed folder (what an older cairn published) is kept while it is
/// newer than the oldest kept day, and never pushes a whole day out.
#[test]
fn retention_does_not_count_a_day_that_lacks_a_folder() {
    let env = Env::new();
    write(&env.src.join("notetaking/a.md"), b"a");
    env.backup();
    let exports = LocalStore::open(env.dir.path().join("e")).unwrap();
    for day in 1..=5 {
        export_latest(&env, &exports, &format!("2026-11-{day:02}"), false).unwrap();
    }
    // Day 4 lacks a folder (as a night of an older cairn with an unreadable folder did).
    let mut st = export::read_status(&exports, "2026-11-04")
        .unwrap()
        .unwrap();
    st.failed_folders = vec!["images".into()];
    exports
        .put(
            &export::status_key("2026-11-04"),
            &serde_json::to_vec(&st).unwrap(),
        )
        .unwrap();
    assert_eq!(
        export::list_days_with_status(&exports).unwrap()[3].state(),
        "failed folders"
    );
    let deleted = cairn_engine::retention::prune(&exports, 3).unwrap();
    // Kept: 2, 3 and 5 (three whole days); 4 stays between them, uncounted; 1 goes.
    assert_eq!(deleted, ["2026-11-01"]);
    let kept: Vec<_> = export::list_days(&exports)
        .unwrap()
        .into_iter()
        .map(|d| d.date)
        .collect();
    assert_eq!(
        kept,
        ["2026-11-02", "2026-11-03", "2026-11-04", "2026-11-05"]
    );
    // Two more whole days: the uncounted day 4 goes once it is older than every kept day.
    for day in 6..=7 {
        export_latest(&env, &exports, &format!("2026-11-{day:02}"), false).unwrap();
    }
    let deleted = cairn_engine::retention::prune(&exports, 3).unwrap();
    assert_eq!(deleted, ["2026-11-02", "2026-11-03", "2026-11-04"]);
}

/// The exports' total counts their own objects only: with the plan's layout (exports at the
/// bucket's root, the store below `store/`) the packs are the store's figure, not theirs.
#[test]
fn the_exports_total_leaves_out_a_store_in_the_same_bucket() {
    let env = Env::new();
    write(&env.src.join("notetaking/a.md"), b"a");
    env.backup();
    let bucket = cairn_engine::store::MemoryStore::new();
    export_latest(&env, &bucket, "2026-12-07", false).unwrap();
    let own = export::total_bytes(&bucket).unwrap();
    assert!(own > 0);
    bucket.put("store/packs/ab/abcd", &[0u8; 5000]).unwrap();
    bucket.put("store/config", b"{}").unwrap();
    assert_eq!(export::total_bytes(&bucket).unwrap(), own);
    bucket.put("_reports/2026-12-07/run.json", b"{}").unwrap();
    assert_eq!(export::total_bytes(&bucket).unwrap(), own + 2);
}

#[test]
fn retention_keeps_the_newest_days_by_date() {
    let env = Env::new();
    write(&env.src.join("notetaking/a.md"), b"a");
    env.backup();
    let exports = LocalStore::open(env.dir.path().join("e")).unwrap();
    // Out of order on purpose: retention goes by date, not by when a day was written.
    for day in [5, 1, 20, 3, 2, 19, 4] {
        export_latest(&env, &exports, &format!("2026-11-{day:02}"), false).unwrap();
        exports
            .put(&format!("_reports/2026-11-{day:02}/run.json"), b"{}")
            .unwrap();
    }
    let deleted = cairn_engine::retention::prune(&exports, 3).unwrap();
    assert_eq!(
        deleted,
        ["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"]
    );
    let kept: Vec<_> = export::list_days(&exports)
        .unwrap()
        .into_iter()
        .map(|d| d.date)
        .collect();
    assert_eq!(kept, ["2026-11-05", "2026-11-19", "2026-11-20"]);
    let reports: Vec<_> = exports
        .list("_reports/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with("/run.json"))
        .collect();
    assert_eq!(
        reports,
        [
            "_reports/2026-11-05/run.json",
            "_reports/2026-11-19/run.json",
            "_reports/2026-11-20/run.json"
        ]
    );
}

/// A file over 8 GiB needs a pax size record; built from a handmade snapshot whose one file is
/// 2,304 references to one all-zero 4 MiB chunk, so nothing of that size touches the disk.
#[test]
fn sizes_over_8_gib_survive() {
    use cairn_engine::pack::{BlobKind, PackBuilder};
    use cairn_engine::repo::pack_key;
    use cairn_engine::snapshot::{Snapshot, Summary};
    use cairn_engine::tree::{Entry, EntryKind, RawBytes, Tree};
    use cairn_engine::{Id, codec};
    let env = Env::new();
    let cat = env.catalog();
    let zero = vec![0u8; 4 << 20];
    let zid = Id::of(&zero);
    let huge = Entry {
        name: RawBytes(b"huge.img".to_vec()),
        kind: EntryKind::File,
        mode: 0o640,
        size: 2304 * (4 << 20),
        chunks: vec![zid; 2304],
        tree: None,
        ..dir_entry(b"x", zid)
    };
    let (folder_id, folder_bytes) = Tree {
        entries: vec![huge],
    }
    .encode();
    let (root_id, root_bytes) = Tree {
        entries: vec![dir_entry(b"backup", folder_id)],
    }
    .encode();
    let mut data = PackBuilder::default();
    data.add(
        BlobKind::Data,
        zid,
        &codec::encode(&zero, 3).unwrap(),
        zero.len(),
    );
    let mut trees = PackBuilder::default();
    for (id, b) in [(folder_id, &folder_bytes), (root_id, &root_bytes)] {
        trees.add(BlobKind::Tree, id, &codec::encode(b, 3).unwrap(), b.len());
    }
    for pb in [data, trees] {
        let (pid, bytes, entries) = pb.finish();
        env.repo.store().put(&pack_key(&pid), &bytes).unwrap();
        cat.add_pack(&pid, bytes.len() as u64, &entries).unwrap();
    }
    let snap = Snapshot {
        version: 1,
        time: "2026-11-29T00:00:00Z".into(),
        date: "2026-11-29".into(),
        source: "/shared".into(),
        folders: vec!["backup".into()],
        root: root_id,
        summary: Summary::default(),
        warnings: vec![],
        skipped: vec![],
    };
    let sid = env.repo.put_snapshot(&snap).unwrap();
    let dir = env.dir.path().join("e");
    let exports = LocalStore::open(&dir).unwrap();
    let opts = ExportOptions {
        date: "2026-11-29".into(),
        level: 3,
        force: false,
        hook: None,
    };
    let m = export::export(&env.repo, &cat, &exports, (&sid, &snap), &opts)
        .unwrap()
        .manifest()
        .clone();
    assert!(
        m.archive.size < 1 << 20,
        "zero chunks compress: {} bytes",
        m.archive.size
    );
    let archive: PathBuf = dir.join("2026-11-29/shared-2026-11-29.tar.zst");
    let listing = run_tool(Command::new("tar").arg("--zstd").arg("-tvf").arg(&archive));
    let line = listing
        .lines()
        .find(|l| l.ends_with("backup/huge.img"))
        .unwrap();
    assert!(line.contains(" 9663676416 "), "{line}");
}

/// The archive is within 3% of `tar -cf - ... | zstd -3` of the same tree, on a mixed corpus of
/// notes, photos, a log and binaries.
#[test]
fn archive_size_is_within_3_percent_of_tar_zstd() {
    let env = Env::new();
    const WORDS: [&str; 24] = [
        "the", "backup", "of", "notes", "and", "photos", "runs", "every", "night", "on", "a",
        "small", "cluster", "while", "chunks", "are", "stored", "once", "in", "packs", "with",
        "zstd", "frames", "kept",
    ];
    let noise = seeded(8 << 20, 50);
    let mut w = noise.iter();
    for i in 0..1500 {
        let len = 200 + (i * 37) % 6000;
        let mut note = format!("# Note {i}\n\n").into_bytes();
        while note.len() < len {
            note.extend_from_slice(WORDS[(*w.next().unwrap() as usize) % WORDS.len()].as_bytes());
            note.push(if note.len() % 70 < 6 { b'\n' } else { b' ' });
        }
        write(
            &env.src
                .join(format!("notetaking/topic-{}/note-{i}.md", i % 40)),
            &note,
        );
    }
    for i in 0..8 {
        write(
            &env.src.join(format!("images/2026/IMG_{i:04}.jpg")),
            &seeded((1 << 20) + i * 300_000, 60 + i as u64),
        );
    }
    let mut log = Vec::new();
    for i in 0..120_000u32 {
        log.extend_from_slice(
            format!(
                "2026-11-29T02:{:02}:{:02}Z INFO job={} bytes={}\n",
                i / 60 % 60,
                i % 60,
                i % 17,
                i * 7
            )
            .as_bytes(),
        );
    }
    write(&env.src.join("backup/app.log"), &log);
    write(
        &env.src.join("backup/firmware.bin"),
        &[seeded(3 << 20, 70), vec![0; 2 << 20], seeded(1 << 20, 71)].concat(),
    );
    env.backup();
    let dir = env.dir.path().join("e");
    let exports = LocalStore::open(&dir).unwrap();
    let m = export_latest(&env, &exports, "2026-11-29", false)
        .unwrap()
        .manifest()
        .clone();
    let reference = env.dir.path().join("ref.tar.zst");
    run_tool(Command::new("sh").arg("-c").arg(format!(
        "tar -cf - -C '{}' notetaking images backup | zstd -3 -q -o '{}'",
        env.src.display(),
        reference.display()
    )));
    let ref_size = fs::metadata(&reference).unwrap().len();
    let ratio = m.archive.size as f64 / ref_size as f64;
    eprintln!(
        "archive {} bytes, tar | zstd -3 {} bytes, ratio {ratio:.4}",
        m.archive.size, ref_size
    );
    assert!(
        ratio <= 1.03,
        "archive {} bytes vs tar | zstd -3 {ref_size} bytes: ratio {ratio:.4}",
        m.archive.size
    );
}

#[test]
fn a_pack_that_cannot_be_read_fails_the_export_and_publishes_nothing() {
    // Reads go through the fault wrapper (it has no local files), so small files decoded by the
    // compression workers and large files' frames both meet the faults.
    let (env, faulty) = Env::faulty();
    for i in 0..400u64 {
        write(
            &env.src.join(format!("notetaking/n{i:03}.md")),
            &seeded(9_000 + i as usize * 37, i),
        );
    }
    write(&env.src.join("images/big.raw"), &seeded(9 << 20, 7));
    env.backup();
    let exports = LocalStore::open(env.dir.path().join("e")).unwrap();

    // How many reads a whole export makes (planned by pack: few, and how many neighbours merge
    // depends on timing, so the fewest of three).
    let reads = (0..3)
        .map(|i| {
            let scratch = LocalStore::open(env.dir.path().join(format!("scratch{i}"))).unwrap();
            let before = faulty.calls(Op::GetRange);
            export_latest(&env, &scratch, "2026-11-29", false).unwrap();
            faulty.calls(Op::GetRange) - before
        })
        .min()
        .unwrap();
    assert!(reads >= 4, "{reads} reads");

    // Every fault reaches the caller as an error; none hangs a stage of the export, and no part
    // of the day becomes visible.
    for fault in [
        Fault::FailAlways(ErrorKind::Io),
        Fault::FailAfter(1, ErrorKind::Io),
        Fault::FailAfter(reads / 2, ErrorKind::Io),
        Fault::FlipBit,
    ] {
        faulty.clear();
        faulty.inject(Some(Op::GetRange), "packs/", fault);
        let err = export_latest(&env, &exports, "2026-11-29", false).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Io | ErrorKind::Corrupt),
            "{err}"
        );
        assert!(exports.list("").unwrap().is_empty(), "{err}");
    }
    faulty.clear();
    export_latest(&env, &exports, "2026-11-29", false).unwrap();
    export::verify(&exports, "2026-11-29").unwrap();
}

#[test]
fn the_next_day_reuses_unchanged_frames_and_gives_the_same_bytes() {
    let env = Env::new();
    let note = |i: u64, salt: u64| {
        let mut text = format!("# note {i}\n").into_bytes();
        while text.len() < 4_000 + (i as usize * 131) % 9_000 {
            text.extend_from_slice(
                format!("line {} of note {i}, salt {salt}\n", text.len()).as_bytes(),
            );
        }
        text
    };
    for i in 0..600 {
        write(&env.src.join(format!("notetaking/n{i:03}.md")), &note(i, 0));
    }
    write(&env.src.join("images/big.raw"), &seeded(3 << 20, 9));
    env.backup();
    let shared = LocalStore::open(env.dir.path().join("e")).unwrap();
    let Published::Written(day1, first) =
        export_latest(&env, &shared, "2026-11-28", false).unwrap()
    else {
        panic!("written")
    };
    assert_eq!(first.from, None);
    assert!(day1.groups.len() >= 6, "{} groups", day1.groups.len());

    // Two notes edited: only the frames holding them are compressed again.
    write(&env.src.join("notetaking/n100.md"), &note(100, 1));
    write(&env.src.join("notetaking/n400.md"), &note(400, 1));
    env.backup();
    let Published::Written(day2, reused) =
        export_latest(&env, &shared, "2026-11-29", false).unwrap()
    else {
        panic!("written")
    };
    assert_eq!(reused.from.as_deref(), Some("2026-11-28"));
    assert_eq!(reused.groups, day2.groups.len() as u64);
    let fresh = reused.groups - reused.reused_groups;
    assert!((2..=4).contains(&fresh), "{reused:?}");
    // The report says why: the groups holding the edited notes changed.
    let why = reused.not_reused.expect("an earlier day was drawn on");
    assert_eq!((why.changed, why.unreadable, why.damaged), (fresh, 0, 0));

    // Reuse changes no byte: the same snapshot exported where there is nothing to reuse.
    let alone = LocalStore::open(env.dir.path().join("alone")).unwrap();
    let Published::Written(alone_m, none) =
        export_latest(&env, &alone, "2026-11-29", false).unwrap()
    else {
        panic!("written")
    };
    assert_eq!(none.reused_groups, 0);
    let key = DayKeys::new("2026-11-29").unwrap().archive;
    assert!(shared.get(&key).unwrap() == alone.get(&key).unwrap());
    assert_eq!(alone_m.groups, day2.groups);

    // A damaged frame in the earlier archive is compressed anew, not copied.
    let path = env.dir.path().join("e").join(&key);
    let mut bytes = fs::read(&path).unwrap();
    let victim = &day2.groups[day2.groups.len() / 2];
    bytes[(victim.offset + victim.length / 2) as usize] ^= 0x10;
    fs::write(&path, &bytes).unwrap();
    let Published::Written(_, again) = export_latest(&env, &shared, "2026-11-30", false).unwrap()
    else {
        panic!("written")
    };
    assert_eq!(again.from.as_deref(), Some("2026-11-29"));
    assert_eq!(again.reused_groups, again.groups - 1);
    let why = again.not_reused.expect("an earlier day was drawn on");
    assert_eq!((why.changed, why.unreadable, why.damaged), (0, 0, 1));
    let day3 = DayKeys::new("2026-11-30").unwrap().archive;
    assert!(shared.get(&day3).unwrap() == alone.get(&key).unwrap());
    export::verify(&shared, "2026-11-30").unwrap();
}

/// A share of tiny notes (3,000 of 10-400 bytes in 6 folders): the archive gives every note
/// back through GNU tar, with its time in whole seconds; a day of appends to one whole folder
/// compresses only the groups holding that folder, with the same bytes as an archive written
/// with nothing to reuse; appends spread over every folder change every group, and the report
/// says so. The notes' chunks are found through the packs' indexes (16 lookups into a pack index
/// it), which must not change a byte either.
#[test]
fn tiny_notes_reuse_the_groups_of_untouched_folders() {
    let env = Env::new();
    let mut rng = 17u64;
    let mut next = || {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        rng >> 33
    };
    let words = [
        "note", "idea", "todo", "plan", "draft", "read", "call", "the", "of", "and",
    ];
    for f in 0..6 {
        for n in 0..500 {
            let size = 10 + next() % 391;
            let mut text = String::new();
            while (text.len() as u64) < size {
                text.push_str(words[next() as usize % words.len()]);
                text.push(' ');
            }
            text.truncate(size as usize);
            write(
                &env.src.join(format!("notetaking/f{f}/n{n:03}.md")),
                text.as_bytes(),
            );
        }
    }
    env.backup();
    let shared = LocalStore::open(env.dir.path().join("e")).unwrap();
    let Published::Written(day1, _) = export_latest(&env, &shared, "2026-11-28", false).unwrap()
    else {
        panic!("written")
    };
    assert!(day1.groups.len() >= 8, "{} groups", day1.groups.len());
    let archive = env
        .dir
        .path()
        .join("e")
        .join(DayKeys::new("2026-11-28").unwrap().archive);
    let out = env.dir.path().join("untar");
    fs::create_dir_all(&out).unwrap();
    run_tool(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&out),
    );
    let (a, b) = (
        env.src.join("notetaking/f3/n250.md"),
        out.join("notetaking/f3/n250.md"),
    );
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
    let (ma, mb) = (fs::metadata(&a).unwrap(), fs::metadata(&b).unwrap());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (mb.mtime(), mb.mtime_nsec()),
        (ma.mtime(), 0),
        "whole seconds"
    );

    let append = |path: &Path| {
        let mut text = fs::read(path).unwrap();
        text.extend_from_slice(b"appended the next day\n");
        write(path, &text);
    };
    for n in 0..500 {
        append(&env.src.join(format!("notetaking/f2/n{n:03}.md")));
    }
    env.backup();
    let Published::Written(day2, folder) =
        export_latest(&env, &shared, "2026-11-29", false).unwrap()
    else {
        panic!("written")
    };
    let why = folder.not_reused.expect("an earlier day was drawn on");
    assert!(folder.reused_groups * 2 >= folder.groups, "{folder:?}");
    assert_eq!(why.changed, folder.groups - folder.reused_groups);
    assert!((1..=4).contains(&why.changed), "{folder:?}");
    let alone = LocalStore::open(env.dir.path().join("alone")).unwrap();
    export_latest(&env, &alone, "2026-11-29", false).unwrap();
    let key = DayKeys::new("2026-11-29").unwrap().archive;
    assert!(shared.get(&key).unwrap() == alone.get(&key).unwrap());
    assert_eq!(
        export::read_manifest(&alone, &DayKeys::new("2026-11-29").unwrap())
            .unwrap()
            .groups,
        day2.groups
    );

    for f in 0..6 {
        for n in (0..500).step_by(100) {
            append(&env.src.join(format!("notetaking/f{f}/n{n:03}.md")));
        }
    }
    env.backup();
    let Published::Written(_, spread) = export_latest(&env, &shared, "2026-11-30", false).unwrap()
    else {
        panic!("written")
    };
    let why = spread.not_reused.expect("an earlier day was drawn on");
    assert_eq!(
        (spread.reused_groups, why.changed),
        (0, spread.groups),
        "{spread:?}"
    );
    export::verify(&shared, "2026-11-30").unwrap();
}

/// When the packs are remote (here: behind a wrapper that hides their files), the next day
/// takes large files' runs of stored frames from the earlier archive instead of the packs, with
/// the same bytes as an archive written from the packs alone. A run damaged in the earlier
/// archive fails its frame check; the export is then written again from the packs, the same
/// bytes again, and nothing is noted as damaged in the store.
#[test]
fn runs_of_stored_frames_come_from_the_earlier_archive_and_a_damaged_one_costs_a_pass() {
    let (env, _faulty) = Env::faulty();
    // Exports behind the wrapper too: the earlier archive is read by planned reads.
    let shared = FaultStore::new(LocalStore::open(env.dir.path().join("e")).unwrap());
    for i in 0..200u64 {
        write(
            &env.src.join(format!("notetaking/n{i:03}.md")),
            &seeded(3000, i),
        );
    }
    write(&env.src.join("images/big.raw"), &seeded(12 << 20, 9));
    write(&env.src.join("images/small.raw"), &seeded(3 << 20, 10));
    env.backup();
    let Published::Written(day1, first) =
        export_latest(&env, &shared, "2026-11-28", false).unwrap()
    else {
        panic!("written")
    };
    assert_eq!((first.runs, first.reused_runs), (2, 0));
    assert_eq!(day1.runs.len(), 2);

    write(&env.src.join("notetaking/n100.md"), b"edited\n");
    env.backup();
    let Published::Written(day2, reused) =
        export_latest(&env, &shared, "2026-11-29", false).unwrap()
    else {
        panic!("written")
    };
    assert_eq!((reused.runs, reused.reused_runs), (2, 2), "{reused:?}");
    let alone = LocalStore::open(env.dir.path().join("alone")).unwrap();
    export_latest(&env, &alone, "2026-11-29", false).unwrap();
    let key = DayKeys::new("2026-11-29").unwrap().archive;
    assert!(shared.get(&key).unwrap() == alone.get(&key).unwrap());

    let path = env.dir.path().join("e").join(&key);
    let mut bytes = fs::read(&path).unwrap();
    let victim = &day2.runs[0];
    bytes[(victim.offset + victim.length / 2) as usize] ^= 0x10;
    fs::write(&path, &bytes).unwrap();
    let Published::Written(_, again) = export_latest(&env, &shared, "2026-11-30", false).unwrap()
    else {
        panic!("written")
    };
    assert_eq!((again.from.as_deref(), again.reused_runs), (None, 0));
    let day3 = DayKeys::new("2026-11-30").unwrap().archive;
    assert!(shared.get(&day3).unwrap() == alone.get(&key).unwrap());
    export::verify(&shared, "2026-11-30").unwrap();
    assert!(
        cairn_engine::damage::load_all(&env.repo)
            .unwrap()
            .is_empty(),
        "a damaged earlier archive was noted as damage in the store"
    );
}

/// A pid that no process has: a child that already exited and was reaped.
pub fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Pruning a day removes its folder whole, including the hidden temporary file that a killed
/// export left in it (invisible to `exports list`, and hundreds of MB in real life).
#[test]
fn prune_removes_whole_days_with_their_temporaries() {
    let env = Env::new();
    write(&env.src.join("notetaking/a.md"), b"a");
    env.backup();
    let root = env.dir.path().join("e");
    let exports = LocalStore::open(&root).unwrap();
    for day in 1..=3 {
        export_latest(&env, &exports, &format!("2026-11-{day:02}"), false).unwrap();
    }
    // A killed rerun of the first day left half an archive behind.
    let stale = root.join(format!(
        "2026-11-01/.shared-2026-11-01.tar.zst.tmp-{}-0",
        dead_pid()
    ));
    fs::write(&stale, vec![0u8; 100_000]).unwrap();
    set_mtime(&stale, 1_700_000_000, 0);
    // And an ended lease that a key without delete rights left as an expired record.
    exports.put("_leases/2026-11-01/0123.json", b"{}").unwrap();
    assert_eq!(
        cairn_engine::retention::prune(&exports, 2).unwrap(),
        ["2026-11-01"]
    );
    assert!(exports.list("_leases/2026-11-01/").unwrap().is_empty());
    assert!(
        !root.join("2026-11-01").exists(),
        "the pruned day's folder is still there: {:?}",
        fs::read_dir(root.join("2026-11-01"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
            .ok()
    );
    assert!(root.join("2026-11-02").is_dir());
}

/// The nightly job on an exports location with room for exactly `keep_daily` archives (a fault
/// wrapper that fails writes beyond its capacity with ENOSPC, as a full volume does; the CLI
/// test `a_full_exports_volume_frees_itself` does the same on a real tmpfs when it may mount
/// one): retention makes room before the export, so every night succeeds.
#[test]
fn a_full_exports_store_frees_itself_by_retention_first() {
    use cairn_engine::backup::Progress;
    use cairn_engine::catalog::Catalog;
    use cairn_engine::run::{RunOptions, nightly};
    use cairn_engine::store::MemoryStore;
    let env = Env::new();
    let photo = 1600 << 10;
    for f in ["notetaking", "backup"] {
        fs::create_dir_all(env.src.join(f)).unwrap();
    }
    let exports = FaultStore::new(MemoryStore::new());
    // Three archives and a half: no room for a fourth beside three.
    exports.inject(Some(Op::Put), "", Fault::Capacity(photo * 7 / 2));
    for day in 1..=6u64 {
        write(
            &env.src.join("images/photo.raw"),
            &seeded(photo as usize, day),
        );
        let mut backup = env.opts();
        backup.date = format!("2026-11-{day:02}");
        let opts = RunOptions {
            backup,
            exports: &exports,
            keep_daily: 3,
            force: false,
            stale_after: std::time::Duration::from_secs(3600),
            prune: None,
            export_hook: None,
        };
        let open = || {
            let (cat, sync) = Catalog::open_for(&env.state, &env.repo)?;
            Ok((env.repo.clone(), cat, sync, None))
        };
        let report = nightly(open, &opts, &Progress::default()).unwrap();
        assert_eq!(report.exit_code, 0, "day {day}: {:?}", report.error);
        assert_eq!(report.kept_days.len(), (day as usize).min(3), "day {day}");
    }
}

/// One nightly run of `date` into `exports`, keeping `keep` days.
fn night(env: &Env, exports: &dyn Store, date: &str, keep: usize) -> cairn_engine::run::RunReport {
    use cairn_engine::catalog::Catalog;
    use cairn_engine::run::{RunOptions, nightly};
    write(&env.src.join("notetaking/day.md"), date.as_bytes());
    for f in ["images", "backup"] {
        fs::create_dir_all(env.src.join(f)).unwrap();
    }
    let mut backup = env.opts();
    backup.date = date.into();
    let opts = RunOptions {
        backup,
        exports,
        keep_daily: keep,
        force: false,
        stale_after: std::time::Duration::from_secs(3600),
        prune: None,
        export_hook: None,
    };
    let open = || {
        let (cat, sync) = Catalog::open_for(&env.state, &env.repo)?;
        Ok((env.repo.clone(), cat, sync, None))
    };
    nightly(open, &opts, &cairn_engine::backup::Progress::default()).unwrap()
}

fn complete_days(exports: &dyn Store) -> Vec<String> {
    export::list_days(exports)
        .unwrap()
        .into_iter()
        .filter(|d| d.complete)
        .map(|d| d.date)
        .collect()
}

/// Retention before the export never leaves the exports without a complete day, whatever the
/// export then does: with `keep_daily = 1`, and with a partial day (a killed export) around.
#[test]
fn a_failing_export_never_costs_the_last_complete_day() {
    use cairn_engine::store::MemoryStore;
    let env = Env::new();
    let exports = FaultStore::new(MemoryStore::new());
    assert_eq!(night(&env, &exports, "2026-01-01", 1).exit_code, 0);
    exports.inject(
        Some(Op::Put),
        "/shared-2026-01-02",
        Fault::FailAlways(ErrorKind::Io),
    );
    assert_eq!(night(&env, &exports, "2026-01-02", 1).exit_code, 1);
    assert_eq!(complete_days(&exports), ["2026-01-01"], "keep_daily = 1");

    // keep 2: a complete day, a partial one, and tonight's export fails.
    exports.clear();
    exports
        .put(
            "2026-01-02/shared-2026-01-02.tar.zst",
            b"half of a killed export",
        )
        .unwrap();
    exports.inject(
        Some(Op::Put),
        "/shared-2026-01-03",
        Fault::FailAlways(ErrorKind::Io),
    );
    assert_eq!(night(&env, &exports, "2026-01-03", 2).exit_code, 1);
    assert_eq!(complete_days(&exports), ["2026-01-01"]);
    exports.clear();
    assert_eq!(night(&env, &exports, "2026-01-04", 2).exit_code, 0);
    assert_eq!(complete_days(&exports), ["2026-01-01", "2026-01-04"]);
    let all: Vec<_> = export::list_days(&exports)
        .unwrap()
        .into_iter()
        .map(|d| d.date)
        .collect();
    assert!(
        !all.contains(&"2026-01-02".to_string()),
        "the partial day went: {all:?}"
    );
}

/// A day dated in the future (a pod with a wrong clock) never pushes tonight's archive out.
#[test]
fn a_day_in_the_future_does_not_push_out_tonight() {
    use cairn_engine::store::MemoryStore;
    let env = Env::new();
    let exports = MemoryStore::new();
    assert_eq!(night(&env, &exports, "2030-01-01", 1).exit_code, 0);
    assert_eq!(night(&env, &exports, "2026-01-02", 1).exit_code, 0);
    let r = night(&env, &exports, "2026-01-03", 1);
    assert_eq!(r.exit_code, 0);
    assert_eq!(r.deleted_days, ["2026-01-02"]);
    assert_eq!(complete_days(&exports), ["2026-01-03", "2030-01-01"]);
}

/// `cairn exports prune` on a given day neither counts nor deletes days after it: a typo in
/// --date must not cost the real days.
#[test]
fn manual_prune_leaves_future_days_alone() {
    use cairn_engine::retention::Retention;
    use cairn_engine::store::MemoryStore;
    let env = Env::new();
    let exports = MemoryStore::new();
    for d in ["2026-11-21", "2026-11-22", "2062-11-23"] {
        assert_eq!(night(&env, &exports, d, 0).exit_code, 0);
    }
    let deleted =
        cairn_engine::retention::prune_for(&exports, 1, Retention::Manual(Some("2026-11-29")))
            .unwrap();
    assert_eq!(deleted, ["2026-11-21"]);
    assert_eq!(complete_days(&exports), ["2026-11-22", "2062-11-23"]);
}
