//! One backup from start to commit ([`backup`]): the folders are checked, walked and stored,
//! every packer is flushed, a folder lost during the walk fails the run, and the snapshot that
//! sums it all up is committed.

use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::commit::commit;
use super::folders::{check_folders, folders_error, folders_lost_in_walk};
use super::options::{BackupOptions, BackupOutcome, HookPoint, Progress};
use super::state::RunState;
use crate::catalog::{Catalog, SyncReport};
use crate::error::Result;
use crate::format::snapshot::{SNAPSHOT_VERSION, Snapshot, Summary};
use crate::id::Id;
use crate::repo::Repository;

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
    check_folders(opts)?;
    // The walk reads as it goes, with no count ahead of it: the newest snapshot's figures are
    // the estimate a percentage goes by (none on a first backup).
    let last = catalog.resolve_snapshot("latest").ok();
    crate::progress::meter().begin(
        "backup",
        "files",
        last.as_ref().map(|(_, s)| s.summary.files),
        last.as_ref().map(|(_, s)| s.summary.bytes),
        &["files read", "new chunks"],
    );
    let mut run = RunState::new(repo, catalog, opts, progress)?;
    let root_id = run.walk_folders()?;
    // The totals were the last snapshot's: now they are this one's.
    crate::progress::meter().totals(
        Some(progress.files.load(Relaxed)),
        Some(progress.bytes.load(Relaxed)),
    );
    run.data.finish()?;
    run.records.finish()?;
    run.trees.finish()?;
    // A configured folder that could not be walked after all (gone since the check, a listing
    // that failed): the snapshot would lack it, so nothing is committed.
    let lost = folders_lost_in_walk(&opts.folders, &run.warnings.lock().expect("poisoned"));
    if !lost.is_empty() {
        return Err(folders_error(&lost));
    }
    run.call_hook(HookPoint::BeforeCommit, Path::new(""));
    let snapshot = run.snapshot(root_id, started);
    commit(repo, catalog, opts, snapshot, sync)
}

impl RunState<'_> {
    /// The snapshot of this run, whose root tree is `root`: its summary from the counters and
    /// the packers, its warnings and skips sorted by path (taken out of the run).
    fn snapshot(&mut self, root: Id, started: Instant) -> Snapshot {
        let opts = self.opts;
        let (dp, ds) = self.data.written();
        let (tp, ts) = self.trees.written();
        let p = self.progress;
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
        let mut warnings = std::mem::take(self.warnings.get_mut().expect("poisoned"));
        warnings.sort_by(|a, b| a.path.cmp(&b.path));
        let mut skipped = std::mem::take(self.skipped.get_mut().expect("poisoned"));
        skipped.sort_by(|a, b| a.path.cmp(&b.path));
        Snapshot {
            version: SNAPSHOT_VERSION,
            time: opts.time.to_string(),
            date: opts.date.clone(),
            source: opts.source_root.display().to_string(),
            folders: opts.folders.clone(),
            root,
            summary,
            warnings,
            skipped,
        }
    }
}
