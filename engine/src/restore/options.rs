//! What a caller asks of a restore and what it reports: the overwrite rule, the options, the
//! report, and the counters the parallel writers share.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::repo::Repository;

/// What to do with an entry that already exists in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Leave it alone.
    #[default]
    Never,
    /// Replace a file whose size or mtime differs from the snapshot (finishes an interrupted restore).
    IfChanged,
    /// Replace every file.
    Always,
}

impl std::str::FromStr for Overwrite {
    type Err = Error;
    fn from_str(s: &str) -> Result<Overwrite> {
        match s {
            "never" => Ok(Overwrite::Never),
            "if-changed" => Ok(Overwrite::IfChanged),
            "always" => Ok(Overwrite::Always),
            _ => Err(Error::usage(format!(
                "--overwrite {s:?}: use never, if-changed or always"
            ))),
        }
    }
}

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The directory to restore into; created if missing.
    pub target: PathBuf,
    /// Paths inside the snapshot or archive to restore (`notetaking/projects`); empty: all.
    pub paths: Vec<String>,
    /// Existing entries.
    pub overwrite: Overwrite,
    /// Re-read every written file and check it against the chunk ids.
    pub verify: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// Regular files written.
    pub files: u64,
    /// Bytes of file content restored.
    pub bytes: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hardlinks created.
    pub hardlinks: u64,
    /// FIFOs created.
    pub fifos: u64,
    /// Entries left as they were (already present).
    pub unchanged: u64,
    /// Files re-read and found equal to their chunks.
    pub verified: u64,
    /// Device nodes created (as root only).
    pub devices: u64,
    /// Entries that cannot be restored here (sockets; device nodes when not root).
    pub skipped: Vec<String>,
    /// Entries restored with a change, and why (an owner id that does not fit 32 bits).
    pub warnings: Vec<String>,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) files: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) unchanged: AtomicU64,
    pub(super) verified: AtomicU64,
    /// Length and id of the chunk that holes of sparse files are cut into: such chunks become
    /// holes again without being read.
    pub(super) zeros: (u32, crate::Id),
}

impl Counters {
    pub(super) fn new(repo: &Repository) -> Counters {
        let (len, id) = repo.config().chunker.zero_run_chunk();
        Counters {
            zeros: (len as u32, id),
            ..Default::default()
        }
    }

    pub(super) fn is_zeros(&self, id: &crate::Id, len: u32) -> bool {
        (len, *id) == self.zeros
    }
}
