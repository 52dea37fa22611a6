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
//! applying metadata), `plan` (what a snapshot restore will do, from the trees alone),
//! `snapshot` (carrying the plan out), `file` (one file's content from a chunk source), `remote`
//! (file contents from an object store by planned reads), `archive` (restoring from a daily
//! archive's checked tar stream), `day_paths` (a few paths of a day's archive, fetched by its seek
//! table), `options` (what a caller asks and gets back). Writing holes is `sparse`'s, hardlink keying `read`'s.

mod archive;
mod day_paths;
mod file;
mod options;
mod plan;
mod remote;
mod snapshot;
pub(crate) mod target;

pub use archive::restore_archive;
pub use day_paths::restore_paths as restore_day_paths;
use options::Counters;
pub use options::{Overwrite, RestoreOptions, RestoreReport};
pub use plan::{PlanSummary, RestorePlan};
pub use snapshot::{execute, restore};
pub use target::components;
