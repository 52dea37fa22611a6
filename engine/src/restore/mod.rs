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
mod options;
mod plan;
mod remote;
mod snapshot;
pub(crate) mod target;

pub use archive::restore_archive;
use options::Counters;
pub use options::{Overwrite, RestoreOptions, RestoreReport};
pub use plan::{PlanSummary, RestorePlan};
pub use snapshot::{execute, restore};
pub use target::components;
// The descriptor-based target, for restoring a day's paths by its seek table (`export::extract`).
pub(crate) use target::{Meta, Target, unlink_in_way};
