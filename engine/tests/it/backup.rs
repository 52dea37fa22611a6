//! Backups end to end on a local directory store: round trip of every awkward case, the cost
//! of reruns, deduplication, catalog loss, and failures at every point of a run.

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};

use cairn_engine::ErrorKind;
use cairn_engine::backup::{Hook, HookPoint};
use cairn_engine::store::{Fault, FaultStore, MemoryStore, Op, Store};

use crate::common::*;

const FOLDERS: [&str; 3] = ["notetaking", "images", "backup"];

fn warning_kinds(s: &cairn_engine::snapshot::Snapshot) -> Vec<(&str, &str)> {
    s.warnings
        .iter()
        .map(|w| (w.path.as_str(), w.kind.as_str()))
        .collect()
}

#[test]
fn round_trip_of_the_awkward_tree() {
    let env = Env::new();
    awkward_tree(&env.src);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut opts = env.opts();
    let s = seen.clone();
    opts.hook = Some(Hook(Arc::new(move |_, p: &Path| {
        s.lock().unwrap().push(p.to_path_buf())
    })));
    let out = env.backup_with(&opts).unwrap();
    assert!(
        out.snapshot.warnings.is_empty(),
        "{:?}",
        out.snapshot.warnings
    );
    assert_snapshot_matches(&env, &out.snapshot.root, &env.src, &FOLDERS);
    // The unselected sibling was never opened.
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .all(|p| !p.starts_with(env.src.join("private")))
    );
    // Excludes are reported, not silently dropped.
    let skipped: Vec<_> = out
        .snapshot
        .skipped
        .iter()
        .map(|s| s.path.as_str())
        .collect();
    assert_eq!(skipped, ["images/album/Thumbs.db", "notetaking/.DS_Store"]);
    let s = &out.snapshot.summary;
    assert_eq!(s.specials, 2, "the FIFO and the socket are recorded");
    assert!(s.new_chunks > 5);
    // The sparse 48 MiB image is mostly zeros: stored as a handful of chunks, far below its size.
    assert!(s.stored_bytes < 20 << 20, "stored {} bytes", s.stored_bytes);
}

#[test]
fn unchanged_rerun_reads_nothing_and_writes_no_pack() {
    let env = Env::new();
    awkward_tree(&env.src);
    let first = env.backup();
    let packs_before = env.repo.list_packs().unwrap().len();
    let second = env.backup();
    let s = &second.snapshot.summary;
    assert_eq!(s.files_read, 0, "an unchanged file was read");
    assert_eq!(s.bytes_read, 0);
    assert_eq!((s.packs, s.new_chunks, s.new_trees), (0, 0, 0));
    assert_eq!(env.repo.list_packs().unwrap().len(), packs_before);
    assert_eq!(
        second.snapshot.root, first.snapshot.root,
        "same tree, same root id"
    );
    assert_eq!(s.files, first.snapshot.summary.files);
}

#[test]
fn one_byte_changed_in_a_64_mib_file_stores_at_most_three_chunks() {
    let env = Env::new();
    let path = env.src.join("images/video.bin");
    let mut data = seeded(64 << 20, 9);
    write(&path, &data);
    env.backup();
    data[32 << 20] ^= 0xff;
    fs::write(&path, &data).unwrap();
    let out = env.backup();
    let s = &out.snapshot.summary;
    assert_eq!(s.files_read, 1);
    assert!(
        s.new_chunks >= 1 && s.new_chunks <= 3,
        "{} new chunks",
        s.new_chunks
    );
    assert!(s.new_bytes <= 12 << 20);
    let e = &snapshot_entries(&env, &out.snapshot.root)[&b"images/video.bin"[..]];
    assert!(content(&env, e) == data);
}

#[test]
fn renaming_a_folder_stores_no_new_chunk() {
    let env = Env::new();
    write(&env.src.join("images/2024/a.jpg"), &seeded(2 << 20, 4));
    write(&env.src.join("images/2024/b.jpg"), &seeded(5 << 20, 5));
    env.backup();
    fs::rename(
        env.src.join("images/2024"),
        env.src.join("images/2024-summer"),
    )
    .unwrap();
    let out = env.backup();
    assert_eq!(out.snapshot.summary.new_chunks, 0);
    assert_snapshot_matches(&env, &out.snapshot.root, &env.src, &["images"]);
}

#[test]
fn deleted_catalog_is_rebuilt_and_nothing_new_is_stored() {
    let env = Env::new();
    awkward_tree(&env.src);
    let first = env.backup();
    fs::remove_dir_all(env.state.join("catalog")).unwrap();
    let out = env.backup();
    assert!(out.sync.rebuilt);
    assert!(out.sync.packs_added > 0);
    assert_eq!(out.sync.snapshots_added, 1);
    assert_eq!(
        (out.snapshot.summary.new_chunks, out.snapshot.summary.packs),
        (0, 0)
    );
    assert_eq!(out.snapshot.root, first.snapshot.root);
    // The catalog of another repository is replaced, not trusted.
    let other = Env::new();
    awkward_tree(&other.src);
    let mut opts = other.opts();
    opts.source_root = env.src.clone();
    let (cat, sync) = cairn_engine::catalog::Catalog::open_for(&env.state, &other.repo).unwrap();
    assert!(sync.rebuilt);
    drop(cat);
}

#[test]
fn a_vanished_pack_is_forgotten_and_its_chunks_stored_again() {
    let env = Env::new();
    write(&env.src.join("backup/a.bin"), &seeded(1 << 20, 6));
    env.backup();
    for (id, _) in env.repo.list_packs().unwrap() {
        env.repo
            .store()
            .delete(&cairn_engine::repo::pack_key(&id))
            .unwrap();
    }
    let out = env.backup();
    assert!(!out.sync.packs_removed.is_empty());
    assert!(
        out.snapshot.summary.new_chunks > 0,
        "chunks of a lost pack must not be deduplicated"
    );
    assert_snapshot_matches(&env, &out.snapshot.root, &env.src, &["backup"]);
}

/// A configured folder that is missing (or a file, or unlistable) fails the backup before
/// anything is stored: a snapshot without it would be published as a complete day.
#[test]
fn a_missing_configured_folder_fails_the_backup_and_stores_nothing() {
    let env = Env::new();
    write(&env.src.join("notetaking/a.txt"), &seeded(300_000, 3));
    write(&env.src.join("backup"), b"a file where a folder should be");
    let mut opts = env.opts();
    opts.optional_folders.clear();
    let err = env.backup_with(&opts).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io);
    let msg = err.to_string();
    assert!(
        msg.starts_with("source folders images (No such file or directory"),
        "{msg}"
    );
    assert!(msg.contains("src/backup is not a directory)"), "{msg}");
    assert!(!msg.contains("notetaking"), "{msg}");
    assert!(env.repo.list_snapshot_ids().unwrap().is_empty());
    assert!(env.repo.list_packs().unwrap().is_empty(), "nothing stored");
}

/// A folder named in `optional_folders` may be absent: left out, without a warning.
#[test]
fn an_optional_folder_may_be_absent() {
    let env = Env::new();
    write(&env.src.join("notetaking/a.txt"), b"a");
    let out = env.backup();
    assert!(
        out.snapshot.warnings.is_empty(),
        "{:?}",
        out.snapshot.warnings
    );
    assert_snapshot_matches(&env, &out.snapshot.root, &env.src, &["notetaking"]);
}

#[test]
fn files_that_vanish_or_change_during_the_scan_are_reported() {
    let env = Env::new();
    write(&env.src.join("notetaking/goes.txt"), b"soon gone");
    write(&env.src.join("notetaking/grows.log"), b"line 1\n");
    write(&env.src.join("notetaking/stays.txt"), b"stable");
    let mut opts = env.opts();
    opts.folders = vec!["notetaking".into()];
    opts.hook = Some(Hook(Arc::new(|point, p: &Path| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        match (point, name) {
            (HookPoint::BeforeOpen, "goes.txt") => fs::remove_file(p).unwrap(),
            (HookPoint::AfterRead, "grows.log") => {
                use std::io::Write;
                let mut f = fs::OpenOptions::new().append(true).open(p).unwrap();
                f.write_all(b"line 2\n").unwrap();
            }
            _ => {}
        }
    })));
    let out = env.backup_with(&opts).unwrap();
    let w = warning_kinds(&out.snapshot);
    assert_eq!(
        w,
        [
            ("notetaking/goes.txt", "vanished"),
            ("notetaking/grows.log", "changed")
        ]
    );
    let entries = snapshot_entries(&env, &out.snapshot.root);
    assert!(!entries.contains_key(&b"notetaking/goes.txt"[..]));
    assert_eq!(
        content(&env, &entries[&b"notetaking/grows.log"[..]]),
        b"line 1\n",
        "stored as read"
    );
    // The changed file was not cached: the next run reads it again, and only it.
    let again = env.backup();
    assert_eq!(again.snapshot.summary.files_read, 1);
    assert!(
        again.snapshot.warnings.is_empty(),
        "{:?}",
        again.snapshot.warnings
    );
}

#[test]
fn ignore_inode_and_ctime_keep_the_cache_valid_across_a_copy() {
    let env = Env::new();
    write(&env.src.join("backup/a.bin"), &seeded(300_000, 8));
    env.backup();
    // Replace the file by a copy with the same content and mtime: a new inode and ctime.
    let p = env.src.join("backup/a.bin");
    let md = fs::metadata(&p).unwrap();
    let tmp = env.src.join("backup/a.tmp");
    fs::copy(&p, &tmp).unwrap();
    fs::rename(&tmp, &p).unwrap();
    use std::os::unix::fs::MetadataExt;
    set_mtime(&p, md.mtime(), md.mtime_nsec());
    let strict = env.backup();
    assert_eq!(
        strict.snapshot.summary.files_read, 1,
        "a new inode is a cache miss by default"
    );
    fs::copy(&p, &tmp).unwrap();
    fs::rename(&tmp, &p).unwrap();
    set_mtime(&p, md.mtime(), md.mtime_nsec());
    let mut opts = env.opts();
    opts.ignore_inode = true;
    opts.ignore_ctime = true;
    assert_eq!(
        env.backup_with(&opts).unwrap().snapshot.summary.files_read,
        0
    );
}

/// A store failure at any point of a run aborts it without a snapshot; what was committed
/// before still reads back bit-identical, and the next run completes.
#[test]
fn failures_at_every_point_of_a_backup_leave_the_repository_valid() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultStore::new(MemoryStore::new()));
    let env = Env::with_store_in(dir, faulty.clone());
    write(
        &env.src.join("notetaking/a.md"),
        &b"first day\n".repeat(1000),
    );
    write(&env.src.join("images/one.jpg"), &seeded(6 << 20, 10));
    let first = env.backup();
    let first_entries = snapshot_entries(&env, &first.snapshot.root);
    let first_bytes: Vec<(Vec<u8>, Vec<u8>)> = first_entries
        .iter()
        .filter(|(_, e)| !e.chunks.is_empty())
        .map(|(p, e)| (p.clone(), content(&env, e)))
        .collect();

    // Day two: more data, so that the run writes several packs, trees and a snapshot.
    for i in 0..6 {
        write(
            &env.src.join(format!("images/day2-{i}.jpg")),
            &seeded(3 << 20, 20 + i),
        );
    }
    write(
        &env.src.join("notetaking/b.md"),
        &b"second day\n".repeat(5000),
    );
    let snapshots_before = env.repo.list_snapshot_ids().unwrap();
    // Let the n-th put and every later one fail, for n = 0, 1, 2, ... until the run gets
    // through: that covers a failure at every store write the run makes.
    let mut n = 0;
    let done = loop {
        faulty.clear();
        faulty.inject(Some(Op::Put), "", Fault::FailAfter(n, ErrorKind::Io));
        match env.backup_with(&env.opts()) {
            Ok(out) => break out,
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::Io, "{err}");
                assert_eq!(
                    env.repo.list_snapshot_ids().unwrap(),
                    snapshots_before,
                    "snapshot after failure at put {n}"
                );
                for (p, want) in &first_bytes {
                    let e = &snapshot_entries(&env, &first.snapshot.root)[p];
                    assert!(
                        &content(&env, e) == want,
                        "first snapshot damaged after failure at put {n}"
                    );
                }
            }
        }
        n += 1;
        assert!(n < 100, "the run never succeeded");
    };
    // Packs stored by a failed attempt are reused by the next one (the run resumes), so how
    // many attempts fail depends on how the parallel run filled its packs.
    assert!(
        n >= 2,
        "only {n} failed attempts before the run got through"
    );
    assert_snapshot_matches(
        &env,
        &done.snapshot.root,
        &env.src,
        &["notetaking", "images"],
    );
    faulty.clear();
    assert_eq!(
        env.backup().snapshot.summary.files_read,
        0,
        "the files cache survived the failed runs"
    );
}

/// Transient failures are retried by the retry wrapper and the run succeeds.
#[test]
fn transient_failures_are_retried() {
    use cairn_engine::store::RetryStore;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultStore::new(MemoryStore::new()));
    let retrying: Arc<dyn Store> = Arc::new(RetryStore::new(
        faulty.clone(),
        3,
        Duration::from_millis(1),
        Duration::from_millis(5),
    ));
    let env = Env::with_store_in(dir, retrying);
    awkward_tree(&env.src);
    faulty.inject(None, "", Fault::FailOncePerKey);
    let out = env.backup();
    assert_snapshot_matches(&env, &out.snapshot.root, &env.src, &FOLDERS);
    assert!(faulty.calls(Op::Put) >= 2 * out.snapshot.summary.packs);
}

/// A store that corrupts what it is given: the damage is found when reading, never silently
/// returned as file content.
#[test]
fn corrupted_packs_are_detected_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultStore::new(MemoryStore::new()));
    let env = Env::with_store_in(dir, faulty.clone());
    write(&env.src.join("backup/x.bin"), &seeded(2 << 20, 11));
    let out = env.backup();
    let e = snapshot_entries(&env, &out.snapshot.root)[&b"backup/x.bin"[..]].clone();
    faulty.inject(Some(Op::GetRange), "packs/", Fault::FlipBit);
    let mut sink = Vec::new();
    let err = cairn_engine::read::read_file_content(&env.repo, &env.catalog(), &e, &mut sink)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}

#[test]
fn a_killed_run_leaves_no_snapshot_and_no_visible_partial_object() {
    // Simulates the process dying mid-put: the local store writes temp files that a crash
    // leaves behind; they must be invisible to listings and to the next run.
    let env = Env::new();
    write(&env.src.join("notetaking/a.md"), b"a");
    env.backup();
    let packs = env.dir.path().join("store/packs/00");
    fs::create_dir_all(&packs).unwrap();
    fs::write(packs.join(".00ab.tmp-1-1"), b"half a pack").unwrap();
    let listed = env.repo.store().list("packs/").unwrap();
    assert!(
        listed.iter().all(|o| !o.key.contains(".tmp")),
        "a temporary file is listed: {listed:?}"
    );
    let out = env.backup();
    assert_eq!(out.sync.packs_unreadable.len(), 0);
    assert_eq!(
        out.sync.packs_added, 0,
        "the temporary file was taken for a pack"
    );
}

/// A files-cache record is written only once every chunk it names is in a durable pack: when
/// the pack holding a file's chunk fails to store, the next run reads the file again instead of
/// trusting a record that names a chunk the store never got.
#[test]
fn a_file_whose_pack_failed_is_read_again_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let faulty = Arc::new(FaultStore::new(MemoryStore::new()));
    let env = Env::with_store_in(dir, faulty.clone());
    // One small file: its chunk waits in a pack that is stored at the end of the run.
    write(&env.src.join("notetaking/a.md"), &b"a note\n".repeat(1000));
    faulty.inject(Some(Op::Put), "packs/", Fault::FailAlways(ErrorKind::Io));
    let err = env.backup_with(&env.opts()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    faulty.clear();
    let out = env.backup();
    assert_eq!(
        out.snapshot.summary.files_read, 1,
        "the files cache vouched for a file whose chunk was never stored"
    );
    assert_snapshot_matches(&env, &out.snapshot.root, &env.src, &["notetaking"]);
}
