//! Snapshots: the commit point of a backup.
//!
//! A snapshot object names the root tree and records what the run saw. It is written only after
//! every pack it references is durable, so its presence in the store is what makes a backup
//! exist; a run that dies before writing it leaves only unreferenced packs, which the next
//! backup may deduplicate against; those that no snapshot comes to need are condemned by a
//! garbage collection (`cairn gc`) and deleted by a gc once `gc.grace` has passed.
//! It is stored as JSON under `snapshots/<id>`, where the id is the BLAKE3 of those bytes.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::Id;

/// Current snapshot format version.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Counters of one backup run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Regular files in the snapshot.
    pub files: u64,
    /// Directories in the snapshot, not counting the root.
    pub dirs: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// FIFOs, sockets and device nodes (recorded, never read).
    pub specials: u64,
    /// Sum of the sizes of all files.
    pub bytes: u64,
    /// Files whose content was read this run (the rest came from the files cache).
    pub files_read: u64,
    /// Bytes of file content read this run.
    pub bytes_read: u64,
    /// Data chunks that were new to the repository.
    pub new_chunks: u64,
    /// Plaintext bytes of the new chunks.
    pub new_bytes: u64,
    /// Trees that were new to the repository.
    pub new_trees: u64,
    /// Bytes of packs written (compressed chunks and trees, plus indexes).
    pub stored_bytes: u64,
    /// Packs written.
    pub packs: u64,
    /// Wall time of the backup in milliseconds.
    pub duration_ms: u64,
}

/// Something the run could not back up as it was asked (exit code 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// Path relative to the source root (lossy UTF-8 for display).
    pub path: String,
    /// What went wrong.
    pub kind: WarningKind,
    /// What the operating system said.
    pub message: String,
}

/// Something left out on purpose (excludes, other filesystems); not a warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Skipped {
    /// Path relative to the source root.
    pub path: String,
    /// Why.
    pub reason: SkipReason,
}

/// What a backup warning is about; serialized as the snake_case name (`missing_folder`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// The entry could not be read (permissions, I/O error).
    Unreadable,
    /// It was removed between the listing of its directory and its reading.
    Vanished,
    /// It changed while it was read: stored as read, not cached.
    Changed,
    /// A configured folder does not exist.
    MissingFolder,
    /// A configured folder is not a directory.
    NotADirectory,
    /// Its full path reaches `PATH_MAX`; left out with everything below it.
    TooLong,
    /// A directory whose tree would exceed the tree size limit; left out.
    TooLarge,
    /// A kind written by a newer cairn, which this one does not know.
    #[serde(other)]
    Unknown,
}

impl WarningKind {
    /// The kinds this version writes.
    pub const WRITTEN: [WarningKind; 7] = [
        WarningKind::Unreadable,
        WarningKind::Vanished,
        WarningKind::Changed,
        WarningKind::MissingFolder,
        WarningKind::NotADirectory,
        WarningKind::TooLong,
        WarningKind::TooLarge,
    ];

    /// The name used in snapshots and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            WarningKind::Unreadable => "unreadable",
            WarningKind::Vanished => "vanished",
            WarningKind::Changed => "changed",
            WarningKind::MissingFolder => "missing_folder",
            WarningKind::NotADirectory => "not_a_directory",
            WarningKind::TooLong => "too_long",
            WarningKind::TooLarge => "too_large",
            WarningKind::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for WarningKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an entry was left out on purpose; serialized as the snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// It matched an exclude pattern.
    Excluded,
    /// It is on another filesystem and `one_file_system` is set.
    OtherFilesystem,
    /// A reason written by a newer cairn, which this one does not know.
    #[serde(other)]
    Unknown,
}

impl SkipReason {
    /// The reasons this version writes.
    pub const WRITTEN: [SkipReason; 2] = [SkipReason::Excluded, SkipReason::OtherFilesystem];

    /// The name used in snapshots and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Excluded => "excluded",
            SkipReason::OtherFilesystem => "other_filesystem",
            SkipReason::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A committed backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Format version; readers must refuse versions they do not know.
    pub version: u32,
    /// When the backup started, RFC 3339 in UTC with nanoseconds.
    pub time: String,
    /// The day the run belongs to (`YYYY-MM-DD`, configured time zone).
    pub date: String,
    /// The source root as configured.
    pub source: String,
    /// The selected folders, in configured order; missing ones are in `warnings`.
    pub folders: Vec<String>,
    /// The root tree: one directory entry per folder that was backed up.
    pub root: Id,
    /// Counters.
    pub summary: Summary,
    /// Problems (each makes the run exit with code 3).
    #[serde(default)]
    pub warnings: Vec<Warning>,
    /// Entries left out on purpose.
    #[serde(default)]
    pub skipped: Vec<Skipped>,
}

impl Snapshot {
    /// Canonical bytes and id.
    pub fn encode(&self) -> (Id, Vec<u8>) {
        let bytes = serde_json::to_vec_pretty(self).expect("snapshots always serialize");
        (Id::of(&bytes), bytes)
    }

    /// Parses a stored snapshot and checks that its bytes match `id`.
    pub fn decode(id: &Id, bytes: &[u8]) -> Result<Snapshot> {
        if Id::of(bytes) != *id {
            return Err(Error::corrupt(format!(
                "snapshot {} does not match its id",
                id.short()
            )));
        }
        let snap: Snapshot = serde_json::from_slice(bytes).map_err(|e| {
            Error::corrupt(format!("snapshot {} is not valid JSON", id.short())).with_source(e)
        })?;
        if snap.version != SNAPSHOT_VERSION {
            return Err(Error::new(
                crate::ErrorKind::Unsupported,
                format!(
                    "snapshot {} has format version {}, this cairn reads {SNAPSHOT_VERSION}",
                    id.short(),
                    snap.version
                ),
            ));
        }
        Ok(snap)
    }
}
