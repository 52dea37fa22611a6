//! One conformance suite for every `Store` backend and wrapper: each promise in the trait's doc
//! comments is checked here, so a new backend is correct when this passes against it.

use std::sync::Arc;
use std::time::Duration;

use cairn_engine::ErrorKind;
use cairn_engine::store::{
    Cleaned, Fault, FaultStore, LocalStore, MemoryStore, Op, RetryStore, ServerObject, Store,
};

use crate::common::seeded;
use crate::survey::temporaries;

/// A named conformance case; each works below its own key prefix.
type Case = (&'static str, fn(&dyn Store));

/// The cases, in the order they run.
const CASES: &[Case] = &[
    ("put and get", put_and_get),
    (
        "put is idempotent and replaces whole",
        put_is_idempotent_and_replaces_whole,
    ),
    ("a missing object is NotFound", missing_is_not_found),
    ("ranged reads at the edges", ranges_at_the_edges),
    ("list is sorted, with sizes", list_is_sorted_with_sizes),
    ("delete is idempotent", delete_is_idempotent),
    ("keys that escape are refused", escaping_keys_are_refused),
    ("concurrent puts", concurrent_puts),
    (
        "streamed objects appear whole on finish",
        streams_appear_whole_on_finish,
    ),
    ("writers copy ranges of files", writers_copy_file_ranges),
    (
        "writers copy ranges of objects on their server, or send them",
        writers_copy_object_ranges,
    ),
    (
        "killed writers stay invisible; cleaning keeps objects",
        killed_writers_stay_invisible,
    ),
    (
        "listing beyond 1,000 keys (S3 pages)",
        listing_beyond_a_page,
    ),
    ("50 random ranged reads", random_ranges),
    ("the size of an object, without reading it", sizes),
    (
        "the store's clock, if it keeps one, leaves nothing behind",
        clock,
    ),
];

/// A store's clock ([`Store::clock`]) is within a minute of this machine's (the servers here
/// share it), moves forward, and reading it leaves no object; a store without one says `None`.
fn clock(store: &dyn Store) {
    let Some(first) = store.clock().unwrap() else {
        return;
    };
    let local = jiff::Timestamp::now();
    assert!(
        first.duration_since(local).abs() < jiff::SignedDuration::from_secs(60),
        "{first} against {local}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = store.clock().unwrap().expect("a clock stays a clock");
    assert!(second > first, "{second} after {first}");
    assert!(
        store.list("").unwrap().is_empty(),
        "reading the clock left objects"
    );
}

/// Runs every case against `store`, which must be empty. A failing case does not stop the
/// others: the failure names every case that failed.
pub fn conformance(store: &dyn Store) {
    assert!(
        store.list("").unwrap().is_empty(),
        "the suite needs an empty store"
    );
    let failed: Vec<&str> = CASES
        .iter()
        .filter(|(_, case)| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| case(store))).is_err()
        })
        .map(|(name, _)| *name)
        .collect();
    assert!(failed.is_empty(), "conformance cases failed: {failed:?}");
    assert!(
        store.list("").unwrap().is_empty(),
        "the cases left objects behind"
    );
}

/// More keys than one S3 listing page holds (1,000): the listing is complete and sorted.
fn listing_beyond_a_page(store: &dyn Store) {
    let n = 1_050usize;
    std::thread::scope(|s| {
        for t in 0..8usize {
            s.spawn(move || {
                for i in (t..n).step_by(8) {
                    store.put(&format!("pages/{i:05}"), &[1]).unwrap();
                }
            });
        }
    });
    let keys: Vec<String> = store
        .list("pages/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    let want: Vec<String> = (0..n).map(|i| format!("pages/{i:05}")).collect();
    assert_eq!(keys.len(), n);
    assert!(keys == want, "the listing is not complete and sorted");
    for k in &keys {
        store.delete(k).unwrap();
    }
}

/// `size` answers what `get` would return the length of, and `NotFound` for a missing object.
fn sizes(store: &dyn Store) {
    store.put("sizes/empty", b"").unwrap();
    store.put("sizes/some", &seeded(70_001, 3)).unwrap();
    store.put("sizes/some-more", b"xy").unwrap();
    assert_eq!(store.size("sizes/empty").unwrap(), 0);
    assert_eq!(store.size("sizes/some").unwrap(), 70_001);
    assert_eq!(store.size("sizes/some-more").unwrap(), 2);
    let err = store.size("sizes/missing").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert_eq!(
        store.size("sizes/som").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    for k in ["sizes/empty", "sizes/some", "sizes/some-more"] {
        store.delete(k).unwrap();
    }
}

/// Ranged reads at seeded places, compared with the bytes.
fn random_ranges(store: &dyn Store) {
    let data = seeded(1 << 20, 42);
    store.put("ranges/obj", &data).unwrap();
    let mut rng = crate::seeded::Xorshift::new(42);
    for _ in 0..50 {
        let x = rng.next_u64();
        let off = x % data.len() as u64;
        let len = (x >> 32) % (data.len() as u64 - off + 1);
        let got = store.get_range("ranges/obj", off, len).unwrap();
        assert!(
            got == data[off as usize..(off + len) as usize],
            "range {off}+{len}"
        );
    }
    store.delete("ranges/obj").unwrap();
}

/// The keys below `prefix`, in listing order.
fn keys(store: &dyn Store, prefix: &str) -> Vec<String> {
    store
        .list(prefix)
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// Deletes every object below `prefix`.
fn clear(store: &dyn Store, prefix: &str) {
    for k in keys(store, prefix) {
        store.delete(&k).unwrap();
    }
}

/// `put` then `get`, including an empty object and one larger than a pack.
fn put_and_get(store: &dyn Store) {
    store.put("pg/one", b"1").unwrap();
    store.put("pg/empty", b"").unwrap();
    let big = seeded(20 << 20, 1);
    store.put("pg/big", &big).unwrap();
    assert_eq!(store.get("pg/one").unwrap(), b"1");
    assert_eq!(store.get("pg/empty").unwrap(), b"");
    assert!(store.get("pg/big").unwrap() == big);
    clear(store, "pg/");
}

/// `put` of the same bytes again changes nothing; a replacement is whole.
fn put_is_idempotent_and_replaces_whole(store: &dyn Store) {
    store.put("re/one", b"1").unwrap();
    store.put("re/one", b"1").unwrap();
    assert_eq!(store.get("re/one").unwrap(), b"1");
    store.put("re/one", b"11").unwrap();
    assert_eq!(store.get("re/one").unwrap(), b"11");
    assert_eq!(keys(store, "re/"), ["re/one"]);
    clear(store, "re/");
}

/// A missing object is `NotFound`, its own kind, and never retryable.
fn missing_is_not_found(store: &dyn Store) {
    store.put("nf/present", b"x").unwrap();
    for err in [
        store.get("nf/missing").unwrap_err(),
        store.get_range("nf/missing", 0, 1).unwrap_err(),
        store.get("nf/pres").unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(!err.is_retryable());
    }
    clear(store, "nf/");
}

/// Ranges: exact, at the end, empty, and out of bounds (`Corrupt`).
fn ranges_at_the_edges(store: &dyn Store) {
    let big = seeded(20 << 20, 1);
    store.put("rg/big", &big).unwrap();
    store.put("rg/one", b"11").unwrap();
    assert!(store.get_range("rg/big", 5, 1000).unwrap() == big[5..1005]);
    assert!(store.get_range("rg/big", (20 << 20) - 7, 7).unwrap() == big[big.len() - 7..]);
    assert_eq!(store.get_range("rg/one", 2, 0).unwrap(), b"");
    for (off, len) in [(0, 3), (3, 0), (1, u64::MAX)] {
        let err = store.get_range("rg/one", off, len).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "range {off}+{len}: {err}");
    }
    clear(store, "rg/");
}

/// `list`: sorted, complete, with sizes; a prefix is a string prefix, not a folder.
fn list_is_sorted_with_sizes(store: &dyn Store) {
    store.put("ls/b/big", &seeded(3 << 20, 2)).unwrap();
    store.put("ls/ab/x", b"xyz").unwrap();
    store.put("ls/a/one", b"11").unwrap();
    store.put("ls/a/empty", b"").unwrap();
    let all: Vec<(String, u64)> = store
        .list("ls/")
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    assert_eq!(
        all,
        [
            ("ls/a/empty".into(), 0),
            ("ls/a/one".into(), 2),
            ("ls/ab/x".into(), 3),
            ("ls/b/big".into(), 3 << 20)
        ]
    );
    assert_eq!(keys(store, "ls/a/"), ["ls/a/empty", "ls/a/one"]);
    assert_eq!(keys(store, "ls/a"), ["ls/a/empty", "ls/a/one", "ls/ab/x"]);
    assert!(keys(store, "ls/zzz/").is_empty());
    clear(store, "ls/");
}

/// `delete` is idempotent, and the object is gone for `get` and `list`.
fn delete_is_idempotent(store: &dyn Store) {
    store.put("del/x", b"xyz").unwrap();
    store.put("del/y", b"y").unwrap();
    store.delete("del/x").unwrap();
    store.delete("del/x").unwrap();
    store.delete("del/never").unwrap();
    assert_eq!(store.get("del/x").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(keys(store, "del/"), ["del/y"]);
    clear(store, "del/");
}

/// Keys that could escape the store are refused by every operation.
fn escaping_keys_are_refused(store: &dyn Store) {
    for bad in ["../x", "/abs", "a/../b", ".hidden", "a//b", ""] {
        assert_eq!(
            store.put(bad, b"x").unwrap_err().kind(),
            ErrorKind::Usage,
            "{bad:?}"
        );
        assert!(store.get(bad).is_err());
        assert!(store.get_range(bad, 0, 0).is_err());
        assert!(store.delete(bad).is_err());
        assert!(store.size(bad).is_err());
    }
    assert!(store.create("../escape").is_err());
    assert!(store.clean_temporaries("../x/", Duration::ZERO).is_err());
}

/// Concurrent puts of distinct and of identical keys.
fn concurrent_puts(store: &dyn Store) {
    std::thread::scope(|s| {
        for t in 0..8u8 {
            s.spawn(move || {
                for i in 0..20u8 {
                    store.put(&format!("c/{t}-{i}"), &[t, i]).unwrap();
                    store.put("c/shared", b"same bytes").unwrap();
                }
            });
        }
    });
    assert_eq!(store.list("c/").unwrap().len(), 8 * 20 + 1);
    assert_eq!(store.get("c/7-19").unwrap(), [7, 19]);
    assert_eq!(store.get("c/shared").unwrap(), b"same bytes");
    clear(store, "c/");
}

/// A streamed object appears whole on `finish`, and not at all when abandoned.
fn streams_appear_whole_on_finish(store: &dyn Store) {
    use std::io::Write;
    let big = seeded(20 << 20, 1);
    let mut w = store.create("d/stream").unwrap();
    for piece in big.chunks(1 << 20) {
        w.write_all(piece).unwrap();
    }
    assert_eq!(
        store.get("d/stream").unwrap_err().kind(),
        ErrorKind::NotFound,
        "visible before finish"
    );
    assert!(keys(store, "d/").is_empty(), "listed before finish");
    w.finish().unwrap();
    assert!(store.get("d/stream").unwrap() == big);
    let mut small = store.create("d/small").unwrap();
    small.write_all(b"small").unwrap();
    small.finish().unwrap();
    assert_eq!(store.get("d/small").unwrap(), b"small");
    let mut abandoned = store.create("d/abandoned").unwrap();
    abandoned.write_all(b"partial").unwrap();
    drop(abandoned);
    assert_eq!(keys(store, "d/"), ["d/small", "d/stream"]);
    clear(store, "d/");
}

/// A writer copies ranges of a local file as if they had been written, or declines having
/// written nothing; `local_file` names a file holding exactly the object's bytes.
fn writers_copy_file_ranges(store: &dyn Store) {
    use std::io::Write;
    let big = seeded(20 << 20, 1);
    store.put("f/big", &big).unwrap();
    let local = store.local_file("f/big");
    if let Some(path) = &local {
        assert!(
            std::fs::read(path).unwrap() == big,
            "local_file is not the object"
        );
    }
    let spare = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(spare.path(), &big).unwrap();
    let mut w = store.create("f/copied").unwrap();
    w.write_all(b"head").unwrap();
    let mut want = b"head".to_vec();
    for (offset, len) in [(5u64, 3u64 << 20), (0, 1), ((20 << 20) - 7, 7), (77, 0)] {
        let src = local.as_deref().unwrap_or(spare.path());
        if w.copy_from_file(src, offset, len).unwrap() {
            want.extend_from_slice(&big[offset as usize..(offset + len) as usize]);
        } else {
            assert!(
                local.is_none(),
                "a local store's writer declined a local file"
            );
        }
    }
    w.write_all(b"tail").unwrap();
    want.extend_from_slice(b"tail");
    let beyond = w.copy_from_file(spare.path(), (20 << 20) - 3, 4);
    if local.is_some() {
        assert_eq!(beyond.unwrap_err().kind(), ErrorKind::Corrupt);
        drop(w);
        assert_eq!(
            store.get("f/copied").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        w = store.create("f/copied").unwrap();
        w.write_all(&want).unwrap();
    } else {
        assert!(!beyond.unwrap());
    }
    assert_eq!(
        store.get("f/copied").unwrap_err().kind(),
        ErrorKind::NotFound,
        "visible before finish"
    );
    w.finish().unwrap();
    assert!(store.get("f/copied").unwrap() == want);
    clear(store, "f/");
}

/// `write_copy` appends exactly the bytes it is given, whether the writer copies them inside
/// the server (S3 `UploadPartCopy`: runs of at least 5 MiB, topped up after a short part) or
/// sends them: contiguous pieces that join into a run, a run after a few written bytes, pieces
/// too short to copy, a source on another server, and last a source that does not exist (the
/// copy fails and the writer sends what it holds). A backend that copies sends less than it
/// appends.
fn writers_copy_object_ranges(store: &dyn Store) {
    use std::io::Write;
    const M: usize = 1 << 20;
    let big = seeded(24 * M, 2);
    store.put("o/src", &big).unwrap();
    let here = store.server_object("o/src", false);
    let src = here.clone().unwrap_or(ServerObject {
        server: "elsewhere".into(),
        bucket: "b".into(),
        key: "o/src".into(),
        version: None,
    });
    let elsewhere = ServerObject {
        server: "http://127.0.0.1:1".into(),
        ..src.clone()
    };
    let missing = ServerObject {
        key: format!("{}-missing", src.key),
        ..src.clone()
    };
    let before = store.request_stats();
    let mut w = store.create("o/copied").unwrap();
    let mut want = Vec::new();
    let mut copy = |w: &mut Box<dyn cairn_engine::store::ObjectWriter + '_>,
                    from: &ServerObject,
                    a: usize,
                    b: usize| {
        w.write_copy(from, a as u64, &big[a..b]).unwrap();
        want.extend_from_slice(&big[a..b]);
    };
    copy(&mut w, &src, 0, 3 * M);
    copy(&mut w, &src, 3 * M, 9 * M);
    w.write_all(b"gap").unwrap();
    copy(&mut w, &src, 0, 0);
    copy(&mut w, &src, 10 * M, 22 * M);
    copy(&mut w, &src, 1, 2);
    copy(&mut w, &elsewhere, 0, 6 * M);
    copy(&mut w, &src, 22 * M, 24 * M);
    // Bytes that are not in `missing`: a writer that tried the copy must send them.
    w.write_copy(&missing, 0, &big[4 * M..10 * M]).unwrap();
    w.write_all(b"end").unwrap();
    want.splice(9 * M..9 * M, b"gap".iter().copied());
    want.extend_from_slice(&big[4 * M..10 * M]);
    want.extend_from_slice(b"end");
    assert_eq!(
        store.get("o/copied").unwrap_err().kind(),
        ErrorKind::NotFound,
        "visible before finish"
    );
    w.finish().unwrap();
    drop(w);
    assert!(
        store.get("o/copied").unwrap() == want,
        "copied bytes differ"
    );
    if let (Some(_), Some(before), Some(after)) = (here, before, store.request_stats()) {
        // The 9 MiB run and the 7 MiB after the topped-up part were copied; the requests'
        // own bodies (the completion's list of parts) add a little.
        let sent = after.since(&before).bytes_written;
        assert!(
            sent <= (want.len() - 16 * M + (64 << 10)) as u64,
            "sent {sent} of {} bytes",
            want.len()
        );
    }
    // An object pinned and then rewritten: the copy fails, the bytes held are what is written.
    if let Some(pinned) = store.server_object("o/src", true) {
        assert!(pinned.version.is_some(), "pinned without a version");
        store.put("o/src", &seeded(24 * M, 3)).unwrap();
        let mut w = store.create("o/pinned").unwrap();
        w.write_copy(&pinned, 0, &big[..6 * M]).unwrap();
        w.finish().unwrap();
        drop(w);
        assert!(
            store.get("o/pinned").unwrap() == big[..6 * M],
            "copied from an object rewritten since it was pinned"
        );
    }
    clear(store, "o/");
}

/// What a killed writer leaves: a streamed object neither finished nor dropped (SIGKILL runs
/// no destructor), 20 MiB so that an S3 upload is under way. It stays invisible; cleaning with
/// a safe age removes nothing, cleaning never touches a visible object, and what one cleaning
/// removed is gone for the next.
fn killed_writers_stay_invisible(store: &dyn Store) {
    use std::io::Write;
    let mut w = store.create("e/killed").unwrap();
    w.write_all(&seeded(20 << 20, 1)).unwrap();
    std::mem::forget(w);
    store.put("e/kept", b"k").unwrap();
    assert_eq!(keys(store, "e/"), ["e/kept"]);
    assert_eq!(
        store
            .clean_temporaries("e/", Duration::from_secs(3600))
            .unwrap(),
        Cleaned::default(),
        "a young temporary object was removed"
    );
    let first = store.clean_temporaries("", Duration::ZERO).unwrap();
    assert!(first.objects <= 1, "{first:?}");
    assert_eq!(
        store.clean_temporaries("", Duration::ZERO).unwrap(),
        Cleaned::default()
    );
    assert_eq!(keys(store, "e/"), ["e/kept"]);
    assert_eq!(store.get("e/kept").unwrap(), b"k");
    assert_eq!(
        store.get("e/killed").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    clear(store, "e/");
}

/// Sets a file's mtime to a day ago.
fn a_day_old(path: &std::path::Path) {
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(86_400))
        .unwrap();
}

/// The local store's temporaries after the suite: the killed writer's file carries this
/// process's PID, so it is a live writer's and stays, until it predates this process (the
/// same PID reused by a later process, as in a new pod) — then it goes, with its folder.
fn clean_local_leftovers(store: &LocalStore) {
    let left = temporaries(store.root());
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(
        store.clean_temporaries("", Duration::ZERO).unwrap(),
        Cleaned::default(),
        "a live writer's temporary file was removed"
    );
    a_day_old(&left[0]);
    let c = store.clean_temporaries("", Duration::ZERO).unwrap();
    assert_eq!(c.objects, 1);
    // What reached the file: the direct-I/O writer still held its last buffer.
    assert!(c.bytes > 0 && c.bytes <= 20 << 20, "{c:?}");
    assert!(temporaries(store.root()).is_empty());
}

#[test]
fn memory_store_conforms() {
    conformance(&MemoryStore::new());
}

#[test]
fn local_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("s")).unwrap();
    conformance(&store);
    clean_local_leftovers(&store);
    // Deleting the last object of a "folder" leaves no empty directory behind.
    assert_eq!(std::fs::read_dir(dir.path().join("s")).unwrap().count(), 0);
    // Streamed objects use direct I/O where the filesystem has it; tmpfs is the usual one that
    // has not (or has it differently): the same promises hold there.
    if std::path::Path::new("/dev/shm").is_dir() {
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        let store = LocalStore::open(shm.path().join("s")).unwrap();
        conformance(&store);
        clean_local_leftovers(&store);
    }
}

#[test]
fn retry_and_fault_wrappers_conform_when_passing_through() {
    let retry = RetryStore::new(
        MemoryStore::new(),
        3,
        Duration::from_millis(1),
        Duration::from_millis(2),
    );
    conformance(&retry);
    conformance(&FaultStore::new(MemoryStore::new()));
}

#[test]
fn retry_wrapper_with_one_transient_fault_per_key_conforms() {
    let faulty = Arc::new(FaultStore::new(MemoryStore::new()));
    faulty.inject(None, "", Fault::FailOncePerKey);
    let retry = RetryStore::new(
        faulty.clone(),
        2,
        Duration::from_millis(1),
        Duration::from_millis(2),
    );
    conformance(&retry);
    assert!(faulty.calls(Op::Put) > 100);
}

/// A transient failure exactly at the publication of a streamed object is retried by the retry
/// wrapper without replaying the stream; a permanent one is not, and leaves nothing visible.
#[test]
fn retry_wrapper_retries_a_transient_failure_at_finish() {
    use std::io::Write;
    let faulty = Arc::new(FaultStore::new(MemoryStore::new()));
    faulty.inject(Some(Op::Put), "stream/", Fault::FailOncePerKey);
    faulty.inject(Some(Op::Put), "broken/", Fault::FailAlways(ErrorKind::Io));
    let retry = RetryStore::new(
        faulty.clone(),
        3,
        Duration::from_millis(1),
        Duration::from_millis(2),
    );
    let data = seeded(3 << 20, 5);
    let mut w = retry.create("stream/x").unwrap();
    w.write_all(&data).unwrap();
    assert_eq!(faulty.calls(Op::Put), 0, "published before finish");
    w.finish().unwrap();
    assert_eq!(
        faulty.calls(Op::Put),
        2,
        "the failed publication was not retried"
    );
    assert!(retry.get("stream/x").unwrap() == data);

    let mut w = retry.create("broken/y").unwrap();
    w.write_all(b"y").unwrap();
    assert_eq!(w.finish().unwrap_err().kind(), ErrorKind::Io);
    assert_eq!(faulty.calls(Op::Put), 3, "a permanent failure was retried");
    drop(w);
    assert_eq!(
        retry.get("broken/y").unwrap_err().kind(),
        ErrorKind::NotFound
    );
}

#[test]
fn local_store_hides_temporary_files_of_interrupted_puts() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    store.put("packs/ab/abc", b"whole").unwrap();
    std::fs::write(dir.path().join("packs/ab/.abd.tmp-99-0"), b"half").unwrap();
    let keys: Vec<String> = store
        .list("packs/")
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["packs/ab/abc"]);
}

/// A dead writer's temporary file (its PID belongs to no process) goes once older than the
/// safe age, a young one stays, and other hidden files are never touched.
#[test]
fn local_store_removes_dead_writers_temporaries_by_age() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    store.put("packs/ab/abc", b"whole").unwrap();
    let pid = crate::export::dead_pid();
    let old = dir.path().join(format!("packs/ab/.abd.tmp-{pid}-0"));
    let young = dir.path().join(format!("packs/ab/.abe.tmp-{pid}-1"));
    let other = dir.path().join("packs/ab/.keep-me");
    for p in [&old, &young, &other] {
        std::fs::write(p, b"half a pack").unwrap();
    }
    a_day_old(&old);
    a_day_old(&other);
    let c = store
        .clean_temporaries("", Duration::from_secs(3600))
        .unwrap();
    assert_eq!(
        c,
        Cleaned {
            objects: 1,
            bytes: 11
        }
    );
    assert!(!old.exists() && young.exists() && other.exists());
    assert_eq!(store.get("packs/ab/abc").unwrap(), b"whole");
}

#[test]
fn retry_gives_up_on_permanent_errors_and_not_found() {
    let faulty = Arc::new(FaultStore::new(MemoryStore::new()));
    let retry = Arc::new(RetryStore::new(
        faulty.clone(),
        5,
        Duration::from_millis(1),
        Duration::from_millis(2),
    ));
    assert_eq!(retry.get("nope").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(faulty.calls(Op::Get), 1, "NotFound must not be retried");
    faulty.inject(Some(Op::Put), "", Fault::FailAlways(ErrorKind::Transient));
    // Given up on after retries: `Unavailable`, which a wrapper around this one (a retry of a
    // whole stage) does not retry again, so budgets never multiply.
    let outer = RetryStore::new(retry, 5, Duration::from_millis(1), Duration::from_millis(2));
    let err = outer.put("k", b"v").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("did not answer for"), "{err}");
    assert_eq!(
        faulty.calls(Op::Put),
        5,
        "gives up after the configured attempts, once"
    );
}

#[test]
fn fault_store_damages_as_asked() {
    let faulty = FaultStore::new(MemoryStore::new());
    faulty.inject(Some(Op::Put), "trunc", Fault::Truncate);
    faulty.inject(Some(Op::Get), "flip", Fault::FlipBit);
    faulty.put("trunc", b"12345678").unwrap();
    assert_eq!(faulty.inner().get("trunc").unwrap(), b"1234");
    faulty.put("flip", b"\x00\x00\x00").unwrap();
    assert_eq!(faulty.get("flip").unwrap(), b"\x00\x01\x00");
    faulty.inject(
        Some(Op::Get),
        "slow",
        Fault::Delay(Duration::from_millis(30)),
    );
    faulty.put("slow", b"s").unwrap();
    let t = std::time::Instant::now();
    assert_eq!(faulty.get("slow").unwrap(), b"s");
    assert!(t.elapsed() >= Duration::from_millis(30));
}
