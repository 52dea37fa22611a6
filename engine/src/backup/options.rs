//! What a backup is asked to do and what it reports: [`BackupOptions`] (folders, excludes,
//! files-cache rules, compression, the lease it runs under), the [`Hook`] that tests use to act
//! at fixed points of a run, the live [`Progress`] counters and the [`BackupOutcome`].

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use crate::catalog::SyncReport;
use crate::format::snapshot::Snapshot;
use crate::id::Id;

/// What to back up and how.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// The share, e.g. `/shared`.
    pub source_root: PathBuf,
    /// Folders below the root to back up; nothing else under the root is read.
    pub folders: Vec<String>,
    /// Folders of `folders` that may be absent (see [`SourceConfig`](crate::config::SourceConfig)).
    pub optional_folders: Vec<String>,
    /// Exclude patterns (see [`Excludes`](super::scan::Excludes)).
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
    pub(super) dirs: AtomicU64,
    pub(super) symlinks: AtomicU64,
    pub(super) specials: AtomicU64,
    pub(super) new_trees: AtomicU64,
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
