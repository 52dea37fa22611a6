//! Restore: write a snapshot (or part of it), or a daily archive, into a target directory.
//!
//! Safety first: every file system operation below the target goes through directory file
//! descriptors with `O_NOFOLLOW` (`openat`, `mkdirat`, `symlinkat`, ...), so an existing symlink
//! in the target is never followed and nothing is ever written outside it. Names come from trees,
//! which reject `/`, `..` and NUL, or from archive paths, which are checked the same way here.
//! Symlinks are created last, so none can redirect a later write of the same restore; directory
//! modes and times are applied after their contents, so read-only folders and mtimes survive.
//!
//! Files are written in parallel, contents first and times last, so that an interrupted restore
//! leaves files whose size or mtime differ from the snapshot, which `--overwrite if-changed`
//! then rewrites.
//!
//! One concern a file: `target` (the descriptors, checked path components, making way and
//! applying metadata), `snapshot` (planning and restoring a snapshot), `file` (one file's content from a chunk
//! source), `archive` (restoring
//! from a daily archive's checked tar stream), `remote` (file contents from an object store by
//! planned reads). Writing holes is `sparse`'s, hardlink keying `read`'s.

mod archive;
mod file;
mod remote;
mod snapshot;
pub(crate) mod target;

pub use archive::restore_archive;
pub use snapshot::restore;
pub use target::components;
// The descriptor-based target, for restoring a day's paths by its seek table (`export::extract`).
pub(crate) use target::{Meta, Target, unlink_in_way};

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
    files: AtomicU64,
    bytes: AtomicU64,
    unchanged: AtomicU64,
    verified: AtomicU64,
    /// Length and id of the chunk that holes of sparse files are cut into: such chunks become
    /// holes again without being read.
    zeros: (u32, crate::Id),
}

impl Counters {
    fn new(repo: &Repository) -> Counters {
        let (len, id) = repo.config().chunker.zero_run_chunk();
        Counters {
            zeros: (len as u32, id),
            ..Default::default()
        }
    }

    fn is_zeros(&self, id: &crate::Id, len: u32) -> bool {
        (len, *id) == self.zeros
    }
}
