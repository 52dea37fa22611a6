//! Backup: walk the selected folders in parallel, reuse what the files cache vouches for, chunk
//! and store what changed, build trees bottom-up, and commit a snapshot.
//!
//! Problems with single entries (unreadable, vanished, changed while read) become warnings in
//! the snapshot and never abort the run; problems with the store or the catalog abort it before
//! the snapshot is written, so nothing half-done is ever committed.

pub mod scan;

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind as IoKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::backup::scan::{Excludes, Stat, list_dir, lstat};
use crate::catalog::{Catalog, FileRecord, SyncReport};
use crate::error::{Error, ErrorKind, Result};
use crate::format::chunk::Chunker;
use crate::format::codec;
use crate::format::pack::BlobKind;
use crate::format::snapshot::{
    SNAPSHOT_VERSION, SkipReason, Skipped, Snapshot, Summary, Warning, WarningKind,
};
use crate::format::tree::{
    Entry, EntryKind, MAX_PATH_LEN, MAX_TREE_LEN, RawBytes, Tree, valid_name,
};
use crate::id::Id;
use crate::read::join_rel;
use crate::repo::Repository;
use crate::repo::packer::Packer;
use crate::sparse::SparseReader;

/// What to back up and how.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The share, e.g. `/shared`.
    pub source_root: PathBuf,
    /// Folders below the root to back up; nothing else under the root is read.
    pub folders: Vec<String>,
    /// Folders of `folders` that may be absent (see [`SourceConfig`](crate::config::SourceConfig)).
    pub optional_folders: Vec<String>,
    /// Exclude patterns (see [`Excludes`]).
    pub excludes: Vec<String>,
    /// Do not descend into directories on another filesystem than their folder.
    pub one_file_system: bool,
    /// Do not compare inode numbers in the files cache (filesystems without stable inodes).
    pub ignore_inode: bool,
    /// Do not compare ctimes in the files cache.
    pub ignore_ctime: bool,
    /// zstd level for chunks and trees.
    pub compression: i32,
    /// The snapshot's time.
    pub time: jiff::Timestamp,
    /// The day the run belongs to (`YYYY-MM-DD`).
    pub date: String,
    /// Called at fixed points of reading a file; lets tests change or remove a file at the
    /// moment that matters, which no timing-based test can do reliably.
    pub hook: Option<Hook>,
    /// The repository lease the backup runs under: confirmed right before the snapshot is
    /// written, so that a backup whose lease was taken over (a gc may have deleted what it
    /// deduplicated against) commits nothing.
    pub lease: Option<std::sync::Arc<crate::repo::lease::Lease<'static>>>,
}

/// Where in a backup a [`Hook`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    /// After the file was seen in its directory and before it is opened.
    BeforeOpen,
    /// After its content was read and before its metadata is checked again.
    AfterRead,
    /// A data pack was stored and indexed (the path is empty).
    PackStored,
    /// Every pack is stored; the snapshot is not written yet (the path is empty).
    BeforeCommit,
    /// The packs were checked and the lease confirmed; the snapshot is written next (the path
    /// is empty).
    Confirmed,
}

impl HookPoint {
    /// Every point, for callers that name them.
    pub const ALL: [HookPoint; 5] = [
        HookPoint::BeforeOpen,
        HookPoint::AfterRead,
        HookPoint::PackStored,
        HookPoint::BeforeCommit,
        HookPoint::Confirmed,
    ];

    /// The point's name in kebab case (`pack-stored`).
    pub fn name(self) -> &'static str {
        match self {
            HookPoint::BeforeOpen => "before-open",
            HookPoint::AfterRead => "after-read",
            HookPoint::PackStored => "pack-stored",
            HookPoint::BeforeCommit => "before-commit",
            HookPoint::Confirmed => "confirmed",
        }
    }
}

/// A callback for [`BackupOptions::hook`].
#[derive(Clone)]
pub struct Hook(pub std::sync::Arc<HookFn>);

/// The function inside a [`Hook`].
pub type HookFn = dyn Fn(HookPoint, &Path) + Send + Sync;

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// Live counters, readable from another thread for progress display.
#[derive(Debug, Default)]
pub struct Progress {
    /// Entries of every kind finished.
    pub entries: AtomicU64,
    /// Files finished.
    pub files: AtomicU64,
    /// Bytes of files finished (read or reused).
    pub bytes: AtomicU64,
    /// Files whose content was read.
    pub files_read: AtomicU64,
    /// Bytes of content read.
    pub bytes_read: AtomicU64,
    /// New chunks.
    pub new_chunks: AtomicU64,
    /// Plaintext bytes of new chunks.
    pub new_bytes: AtomicU64,
    dirs: AtomicU64,
    symlinks: AtomicU64,
    specials: AtomicU64,
    new_trees: AtomicU64,
}

/// What a backup did.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    /// The new snapshot's id.
    pub id: Id,
    /// The snapshot as committed.
    pub snapshot: Snapshot,
    /// What the catalog had to do to match the store first.
    pub sync: SyncReport,
}

struct Ctx<'a> {
    opts: &'a BackupOptions,
    catalog: &'a Catalog,
    data: Packer<'a>,
    trees: Packer<'a>,
    records: DeferredRecords<'a>,
    excludes: Excludes,
    chunker: crate::format::chunk::ChunkerParams,
    progress: &'a Progress,
    warnings: Mutex<Vec<Warning>>,
    skipped: Mutex<Vec<Skipped>>,
    /// Length and id of the chunk that runs of zeros are cut into.
    zero_chunk: (usize, Id),
}

/// The filesystem a directory lies on: its device number, which is only compared within one
/// run, and a key derived from where that filesystem was entered, which is stable across runs.
///
/// Hardlink identities must tell apart inodes of different filesystems (two mounts below one
/// folder both have an inode 2) while trees stay free of device numbers, which change from one
/// pod to the next. Inode numbers of the folder's own filesystem are used as they are; those of
/// a filesystem mounted below it are mixed with the path of its mount point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fs {
    dev: u64,
    /// 0 for the filesystem of the top-level folder; otherwise from the mount point's path.
    key: u64,
}

impl Fs {
    fn root(dev: u64) -> Fs {
        Fs { dev, key: 0 }
    }

    /// The filesystem of an entry at `rel` whose device is `dev`: this one, or one mounted at
    /// `rel` (a directory mount, or a file bind-mounted over a name).
    fn enter(self, dev: u64, rel: &[u8]) -> Fs {
        if dev == self.dev {
            return self;
        }
        let mut h = blake3::Hasher::new();
        h.update(b"cairn hardlink filesystem\0");
        h.update(rel);
        let key = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8"));
        Fs { dev, key: key | 1 }
    }

    /// The hardlink identity of inode `ino` on this filesystem.
    fn hardlink_id(self, ino: u64) -> u64 {
        if self.key == 0 {
            return ino;
        }
        let mut h = blake3::Hasher::new();
        h.update(&self.key.to_le_bytes());
        h.update(&ino.to_le_bytes());
        u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8"))
    }
}

/// Right before the commit: no pack this backup relies on (every pack its catalog knows) is
/// condemned, or was deleted by a gc.
///
/// The catalog forgot the condemned packs when it synced, so a known pack that a marker names
/// was condemned since (by a gc that listed the writers before this backup took its lease), or
/// is one this backup stored again under the name of a condemned pack (packing is
/// deterministic): it is taken back with a `.kept` object, which a key that may not delete can
/// write. A known pack that is gone was deleted by a gc that judged this backup's lease lapsed:
/// the backup fails and commits nothing; the next one stores that data again.
fn secure_packs(repo: &Repository, catalog: &Catalog) -> Result<()> {
    let store = repo.store().as_ref();
    let known = catalog.pack_sizes()?;
    // A gc deletes only packs whose marker is in force, and the marker outlives the pack: the
    // condemned packs the catalog knows are the only ones to look for.
    let mut missing = Vec::new();
    for pack in crate::repo::condemn::list(store)?
        .keys()
        .filter(|p| known.contains_key(p))
    {
        match store.size(&crate::repo::pack_key(pack)) {
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => missing.push(*pack),
            Err(e) => return Err(e),
            Ok(_) => {
                tracing::info!(pack = %pack, "a pack this backup relies on is condemned; taking it back");
                crate::repo::condemn::keep(store, pack)?;
            }
        }
    }
    missing.sort();
    if let Some(first) = missing.first() {
        return Err(Error::new(
            crate::error::ErrorKind::Conflict,
            format!(
                "{} pack(s) this backup relies on are gone from the store (pack {} among them): \
                 a gc deleted them while this backup's lease had lapsed; nothing was committed, \
                 and the next backup stores their data again",
                missing.len(),
                first.short()
            ),
        ));
    }
    Ok(())
}

/// The error of a backup whose lease was lost while its snapshot `id` was written: the snapshot
/// is deleted, or, with a key that may not delete, named for `cairn check`.
fn withdraw(repo: &Repository, id: &Id, lost: Error) -> Error {
    let what = match repo.delete_snapshot(id) {
        Ok(()) => "it was withdrawn and nothing was committed".to_string(),
        Err(e) => format!(
            "it stays in the store, as this key may not delete it ({e}): cairn check names what \
             it misses, and cairn forget {} (with a key that may delete) removes it",
            id.short()
        ),
    };
    Error::new(
        lost.kind(),
        format!(
            "the lease was lost while snapshot {} was written ({lost}), so a gc may have deleted \
             packs it needs; {what}",
            id.short()
        ),
    )
}

fn display(rel: &[u8]) -> String {
    String::from_utf8_lossy(rel).into_owned()
}

/// A configured folder that cannot be backed up at all, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderFailure {
    /// The folder, as configured.
    pub folder: String,
    /// The system's error, or what the path is instead of a directory.
    pub error: String,
}

/// The folders that failed a backup, as the cause of its error: the run reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldersUnreadable(pub Vec<FolderFailure>);

impl std::fmt::Display for FoldersUnreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let each: Vec<String> = self
            .0
            .iter()
            .map(|x| format!("{} ({})", x.folder, x.error))
            .collect();
        write!(
            f,
            "source folder{} {} cannot be read: nothing was backed up or published; run as a \
             user that may read the share (the pods' runAsUser or supplementalGroups), or name \
             a folder that may be absent in source.optional_folders",
            if self.0.len() == 1 { "" } else { "s" },
            each.join(", ")
        )
    }
}

impl std::error::Error for FoldersUnreadable {}

impl FoldersUnreadable {
    /// The folders of `err`, if a backup failed for them.
    pub fn of(err: &Error) -> Option<&[FolderFailure]> {
        std::error::Error::source(err)
            .and_then(|s| s.downcast_ref::<FoldersUnreadable>())
            .map(|f| f.0.as_slice())
    }
}

/// The configured folders that cannot be opened, entered and listed (missing, not a directory,
/// no permission, a listing that fails), checked before anything is read or stored: a night
/// without one of them would publish an archive that looks complete and is not. An absent folder
/// in `optional` is fine.
pub fn unreadable_folders(
    root: &Path,
    folders: &[String],
    optional: &[String],
) -> Vec<FolderFailure> {
    let mut out = Vec::new();
    for name in folders {
        let path = root.join(name);
        let problem = match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == IoKind::NotFound && optional.contains(name) => None,
            Err(e) => Some(e.to_string()),
            Ok(m) if !m.is_dir() => Some(format!("{} is not a directory", path.display())),
            Ok(_) => listing_problem(&path),
        };
        if let Some(error) = problem {
            out.push(FolderFailure {
                folder: name.clone(),
                error,
            });
        }
    }
    out
}

/// Why the directory at `path` cannot be backed up, if it cannot: it must be searchable (its
/// entries stat-able) and readable by this process's effective ids, and its listing must start.
fn listing_problem(path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `c` is a valid C string; faccessat only reads it.
    let ok = unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::R_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    };
    if ok != 0 {
        return Some(std::io::Error::last_os_error().to_string());
    }
    match std::fs::read_dir(path) {
        Err(e) => Some(e.to_string()),
        Ok(mut entries) => match entries.next() {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        },
    }
}

/// The one-line error of a night whose folders cannot all be read (the folders are its cause:
/// [`FoldersUnreadable::of`]).
pub fn folders_error(failed: &[FolderFailure]) -> Error {
    Error::new(ErrorKind::Io, "").with_source(FoldersUnreadable(failed.to_vec()))
}

/// Runs one backup of `opts.folders` into `repo`, using and updating `catalog`, which must have
/// been opened with [`Catalog::open_for`] on the same repository.
pub fn backup(
    repo: &Repository,
    catalog: &Catalog,
    sync: SyncReport,
    opts: &BackupOptions,
    progress: &Progress,
) -> Result<BackupOutcome> {
    let started = Instant::now();
    for f in &opts.folders {
        if !valid_name(f.as_bytes()) {
            return Err(Error::config(format!(
                "folder {f:?} must be a single name below the source root"
            )));
        }
    }
    let failed = unreadable_folders(&opts.source_root, &opts.folders, &opts.optional_folders);
    if !failed.is_empty() {
        return Err(folders_error(&failed));
    }
    let pack_size = repo.config().pack_size as usize;
    let ctx = Ctx {
        opts,
        catalog,
        data: Packer::new(repo.store().as_ref(), catalog, BlobKind::Data, pack_size),
        // Trees are small and read often (ls, restore, export): their own packs keep those
        // reads away from the bulk data.
        trees: Packer::new(
            repo.store().as_ref(),
            catalog,
            BlobKind::Tree,
            pack_size / 4,
        ),
        records: DeferredRecords {
            catalog,
            waiting: Mutex::new(Vec::new()),
        },
        excludes: Excludes::new(&opts.excludes)?,
        chunker: repo.config().chunker,
        progress,
        warnings: Mutex::new(Vec::new()),
        skipped: Mutex::new(Vec::new()),
        zero_chunk: repo.config().chunker.zero_run_chunk(),
    };

    let folders: Vec<Option<Entry>> = opts
        .folders
        .par_iter()
        .map(|f| ctx.folder(f))
        .collect::<Result<Vec<_>>>()?;
    let mut root = Tree {
        entries: folders.into_iter().flatten().collect(),
    };
    root.sort();
    let root_id = ctx.store_tree(&root)?;
    ctx.data.finish()?;
    ctx.records.finish()?;
    ctx.trees.finish()?;
    // A configured folder that could not be walked after all (gone since the check, a listing
    // that failed): the snapshot would lack it, so nothing is committed.
    let lost: Vec<FolderFailure> = {
        let warnings = ctx.warnings.lock().expect("poisoned");
        opts.folders
            .iter()
            .filter_map(|f| {
                warnings
                    .iter()
                    .find(|w| {
                        &w.path == f
                            && matches!(
                                w.kind,
                                WarningKind::MissingFolder
                                    | WarningKind::NotADirectory
                                    | WarningKind::Unreadable
                            )
                    })
                    .map(|w| FolderFailure {
                        folder: f.clone(),
                        error: w.message.clone(),
                    })
            })
            .collect()
    };
    if !lost.is_empty() {
        return Err(folders_error(&lost));
    }
    ctx.call_hook(HookPoint::BeforeCommit, Path::new(""));

    let (dp, ds) = ctx.data.written();
    let (tp, ts) = ctx.trees.written();
    let p = progress;
    let summary = Summary {
        files: p.files.load(Relaxed),
        dirs: p.dirs.load(Relaxed),
        symlinks: p.symlinks.load(Relaxed),
        specials: p.specials.load(Relaxed),
        bytes: p.bytes.load(Relaxed),
        files_read: p.files_read.load(Relaxed),
        bytes_read: p.bytes_read.load(Relaxed),
        new_chunks: p.new_chunks.load(Relaxed),
        new_bytes: p.new_bytes.load(Relaxed),
        new_trees: p.new_trees.load(Relaxed),
        stored_bytes: ds + ts,
        packs: dp + tp,
        duration_ms: started.elapsed().as_millis() as u64,
    };
    let mut warnings = ctx.warnings.into_inner().expect("poisoned");
    warnings.sort_by(|a, b| a.path.cmp(&b.path));
    let mut skipped = ctx.skipped.into_inner().expect("poisoned");
    skipped.sort_by(|a, b| a.path.cmp(&b.path));
    let snapshot = Snapshot {
        version: SNAPSHOT_VERSION,
        time: opts.time.to_string(),
        date: opts.date.clone(),
        source: opts.source_root.display().to_string(),
        folders: opts.folders.clone(),
        root: root_id,
        summary,
        warnings,
        skipped,
    };
    // The commit point: every pack above is durable, so the snapshot may now name them — once
    // none of them is condemned or gone, and the lease is still this backup's.
    if let Some(lease) = &opts.lease {
        lease.confirm()?;
    }
    secure_packs(repo, catalog)?;
    if let Some(lease) = &opts.lease {
        lease.confirm()?;
    }
    if let Some(h) = &opts.hook {
        (h.0)(HookPoint::Confirmed, Path::new(""));
    }
    let id = repo.put_snapshot(&snapshot)?;
    // Confirmed again once the snapshot is there: a lease still this backup's means no gc took
    // it over while the snapshot was written (a takeover removes or ends the object, and the
    // expiry is on the store's clock). One that was lost means a gc may have deleted packs it
    // needs after walking the snapshots: the snapshot is withdrawn, and the backup fails.
    if let Some(lease) = &opts.lease
        && let Err(lost) = lease.confirm()
    {
        return Err(withdraw(repo, &id, lost));
    }
    catalog.add_snapshot(&id, &snapshot)?;
    catalog.flush()?;
    tracing::info!(snapshot = %id, files = snapshot.summary.files, bytes_read = snapshot.summary.bytes_read,
        new_bytes = snapshot.summary.new_bytes, warnings = snapshot.warnings.len(), "snapshot committed");
    Ok(BackupOutcome { id, snapshot, sync })
}

/// Levels below a folder that are walked in parallel, one recursion (and a few rayon frames)
/// each; deeper directories are walked iteratively. Real shares fan out long before this depth.
const PARALLEL_DEPTH: usize = 32;

/// What [`Ctx::entry`] made of one directory entry.
enum Step {
    /// Backed up (or left out, with a warning or a skip record).
    Done(Option<Entry>),
    /// A directory to descend into, with its metadata.
    Dir(Stat),
}

/// Files at least this large have their new chunks compressed in parallel batches.
const BIG_FILE: u64 = 32 << 20;
/// Chunks per batch: a bound on the copies held (4 MiB each at most).
const BATCH: usize = 4;

impl Ctx<'_> {
    fn store_chunk(&self, id: Id, frame: &[u8], raw_len: usize) -> Result<()> {
        let added = self.data.add(id, frame, raw_len)?;
        if added.new {
            self.progress.new_chunks.fetch_add(1, Relaxed);
            self.progress.new_bytes.fetch_add(raw_len as u64, Relaxed);
        }
        if added.stored_pack {
            self.records.pack_stored(&self.data)?;
            self.call_hook(HookPoint::PackStored, Path::new(""));
        }
        Ok(())
    }

    /// Compresses the batched chunks in parallel and adds them in order.
    fn store_batch(&self, batch: &mut Vec<(Id, Vec<u8>)>) -> Result<()> {
        let level = self.opts.compression;
        let frames: Vec<Result<Vec<u8>>> = batch
            .par_iter()
            .map(|(_, data)| codec::encode(data, level))
            .collect();
        for ((id, data), frame) in batch.drain(..).zip(frames) {
            self.store_chunk(id, &frame?, data.len())?;
        }
        Ok(())
    }

    fn warn(&self, rel: &[u8], kind: WarningKind, message: impl ToString) {
        let w = Warning {
            path: display(rel),
            kind,
            message: message.to_string(),
        };
        tracing::warn!(path = %w.path, kind = %w.kind, detail = %w.message, "backup warning");
        self.warnings.lock().expect("poisoned").push(w);
    }

    /// An entry that could not be examined: gone since its directory was listed, or not ours to read.
    fn warn_io(&self, rel: &[u8], e: std::io::Error) {
        if e.kind() == IoKind::NotFound {
            self.warn(rel, WarningKind::Vanished, "removed during the scan");
        } else {
            self.warn(rel, WarningKind::Unreadable, e);
        }
    }

    fn skip(&self, rel: &[u8], reason: SkipReason) {
        self.skipped.lock().expect("poisoned").push(Skipped {
            path: display(rel),
            reason,
        });
    }

    fn folder(&self, name: &str) -> Result<Option<Entry>> {
        let path = self.opts.source_root.join(name);
        let rel = name.as_bytes();
        let st = match lstat(&path) {
            Ok(st) => st,
            // Allowed to be absent (checked before the walk; gone since, it is left out too).
            Err(e)
                if e.kind() == IoKind::NotFound
                    && self.opts.optional_folders.iter().any(|f| f == name) =>
            {
                return Ok(None);
            }
            // Readable when the walk began (`unreadable_folders`): it went away since.
            Err(e) => {
                self.warn(rel, WarningKind::MissingFolder, e);
                return Ok(None);
            }
        };
        if st.kind != EntryKind::Dir {
            self.warn(
                rel,
                WarningKind::NotADirectory,
                format!("{} is not a directory", path.display()),
            );
            return Ok(None);
        }
        let Some(tree) = self.dir(&path, rel, Fs::root(st.dev), 0)? else {
            return Ok(None);
        };
        self.progress.dirs.fetch_add(1, Relaxed);
        Ok(Some(entry_from(rel, &st, EntryKind::Dir, |e| {
            e.tree = Some(tree)
        })))
    }

    /// The sorted names in the directory at `path`; none, with a warning, if it cannot be listed.
    fn list(&self, path: &Path, rel: &[u8]) -> Vec<OsString> {
        list_dir(path).unwrap_or_else(|e| {
            self.warn(
                rel,
                WarningKind::Unreadable,
                format!("cannot list directory: {e}"),
            );
            Vec::new()
        })
    }

    /// Backs up the directory at `path`, `depth` levels below its folder, and returns its tree
    /// id, or `None` when it was left out (with a warning).
    ///
    /// The first [`PARALLEL_DEPTH`] levels fan out over rayon, recursing once per level; deeper
    /// directories are walked by [`Ctx::dir_deep`] on this thread, with an explicit stack,
    /// because each level of rayon recursion costs kilobytes of a worker's small stack and a
    /// few hundred nested directories overflowed it.
    fn dir(&self, path: &Path, rel: &[u8], fs: Fs, depth: usize) -> Result<Option<Id>> {
        if depth >= PARALLEL_DEPTH {
            return self.dir_deep(path, rel, fs);
        }
        let names = self.list(path, rel);
        let entries: Vec<Option<Entry>> = names
            .par_iter()
            .map(|name| {
                let (path, rel) = (path.join(name), join_rel(rel, name.as_bytes()));
                match self.entry(&path, &rel, name.as_bytes(), fs)? {
                    Step::Done(e) => Ok(e),
                    Step::Dir(st) => Ok(self
                        .dir(&path, &rel, fs.enter(st.dev, &rel), depth + 1)?
                        .map(|tree| self.dir_entry(name.as_bytes(), &st, tree))),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        self.finish_dir(rel, entries.into_iter().flatten().collect())
    }

    /// [`Ctx::dir`] without recursion: one frame per open directory on an explicit stack, so a
    /// source nested thousands of levels deep costs heap, not stack.
    fn dir_deep(&self, path: &Path, rel: &[u8], fs: Fs) -> Result<Option<Id>> {
        struct Frame {
            path: PathBuf,
            rel: Vec<u8>,
            fs: Fs,
            names: std::vec::IntoIter<OsString>,
            entries: Vec<Entry>,
            /// The name and metadata of this directory, for its entry in the parent frame.
            me: Option<(OsString, Stat)>,
        }
        let mut stack = vec![Frame {
            path: path.to_path_buf(),
            rel: rel.to_vec(),
            fs,
            names: self.list(path, rel).into_iter(),
            entries: Vec::new(),
            me: None,
        }];
        loop {
            let top = stack
                .last_mut()
                .expect("the loop returns when the stack empties");
            if let Some(name) = top.names.next() {
                let (path, rel) = (top.path.join(&name), join_rel(&top.rel, name.as_bytes()));
                match self.entry(&path, &rel, name.as_bytes(), top.fs)? {
                    Step::Done(e) => top.entries.extend(e),
                    Step::Dir(st) => {
                        let names = self.list(&path, &rel).into_iter();
                        let fs = top.fs.enter(st.dev, &rel);
                        stack.push(Frame {
                            path,
                            rel,
                            fs,
                            names,
                            entries: Vec::new(),
                            me: Some((name, st)),
                        });
                    }
                }
                continue;
            }
            let done = stack.pop().expect("not empty");
            let tree = self.finish_dir(&done.rel, done.entries)?;
            let Some(parent) = stack.last_mut() else {
                return Ok(tree);
            };
            let (name, st) = done.me.expect("every frame but the first has an entry");
            if let Some(tree) = tree {
                parent
                    .entries
                    .push(self.dir_entry(name.as_bytes(), &st, tree));
            }
        }
    }

    /// The entry of a directory that was backed up as `tree`.
    fn dir_entry(&self, name: &[u8], st: &Stat, tree: Id) -> Entry {
        self.progress.dirs.fetch_add(1, Relaxed);
        self.progress.entries.fetch_add(1, Relaxed);
        entry_from(name, st, EntryKind::Dir, |e| e.tree = Some(tree))
    }

    /// Stores the tree of a directory's entries; leaves the directory out, with a warning, when
    /// its listing is longer than a tree may be (readers would refuse it).
    fn finish_dir(&self, rel: &[u8], entries: Vec<Entry>) -> Result<Option<Id>> {
        let count = entries.len();
        let (id, bytes) = Tree { entries }.encode();
        if bytes.len() > MAX_TREE_LEN {
            self.warn(
                rel,
                WarningKind::TooLarge,
                format!(
                    "the listing of its {count} entries takes {} bytes, more than the {MAX_TREE_LEN} a tree may hold; directory left out",
                    bytes.len()
                ),
            );
            return Ok(None);
        }
        self.store_encoded_tree(id, &bytes)?;
        Ok(Some(id))
    }

    fn store_tree(&self, tree: &Tree) -> Result<Id> {
        let (id, bytes) = tree.encode();
        if bytes.len() > MAX_TREE_LEN {
            return Err(Error::corrupt(format!(
                "the root tree takes {} bytes, more than the {MAX_TREE_LEN} a tree may hold",
                bytes.len()
            )));
        }
        self.store_encoded_tree(id, &bytes)?;
        Ok(id)
    }

    fn store_encoded_tree(&self, id: Id, bytes: &[u8]) -> Result<()> {
        if !self.trees.has(&id)? {
            let frame = codec::encode(bytes, self.opts.compression)?;
            if self.trees.add(id, &frame, bytes.len())?.new {
                self.progress.new_trees.fetch_add(1, Relaxed);
            }
        }
        Ok(())
    }

    /// Backs up one entry of a directory, except a directory's content: for a directory that
    /// is to be backed up, returns its metadata and leaves the walk to the caller.
    fn entry(&self, path: &Path, rel: &[u8], name: &[u8], fs: Fs) -> Result<Step> {
        if self.excludes.is_excluded(name, rel) {
            self.skip(rel, SkipReason::Excluded);
            return Ok(Step::Done(None));
        }
        // Beyond PATH_MAX no system call takes the path, and no snapshot path may be longer
        // (docs/FORMAT.md): one warning, and nothing below it is visited.
        let full = path.as_os_str().len();
        if full >= MAX_PATH_LEN {
            self.warn(
                rel,
                WarningKind::TooLong,
                format!("the path is {full} bytes, at or beyond Linux's PATH_MAX of {MAX_PATH_LEN}; left out"),
            );
            return Ok(Step::Done(None));
        }
        let st = match lstat(path) {
            Ok(st) => st,
            Err(e) => {
                self.warn_io(rel, e);
                return Ok(Step::Done(None));
            }
        };
        let entry = match st.kind {
            EntryKind::Dir => {
                if self.opts.one_file_system && st.dev != fs.dev {
                    self.skip(rel, SkipReason::OtherFilesystem);
                    return Ok(Step::Done(None));
                }
                return Ok(Step::Dir(st));
            }
            EntryKind::File => match self.file(path, rel, &st)? {
                Some((size, chunks, st)) => {
                    self.progress.files.fetch_add(1, Relaxed);
                    self.progress.bytes.fetch_add(size, Relaxed);
                    entry_from(name, &st, EntryKind::File, |e| {
                        e.size = size;
                        e.chunks = chunks;
                        if st.nlink > 1 {
                            e.hardlink = Some(fs.enter(st.dev, rel).hardlink_id(st.ino));
                        }
                    })
                }
                None => return Ok(Step::Done(None)),
            },
            EntryKind::Symlink => match std::fs::read_link(path) {
                Ok(target) => {
                    self.progress.symlinks.fetch_add(1, Relaxed);
                    entry_from(name, &st, EntryKind::Symlink, |e| {
                        e.target = Some(RawBytes(target.as_os_str().as_bytes().to_vec()))
                    })
                }
                Err(e) => {
                    self.warn_io(rel, e);
                    return Ok(Step::Done(None));
                }
            },
            kind => {
                self.progress.specials.fetch_add(1, Relaxed);
                entry_from(name, &st, kind, |e| {
                    if matches!(kind, EntryKind::Chardev | EntryKind::Blockdev) {
                        e.rdev = Some(st.rdev);
                    }
                })
            }
        };
        self.progress.entries.fetch_add(1, Relaxed);
        Ok(Step::Done(Some(entry)))
    }

    fn call_hook(&self, point: HookPoint, path: &Path) {
        if let Some(h) = &self.opts.hook {
            (h.0)(point, path);
        }
    }

    fn cache_hit(&self, rel: &[u8], st: &Stat) -> Result<Option<Vec<Id>>> {
        let Some(rec) = self.catalog.file(rel)? else {
            return Ok(None);
        };
        let same = rec.size == st.size
            && rec.mtime == st.mtime
            && rec.mtime_ns == st.mtime_ns
            && (self.opts.ignore_ctime || (rec.ctime == st.ctime && rec.ctime_ns == st.ctime_ns))
            && (self.opts.ignore_inode || rec.ino == st.ino);
        // No per-chunk lookup is needed: records are written only for durable chunks, and the
        // catalog drops every record when it forgets a pack (Catalog::open_for), so a record
        // never outlives its chunks. That halves the lookups of an unchanged night.
        Ok(same.then_some(rec.chunks))
    }

    /// Backs up a regular file: from the files cache when it vouches for it, otherwise by
    /// reading it. Returns size, chunks and the metadata that describes what was read.
    fn file(&self, path: &Path, rel: &[u8], st: &Stat) -> Result<Option<(u64, Vec<Id>, Stat)>> {
        if let Some(chunks) = self.cache_hit(rel, st)? {
            return Ok(Some((st.size, chunks, *st)));
        }
        self.call_hook(HookPoint::BeforeOpen, path);
        let file = match open_file(path) {
            Ok(f) => f,
            Err(e) => {
                let kind = match e.kind() {
                    IoKind::NotFound => WarningKind::Vanished,
                    // ELOOP: replaced by a symlink after the listing.
                    _ if e.raw_os_error() == Some(libc::ELOOP) => WarningKind::Changed,
                    _ => WarningKind::Unreadable,
                };
                self.warn(rel, kind, e);
                return Ok(None);
            }
        };
        let before = match file.metadata() {
            Ok(md) => Stat::from_metadata(&md),
            Err(e) => {
                self.warn(rel, WarningKind::Unreadable, e);
                return Ok(None);
            }
        };
        self.progress.files_read.fetch_add(1, Relaxed);
        let allocated = file
            .metadata()
            .map(|m| m.blocks() * 512)
            .unwrap_or(u64::MAX);
        let reader = SparseReader::new(&file, allocated, before.size);
        let buf = CHUNK_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
        let mut chunker = Chunker::with_buffer(reader, self.chunker, before.size, buf);
        let mut chunks = Vec::new();
        // A large file's new chunks are compressed a few at a time on every thread, so that a
        // big file read last does not leave the other cores idle.
        let big = before.size >= BIG_FILE;
        let mut batch = Vec::new();
        loop {
            let (chunk, zeros) = match chunker.next_chunk_marked() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    self.warn(rel, WarningKind::Unreadable, format!("read failed: {e}"));
                    let _ = self.catalog.forget_file(rel);
                    return Ok(None);
                }
            };
            self.progress
                .bytes_read
                .fetch_add(chunk.len() as u64, Relaxed);
            // Holes of sparse images are gigabytes of this one chunk: its id is known.
            let id = if zeros && chunk.len() == self.zero_chunk.0 {
                self.zero_chunk.1
            } else {
                Id::of(chunk)
            };
            chunks.push(id);
            if self.data.has(&id)? || batch.iter().any(|(b, _)| *b == id) {
                continue;
            }
            if big {
                batch.push((id, chunk.to_vec()));
                if batch.len() == BATCH {
                    self.store_batch(&mut batch)?;
                }
            } else {
                let frame = codec::encode(chunk, self.opts.compression)?;
                self.store_chunk(id, &frame, chunk.len())?;
            }
        }
        self.store_batch(&mut batch)?;
        let size = chunker.consumed();
        CHUNK_BUF.with(|b| *b.borrow_mut() = chunker.into_buffer());
        self.call_hook(HookPoint::AfterRead, path);
        let after = file.metadata().map(|m| Stat::from_metadata(&m));
        let stable = matches!(&after, Ok(a) if a.size == before.size && a.mtime == before.mtime
            && a.mtime_ns == before.mtime_ns && a.ctime == before.ctime && a.ctime_ns == before.ctime_ns)
            && size == before.size;
        if stable {
            let record = FileRecord {
                size,
                mtime: before.mtime,
                mtime_ns: before.mtime_ns,
                ctime: before.ctime,
                ctime_ns: before.ctime_ns,
                ino: before.ino,
                chunks: chunks.clone(),
            };
            self.records.file_done(&self.data, rel.to_vec(), record)?;
        } else {
            // Stored as read, but not cached: the next run reads it again.
            self.warn(rel, WarningKind::Changed, "file changed while it was read");
            self.catalog.forget_file(rel)?;
        }
        Ok(Some((size, chunks, before)))
    }
}

/// Files-cache records whose chunks are not all durable yet.
///
/// A record promises the next run that the file's chunks are stored; written before their pack
/// is durable, it would make a run after a crash skip a file whose data is gone. So a record
/// waits here until the data packer has stored every chunk it names.
struct DeferredRecords<'a> {
    catalog: &'a Catalog,
    waiting: Mutex<Vec<(Vec<u8>, FileRecord)>>,
}

impl DeferredRecords<'_> {
    /// Writes the record now if its chunks are durable, or keeps it until they are.
    fn file_done(&self, data: &Packer<'_>, path: Vec<u8>, record: FileRecord) -> Result<()> {
        {
            // Checked and queued under one lock that `pack_stored` also takes after the packer
            // cleared its pending set, so a record is never queued after the check that would
            // have released it.
            let mut waiting = self.waiting.lock().expect("poisoned");
            if data.any_pending(&record.chunks) {
                waiting.push((path, record));
                return Ok(());
            }
        }
        self.catalog.put_files(&[(path, record)])
    }

    /// After the data packer stored a pack: writes the records that no longer wait.
    fn pack_stored(&self, data: &Packer<'_>) -> Result<()> {
        let ready: Vec<_> = {
            let mut waiting = self.waiting.lock().expect("poisoned");
            let (ready, still): (Vec<_>, Vec<_>) = std::mem::take(&mut *waiting)
                .into_iter()
                .partition(|(_, r)| !data.any_pending(&r.chunks));
            *waiting = still;
            ready
        };
        if ready.is_empty() {
            return Ok(());
        }
        self.catalog.put_files(&ready)
    }

    /// After the data packer's last pack: every chunk is durable, so every record goes.
    fn finish(&self) -> Result<()> {
        let rest = std::mem::take(&mut *self.waiting.lock().expect("poisoned"));
        self.catalog.put_files(&rest)
    }
}

thread_local! {
    /// The chunker buffer of this backup thread, handed from file to file: up to 8 MiB, which
    /// allocated per file cost a zeroing each time and fragmented the heap.
    static CHUNK_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Opens for reading without following a symlink that replaced the file, without updating
/// its access time where the kernel allows that, and without blocking on a FIFO that replaced it.
fn open_file(path: &Path) -> std::io::Result<File> {
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    match OpenOptions::new()
        .read(true)
        .custom_flags(flags | libc::O_NOATIME)
        .open(path)
    {
        // O_NOATIME is refused for files that are not ours unless we are root.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            OpenOptions::new().read(true).custom_flags(flags).open(path)
        }
        other => other,
    }
    .and_then(|f| {
        if f.metadata()?.is_file() {
            Ok(f)
        } else {
            Err(std::io::Error::other("no longer a regular file"))
        }
    })
}

fn entry_from(name: &[u8], st: &Stat, kind: EntryKind, fill: impl FnOnce(&mut Entry)) -> Entry {
    let mut e = Entry {
        name: RawBytes(name.to_vec()),
        kind,
        mode: st.mode,
        uid: st.uid,
        gid: st.gid,
        mtime: st.mtime,
        mtime_ns: st.mtime_ns,
        size: 0,
        chunks: Vec::new(),
        tree: None,
        target: None,
        hardlink: None,
        rdev: None,
    };
    fill(&mut e);
    e
}

#[cfg(test)]
mod tests {
    use super::Fs;

    #[test]
    fn hardlink_ids_tell_filesystems_apart_but_not_device_numbers() {
        let folder = Fs::root(40);
        // The folder's own filesystem keeps plain inode numbers (trees of earlier runs stay equal).
        assert_eq!(folder.hardlink_id(2), 2);
        assert_eq!(folder.enter(40, b"notetaking/a"), folder);
        // Two mounts below one folder, both with inode 2: never the same identity.
        let a = folder.enter(41, b"notetaking/a");
        let b = folder.enter(42, b"notetaking/b");
        assert_ne!(a.hardlink_id(2), b.hardlink_id(2));
        assert_ne!(a.hardlink_id(2), folder.hardlink_id(2));
        // The next night's pod numbers the devices differently: same identities.
        let a2 = Fs::root(7).enter(9, b"notetaking/a");
        assert_eq!(a2.hardlink_id(2), a.hardlink_id(2));
        // One mount: one identity per inode.
        assert_eq!(a.hardlink_id(5), a.hardlink_id(5));
        assert_ne!(a.hardlink_id(5), a.hardlink_id(6));
    }
}
