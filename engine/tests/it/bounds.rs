//! Resource bounds on crafted or damaged input (issue 10, items 5–8): decoded sizes bounded by
//! the format and checked before allocating, walks that neither overflow the stack nor follow a
//! path beyond PATH_MAX, archive paths bounded, and a bounded config file.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use cairn_engine::catalog::Catalog;
use cairn_engine::check::{self, ReadData};
use cairn_engine::codec;
use cairn_engine::config::Config;
use cairn_engine::export::{self, ExportOptions};
use cairn_engine::pack::{self, BlobKind, PackBuilder, PackEntry};
use cairn_engine::repo::pack_key;
use cairn_engine::restore::{self, Overwrite, RestoreOptions};
use cairn_engine::snapshot::{Snapshot, Summary};
use cairn_engine::store::LocalStore;
use cairn_engine::tree::Tree;
use cairn_engine::{ErrorKind, Id, query};

use crate::alloc::peak_during;
use crate::common::*;

/// An error message fit for a terminal: one line, and short even when it names a huge path.
fn assert_one_short_line(msg: &str) {
    assert!(!msg.contains('\n'), "more than one line: {msg}");
    assert!(msg.len() < 400, "{} bytes long: {msg:.400}", msg.len());
}

// ---- item 5: decoded sizes ------------------------------------------------------------------

fn one_blob_pack(kind: BlobKind, data: &[u8], claimed: usize) -> (Id, Vec<u8>, Vec<PackEntry>) {
    let mut b = PackBuilder::default();
    b.add(
        kind,
        Id::of(data),
        &codec::encode(data, 3).unwrap(),
        claimed,
    );
    b.finish()
}

#[test]
fn a_pack_index_claiming_more_than_a_blob_may_hold_is_corrupt() {
    // 4 GiB - 1 for a 5-byte frame; 17 MiB for a chunk (FastCDC's largest is 16 MiB); 65 MiB
    // for a tree (the format's limit is 64 MiB).
    for (kind, claimed) in [
        (BlobKind::Data, u32::MAX as usize),
        (BlobKind::Data, 17 << 20),
        (BlobKind::Tree, 65 << 20),
    ] {
        let (_, bytes, _) = one_blob_pack(kind, b"hello", claimed);
        let (res, peak) = peak_during(|| pack::parse_trailer(&bytes, bytes.len() as u64));
        let err = res.expect_err(&format!("{kind:?} claiming {claimed} bytes"));
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert_one_short_line(&err.to_string());
        assert!(peak < 1 << 20, "parsing allocated {peak} bytes");
    }
    // The catalog does not index such a pack: nothing can then be read through it.
    let env = Env::new();
    let (pid, bytes, _) = one_blob_pack(BlobKind::Data, b"hello", u32::MAX as usize);
    env.repo.store().put(&pack_key(&pid), &bytes).unwrap();
    let (cat, sync) = Catalog::open_for(&env.state, &env.repo).unwrap();
    assert_eq!(sync.packs_unreadable, vec![pid.to_hex()]);
    assert!(
        cat.locate(BlobKind::Data, &Id::of(b"hello"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn a_frame_is_checked_against_its_header_before_allocating() {
    let data = b"hello";
    let frame = codec::encode(data, 3).unwrap();
    // A length within the bounds, but not what the frame header says.
    let (res, peak) = peak_during(|| codec::decode(&frame, 16 << 20));
    assert!(res.is_err());
    assert!(
        peak < 1 << 20,
        "decode allocated {peak} bytes before failing"
    );
    // A length beyond any blob.
    let (res, peak) = peak_during(|| codec::decode(&frame, u32::MAX as usize));
    assert!(res.is_err());
    assert!(
        peak < 1 << 20,
        "decode allocated {peak} bytes before failing"
    );
    // An index entry that lies, read through the blob opener (check, restore, export).
    for kind in [BlobKind::Data, BlobKind::Tree] {
        let e = PackEntry {
            kind,
            id: Id::of(data),
            offset: 0,
            length: frame.len() as u32,
            raw_length: u32::MAX,
        };
        let (res, peak) = peak_during(|| pack::open_blob(&e, &frame));
        let err = res.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(
            peak < 1 << 20,
            "open_blob allocated {peak} bytes before failing"
        );
    }
    assert_eq!(codec::decode(&frame, data.len()).unwrap(), data);
}

// ---- item 6: deep trees -------------------------------------------------------------------

/// A snapshot whose folder `deep` holds a chain of `levels` directories named `d`, each a tree
/// of its own, as a crafted repository could hold: paths reach 2 × `levels` bytes.
pub(crate) fn deep_chain(levels: usize) -> (Env, Id, Snapshot) {
    let env = Env::new();
    let mut pb = PackBuilder::default();
    let mut below = add_tree(&mut pb, &Tree::default());
    for _ in 0..levels {
        below = add_tree(
            &mut pb,
            &Tree {
                entries: vec![dir_entry(b"d", below)],
            },
        );
    }
    let root = add_tree(
        &mut pb,
        &Tree {
            entries: vec![dir_entry(b"deep", below)],
        },
    );
    let (sid, snap) = crafted_snapshot(&env, vec![pb], "deep", root);
    (env, sid, snap)
}

/// Adds tree `t` to the pack being built; its id.
pub(crate) fn add_tree(pb: &mut PackBuilder, t: &Tree) -> Id {
    let (id, bytes) = t.encode();
    pb.add(
        BlobKind::Tree,
        id,
        &codec::encode(&bytes, 3).unwrap(),
        bytes.len(),
    );
    id
}

/// Stores the packs and a snapshot of `folder` with root tree `root`, as a crafted repository
/// could hold them (the catalog learns the packs when it is opened).
pub(crate) fn crafted_snapshot(
    env: &Env,
    packs: Vec<PackBuilder>,
    folder: &str,
    root: Id,
) -> (Id, Snapshot) {
    for pb in packs {
        let (pid, bytes, _) = pb.finish();
        env.repo.store().put(&pack_key(&pid), &bytes).unwrap();
    }
    let snap = Snapshot {
        version: 1,
        time: "2026-11-29T00:00:00Z".into(),
        date: "2026-11-29".into(),
        source: "/shared".into(),
        folders: vec![folder.into()],
        root,
        summary: Summary::default(),
        warnings: vec![],
        skipped: vec![],
    };
    let sid = env.repo.put_snapshot(&snap).unwrap();
    (sid, snap)
}

/// The error of a walk that met the chain: names the path (shortened) and the limit.
fn assert_names_long_path(msg: &str) {
    assert_one_short_line(msg);
    assert!(msg.contains("deep/d/d/d"), "path not named: {msg}");
    assert!(msg.contains("4096"), "limit not named: {msg}");
}

#[test]
fn deep_chain_ls_and_find_stop_with_one_line() {
    let (env, _, snap) = deep_chain(5000);
    let cat = env.catalog();
    let mut seen = 0usize;
    let err = cairn_engine::read::walk_tree(&env.repo, &cat, &snap.root, &mut |p, _| {
        assert!(p.len() <= 4096);
        seen += 1;
        Ok(())
    })
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert_names_long_path(&err.to_string());
    assert!(seen > 2000, "stopped after {seen} entries");
    let err = query::find(&env.repo, &cat, "nothing-matches").unwrap_err();
    assert_names_long_path(&err.to_string());
}

#[test]
fn deep_chain_diff_stops_with_one_line() {
    let (env, _, snap) = deep_chain(5000);
    let cat = env.catalog();
    let (empty, bytes) = Tree::default().encode();
    let mut pb = PackBuilder::default();
    pb.add(
        BlobKind::Tree,
        empty,
        &codec::encode(&bytes, 3).unwrap(),
        bytes.len(),
    );
    let (pid, pbytes, entries) = pb.finish();
    env.repo.store().put(&pack_key(&pid), &pbytes).unwrap();
    cat.add_pack(&pid, pbytes.len() as u64, &entries).unwrap();
    for (a, b) in [(&empty, &snap.root), (&snap.root, &empty)] {
        let err = query::diff(&env.repo, &cat, a, b).unwrap_err();
        assert_names_long_path(&err.to_string());
    }
}

#[test]
fn deep_chain_check_reports_a_problem() {
    let (env, _, _) = deep_chain(5000);
    let (cat, sync) = Catalog::open_for(&env.state, &env.repo).unwrap();
    let report = check::check(&env.repo, &cat, &sync, ReadData::All, false).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let p = &report.problems[0];
    assert_eq!(p.kind.as_str(), "corrupt_tree");
    assert_names_long_path(&p.detail);
    assert!(report.trees > 2000);
}

/// The error of exporting the crafted snapshot `sid` as 2026-11-29.
fn export_fails(env: &Env, sid: &Id, snap: &Snapshot) -> cairn_engine::Error {
    let cat = env.catalog();
    let exports = LocalStore::open(env.dir.path().join("exports")).unwrap();
    let opts = ExportOptions {
        date: "2026-11-29".into(),
        level: 3,
        force: false,
        hook: None,
    };
    export::export(&env.repo, &cat, &exports, (sid, snap), &opts).unwrap_err()
}

#[test]
fn deep_chain_export_stops_with_one_line() {
    let (env, sid, snap) = deep_chain(5000);
    let err = export_fails(&env, &sid, &snap);
    assert_names_long_path(&err.to_string());
}

#[test]
fn deep_chain_restore_stops_with_one_line() {
    let (env, _, snap) = deep_chain(5000);
    let cat = env.catalog();
    let target = env.dir.path().join("t");
    let err = restore::restore(
        &env.repo,
        &cat,
        &snap,
        &RestoreOptions {
            target: target.clone(),
            paths: vec![],
            overwrite: Overwrite::Never,
            verify: false,
        },
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert_names_long_path(&err.to_string());
    // The plan is made from the trees alone and refused before anything is written.
    assert!(
        !target.join("deep").exists(),
        "a refused plan made directories"
    );
    rm_rf(&target);
}

/// Removes a tree of any depth (`rm` walks it with descriptors; a `TempDir`'s removal needs one
/// descriptor per level, more than the default limit of open files).
fn rm_rf(path: &Path) {
    let ok = std::process::Command::new("rm")
        .arg("-rf")
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "rm -rf {}", path.display());
}

fn c(p: &[u8]) -> CString {
    CString::new(p).unwrap()
}

/// Opens `levels` nested `d` directories below `base` one at a time, through descriptors
/// (the full path is longer than PATH_MAX), calling `step` with each parent descriptor.
fn descend(base: &Path, levels: usize, mut step: impl FnMut(i32)) -> i32 {
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: valid C strings; every descriptor is closed once its child is open.
    unsafe {
        let mut fd = libc::open(c(base.as_os_str().as_bytes()).as_ptr(), flags);
        assert!(fd >= 0);
        for _ in 0..levels {
            step(fd);
            let next = libc::openat(fd, c(b"d").as_ptr(), flags);
            assert!(next >= 0, "{}", std::io::Error::last_os_error());
            libc::close(fd);
            fd = next;
        }
        fd
    }
}

fn make_chain(base: &Path, levels: usize) {
    let fd = descend(base, levels, |fd| {
        // SAFETY: valid descriptor and C string.
        assert_eq!(unsafe { libc::mkdirat(fd, c(b"d").as_ptr(), 0o755) }, 0);
    });
    // SAFETY: a descriptor we own.
    unsafe { libc::close(fd) };
}

#[test]
fn a_source_tree_5000_directories_deep_backs_up_with_a_warning() {
    let env = Env::new();
    let deep = env.src.join("deep");
    fs::create_dir(&deep).unwrap();
    make_chain(&deep, 5000);
    let mut opts = env.opts();
    opts.folders = vec!["deep".into()];
    let outcome = env.backup_with(&opts);
    rm_rf(&deep);
    let outcome = outcome.unwrap();
    let w = &outcome.snapshot.warnings;
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].kind.as_str(), "too_long");
    assert!(w[0].path.starts_with("deep/d/d/d"));
    assert_one_short_line(&w[0].message);
    assert!(w[0].message.contains("4096"), "{}", w[0].message);
    // Everything up to the limit is in the snapshot.
    let mut deepest = 0;
    cairn_engine::read::walk_tree(
        &env.repo,
        &env.catalog(),
        &outcome.snapshot.root,
        &mut |p, _| {
            deepest = deepest.max(p.len());
            Ok(())
        },
    )
    .unwrap();
    assert!(deepest > 3000 && deepest <= 4096, "deepest path {deepest}");
}

// ---- item 7: archive paths ----------------------------------------------------------------

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// A tar.zst of one empty file whose pax `path` is `path`.
fn archive_with_pax_path(path: &[u8]) -> Vec<u8> {
    let pax = pax_record("path", path);
    let mut tar = Vec::new();
    let mut h = tar::Header::new_ustar();
    h.as_ustar_mut().unwrap().name[..9].copy_from_slice(b"PaxHeader");
    h.set_size(pax.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_cksum();
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(&pax);
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    let mut h = tar::Header::new_ustar();
    h.as_ustar_mut().unwrap().name[..4].copy_from_slice(b"file");
    h.set_size(0);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    tar.extend_from_slice(h.as_bytes());
    tar.extend_from_slice(&[0; 1024]);
    zstd::encode_all(&tar[..], 19).unwrap()
}

#[test]
fn an_archive_path_longer_than_path_max_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // 3,000 components: 6,000 bytes. Each component is fine; the whole is not.
    let path = b"a/".repeat(3000);
    let archive = archive_with_pax_path(&path[..path.len() - 1]);
    assert!(archive.len() < 2048, "{} bytes", archive.len());
    let target = dir.path().join("t");
    let err = restore::restore_archive(
        &archive[..],
        &RestoreOptions {
            target: target.clone(),
            paths: vec![],
            overwrite: Overwrite::Always,
            verify: false,
        },
    )
    .unwrap_err();
    let msg = err.to_string();
    assert_one_short_line(&msg);
    assert!(msg.contains("a/a/a/a"), "entry not named: {msg}");
    assert!(msg.contains("4096"), "limit not named: {msg}");
    assert_eq!(
        fs::read_dir(&target).unwrap().count(),
        0,
        "created directories"
    );
    // Just below the limit is fine.
    let ok = b"a/".repeat(2047);
    let archive = archive_with_pax_path(&ok[..ok.len() - 1]);
    let target = dir.path().join("ok");
    restore::restore_archive(
        &archive[..],
        &RestoreOptions {
            target: target.clone(),
            paths: vec![],
            overwrite: Overwrite::Always,
            verify: false,
        },
    )
    .unwrap();
    rm_rf(&target);
}

// ---- item 8: config size ------------------------------------------------------------------

#[test]
fn a_config_file_larger_than_1_mib_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    let mut text = b"[source]\nroot = \"/shared\"\nfolders = [\"a\"]\n".to_vec();
    while text.len() <= 1 << 20 {
        text.extend_from_slice(b"# a comment line, repeated until the file passes 1 MiB\n");
    }
    fs::write(&big, &text).unwrap();
    for path in [big.as_path(), Path::new("/dev/zero")] {
        let (res, peak) = peak_during(|| Config::load(Some(path), &[], &[]));
        let err = res.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{err}");
        let msg = err.to_string();
        assert_one_short_line(&msg);
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("1 MiB"), "{msg}");
        assert!(peak < 8 << 20, "reading the config allocated {peak} bytes");
    }
}

/// A crafted tree names one 1 MiB chunk 4,096 times for a file it says holds 10 bytes: the
/// export sizes the file's group by its size, and refuses the chunks' claimed 4 GiB with one line
/// before it reads any of them (it would have decoded them all, then found the group too long).
#[test]
fn a_small_file_naming_a_large_chunk_many_times_is_refused_before_reading() {
    let env = Env::new();
    let data = seeded(1 << 20, 5);
    let chunk = Id::of(&data);
    let mut pb = PackBuilder::default();
    pb.add(
        BlobKind::Data,
        chunk,
        &codec::encode(&data, 3).unwrap(),
        data.len(),
    );
    let mut file = dir_entry(b"note.md", chunk);
    (file.kind, file.tree, file.size, file.mode) =
        (cairn_engine::tree::EntryKind::File, None, 10, 0o644);
    file.chunks = vec![chunk; 4096];
    let mut trees = PackBuilder::default();
    let folder = add_tree(
        &mut trees,
        &Tree {
            entries: vec![file],
        },
    );
    let root = add_tree(
        &mut trees,
        &Tree {
            entries: vec![dir_entry(b"notetaking", folder)],
        },
    );
    let (sid, snap) = crafted_snapshot(&env, vec![pb, trees], "notetaking", root);
    let err = export_fails(&env, &sid, &snap);
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert_one_short_line(&err.to_string());
    // "come to": the check made when the chunks are located, before any is read (the check
    // after reading says "came to").
    assert!(err.to_string().contains("chunks come to 4294"), "{err}");
}
