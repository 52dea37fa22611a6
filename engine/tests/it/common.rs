//! Fixtures: the awkward tree, a repository in a temporary directory, and a checker that
//! compares a snapshot with the tree it was taken from, byte for byte and field by field.

use std::collections::BTreeMap;
use std::ffi::{CString, OsStr};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cairn_engine::backup::{self, BackupOptions, BackupOutcome, Progress};
use cairn_engine::catalog::Catalog;
use cairn_engine::chunk::ChunkerParams;
use cairn_engine::repo::Repository;
use cairn_engine::store::{FaultStore, LocalStore, Store};
use cairn_engine::tree::{Entry, EntryKind};
use cairn_engine::{Id, Result, read};

pub use crate::mtime::set_mtime;
pub use crate::seeded::seeded;
use crate::survey::{DEFAULT_SKIP, Kind, survey};

/// A source tree, a store and a state directory in one temporary directory.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub src: PathBuf,
    pub state: PathBuf,
    pub repo: Repository,
}

impl Env {
    /// A fresh repository on a local directory store.
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(LocalStore::open(dir.path().join("store")).unwrap());
        Env::with_store_in(dir, store)
    }

    /// A fresh repository on a fault-injecting wrapper over a local directory store.
    pub fn faulty() -> (Env, Arc<FaultStore<LocalStore>>) {
        let dir = tempfile::tempdir().unwrap();
        let faulty = Arc::new(FaultStore::new(
            LocalStore::open(dir.path().join("store")).unwrap(),
        ));
        (Env::with_store_in(dir, faulty.clone()), faulty)
    }

    /// A fresh repository in `store`.
    pub fn with_store_in(dir: tempfile::TempDir, store: Arc<dyn Store>) -> Env {
        Env::with_packs_of(dir, store, 4 << 20)
    }

    /// A repository whose packs are `pack_size` bytes (the tests' 4 MiB keep packs many; the
    /// default of 16 MiB lets a file's frames form runs longer than an S3 part).
    pub fn with_packs_of(dir: tempfile::TempDir, store: Arc<dyn Store>, pack_size: u64) -> Env {
        let src = dir.path().join("src");
        fs::create_dir_all(&src).unwrap();
        let state = dir.path().join("state");
        let repo = Repository::init(store, ChunkerParams::default(), pack_size).unwrap();
        Env {
            dir,
            src,
            state,
            repo,
        }
    }

    pub fn opts(&self) -> BackupOptions {
        BackupOptions {
            source_root: self.src.clone(),
            folders: vec!["notetaking".into(), "images".into(), "backup".into()],
            // A test writes only the folders it needs; the others are absent, not failed.
            optional_folders: vec!["notetaking".into(), "images".into(), "backup".into()],
            excludes: vec![".DS_Store".into(), "Thumbs.db".into()],
            one_file_system: true,
            ignore_inode: false,
            ignore_ctime: false,
            compression: 3,
            time: jiff::Timestamp::now(),
            date: "2026-11-29".into(),
            hook: None,
            lease: None,
        }
    }

    /// Opens the catalog for this repository and runs one backup.
    pub fn backup_with(&self, opts: &BackupOptions) -> Result<BackupOutcome> {
        let (cat, sync) = Catalog::open_for(&self.state, &self.repo)?;
        backup::backup(&self.repo, &cat, sync, opts, &Progress::default())
    }

    pub fn backup(&self) -> BackupOutcome {
        self.backup_with(&self.opts()).unwrap()
    }

    pub fn catalog(&self) -> Catalog {
        Catalog::open_for(&self.state, &self.repo).unwrap().0
    }
}

/// Export options for the archive of `date`, at the default level, not forced.
pub fn day_opts(date: &str) -> cairn_engine::export::ExportOptions {
    cairn_engine::export::ExportOptions {
        date: date.into(),
        level: 3,
        force: false,
        hook: None,
    }
}

/// A whole restore into `target`: nothing overwritten, every file verified.
pub fn restore_opts(target: &Path) -> cairn_engine::restore::RestoreOptions {
    cairn_engine::restore::RestoreOptions {
        target: target.to_path_buf(),
        paths: vec![],
        overwrite: cairn_engine::restore::Overwrite::Never,
        verify: true,
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

pub fn mkfifo(path: &Path) {
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(cstr(path).as_ptr(), 0o644) }, 0);
}

pub fn write(path: &Path, data: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

/// Builds the tree of awkward cases that real shares contain, below `root`.
pub fn awkward_tree(root: &Path) {
    let n = root.join("notetaking");
    write(&n.join("plain.txt"), b"hello, notes\n");
    write(&n.join("empty.txt"), b"");
    fs::create_dir_all(n.join("empty-dir")).unwrap();
    write(
        &n.join(OsStr::from_bytes(b"latin1-\xe9t\xe9.txt")),
        b"not utf-8 name",
    );
    write(&n.join(OsStr::from_bytes(b"\xff\xfe raw")), b"raw bytes");
    write(
        &n.join(format!("{}.md", "L".repeat(252))),
        b"a 255-byte name",
    );
    write(&n.join("café ☕ notes.md"), "unicode ✓".as_bytes());
    write(&n.join("new\nline name"), b"newline in name");
    let mut deep = n.join("deep");
    for i in 0..30 {
        deep = deep.join(format!("level-{i:02}-{}", "x".repeat(60)));
    }
    write(&deep.join("leaf.txt"), b"deep leaf");
    write(
        &n.join("text.md"),
        &b"# Notes\nsome words that compress well.\n".repeat(40_000),
    );
    write(&n.join(".DS_Store"), b"finder junk");

    let i = root.join("images");
    write(&i.join("photo.jpg"), &seeded(3 << 20, 1));
    write(&i.join("album/big.raw"), &seeded(9 << 20, 2));
    write(&i.join("album/Thumbs.db"), b"windows junk");

    let b = root.join("backup");
    fs::create_dir_all(&b).unwrap();
    let sparse = fs::File::create(b.join("disk.img")).unwrap();
    sparse.set_len(48 << 20).unwrap();
    drop(sparse);
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(b.join("disk.img"))
            .unwrap();
        f.seek(SeekFrom::Start(10 << 20)).unwrap();
        f.write_all(&seeded(1 << 20, 3)).unwrap();
    }
    symlink("does/not/exist", b.join("dangling")).unwrap();
    symlink("/etc/passwd", b.join("absolute")).unwrap();
    symlink("../../../../etc", b.join("escaping")).unwrap();
    symlink(OsStr::from_bytes(b"target-\xff"), b.join("raw-target")).unwrap();
    write(&b.join("hard-a"), b"one inode, two names");
    fs::create_dir_all(b.join("sub")).unwrap();
    fs::hard_link(b.join("hard-a"), b.join("sub/hard-b")).unwrap();
    mkfifo(&b.join("fifo"));
    drop(std::os::unix::net::UnixListener::bind(b.join("socket")).unwrap());
    write(&b.join("modes/setuid"), b"#!/bin/sh\n");
    fs::set_permissions(b.join("modes/setuid"), fs::Permissions::from_mode(0o4755)).unwrap();
    write(&b.join("modes/private"), b"secret");
    fs::set_permissions(b.join("modes/private"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir_all(b.join("modes/sticky")).unwrap();
    fs::set_permissions(b.join("modes/sticky"), fs::Permissions::from_mode(0o1777)).unwrap();
    write(&b.join("times/old"), b"1960");
    set_mtime(&b.join("times/old"), -315_619_200, 0);
    write(&b.join("times/future"), b"2200");
    set_mtime(&b.join("times/future"), 7_258_118_400, 999_999_999);
    write(&b.join("times/nanos"), b"ns");
    set_mtime(&b.join("times/nanos"), 1_700_000_000, 123_456_789);
    set_mtime(&b.join("dangling"), 1_600_000_000, 42);
    set_mtime(&b.join("times"), 1_234_567_890, 5);

    // A sibling that is not selected: it must never be read.
    write(&root.join("private/secret.txt"), b"not selected");
}

/// The snapshot's kind for a surveyed entry.
fn entry_kind(k: Kind) -> EntryKind {
    match k {
        Kind::Dir => EntryKind::Dir,
        Kind::File => EntryKind::File,
        Kind::Symlink => EntryKind::Symlink,
        Kind::Fifo => EntryKind::Fifo,
        Kind::Socket => EntryKind::Socket,
        Kind::Chardev => EntryKind::Chardev,
        Kind::Blockdev => EntryKind::Blockdev,
    }
}

/// All entries of a snapshot, by path.
pub fn snapshot_entries(env: &Env, root: &Id) -> BTreeMap<Vec<u8>, Entry> {
    let cat = env.catalog();
    let mut out = BTreeMap::new();
    read::walk_tree(&env.repo, &cat, root, &mut |p, e| {
        out.insert(p.to_vec(), e.clone());
        Ok(())
    })
    .unwrap();
    out
}

/// Reads a file's content back from the repository.
pub fn content(env: &Env, e: &Entry) -> Vec<u8> {
    let mut v = Vec::new();
    read::read_file_content(&env.repo, &env.catalog(), e, &mut v).unwrap();
    v
}

/// Asserts that the snapshot `root` holds exactly the selected folders of `src` (minus the
/// default excludes), with equal metadata, equal content and the same hardlink groups.
pub fn assert_snapshot_matches(env: &Env, root: &Id, src: &Path, folders: &[&str]) {
    let mut expect = BTreeMap::new();
    for f in folders {
        expect.append(&mut survey(src, f.as_bytes(), &DEFAULT_SKIP));
    }
    let got = snapshot_entries(env, root);
    let expect_paths: Vec<_> = expect
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    let got_paths: Vec<_> = got
        .keys()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    assert_eq!(
        got_paths, expect_paths,
        "the snapshot holds other paths than the source"
    );
    let cat = env.catalog();
    let mut groups: BTreeMap<u64, u64> = BTreeMap::new(); // source inode -> snapshot hardlink id
    for (path, x) in &expect {
        let e = &got[path];
        let p = String::from_utf8_lossy(path);
        assert_eq!(e.kind, entry_kind(x.kind), "{p}: kind");
        assert_eq!(e.mode, x.mode, "{p}: mode");
        assert_eq!((e.uid, e.gid), (x.uid, x.gid), "{p}: owner");
        if x.kind != Kind::Dir {
            // A directory's mtime changes when cairn's own tests add to it; files' must not.
            assert_eq!((e.mtime, e.mtime_ns), x.mtime, "{p}: mtime");
        }
        assert_eq!(e.size, x.size, "{p}: size");
        assert_eq!(
            e.target.as_ref().map(|t| t.0.clone()),
            x.target,
            "{p}: symlink target"
        );
        if x.kind == Kind::File {
            let mut data = Vec::new();
            read::read_file_content(&env.repo, &cat, e, &mut data).unwrap();
            assert!(data == x.content(), "{p}: content differs");
            if x.nlink > 1 {
                let id = e
                    .hardlink
                    .unwrap_or_else(|| panic!("{p}: hardlink identity missing"));
                assert_eq!(
                    *groups.entry(x.ino).or_insert(id),
                    id,
                    "{p}: hardlink group"
                );
            } else {
                assert_eq!(e.hardlink, None, "{p}: not a hardlink");
            }
        }
    }
}

/// A directory entry naming the tree `tree`, for crafted snapshots.
pub fn dir_entry(name: &[u8], tree: Id) -> Entry {
    Entry {
        name: cairn_engine::tree::RawBytes(name.to_vec()),
        kind: EntryKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: 1_700_000_000,
        mtime_ns: 0,
        size: 0,
        chunks: vec![],
        tree: Some(tree),
        target: None,
        hardlink: None,
        rdev: None,
    }
}
