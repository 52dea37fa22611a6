//! The S3 store against a real S3 server (Garage on loopback, started by scripts/s3-server.sh):
//! the conformance suite, a backup → export → restore round trip, and faults on top of it.
//! These tests are `#[ignore]`d; run (`--include-ignored`) without a server, they fail.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use cairn_engine::ErrorKind;
use cairn_engine::export;
use cairn_engine::restore::{self, Overwrite, RestoreOptions};
use cairn_engine::store::{
    Fault, FaultStore, Op, RetryPolicy, RetryStore, S3Config, S3Store, Store,
};

use crate::common::*;
use crate::store_conformance::conformance;

/// The test server's coordinates with a prefix no other test run uses. The tests that use it are
/// `#[ignore]`d; run without a server, they fail here.
pub(crate) fn server(bucket_var: &str, what: &str) -> S3Config {
    let endpoint = std::env::var("CAIRN_S3_TEST_ENDPOINT").unwrap_or_else(|_| {
        panic!(
            "no S3 test server for {what}: CAIRN_S3_TEST_ENDPOINT is unset (scripts/test.sh starts one with scripts/s3-server.sh)"
        )
    });
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    S3Config {
        endpoint: Some(endpoint),
        region: std::env::var("CAIRN_S3_TEST_REGION").unwrap_or_else(|_| "garage".into()),
        bucket: std::env::var(bucket_var).expect("the S3 test environment names its buckets"),
        prefix: format!("t-{what}-{}-{nanos}", std::process::id()),
        path_style: true,
        access_key: std::env::var("AWS_ACCESS_KEY_ID").expect("AWS_ACCESS_KEY_ID"),
        secret_key: std::env::var("AWS_SECRET_ACCESS_KEY").expect("AWS_SECRET_ACCESS_KEY"),
        session_token: None,
        retry: RetryPolicy::attempts(5, Duration::from_millis(20), Duration::from_millis(200)),
        server_name: "the S3 test server".into(),
    }
}

fn retrying<S: Store + 'static>(s: S) -> Arc<dyn Store> {
    Arc::new(RetryStore::new(
        s,
        5,
        Duration::from_millis(20),
        Duration::from_millis(200),
    ))
}

#[test]
#[ignore = "needs the S3 test server (scripts/test.sh provides it)"]
fn s3_store_conforms() {
    let cfg = server("CAIRN_S3_TEST_BUCKET", "conformance");
    conformance(&S3Store::new(&cfg).unwrap());
}

/// A multipart upload abandoned by a killed writer is aborted by `clean_temporaries` once
/// older than the given age, and only then.
#[test]
#[ignore = "needs the S3 test server (scripts/test.sh provides it)"]
fn s3_abandoned_uploads_are_aborted_by_age() {
    use std::io::Write;
    let cfg = server("CAIRN_S3_TEST_EXPORTS_BUCKET", "abandoned");
    let store = S3Store::new(&cfg).unwrap();
    let mut w = store
        .create("2026-11-29/shared-2026-11-29.tar.zst")
        .unwrap();
    w.write_all(&seeded(40 << 20, 77)).unwrap();
    std::mem::forget(w);
    let hour = Duration::from_secs(3600);
    assert_eq!(store.clean_temporaries("", hour).unwrap().objects, 0);
    // `initiated` has a resolution of one second.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        store.clean_temporaries("", Duration::ZERO).unwrap().objects,
        1
    );
    assert_eq!(
        store.clean_temporaries("", Duration::ZERO).unwrap().objects,
        0
    );
    assert!(store.list("").unwrap().is_empty());
}

#[test]
#[ignore = "needs the S3 test server (scripts/test.sh provides it)"]
fn s3_errors_are_classified() {
    let mut cfg = server("CAIRN_S3_TEST_BUCKET", "errors");
    let store = S3Store::new(&cfg).unwrap();
    assert_eq!(
        store.get("nothing/here").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    cfg.secret_key = "wrong".into();
    let bad = S3Store::new(&cfg).unwrap();
    let err = bad.put("x", b"y").unwrap_err();
    assert!(
        !err.is_retryable(),
        "bad credentials are not transient: {err}"
    );
    assert!(
        !err.to_string().contains("wrong"),
        "the secret leaked into an error: {err}"
    );
    cfg.endpoint = Some("http://127.0.0.1:9".into()); // nothing listens on the discard port
    let down = S3Store::new(&cfg).unwrap();
    assert!(
        down.get("x").unwrap_err().is_retryable(),
        "a refused connection is transient"
    );
}

#[test]
#[ignore = "needs the S3 test server (scripts/test.sh provides it)"]
fn s3_backup_export_restore_round_trip() {
    let store_cfg = server("CAIRN_S3_TEST_BUCKET", "roundtrip");
    let exports_cfg = server("CAIRN_S3_TEST_EXPORTS_BUCKET", "roundtrip-exports");
    let env = Env::with_store_in(
        tempfile::tempdir().unwrap(),
        retrying(S3Store::new(&store_cfg).unwrap()),
    );
    awkward_tree(&env.src);
    write(&env.src.join("images/video.raw"), &seeded(20 << 20, 600));
    let out = env.backup();
    assert_snapshot_matches(
        &env,
        &out.snapshot.root,
        &env.src,
        &["notetaking", "images", "backup"],
    );
    let exports = S3Store::new(&exports_cfg).unwrap();
    let cat = env.catalog();
    let eo = day_opts("2026-11-29");
    let m = export::export(&env.repo, &cat, &exports, (&out.id, &out.snapshot), &eo)
        .unwrap()
        .manifest()
        .clone();
    assert!(
        m.archive.size > 16 << 20,
        "the archive should need a multipart upload"
    );
    export::verify(&exports, "2026-11-29").unwrap();
    let target = env.dir.path().join("from-archive");
    let reader =
        cairn_engine::store::ObjectReader::open(&exports, "2026-11-29/shared-2026-11-29.tar.zst")
            .unwrap();
    restore::restore_archive(
        reader,
        &RestoreOptions {
            target: target.clone(),
            paths: vec![],
            overwrite: Overwrite::Never,
            verify: false,
        },
    )
    .unwrap();
    assert_eq!(
        fs::read(target.join("images/photo.jpg")).unwrap(),
        fs::read(env.src.join("images/photo.jpg")).unwrap()
    );
    let target = env.dir.path().join("from-snapshot");
    let r = restore::restore(&env.repo, &cat, &out.snapshot, &restore_opts(&target)).unwrap();
    assert_eq!(r.verified, r.files);
    // Deleting everything the test wrote leaves no trace (and checks delete on S3).
    for s in [env.repo.store().as_ref(), &exports as &dyn Store] {
        for o in s.list("").unwrap() {
            s.delete(&o.key).unwrap();
        }
        assert!(s.list("").unwrap().is_empty());
    }
}

#[test]
#[ignore = "needs the S3 test server (scripts/test.sh provides it)"]
fn s3_transient_faults_are_retried_and_permanent_ones_abort() {
    let cfg = server("CAIRN_S3_TEST_BUCKET", "faults");
    let faulty = Arc::new(FaultStore::new(S3Store::new(&cfg).unwrap()));
    let env = Env::with_store_in(tempfile::tempdir().unwrap(), retrying(faulty.clone()));
    write(&env.src.join("notetaking/a.md"), &b"day one\n".repeat(5000));
    write(&env.src.join("images/a.raw"), &seeded(6 << 20, 500));
    // One transient failure for every object: the run succeeds through retries.
    faulty.inject(None, "", Fault::FailOncePerKey);
    let first = env.backup();
    faulty.clear();
    assert_snapshot_matches(
        &env,
        &first.snapshot.root,
        &env.src,
        &["notetaking", "images"],
    );

    // A permanent failure: the run fails naming the object, no snapshot is committed, and the
    // previous snapshot still reads back.
    write(&env.src.join("images/b.raw"), &seeded(5 << 20, 501));
    faulty.inject(Some(Op::Put), "packs/", Fault::FailAlways(ErrorKind::Io));
    let err = env.backup_with(&env.opts()).unwrap_err();
    assert!(err.to_string().contains("packs/"), "{err}");
    faulty.clear();
    assert_eq!(env.repo.list_snapshot_ids().unwrap(), [first.id]);
    let entries = snapshot_entries(&env, &first.snapshot.root);
    assert!(content(&env, &entries[&b"images/a.raw"[..]]) == seeded(6 << 20, 500));
    for o in env.repo.store().list("").unwrap() {
        env.repo.store().delete(&o.key).unwrap();
    }
}

/// Two writers of one day on S3 exports (no rename, no conditional writes): one wins whole.
#[test]
#[ignore = "needs the S3 test server (scripts/test.sh provides it)"]
fn two_writers_of_one_day_on_s3_exports() {
    let cfg = server("CAIRN_S3_TEST_EXPORTS_BUCKET", "two-writers");
    // Two clients, as two pods would have.
    crate::trust::two_writers_of_one_day(
        retrying(S3Store::new(&cfg).unwrap()),
        retrying(S3Store::new(&cfg).unwrap()),
    );
}

/// A restore and an export from S3 read by pack: 5,000 small files in a handful of packs, and
/// one file larger than a read batch, cost requests in proportion to packs and directories, not
/// files. Reading chunk by chunk took more than 5,000 GETs each here.
#[test]
#[ignore = "needs the S3 test server (scripts/test.sh provides it)"]
fn s3_restore_and_export_cost_requests_per_pack_not_per_file() {
    let cfg = server("CAIRN_S3_TEST_BUCKET", "by-pack");
    let s3 = Arc::new(S3Store::new(&cfg).unwrap());
    let env = Env::with_store_in(tempfile::tempdir().unwrap(), s3.clone());
    for d in 0..20 {
        for f in 0..250u64 {
            let n = d * 1000 + f;
            write(
                &env.src.join(format!("notetaking/d{d:02}/note-{f:03}.md")),
                &seeded(500 + (n as usize % 2000), n),
            );
        }
    }
    write(&env.src.join("images/large.raw"), &seeded(40 << 20, 7));
    let out = env.backup();
    // A HEAD moves no body, whatever length it declares.
    let before = s3.request_stats().unwrap();
    s3.size("config").unwrap();
    let head = s3.request_stats().unwrap().since(&before);
    assert_eq!((head.heads, head.bytes_read), (1, 0), "{head:?}");
    let before = s3.request_stats().unwrap();
    let target = env.dir.path().join("restored");
    let r = restore::restore(
        &env.repo,
        &env.catalog(),
        &out.snapshot,
        &restore_opts(&target),
    )
    .unwrap();
    let cost = s3.request_stats().unwrap().since(&before);
    eprintln!("restore of 5,001 files: {cost:?}");
    assert_eq!((r.files, r.verified), (5001, 5001));
    assert!(
        cost.gets < 50,
        "restoring 5,001 files took {} GETs ({cost:?})",
        cost.gets
    );
    assert!(
        cost.bytes_read < 2 * (40 << 20),
        "read {} bytes for 40 MiB of incompressible data and 6 MB of notes",
        cost.bytes_read
    );
    for p in ["notetaking/d07/note-123.md", "images/large.raw"] {
        assert!(
            fs::read(target.join(p)).unwrap() == fs::read(env.src.join(p)).unwrap(),
            "{p}"
        );
    }

    let exports = cairn_engine::store::LocalStore::open(env.dir.path().join("exports")).unwrap();
    let before = s3.request_stats().unwrap();
    let eo = day_opts("2026-11-29");
    export::export(
        &env.repo,
        &env.catalog(),
        &exports,
        (&out.id, &out.snapshot),
        &eo,
    )
    .unwrap();
    let cost = s3.request_stats().unwrap().since(&before);
    eprintln!("export of 5,001 files: {cost:?}");
    assert!(
        cost.gets < 50,
        "exporting 5,001 files took {} GETs ({cost:?})",
        cost.gets
    );
    export::verify(&exports, "2026-11-29").unwrap();
    let extracted = env.dir.path().join("extracted");
    fs::create_dir_all(&extracted).unwrap();
    let archive = env
        .dir
        .path()
        .join("exports/2026-11-29/shared-2026-11-29.tar.zst");
    let ok = std::process::Command::new("tar")
        .arg("--zstd")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(&extracted)
        .status()
        .unwrap();
    assert!(ok.success());
    for p in ["notetaking/d19/note-249.md", "images/large.raw"] {
        assert!(
            fs::read(extracted.join(p)).unwrap() == fs::read(env.src.join(p)).unwrap(),
            "{p}"
        );
    }

    // check reads trees by whole tree pack from the store (not from the state volume's cache),
    // into a copy it removes: one request per tree took 229 s for 5,291 trees before.
    let (cat, sync) = cairn_engine::catalog::Catalog::open_for(&env.state, &env.repo).unwrap();
    let before = s3.request_stats().unwrap();
    let report = cairn_engine::check::check(
        &env.repo,
        &cat,
        &sync,
        cairn_engine::check::ReadData::None,
        false,
    )
    .unwrap();
    let cost = s3.request_stats().unwrap().since(&before);
    eprintln!("check of 22 trees: {cost:?}");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(cost.gets < 10, "check took {} GETs ({cost:?})", cost.gets);
    assert!(!env.state.join("check-tree-packs").exists());
    for o in s3.list("").unwrap() {
        s3.delete(&o.key).unwrap();
    }
}

/// Extracts `key` of `exports` with GNU tar and compares `paths` with the source.
fn extract_and_compare(exports: &dyn Store, key: &str, env: &Env, paths: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("a.tar.zst");
    fs::write(&archive, exports.get(key).unwrap()).unwrap();
    let ok = std::process::Command::new("tar")
        .arg("--zstd")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(ok.success(), "GNU tar refused {key}");
    for p in paths {
        assert!(
            fs::read(dir.path().join(p)).unwrap() == fs::read(env.src.join(p)).unwrap(),
            "{p} in {key}"
        );
    }
}

/// With store and exports on one S3 server, the first export copies a large file's frames
/// from its packs, and the next day's export takes the unchanged group frames and runs of
/// stored frames of the day before by coalesced ranged reads and copies them inside the server
/// (`UploadPartCopy`) instead of sending them back up; the archive is what `verify` and GNU tar
/// accept. Before, every byte of the archive was uploaded and an export to S3 reused nothing.
#[test]
#[ignore = "needs the S3 test server (scripts/test.sh provides it)"]
fn s3_exports_copy_inside_the_server_and_reuse_yesterdays_groups() {
    let cfg = server("CAIRN_S3_TEST_BUCKET", "copy-store");
    let ecfg = server("CAIRN_S3_TEST_EXPORTS_BUCKET", "copy-exports");
    let s3 = Arc::new(S3Store::new(&cfg).unwrap());
    let exports = Arc::new(S3Store::new(&ecfg).unwrap());
    let env = Env::with_packs_of(tempfile::tempdir().unwrap(), s3.clone(), 16 << 20);
    for n in 0..6000u64 {
        write(
            &env.src
                .join(format!("notetaking/d{:02}/note-{n:04}.md", n / 300)),
            &seeded(1000 + (n as usize % 2000), n),
        );
    }
    write(&env.src.join("images/large.raw"), &seeded(24 << 20, 7));
    let out = env.backup();
    let export = |snap: &cairn_engine::backup::BackupOutcome, date: &str| {
        let before = exports.request_stats().unwrap();
        let published = export::export(
            &env.repo,
            &env.catalog(),
            exports.as_ref(),
            (&snap.id, &snap.snapshot),
            &day_opts(date),
        )
        .unwrap();
        let cost = exports.request_stats().unwrap().since(&before);
        eprintln!("export of {date}: {cost:?}");
        let export::Published::Written(manifest, reused) = published else {
            panic!("nothing written for {date}")
        };
        export::verify(exports.as_ref(), date).unwrap();
        (manifest, reused, cost)
    };

    // The first day's frames come from the packs, where the backup kept the large file's
    // chunks back to back (a lane) although it packed the notes in parallel: its 24 MiB are
    // copied inside the server but for the top-up of the short part before them. Before lanes they alternated with the notes' chunks
    // in the packs, and the whole archive was sent.
    let (first, _, cost) = export(&out, "2026-11-29");
    assert!(
        cost.bytes_copied >= 16 << 20 && cost.bytes_written + (16 << 20) < first.archive.size,
        "the large file's frames were not copied from its packs: {cost:?}"
    );
    let key = "2026-11-29/shared-2026-11-29.tar.zst";
    extract_and_compare(
        exports.as_ref(),
        key,
        &env,
        &["images/large.raw", "notetaking/d07/note-2123.md"],
    );

    write(
        &env.src.join("notetaking/d03/note-0950.md"),
        b"edited today\n",
    );
    let next = env.backup();
    let (second, reused, cost) = export(&next, "2026-11-30");
    assert!(
        reused.reused_groups * 10 >= reused.groups * 8,
        "{} of {} groups reused",
        reused.reused_groups,
        reused.groups
    );
    assert_eq!(
        (reused.reused_runs, reused.runs),
        (1, 1),
        "the large file's run was not reused"
    );
    assert!(
        cost.gets < 60,
        "the earlier archive's frames took {} GETs",
        cost.gets
    );
    assert!(
        cost.bytes_written * 3 < second.archive.size,
        "{} bytes sent for an archive of {}",
        cost.bytes_written,
        second.archive.size
    );
    assert!(second.archive.size.abs_diff(first.archive.size) < 4096);
    let key = "2026-11-30/shared-2026-11-30.tar.zst";
    extract_and_compare(
        exports.as_ref(),
        key,
        &env,
        &[
            "images/large.raw",
            "notetaking/d03/note-0950.md",
            "notetaking/d19/note-5999.md",
        ],
    );
    for s in [s3.as_ref(), exports.as_ref()] {
        for o in s.list("").unwrap() {
            s.delete(&o.key).unwrap();
        }
    }
}

/// A server 100 ms away (a proxy on loopback that holds back every request): a restore and an
/// export of 2,000 small files and one large one take longer by the delay times their requests
/// over the requests in flight, plus a few steps that wait for each other; not times their
/// blobs, which would add 200 s.
#[test]
#[ignore = "needs the S3 test server (scripts/test.sh provides it)"]
fn s3_latency_costs_per_request_not_per_blob() {
    let cfg = server("CAIRN_S3_TEST_BUCKET", "latency");
    let s3 = Arc::new(S3Store::new(&cfg).unwrap());
    let env = Env::with_store_in(tempfile::tempdir().unwrap(), s3.clone());
    for n in 0..2000u64 {
        write(
            &env.src
                .join(format!("notetaking/d{:02}/note-{n:04}.md", n / 200)),
            &seeded(800 + (n as usize % 1500), n),
        );
    }
    write(&env.src.join("images/large.raw"), &seeded(20 << 20, 3));
    let out = env.backup();
    let endpoint = cfg.endpoint.clone().unwrap();
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(
        endpoint.trim_start_matches("http://").trim_end_matches('/'),
    )
    .unwrap()
    .next()
    .unwrap();
    let delay = Duration::from_millis(100);
    let proxy = crate::delay_proxy::DelayProxy::start(upstream, delay);
    let far = Arc::new(
        S3Store::new(&S3Config {
            endpoint: Some(proxy.url()),
            ..cfg.clone()
        })
        .unwrap(),
    );
    let far_repo = cairn_engine::repo::Repository::open(far.clone()).unwrap();
    // The proxy does hold requests back: ten reads one after another take ten delays.
    let started = std::time::Instant::now();
    for _ in 0..10 {
        far.get("config").unwrap();
    }
    assert!(started.elapsed() >= delay * 10, "the proxy delays nothing");

    // Each operation near and far, the tree-pack cache emptied before each.
    let run = |repo: &cairn_engine::repo::Repository, store: &S3Store, what: &str, i: usize| {
        let _ = fs::remove_dir_all(env.state.join("tree-packs"));
        let catalog = cairn_engine::catalog::Catalog::open_for(&env.state, repo)
            .unwrap()
            .0;
        let before = store.request_stats().unwrap();
        let started = std::time::Instant::now();
        if what == "restore" {
            let target = env.dir.path().join(format!("restored-{i}"));
            let r =
                restore::restore(repo, &catalog, &out.snapshot, &restore_opts(&target)).unwrap();
            assert_eq!(r.files, 2001);
        } else {
            let exports =
                cairn_engine::store::LocalStore::open(env.dir.path().join(format!("e-{i}")))
                    .unwrap();
            let eo = day_opts("2026-11-29");
            export::export(repo, &catalog, &exports, (&out.id, &out.snapshot), &eo).unwrap();
        }
        (
            started.elapsed(),
            store.request_stats().unwrap().since(&before).requests,
        )
    };
    for (i, what) in ["restore", "export"].into_iter().enumerate() {
        let (near, _) = run(&env.repo, &s3, what, 2 * i);
        let (slow, requests) = run(&far_repo, &far, what, 2 * i + 1);
        let grew = slow.saturating_sub(near);
        // Requests overlap 8 at a time, but some wait for the one before: a tree pack's size,
        // then the pack, then the reads its trees name (measured: the restore's 7 requests are
        // such a chain and add 7 delays; the export's 14 add 3).
        let bound = delay * (requests as u32 / 8 + 8) + Duration::from_millis(500);
        eprintln!(
            "{what}: {near:?} near, {slow:?} with {delay:?} per request, {requests} requests: {grew:?} more (bound {bound:?}; {:?} one request after another)",
            delay * requests as u32
        );
        assert!(requests < 60, "{what} made {requests} requests");
        assert!(
            grew <= bound,
            "{what} grew by {grew:?} with {requests} requests of {delay:?}"
        );
    }
    for o in s3.list("").unwrap() {
        s3.delete(&o.key).unwrap();
    }
}

/// One retry policy for every step of a multipart upload: a server that refuses each step a
/// few times (create, part, copy part, complete) costs retries, not the object; one that never
/// completes within the budget gives one `Unavailable` error naming it, not retried again by
/// the wrapper around the store (the budget does not multiply).
#[test]
#[ignore = "needs the S3 test server (scripts/test.sh provides it)"]
fn the_retry_policy_covers_every_step_of_a_multipart_upload() {
    use crate::fault_proxy::{FaultProxy, Step};
    let cfg = server("CAIRN_S3_TEST_BUCKET", "multipart-faults");
    let upstream = std::net::ToSocketAddrs::to_socket_addrs(
        cfg.endpoint
            .as_deref()
            .unwrap()
            .trim_start_matches("http://")
            .trim_end_matches('/'),
    )
    .unwrap()
    .next()
    .unwrap();
    let proxy = FaultProxy::start(upstream);
    let policy = RetryPolicy {
        attempts: u32::MAX,
        base: Duration::from_millis(20),
        cap: Duration::from_millis(100),
        budget: Duration::from_secs(20),
    };
    let open = |policy: RetryPolicy| {
        let s3 = S3Store::new(&S3Config {
            endpoint: Some(proxy.url()),
            retry: policy,
            server_name: "the proxied S3 server".into(),
            ..cfg.clone()
        })
        .unwrap();
        RetryStore::with_policy(s3, policy, "the proxied S3 server")
    };
    let store = open(policy);
    let src = crate::seeded::seeded(6 << 20, 1);
    store.put("src", &src).unwrap();
    let head = crate::seeded::seeded(16 << 20, 2);
    let mut expected = head.clone();
    expected.extend_from_slice(&src);
    let write = |store: &RetryStore<S3Store>, key: &str| -> cairn_engine::Result<()> {
        let mut w = store.create(key)?;
        w.write_all(&head).unwrap();
        let from = store.server_object("src", false).expect("same server");
        // A run of 6 MiB from an object of the same server: a part copied inside it.
        w.write_copy(&from, 0, &src).unwrap();
        w.finish()
    };
    for step in [Step::Create, Step::Part, Step::CopyPart, Step::Complete] {
        proxy.refuse(step, 3);
        let key = format!("dst-{step:?}");
        write(&store, &key).unwrap_or_else(|e| panic!("{step:?}: {e}"));
        assert_eq!(proxy.refused(step), 3, "{step:?} was not asked again");
        assert!(store.get(&key).unwrap() == expected, "{step:?}: the object");
    }
    let short = open(RetryPolicy {
        budget: Duration::from_secs(2),
        ..policy
    });
    proxy.refuse(Step::Complete, u64::MAX);
    let before = proxy.refused(Step::Complete);
    let mut w = short.create("never").unwrap();
    w.write_all(&head).unwrap();
    let began = std::time::Instant::now();
    let err = w.finish().unwrap_err();
    let took = began.elapsed();
    drop(w);
    assert_eq!(err.kind(), cairn_engine::ErrorKind::Unavailable, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("the proxied S3 server did not answer for") && msg.contains("tries"),
        "{msg}"
    );
    // One budget, not one inside the other: the wrapper does not retry what the writer gave up.
    assert!(took < Duration::from_secs(4), "{took:?}");
    let tries = proxy.refused(Step::Complete) - before;
    assert!(
        (2..=40).contains(&tries),
        "{tries} tries of complete in {took:?}"
    );
    proxy.refuse(Step::Complete, 0);
    for o in store.list("").unwrap() {
        store.delete(&o.key).unwrap();
    }
}
