//! Trust under attack (issue 10, data-loss items): hardlink identities across filesystems, two
//! writers publishing one day, damage that must heal, and garbage snapshot objects.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_engine::backup::{self, Progress};
use cairn_engine::catalog::Catalog;
use cairn_engine::check::{self, CheckReport, ProblemKind, ReadData};
use cairn_engine::export::{self, ExportHook, ExportOptions, ExportPoint};
use cairn_engine::lease;
use cairn_engine::pack::BlobKind;
use cairn_engine::repo::pack_key;
use cairn_engine::restore::{self, RestoreOptions};
use cairn_engine::store::{LocalStore, MemoryStore, Store};
use cairn_engine::{ErrorKind, Id, read};

use crate::common::*;

/// tmpfs mounts made by a test, unmounted when it ends (also when it fails).
struct Mounts(Vec<PathBuf>);

impl Drop for Mounts {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
    }
}

impl Mounts {
    /// Mounts a fresh tmpfs at `at`; fails the test when this process may not mount (not root:
    /// the tests that mount are `#[ignore]`d).
    fn tmpfs(&mut self, at: &Path) {
        fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m", "cairn-test"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "cannot mount a tmpfs at {} (needs root: run the ignored tests as root, as CI runs scripts/test.sh)",
            at.display()
        );
        self.0.push(at.to_path_buf());
    }
}

/// Two mounts below one folder, each holding a two-link file with the same inode number: each
/// pair must stay linked, and never to the other mount's file.
#[test]
#[ignore = "needs root to mount a tmpfs (CI runs scripts/test.sh as root)"]
fn hardlinks_on_two_filesystems_with_equal_inodes_stay_apart() {
    let env = Env::new();
    let n = env.src.join("notetaking");
    let mut mounts = Mounts(Vec::new());
    mounts.tmpfs(&n.join("a"));
    mounts.tmpfs(&n.join("b"));
    for (m, text) in [
        ("a", "first mount\n"),
        ("b", "second mount, other content\n"),
    ] {
        fs::write(n.join(m).join("f"), text).unwrap();
        fs::hard_link(n.join(m).join("f"), n.join(m).join("g")).unwrap();
    }
    let (ia, ib) = (
        fs::metadata(n.join("a/f")).unwrap(),
        fs::metadata(n.join("b/f")).unwrap(),
    );
    assert_eq!(
        ia.ino(),
        ib.ino(),
        "the reproduction needs equal inode numbers"
    );
    assert_ne!(ia.dev(), ib.dev());
    fs::create_dir_all(env.src.join("images")).unwrap();
    fs::create_dir_all(env.src.join("backup")).unwrap();

    let mut opts = env.opts();
    opts.one_file_system = false;
    let out = env.backup_with(&opts).unwrap();
    let entries = snapshot_entries(&env, &out.snapshot.root);
    let id = |p: &str| entries[p.as_bytes()].hardlink.expect(p);
    assert_eq!(id("notetaking/a/f"), id("notetaking/a/g"));
    assert_eq!(id("notetaking/b/f"), id("notetaking/b/g"));
    assert_ne!(
        id("notetaking/a/f"),
        id("notetaking/b/f"),
        "files of two filesystems share a hardlink identity"
    );

    // Restored: each name has its own mount's content, and each pair is one inode again.
    let target = env.dir.path().join("restored");
    let cat = env.catalog();
    let ropts = restore_opts(&target);
    restore::restore(&env.repo, &cat, &out.snapshot, &ropts).unwrap();
    check_pairs(&target);

    // Archived: GNU tar extracts the same.
    let exports = LocalStore::open(env.dir.path().join("exports")).unwrap();
    let eopts = ExportOptions {
        date: out.snapshot.date.clone(),
        level: 3,
        force: false,
        hook: None,
    };
    export::export(&env.repo, &cat, &exports, (&out.id, &out.snapshot), &eopts).unwrap();
    export::verify(&exports, &out.snapshot.date).unwrap();
    let x = env.dir.path().join("extracted");
    fs::create_dir_all(&x).unwrap();
    let archive = exports
        .local_file(&format!("{0}/shared-{0}.tar.zst", out.snapshot.date))
        .unwrap();
    let st = Command::new("tar")
        .arg("--zstd")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap();
    assert!(st.success());
    check_pairs(&x);
}

fn check_pairs(root: &Path) {
    let n = root.join("notetaking");
    for (m, text) in [
        ("a", "first mount\n"),
        ("b", "second mount, other content\n"),
    ] {
        for f in ["f", "g"] {
            assert_eq!(
                fs::read_to_string(n.join(m).join(f)).unwrap(),
                text,
                "{}: {m}/{f}",
                root.display()
            );
        }
        let (f, g) = (
            fs::metadata(n.join(m).join("f")).unwrap(),
            fs::metadata(n.join(m).join("g")).unwrap(),
        );
        assert_eq!(f.ino(), g.ino(), "{m}/f and {m}/g are one inode");
    }
}

/// A writer of one day paused at `at` by its hook until the returned sender says go.
struct Paused {
    reached: std::sync::mpsc::Receiver<()>,
    go: std::sync::mpsc::Sender<()>,
    hook: ExportHook,
}

fn pause_at(at: ExportPoint) -> Paused {
    let (reached_tx, reached) = std::sync::mpsc::channel();
    let (go, go_rx) = std::sync::mpsc::channel::<()>();
    let (reached_tx, go_rx) = (Mutex::new(reached_tx), Mutex::new(go_rx));
    let hook = ExportHook(Arc::new(move |p| {
        if p == at {
            reached_tx.lock().unwrap().send(()).unwrap();
            go_rx.lock().unwrap().recv().unwrap();
        }
    }));
    Paused { reached, go, hook }
}

/// Two nightly jobs with their own state volumes, one store and one exports location, the same
/// day, different trees, interleaved at each step of publication: whatever the order, the day
/// ends complete with one writer's archive, `.sha256` and manifest, and the other writer is
/// refused (kind `Locked` while the first holds the day, `Conflict` after).
pub fn two_writers_of_one_day(exports_a: Arc<dyn Store>, exports_b: Arc<dyn Store>) {
    let env = Env::new();
    awkward_tree(&env.src);
    let state_a = env.dir.path().join("state-a");
    let state_b = env.dir.path().join("state-b");
    let backup_in = |state: &Path| {
        let (cat, sync) = Catalog::open_for(state, &env.repo).unwrap();
        let out = backup::backup(&env.repo, &cat, sync, &env.opts(), &Progress::default()).unwrap();
        (cat, out)
    };
    let (cat_a, a) = backup_in(&state_a);
    write(
        &env.src.join("notetaking/only-in-b.md"),
        b"the other pod's tree",
    );
    let (cat_b, b) = backup_in(&state_b);
    assert_ne!(a.snapshot.root, b.snapshot.root);
    let export = |cat: &Catalog,
                  out: &backup::BackupOutcome,
                  exports: &dyn Store,
                  date: &str,
                  hook: Option<ExportHook>| {
        let opts = ExportOptions {
            date: date.into(),
            level: 3,
            force: false,
            hook,
        };
        export::export(&env.repo, cat, exports, (&out.id, &out.snapshot), &opts)
    };

    for (n, at) in [
        ExportPoint::LeaseWritten,
        ExportPoint::Leased,
        ExportPoint::ArchiveBuilt,
        ExportPoint::ArchiveWritten,
        ExportPoint::BeforeManifest,
    ]
    .into_iter()
    .enumerate()
    {
        let date = format!("2026-11-{:02}", 10 + n);
        let paused = pause_at(at);
        let first = std::thread::scope(|s| {
            let hook = paused.hook.clone();
            let date_a = date.clone();
            let (cat_a, a, ea) = (&cat_a, &a, exports_a.as_ref());
            let t = s.spawn(move || export(cat_a, a, ea, &date_a, Some(hook)));
            paused.reached.recv().unwrap();
            // B runs its whole export while A waits at `at`; A goes on before anything is
            // asserted, so that a failure fails the test instead of hanging it.
            let second = export(&cat_b, &b, exports_b.as_ref(), &date, None);
            paused.go.send(()).unwrap();
            let first = t.join().unwrap();
            let err = second.expect_err(&format!("{at:?}: the second writer published too"));
            assert_eq!(err.kind(), ErrorKind::Locked, "{at:?}: {err}");
            assert!(err.to_string().contains(&lease::hostname()), "{err}");
            first
        });
        let first = first.unwrap_or_else(|e| panic!("{at:?}: the first writer failed: {e}"));
        assert_eq!(first.manifest().snapshot, a.id, "{at:?}");
        let v = export::verify(exports_b.as_ref(), &date)
            .unwrap_or_else(|e| panic!("{at:?}: the day does not verify: {e}"));
        assert_eq!(v.sha256, first.manifest().archive.sha256);
        // Later, without --force, the other tree is still refused.
        let again = export(&cat_b, &b, exports_b.as_ref(), &date, None).unwrap_err();
        assert_eq!(again.kind(), ErrorKind::Conflict, "{at:?}: {again}");
        assert!(
            exports_a.list("_leases/").unwrap().is_empty(),
            "{at:?}: a lease was left behind"
        );
    }
}

#[test]
fn two_writers_of_one_day_on_a_local_exports_directory() {
    let dir = tempfile::tempdir().unwrap();
    let a: Arc<dyn Store> = Arc::new(LocalStore::open(dir.path().join("exports")).unwrap());
    let b: Arc<dyn Store> = Arc::new(LocalStore::open(dir.path().join("exports")).unwrap());
    two_writers_of_one_day(a, b);
}

/// A lease left by a process of this host that is gone is taken over at once; one of another
/// host is taken over only once it expired; a live one of another host refuses, naming it.
#[test]
fn leases_of_dead_or_expired_holders_are_taken_over() {
    let store = MemoryStore::default();
    let put = |name: &str, host: &str, pid: u32, expires: jiff::Timestamp| {
        let info = lease::LeaseInfo {
            purpose: "publishing 2026-11-29".into(),
            host: host.into(),
            pid,
            machine: if host == lease::hostname() {
                lease::machine()
            } else {
                "another boot:pid:[1]".into()
            },
            nonce: name.into(),
            started: "2026-11-29T01:00:00Z".into(),
            expires: expires.to_string(),
            mode: lease::LeaseMode::Exclusive,
        };
        store
            .put(
                &format!("_leases/d/{name}.json"),
                &serde_json::to_vec(&info).unwrap(),
            )
            .unwrap();
    };
    let ttl = Duration::from_secs(60);
    let later = jiff::Timestamp::now() + Duration::from_secs(3600);
    // A child that has exited: its pid names no process any more.
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    put("dead", &lease::hostname(), dead, later);
    put(
        "old",
        "other-pod",
        1,
        jiff::Timestamp::now() - Duration::from_secs(1),
    );
    let l = lease::acquire(&store, "_leases/d/", "test", ttl, None).unwrap();
    let keys: Vec<_> = store
        .list("_leases/d/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, vec![format!("_leases/d/{}.json", l.info().nonce)]);
    l.release();
    assert!(store.list("_leases/").unwrap().is_empty());

    // The same host name on another machine or pid namespace (pods with hostNetwork): its pid
    // means nothing here, so only its expiry counts.
    let info = lease::LeaseInfo {
        purpose: "publishing 2026-11-29".into(),
        host: lease::hostname(),
        pid: dead,
        machine: "another boot:pid:[1]".into(),
        nonce: "twin".into(),
        started: "2026-11-29T01:00:00Z".into(),
        expires: later.to_string(),
        mode: lease::LeaseMode::Exclusive,
    };
    store
        .put("_leases/t/twin.json", &serde_json::to_vec(&info).unwrap())
        .unwrap();
    let err = lease::acquire(&store, "_leases/t/", "twin", ttl, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");

    // An expiry far beyond any TTL (a clock running ahead, a crafted object) is not believed.
    put(
        "far",
        "other-pod",
        1,
        jiff::Timestamp::now() + Duration::from_secs(30 * 86400),
    );
    let l = lease::acquire(&store, "_leases/d/", "far", ttl, None)
        .expect("a lease until next month is not believed");
    l.release();

    put("live", "other-pod", 1, later);
    let err = lease::acquire(&store, "_leases/d/", "publishing 2026-11-29", ttl, None).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked);
    assert!(err.to_string().contains("other-pod pid 1"), "{err}");
    assert_eq!(
        store.list("_leases/d/").unwrap().len(),
        1,
        "the loser left its lease"
    );
}

/// Flips one byte in the middle of the stored frame of `kind` blob `id`, in its pack file.
fn flip_frame(env: &Env, kind: BlobKind, id: &Id) -> Id {
    let loc = env
        .catalog()
        .locate(kind, id)
        .unwrap()
        .expect("blob is stored");
    let path = env.repo.store().local_file(&pack_key(&loc.pack)).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[(loc.offset + loc.length / 2) as usize] ^= 0x20;
    fs::write(&path, bytes).unwrap();
    loc.pack
}

/// Cuts `by` bytes off the end of a pack file.
fn truncate_pack(env: &Env, pack: &Id, by: u64) {
    let path = env.repo.store().local_file(&pack_key(pack)).unwrap();
    let len = fs::metadata(&path).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - by).unwrap();
}

fn export_day(env: &Env, date: &str, exports: &dyn Store) -> cairn_engine::Result<()> {
    let cat = env.catalog();
    let (id, snap) = cat.resolve_snapshot("latest")?;
    let opts = ExportOptions {
        date: date.into(),
        level: 3,
        force: true,
        hook: None,
    };
    export::export(&env.repo, &cat, exports, (&id, &snap), &opts).map(|_| ())
}

/// The latest snapshot exported as a day that must verify.
fn export_and_verify(env: &Env) {
    let exports = LocalStore::open(env.dir.path().join("exports")).unwrap();
    export_day(env, "2026-11-29", &exports).unwrap();
    export::verify(&exports, "2026-11-29").unwrap();
}

fn check_all(env: &Env) -> CheckReport {
    let (cat, sync) = Catalog::open_for(&env.state, &env.repo).unwrap();
    check::check(&env.repo, &cat, &sync, ReadData::All, false).unwrap()
}

/// A flipped byte in a data frame, found by `check --read-data` after a catalog rebuild: the
/// next backup stores the chunk again, and every snapshot that names it reads back intact.
#[test]
fn damage_found_by_check_heals_on_the_next_backup() {
    let env = Env::new();
    awkward_tree(&env.src);
    let first = env.backup();
    let text = &snapshot_entries(&env, &first.snapshot.root)[&b"notetaking/text.md"[..]];
    let pack = flip_frame(&env, BlobKind::Data, &text.chunks[0]);
    Catalog::rebuild(&env.state, &env.repo).unwrap();

    let found = check_all(&env);
    let p = found
        .problems
        .iter()
        .find(|p| p.kind == ProblemKind::CorruptBlob)
        .unwrap_or_else(|| panic!("check finds the flipped byte: {:?}", found.problems));
    assert_eq!(p.object, format!("pack {pack}"));
    assert!(
        p.affected.iter().any(|a| a.path == "notetaking/text.md"),
        "{p:?}"
    );
    assert!(env.repo.store().list("damaged/").unwrap().len() == 1);

    let second = env.backup();
    assert!(
        second.snapshot.summary.new_chunks >= 1,
        "the damaged chunk must be stored again: {:?}",
        second.snapshot.summary
    );
    let after = check_all(&env);
    assert!(after.problems.is_empty(), "{:?}", after.problems);
    assert_eq!(after.healed, 1);
    // Old and new snapshots name the same chunk id: both read back intact now.
    for snap in [&first, &second] {
        assert_snapshot_matches(
            &env,
            &snap.snapshot.root,
            &env.src,
            &["notetaking", "images", "backup"],
        );
    }
    // A rebuilt catalog, on this machine or another, never indexes the damaged copy again.
    Catalog::rebuild(&env.state, &env.repo).unwrap();
    let rebuilt = check_all(&env);
    assert!(rebuilt.problems.is_empty(), "{:?}", rebuilt.problems);
    export_and_verify(&env);
}

/// Damage nobody checked for: the nightly export finds it in the frames it copies, publishes
/// nothing, and the next night heals. The same for a damaged tree.
#[test]
fn damage_found_by_the_export_fails_it_and_the_next_night_heals() {
    let env = Env::new();
    awkward_tree(&env.src);
    let exports = LocalStore::open(env.dir.path().join("exports")).unwrap();
    let first = env.backup();
    let entries = snapshot_entries(&env, &first.snapshot.root);
    let big = &entries[&b"images/album/big.raw"[..]];
    flip_frame(&env, BlobKind::Data, &big.chunks[1]);
    let album = entries[&b"images/album"[..]].tree.unwrap();
    flip_frame(&env, BlobKind::Tree, &album);
    Catalog::rebuild(&env.state, &env.repo).unwrap();

    // Night 1: the backup dedups against the damaged copies (nothing says they are damaged).
    env.backup();
    let err = export_day(&env, "2026-11-29", &exports).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(
        export::list_days(&exports)
            .unwrap()
            .iter()
            .all(|d| !d.complete),
        "a damaged archive was published"
    );
    // Night 2: the damaged tree was recorded by night 1's export; stored again now. The
    // export of night 2 finds the data frame, night 3 heals it.
    let mut nights = 0;
    loop {
        nights += 1;
        assert!(nights <= 3, "the store did not heal in 3 nights");
        env.backup();
        match export_day(&env, "2026-11-30", &exports) {
            Ok(()) => break,
            Err(e) => assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}"),
        }
    }
    export::verify(&exports, "2026-11-30").unwrap();
    let report = check_all(&env);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.healed, 2);
    assert_snapshot_matches(
        &env,
        &first.snapshot.root,
        &env.src,
        &["notetaking", "images", "backup"],
    );
}

/// A pack truncated under a warm catalog is not used for deduplication: the next backup stores
/// its chunks again.
#[test]
fn a_truncated_pack_is_not_trusted_by_the_next_backup() {
    let env = Env::new();
    awkward_tree(&env.src);
    let first = env.backup();
    let photo = &snapshot_entries(&env, &first.snapshot.root)[&b"images/photo.jpg"[..]];
    let loc = env
        .catalog()
        .locate(BlobKind::Data, &photo.chunks[0])
        .unwrap()
        .unwrap();
    truncate_pack(&env, &loc.pack, 100);

    // Force a re-read of the files, as a touched share would.
    let second = {
        let (cat, sync) = Catalog::open_for(&env.state, &env.repo).unwrap();
        assert_eq!(sync.packs_unreadable, vec![loc.pack.to_hex()]);
        backup::backup(&env.repo, &cat, sync, &env.opts(), &Progress::default()).unwrap()
    };
    assert!(
        second.snapshot.summary.new_chunks >= 1,
        "{:?}",
        second.snapshot.summary
    );
    // The chunks went into a new pack (here one with the same blobs in the same order, hence
    // the same name: the truncated object was written whole again).
    let report = check_all(&env);
    assert!(
        report.problems.iter().all(|p| p.affected_count == 0),
        "{:?}",
        report.problems
    );
    assert_snapshot_matches(
        &env,
        &second.snapshot.root,
        &env.src,
        &["notetaking", "images", "backup"],
    );
    export_and_verify(&env);
}

/// A garbage snapshot object: check reports it (also with a warm catalog), a lost catalog is
/// rebuilt around it, the other snapshots back up and restore, and `--repair` puts it back from
/// the catalog's copy or moves it aside.
#[test]
fn a_garbage_snapshot_object_is_reported_skipped_and_repaired() {
    let env = Env::new();
    awkward_tree(&env.src);
    let first = env.backup();
    write(&env.src.join("notetaking/second.md"), b"day two");
    let second = env.backup();
    let key = |id: &Id| format!("snapshots/{id}");
    let store = env.repo.store();
    let good_second = store.get(&key(&second.id)).unwrap();

    // Warm catalog: the object is garbage, the catalog's copy is intact.
    store
        .put(&key(&second.id), b"{\"not\": \"a snapshot\"}")
        .unwrap();
    let warm = check_all(&env);
    assert!(
        warm.problems
            .iter()
            .any(|p| p.kind == ProblemKind::UnreadableSnapshot
                && p.object == format!("snapshot {}", second.id)),
        "{:?}",
        warm.problems
    );
    let (cat, sync) = Catalog::open_for(&env.state, &env.repo).unwrap();
    let repaired = check::check(&env.repo, &cat, &sync, ReadData::None, true).unwrap();
    assert_eq!(repaired.repaired.len(), 1, "{:?}", repaired.repaired);
    assert_eq!(
        store.get(&key(&second.id)).unwrap(),
        good_second,
        "put back as it was"
    );
    drop(cat);

    // Catalog lost, and now the first snapshot's object is garbage.
    store.put(&key(&first.id), b"garbage").unwrap();
    fs::remove_dir_all(&env.state).unwrap();
    let (cat, sync) =
        Catalog::open_for(&env.state, &env.repo).expect("a garbage snapshot stops nothing");
    assert_eq!(sync.snapshots_unreadable, vec![first.id.to_hex()]);
    drop(cat);
    write(&env.src.join("notetaking/third.md"), b"day three");
    let third = env.backup();
    let target = env.dir.path().join("restored");
    let cat = env.catalog();
    let ropts = restore_opts(&target);
    let (_, snap) = cat.resolve_snapshot(&second.id.to_hex()).unwrap();
    restore::restore(&env.repo, &cat, &snap, &ropts).unwrap();
    assert!(!target.join("notetaking/third.md").exists());
    assert!(target.join("notetaking/second.md").exists());
    drop(cat);
    let lost = check_all(&env);
    assert_eq!(lost.problems.len(), 1, "{:?}", lost.problems);
    assert_eq!(lost.problems[0].kind, ProblemKind::UnreadableSnapshot);
    let (cat, sync) = Catalog::open_for(&env.state, &env.repo).unwrap();
    check::check(&env.repo, &cat, &sync, ReadData::None, true).unwrap();
    drop(cat);
    assert_eq!(
        store
            .get(&format!("quarantine/snapshots/{}", first.id))
            .unwrap(),
        b"garbage"
    );
    assert!(store.get(&key(&first.id)).is_err());
    let healthy = check_all(&env);
    assert!(healthy.problems.is_empty(), "{:?}", healthy.problems);
    assert_eq!(healthy.snapshots, 2);
    let _ = third;
}

/// The nightly key may not delete (docs/OPERATIONS.md): a lease then ends by being rewritten
/// as expired, and the next writer of the day goes ahead at once.
#[test]
fn leases_end_without_delete_permission() {
    use cairn_engine::store::{Fault, FaultStore, Op};
    let store = FaultStore::new(MemoryStore::default());
    store.inject(
        Some(Op::Delete),
        "_leases/",
        Fault::FailAlways(ErrorKind::Io),
    );
    let ttl = Duration::from_secs(600);
    let first = lease::acquire(&store, "_leases/d/", "first", ttl, None).unwrap();
    first.release();
    assert_eq!(
        store.list("_leases/d/").unwrap().len(),
        1,
        "left, but expired"
    );
    let t = std::time::Instant::now();
    let second = lease::acquire(&store, "_leases/d/", "second", ttl, None).unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "no back-off for an ended lease"
    );
    drop(second);
    let third = lease::acquire(&store, "_leases/d/", "third", ttl, None).unwrap();
    third.release();
}

/// A writer whose lease was taken over while it worked (it stalled longer than the lease's TTL)
/// publishes nothing, not even the archive: the day stays the new holder's, whole.
#[test]
fn a_writer_that_lost_its_lease_replaces_nothing() {
    let env = Env::new();
    awkward_tree(&env.src);
    let exports = LocalStore::open(env.dir.path().join("exports")).unwrap();
    let a = env.backup();
    write(
        &env.src.join("notetaking/b-only.md"),
        b"the other writer's tree",
    );
    let b = env.backup();
    let cat = env.catalog();
    let export = |out: &backup::BackupOutcome, hook: Option<ExportHook>| {
        let opts = ExportOptions {
            date: "2026-11-29".into(),
            level: 3,
            force: false,
            hook,
        };
        export::export(&env.repo, &cat, &exports, (&out.id, &out.snapshot), &opts)
    };
    let paused = pause_at(ExportPoint::ArchiveBuilt);
    let first = std::thread::scope(|s| {
        let hook = paused.hook.clone();
        let t = s.spawn(|| export(&a, Some(hook)));
        paused.reached.recv().unwrap();
        // A's lease lapses (here: its object is removed, as a taker-over does) and B publishes.
        for o in exports.list("_leases/").unwrap() {
            exports.delete(&o.key).unwrap();
        }
        let second = export(&b, None);
        paused.go.send(()).unwrap();
        let first = t.join().unwrap();
        second.expect("the new holder publishes");
        first
    });
    let err = first.expect_err("the writer that lost its lease published");
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    export::verify(&exports, "2026-11-29").unwrap();
    let m = export::read_manifest(&exports, &export::DayKeys::new("2026-11-29").unwrap()).unwrap();
    assert_eq!(m.snapshot, b.id);
}

/// A damaged blob that the share no longer has cannot heal; it must not cost a full read of the
/// share every night after the first.
#[test]
fn damage_that_cannot_heal_costs_one_full_read_not_one_every_night() {
    let env = Env::new();
    awkward_tree(&env.src);
    let first = env.backup();
    let text = &snapshot_entries(&env, &first.snapshot.root)[&b"notetaking/text.md"[..]];
    flip_frame(&env, BlobKind::Data, &text.chunks[0]);
    assert!(!check_all(&env).problems.is_empty());
    fs::remove_file(env.src.join("notetaking/text.md")).unwrap();
    let healing = env.backup();
    assert!(
        healing.snapshot.summary.files_read > 0,
        "the share is read once"
    );
    let next = env.backup();
    assert_eq!(
        next.snapshot.summary.files_read, 0,
        "the files cache was dropped again for damage already known"
    );
}

/// A snapshot of a newer format is intact: reported, never moved aside by --repair.
#[test]
fn a_newer_snapshot_is_not_mistaken_for_damage() {
    let env = Env::new();
    awkward_tree(&env.src);
    let out = env.backup();
    let store = env.repo.store();
    let text = String::from_utf8(store.get(&format!("snapshots/{}", out.id)).unwrap()).unwrap();
    let newer = text.replacen("\"version\": 1", "\"version\": 2", 1);
    assert_ne!(newer, text);
    let id = Id::of(newer.as_bytes());
    store
        .put(&format!("snapshots/{id}"), newer.as_bytes())
        .unwrap();
    let (cat, sync) = Catalog::open_for(&env.state, &env.repo).unwrap();
    assert!(sync.snapshots_unreadable.is_empty());
    let report = check::check(&env.repo, &cat, &sync, ReadData::None, true).unwrap();
    assert!(report.repaired.is_empty(), "{:?}", report.repaired);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == ProblemKind::UnsupportedSnapshot && p.object.contains(&id.to_hex())),
        "{:?}",
        report.problems
    );
    assert_eq!(
        store.get(&format!("snapshots/{id}")).unwrap(),
        newer.as_bytes()
    );
}

/// Two writers stored the same chunks in two packs; the pack the catalog points at is
/// truncated: the copies in the other pack are found, nothing is reported missing.
#[test]
fn losing_one_copy_finds_the_other() {
    let env = Env::new();
    write(&env.src.join("images/x.raw"), &seeded(3 << 20, 77));
    fs::create_dir_all(env.src.join("notetaking")).unwrap();
    fs::create_dir_all(env.src.join("backup")).unwrap();
    // A opens (and syncs) its catalog before B has written anything.
    let (cat_a, sync_a) = Catalog::open_for(&env.state, &env.repo).unwrap();
    let (cat_b, sync_b) = Catalog::open_for(&env.dir.path().join("state-b"), &env.repo).unwrap();
    backup::backup(&env.repo, &cat_b, sync_b, &env.opts(), &Progress::default()).unwrap();
    drop(cat_b);
    // A stores x.raw too, in a pack of other bytes (it holds y.raw as well).
    write(&env.src.join("images/y.raw"), &seeded(1 << 20, 78));
    backup::backup(&env.repo, &cat_a, sync_a, &env.opts(), &Progress::default()).unwrap();
    drop(cat_a);
    let (_, snap) = env.catalog().resolve_snapshot("latest").unwrap();
    let x = snapshot_entries(&env, &snap.root)[&b"images/x.raw"[..]].clone();
    let loc = env
        .catalog()
        .locate(BlobKind::Data, &x.chunks[0])
        .unwrap()
        .unwrap();
    let holders = env
        .repo
        .list_packs()
        .unwrap()
        .into_iter()
        .filter(|(id, size)| {
            env.repo
                .read_pack_index(id, *size)
                .unwrap()
                .iter()
                .any(|e| e.id == x.chunks[0])
        })
        .count();
    assert_eq!(holders, 2, "the reproduction needs two copies");
    truncate_pack(&env, &loc.pack, 100);
    let report = check_all(&env);
    assert!(
        report
            .problems
            .iter()
            .all(|p| !p.affected.iter().any(|a| a.path == "images/x.raw")),
        "{:?}",
        report.problems
    );
    let mut data = Vec::new();
    read::read_file_content(&env.repo, &env.catalog(), &x, &mut data).unwrap();
    assert!(data == seeded(3 << 20, 77));
}

/// A crafted archive whose GNU long name claims a gigabyte: a few kilobytes of zstd. The tar
/// crate would read the name whole before restore sees it; refused with memory held small.
#[test]
fn a_huge_long_name_in_an_archive_is_refused_before_it_is_read() {
    // A GNU long-name header claiming 1 GiB, then that many bytes of 'a' (compressed away).
    let mut h = tar::Header::new_gnu();
    h.set_path("././@LongLink").unwrap();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(1 << 30);
    h.set_mode(0o644);
    h.set_cksum();
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
    use std::io::Write;
    enc.write_all(h.as_bytes()).unwrap();
    let block = vec![b'a'; 1 << 20];
    for _ in 0..1024 {
        enc.write_all(&block).unwrap();
    }
    let crafted = enc.finish().unwrap();
    assert!(crafted.len() < 200_000, "{} bytes", crafted.len());
    let target = tempfile::tempdir().unwrap();
    let opts = RestoreOptions {
        verify: false,
        ..restore_opts(&target.path().join("t"))
    };
    let (result, peak) =
        crate::alloc::peak_during(|| restore::restore_archive(&crafted[..], &opts));
    let err = result.expect_err("a gigabyte long name was accepted");
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("long-name"), "{err}");
    assert!(peak < 64 << 20, "restore held {peak} bytes");
}

/// "Latest" is the newest instant, not the greatest text: RFC 3339 drops trailing zeros of the
/// fraction, so `…:00.5Z` is later than `…:00Z` although it sorts before it as a string.
#[test]
fn latest_is_the_newest_instant() {
    let env = Env::new();
    write(&env.src.join("notetaking/a.md"), b"a");
    let mut opts = env.opts();
    opts.time = "2026-11-29T01:00:00Z".parse().unwrap();
    let first = env.backup_with(&opts).unwrap();
    write(&env.src.join("notetaking/b.md"), b"b");
    opts.time = "2026-11-29T01:00:00.5Z".parse().unwrap();
    let second = env.backup_with(&opts).unwrap();
    assert!(
        second.snapshot.time < first.snapshot.time,
        "the reproduction needs text order reversed"
    );
    let (latest, _) = env.catalog().resolve_snapshot("latest").unwrap();
    assert_eq!(latest, second.id);
}

/// A lease held for one stage and then for another keeps being refreshed in the second (the
/// nightly run holds its writer lease for the catalog sync, then for the night): a contender
/// of a conflicting mode is refused throughout, one of a compatible mode is not.
#[test]
fn a_lease_held_twice_is_refreshed_the_second_time_and_modes_conflict_as_documented() {
    use cairn_engine::lease::{LeaseMode, LeaseStore, acquire_as};
    let store = MemoryStore::default();
    let ttl = Duration::from_millis(1500);
    let take = |mode, purpose: &str| {
        acquire_as(
            LeaseStore::Borrowed(&store),
            "_leases/repository/",
            purpose,
            ttl,
            mode,
            &[],
            Duration::ZERO,
            None,
        )
    };
    let writer = take(LeaseMode::Writer, "run").unwrap();
    writer.hold(|| std::thread::sleep(Duration::from_millis(50)));
    writer.hold(|| {
        // Three TTLs: without refreshing, the lease would have lapsed twice over.
        std::thread::sleep(Duration::from_millis(4500));
        let err = take(LeaseMode::Writer, "second run").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
        assert!(err.to_string().contains("for run (writer lease)"), "{err}");
        let err = take(LeaseMode::Exclusive, "gc deleting").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
        let reader = take(LeaseMode::Shared, "restore").unwrap();
        writer.confirm().unwrap();
        drop(reader);
    });
    writer.confirm().unwrap();
    drop(writer);
    let exclusive = take(LeaseMode::Exclusive, "gc deleting").unwrap();
    exclusive.hold(|| {
        let err = take(LeaseMode::Shared, "restore").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    });
    drop(exclusive);
    // A lease left unrefreshed past its TTL no longer confirms (its clock moved past it).
    let clock = std::sync::Arc::new(cairn_engine::lease::SimulatedClock::default());
    let idle = acquire_as(
        LeaseStore::Clocked(Box::new(LeaseStore::Borrowed(&store)), clock.clone()),
        "_leases/repository/",
        "idle",
        ttl,
        LeaseMode::Shared,
        &[],
        Duration::ZERO,
        None,
    )
    .unwrap();
    idle.confirm().unwrap();
    clock.advance(Duration::from_millis(1600));
    let err = idle.confirm().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
}

/// A contender's object, which it puts before it lists and removes when it sees the holder,
/// does not make the holder's confirm fail (a gc deleting pack after pack confirmed beside a
/// backup waiting for it, and stopped); a holder whose object was ended does fail.
#[test]
fn confirm_ignores_contenders_and_sees_its_own_object() {
    use cairn_engine::lease::{LeaseMode, LeaseStore, acquire_as};
    let store = MemoryStore::default();
    let held = acquire_as(
        LeaseStore::Borrowed(&store),
        "_leases/repository/",
        "gc (deleting)",
        Duration::from_secs(60),
        LeaseMode::Exclusive,
        &[],
        Duration::ZERO,
        None,
    )
    .unwrap();
    let contender = lease::LeaseInfo {
        purpose: "backup".into(),
        host: "pod-b".into(),
        pid: 7,
        machine: "another boot:pid:[1]".into(),
        nonce: "contender".into(),
        started: jiff::Timestamp::now().to_string(),
        expires: (jiff::Timestamp::now() + Duration::from_secs(60)).to_string(),
        mode: LeaseMode::Writer,
    };
    store
        .put(
            "_leases/repository/contender.json",
            &serde_json::to_vec(&contender).unwrap(),
        )
        .unwrap();
    held.confirm().unwrap();
    // Ended by another holder whose key may not delete: rewritten to expire at the epoch.
    let mut ended = held.info();
    ended.expires = jiff::Timestamp::UNIX_EPOCH.to_string();
    store
        .put(held.key(), &serde_json::to_vec(&ended).unwrap())
        .unwrap();
    let err = held.confirm().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    assert!(err.to_string().contains("ended"), "{err}");
}

/// A folder of notes whose chunks the export finds through their pack's index (after 16 lookups
/// into one pack, a worker indexes it): one note's copy in that pack is damaged, the export that
/// finds it fails and notes it, the next backup stores the note again elsewhere, and the next
/// export, offered the damaged copy by the pack's index, reads the catalog's good copy instead —
/// it neither fails nor notes the damaged copy again.
#[test]
fn a_damaged_copy_offered_by_a_packs_index_costs_a_read_not_the_export() {
    let env = Env::new();
    for i in 0..80 {
        write(
            &env.src.join(format!("notetaking/n{i:02}.md")),
            format!("note {i}: {}\n", "words ".repeat(i % 40 + 5)).as_bytes(),
        );
    }
    let exports = LocalStore::open(env.dir.path().join("exports")).unwrap();
    let first = env.backup();
    let entries = snapshot_entries(&env, &first.snapshot.root);
    let victim = entries[&b"notetaking/n60.md"[..]].chunks[0];
    let damaged_pack = flip_frame(&env, BlobKind::Data, &victim);

    let err = export_day(&env, "2026-11-29", &exports).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    env.backup();
    let moved = env
        .catalog()
        .locate(BlobKind::Data, &victim)
        .unwrap()
        .unwrap();
    assert_ne!(
        moved.pack, damaged_pack,
        "the note was stored again elsewhere"
    );
    let notes = || {
        let store = env.repo.store();
        let keys = store.list("damaged/").unwrap();
        keys.iter()
            .map(|o| (o.key.clone(), store.get(&o.key).unwrap()))
            .collect::<Vec<_>>()
    };
    let before = notes();
    assert!(!before.is_empty(), "the first export noted the damage");

    export_day(&env, "2026-11-30", &exports).unwrap();
    export::verify(&exports, "2026-11-30").unwrap();
    assert!(notes() == before, "the damaged copy was noted again");
    let out = env.dir.path().join("untar");
    fs::create_dir_all(&out).unwrap();
    let archive = env
        .dir
        .path()
        .join("exports/2026-11-30/shared-2026-11-30.tar.zst");
    let status = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        fs::read(out.join("notetaking/n60.md")).unwrap(),
        fs::read(env.src.join("notetaking/n60.md")).unwrap()
    );
}
