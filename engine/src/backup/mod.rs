//! Backup: walk the selected folders in parallel, reuse what the files cache vouches for, chunk
//! and store what changed, build trees bottom-up, and commit a snapshot.
//!
//! Problems with single entries (unreadable, vanished, changed while read) become warnings in
//! the snapshot and never abort the run; problems with the store or the catalog abort it before
//! the snapshot is written, so nothing half-done is ever committed.
//!
//! Where things are: `run.rs` is one backup from start to commit ([`backup`]); `options.rs`
//! what it is asked and what it reports; `folders.rs` the checks of the configured folders
//! before and after the walk; `state.rs` what the walking threads share; `walk.rs` the parallel
//! walk; `files.rs` one regular file (files cache, chunking, storing); `trees.rs` the trees,
//! bottom-up; `deferred.rs` the files-cache records held back until their chunks are durable;
//! `filesystem.rs` hardlink identities across mounts; `commit.rs` the commit point; `scan.rs`
//! stat, listings and excludes.

pub mod scan;

mod commit;
mod deferred;
mod files;
mod filesystem;
mod folders;
mod options;
mod run;
mod state;
mod trees;
mod walk;

pub use folders::{FolderFailure, FoldersUnreadable, folders_error, unreadable_folders};
pub use options::{BackupOptions, BackupOutcome, Hook, HookFn, HookPoint, Progress};
pub use run::backup;
