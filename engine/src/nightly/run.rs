//! The nightly job in one call: start-up cleanup, backup, retention, daily archive, optionally
//! snapshot retention and garbage collection (`[retention] prune_in_run`), and a JSON run report in `<exports>/_reports/DATE/run.json`. The report is written whatever happened
//! once the exports location is open — also when the repository or the catalog cannot be
//! opened — so that an operator (or an alert) always finds out what the last night did.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::backup::{BackupOptions, Progress, backup};
use crate::catalog::{Catalog, SyncReport};
use crate::error::{Error, Result};
use crate::export::retention;
use crate::export::{self, Published};
use crate::format::snapshot::{Summary, Warning};
use crate::id::Id;
use crate::prune::gc::{GcOptions, GcReport};
use crate::repo::Repository;
use crate::repo::lease::Lease;
use crate::store::{Cleaned, Store};

/// What the backup stage did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupStage {
    /// The committed snapshot.
    pub snapshot: Id,
    /// Its counters.
    pub summary: Summary,
    /// Its warnings.
    pub warnings: Vec<Warning>,
}

/// What the export stage did.
#[derive(Debug, Clone, Serialize)]
pub struct ExportStage {
    /// Archive name.
    pub archive: String,
    /// Archive size.
    pub size: u64,
    /// Archive SHA-256.
    pub sha256: String,
    /// False when a complete archive of the same snapshot was already there.
    pub written: bool,
    /// Entries in the archive.
    pub entries: usize,
    /// What a new archive took from the previous day's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reused: Option<export::Reused>,
    /// Stored chunk frames of a new archive decoded and checked against their chunk ids while
    /// they were copied (the integrity check of the export: a damaged frame fails it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_frames: Option<u64>,
}

/// What snapshot retention and garbage collection did after the export.
#[derive(Debug, Clone, Serialize)]
pub struct PruneStage {
    /// Snapshots forgotten.
    pub snapshots_forgotten: u64,
    /// What the garbage collection did: packs condemned, deleted, bytes freed; absent if it
    /// did not finish.
    pub gc: Option<GcReport>,
    /// Why forgetting or collecting failed. The night's backup and archive stand: a prune that
    /// fails does not fail the run (its status stays), it is reported here and logged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a night went: `ok`, `warnings` (committed, some files could not be read) or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Everything done.
    Ok,
    /// Committed and published, with warnings.
    Warnings,
    /// Stopped; `error` says why.
    Failed,
}

impl RunStatus {
    /// Every status.
    pub const ALL: [RunStatus; 3] = [RunStatus::Ok, RunStatus::Warnings, RunStatus::Failed];
}

/// `_reports/DATE/run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Report format version.
    pub version: u32,
    /// The day of the run.
    pub date: String,
    /// Start, RFC 3339.
    pub started: String,
    /// End, RFC 3339.
    pub finished: String,
    /// How the night went.
    pub status: RunStatus,
    /// The process exit code this run maps to.
    pub exit_code: u8,
    /// Backup stage, if it committed.
    pub backup: Option<BackupStage>,
    /// Export stage, if it published.
    pub export: Option<ExportStage>,
    /// Temporary objects of killed writers removed at the start (store and exports together).
    pub temporaries_removed: Cleaned,
    /// Days deleted by retention.
    pub deleted_days: Vec<String>,
    /// The complete days left after retention.
    pub kept_days: Vec<String>,
    /// Bytes of the packs in the store after the backup (for the store-growth alert).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_bytes: Option<u64>,
    /// Bytes of everything in the exports location after the export and its retention (for
    /// the space alert: 14 dailies on a small server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exports_bytes: Option<u64>,
    /// Snapshot retention and garbage collection, when the run does them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneStage>,
    /// The configured folders that could not be read, which failed the night before anything
    /// was stored (absent when every folder could be read).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub failed_folders: Vec<crate::backup::FolderFailure>,
    /// The error that stopped the run.
    pub error: Option<String>,
}

/// The inputs of a nightly run.
#[derive(Debug)]
pub struct RunOptions<'a> {
    /// How to back up; `backup.date` is the day of the run.
    pub backup: BackupOptions,
    /// Where the archives go.
    pub exports: &'a dyn Store,
    /// Daily archives to keep; 0 disables retention in the run.
    pub keep_daily: usize,
    /// Replace a different complete archive of the same day.
    pub force: bool,
    /// Temporary objects older than this are removed at the start (`backup.stale_temp_secs`).
    pub stale_after: Duration,
    /// Forget and collect garbage after the export (`[retention] prune_in_run`).
    pub prune: Option<PruneOptions>,
    /// Called at the export's commit points (tests).
    pub export_hook: Option<export::ExportHook>,
}

/// How the run prunes.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Which snapshots to keep.
    pub policy: crate::prune::forget::Policy,
    /// The zone the policy's days are counted in.
    pub time_zone: jiff::tz::TimeZone,
    /// How to collect garbage (its `held` is set to the run's lease).
    pub gc: GcOptions,
}

/// What `open` hands the run: the repository, its catalog matched to the store, and the
/// repository lease the run holds (taken before the catalog was matched, so that no garbage
/// collection deletes what the sync found), if any.
pub type Opened = (Repository, Catalog, SyncReport, Option<Arc<Lease<'static>>>);

/// Runs the nightly job. `open` takes the state lock and the repository lease and opens the
/// repository and the catalog; its failure is reported like any other. Always returns a report (also written to the
/// exports location); `Err` only if even the report could not be written.
pub fn nightly(
    open: impl FnOnce() -> Result<Opened>,
    opts: &RunOptions<'_>,
    progress: &Progress,
) -> Result<RunReport> {
    let date = opts.backup.date.clone();
    let mut report = RunReport {
        version: 1,
        date: date.clone(),
        started: jiff::Timestamp::now().to_string(),
        finished: String::new(),
        status: RunStatus::Failed,
        exit_code: crate::error::exit::FAILURE,
        backup: None,
        export: None,
        temporaries_removed: Cleaned::default(),
        deleted_days: Vec::new(),
        kept_days: Vec::new(),
        store_bytes: None,
        exports_bytes: None,
        prune: None,
        failed_folders: Vec::new(),
        error: None,
    };
    let outcome = (|| -> Result<()> {
        // The share first: a night that cannot read a configured folder publishes nothing, and
        // says so before it takes a lease or reads the store.
        let b = &opts.backup;
        report.failed_folders =
            crate::backup::unreadable_folders(&b.source_root, &b.folders, &b.optional_folders);
        if !report.failed_folders.is_empty() {
            return Err(crate::backup::folders_error(&report.failed_folders));
        }
        let (repo, catalog, sync, lease) = open()?;
        match &lease {
            Some(l) => l.hold(|| night(&repo, &catalog, sync, &lease, opts, progress, &mut report)),
            None => night(&repo, &catalog, sync, &lease, opts, progress, &mut report),
        }
    })();

    if let Err(e) = &outcome {
        // Folders the backup found unreadable during its walk (the check before it passed).
        if let Some(f) = crate::backup::FoldersUnreadable::of(e) {
            report.failed_folders = f.to_vec();
        }
        report.error = Some(e.to_string());
        report.exit_code = e.kind().exit_code();
    }
    report.finished = jiff::Timestamp::now().to_string();
    let key = format!("_reports/{date}/run.json");
    let bytes = serde_json::to_vec_pretty(&report).expect("reports serialize");
    opts.exports.put(&key, &bytes).map_err(|e| {
        Error::new(
            e.kind(),
            format!(
                "writing the run report {key} failed: {e}; the run itself {}",
                match &report.error {
                    Some(err) => format!("failed: {err}"),
                    None => "succeeded".to_string(),
                }
            ),
        )
    })?;
    Ok(report)
}

/// The run's work once the repository is open, under its lease.
fn night(
    repo: &Repository,
    catalog: &Catalog,
    sync: SyncReport,
    lease: &Option<Arc<Lease<'static>>>,
    opts: &RunOptions<'_>,
    progress: &Progress,
    report: &mut RunReport,
) -> Result<()> {
    let date = opts.backup.date.clone();
    // What killed runs left: hidden files of hundreds of MB, unfinished uploads. Removing
    // them is housekeeping, so a failure only warns.
    // An export running elsewhere (another pod, a manual job: it holds a day's lease) may own
    // an upload older than the safe age: then the exports are left alone this time.
    let exports_busy = match retention::days_in_use(opts.exports) {
        Ok(days) => !days.is_empty(),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the day leases; not cleaning the exports");
            true
        }
    };
    let mut locations = vec![("store", repo.store().as_ref())];
    if !exports_busy {
        locations.push(("exports", opts.exports));
    }
    for (location, store) in locations {
        match store.clean_temporaries("", opts.stale_after) {
            Ok(c) => {
                report.temporaries_removed.objects += c.objects;
                report.temporaries_removed.bytes += c.bytes;
            }
            Err(e) => {
                tracing::warn!(location, error = %e, "could not remove stale temporary objects")
            }
        }
    }
    let mut bopts = opts.backup.clone();
    bopts.lease = lease.clone();
    let out = backup(repo, catalog, sync, &bopts, progress)?;
    let warned = !out.snapshot.warnings.is_empty();
    report.store_bytes = Some(catalog.pack_sizes()?.values().sum());
    report.backup = Some(BackupStage {
        snapshot: out.id,
        summary: out.snapshot.summary.clone(),
        warnings: out.snapshot.warnings.clone(),
    });
    let eopts = export::ExportOptions {
        date: date.clone(),
        level: opts.backup.compression,
        force: opts.force,
        hook: opts.export_hook.clone(),
    };
    // Retention first: a volume with room for exactly `keep_daily` archives must have room
    // for today's before it is written. A failure here is left to the retention below.
    if opts.keep_daily > 0 {
        match retention::prune_for(
            opts.exports,
            opts.keep_daily,
            retention::Retention::BeforeExport(&date),
        ) {
            Ok(deleted) => report.deleted_days = deleted,
            Err(e) => tracing::warn!(error = %e, "retention before the export failed"),
        }
    }
    let published = export::export(
        repo,
        catalog,
        opts.exports,
        (&out.id, &out.snapshot),
        &eopts,
    )
    .map_err(|e| e.context(format!("exporting {date}")))?;
    let m = published.manifest();
    report.export = Some(ExportStage {
        archive: m.archive.name.clone(),
        size: m.archive.size,
        sha256: m.archive.sha256.clone(),
        written: matches!(published, Published::Written(..)),
        entries: m.entry_count as usize,
        reused: match &published {
            Published::Written(_, r) => Some(r.clone()),
            Published::Unchanged(_) => None,
        },
        checked_frames: match &published {
            Published::Written(_, r) => Some(r.checked_frames),
            Published::Unchanged(_) => None,
        },
    });
    // 0 leaves retention to `cairn exports prune`, run with a key that may delete.
    if opts.keep_daily > 0 {
        report.deleted_days.extend(retention::prune_for(
            opts.exports,
            opts.keep_daily,
            retention::Retention::AfterExport(&date),
        )?);
    }
    // One listing of the exports for both: in the plan's layout it lists the store too.
    let (days, exports_bytes) = export::survey(opts.exports)?;
    report.kept_days = days
        .into_iter()
        .filter(|d| d.counts())
        .map(|d| d.date)
        .collect();
    report.exports_bytes = Some(exports_bytes);
    if let Some(p) = &opts.prune {
        report.prune = Some(prune(repo, catalog, lease, p));
    }
    (report.status, report.exit_code) = if warned {
        (RunStatus::Warnings, crate::error::exit::WARNINGS)
    } else {
        (RunStatus::Ok, crate::error::exit::OK)
    };
    Ok(())
}

/// Forgets what the policy does not keep, then collects garbage beside the run's lease. A
/// failure is reported in the stage, never raised: the night's archive is already published.
fn prune(
    repo: &Repository,
    catalog: &Catalog,
    lease: &Option<Arc<Lease<'static>>>,
    p: &PruneOptions,
) -> PruneStage {
    let mut stage = PruneStage {
        snapshots_forgotten: 0,
        gc: None,
        error: None,
    };
    let result = (|| -> Result<()> {
        let plan = crate::prune::forget::plan(&catalog.snapshots()?, &p.policy, &p.time_zone);
        stage.snapshots_forgotten = crate::prune::forget::forget(repo, catalog, &plan)?.snapshots;
        let mut gc = p.gc.clone();
        gc.held = lease.as_ref().map(|l| l.key().to_string());
        let report = crate::prune::gc::gc(repo, catalog, &gc)?;
        tracing::info!(
            snapshots = stage.snapshots_forgotten,
            packs_deleted = report.packs_deleted,
            bytes_freed = report.bytes_freed,
            packs_condemned = report.packs_condemned,
            "pruned"
        );
        stage.gc = Some(report);
        Ok(())
    })();
    if let Err(e) = result {
        tracing::error!(error = %e, "pruning after the export failed; the night's backup and archive stand");
        stage.error = Some(e.to_string());
    }
    stage
}

/// The metrics of a run: its backup and export stages, each a success or a failure, and its
/// retention stage when the run does retention (`with_retention`: `exports.keep_daily` > 0 or
/// `prune_in_run`; otherwise the retention job publishes that stage, and the run must not
/// overwrite it).
///
/// `folders` are the configured source folders: each gets `cairn_backup_folder_failed{folder}`,
/// 1 when it could not be read (the night failed for it), else 0. `keep` is how many daily
/// archives retention keeps (for the retention stage's `keep_days`); `capacity` the server's
/// bytes (`exports.capacity_bytes`, for the space alert).
pub fn stages(
    report: &RunReport,
    with_retention: bool,
    folders: &[String],
    keep: usize,
    capacity: Option<u64>,
) -> Vec<crate::nightly::metrics::Stage> {
    use crate::nightly::metrics::Stage;
    let at = report
        .finished
        .parse()
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let mut backup = Stage::new("backup", report.backup.is_some(), at);
    if let Some(b) = &report.backup {
        let s = &b.summary;
        backup = backup
            .gauge(
                "duration_seconds",
                "How long the backup took.",
                s.duration_ms as f64 / 1000.0,
            )
            .gauge("files", "Files in the snapshot.", s.files as f64)
            .gauge(
                "source_bytes",
                "Bytes of the files in the snapshot.",
                s.bytes as f64,
            )
            .gauge(
                "read_bytes",
                "Bytes read from the share (changed files).",
                s.bytes_read as f64,
            )
            .gauge(
                "new_bytes",
                "Bytes of chunks the store did not have.",
                s.new_bytes as f64,
            )
            .gauge(
                "stored_bytes",
                "Bytes of new packs written.",
                s.stored_bytes as f64,
            )
            .gauge(
                "warnings",
                "Files that could not be read as they were.",
                b.warnings.len() as f64,
            );
    }
    if let Some(sb) = report.store_bytes {
        backup = backup.gauge(
            "store_bytes",
            "Bytes of all packs in the store after the backup.",
            sb as f64,
        );
    }
    for f in folders {
        let failed = report.failed_folders.iter().any(|x| &x.folder == f);
        backup = backup.labeled(
            "folder_failed",
            "1 if the configured folder could not be read, which fails the night.",
            ("folder", f),
            if failed { 1.0 } else { 0.0 },
        );
    }
    let mut export = Stage::new("export", report.export.is_some(), at);
    if let Some(e) = &report.export {
        export = export
            .gauge("archive_bytes", "Size of the day's archive.", e.size as f64)
            .gauge("entries", "Entries in the day's archive.", e.entries as f64);
    }
    if let Some(b) = report.exports_bytes {
        export = export.gauge(
            "total_bytes",
            "Bytes of everything in the exports location after the run.",
            b as f64,
        );
    }
    if let Some(c) = capacity {
        export = export.gauge(
            "capacity_bytes",
            "The bytes the server of the exports has (exports.capacity_bytes).",
            c as f64,
        );
    }
    // A prune that failed (`prune_in_run`) leaves the night's backup and archive standing and
    // the run's exit code alone, but it is the retention stage that failed.
    let pruned = report.prune.as_ref().is_none_or(|p| p.error.is_none());
    let retained = report.export.is_some() && report.error.is_none() && pruned;
    let mut retention = kept_days_gauges(
        Stage::new("retention", retained, at),
        report.kept_days.len(),
        keep,
    );
    retention = deleted_days_gauge(retention, report.deleted_days.len());
    if let Some(p) = &report.prune {
        retention = prune_gauges(retention, p.snapshots_forgotten, p.gc.as_ref());
    }
    if with_retention {
        vec![backup, export, retention]
    } else {
        vec![backup, export]
    }
}

/// Adds the daily archives kept after a retention (`kept`) and how many it keeps (`keep`) to its
/// stage: the exports' growth alert fires only once the kept days reach the target.
pub fn kept_days_gauges(
    stage: crate::nightly::metrics::Stage,
    kept: usize,
    keep: usize,
) -> crate::nightly::metrics::Stage {
    stage
        .gauge("kept_days", "Complete daily archives kept.", kept as f64)
        .gauge(
            "keep_days",
            "Daily archives retention keeps (its target).",
            keep as f64,
        )
}

/// Adds the daily archives a retention deleted to its stage (`cairn run`, `cairn exports prune`).
pub fn deleted_days_gauge(
    stage: crate::nightly::metrics::Stage,
    days: usize,
) -> crate::nightly::metrics::Stage {
    stage.gauge(
        "deleted_days",
        "Daily archives deleted by this run.",
        days as f64,
    )
}

/// Adds what a prune did to the retention stage (`cairn run` with `prune_in_run`, `cairn prune`):
/// snapshots forgotten, and, when the gc finished, packs and bytes it deleted.
pub fn prune_gauges(
    stage: crate::nightly::metrics::Stage,
    forgotten: u64,
    gc: Option<&GcReport>,
) -> crate::nightly::metrics::Stage {
    let stage = stage.gauge(
        "forgotten_snapshots",
        "Snapshots forgotten by this run.",
        forgotten as f64,
    );
    match gc {
        Some(g) => stage
            .gauge(
                "freed_bytes",
                "Bytes of packs deleted by garbage collection.",
                g.bytes_freed as f64,
            )
            .gauge(
                "deleted_packs",
                "Packs deleted by garbage collection.",
                g.packs_deleted as f64,
            ),
        None => stage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A night whose backup and archive stand but whose prune failed: the run succeeds, the
    /// retention stage does not.
    #[test]
    fn a_failed_prune_is_a_failed_retention_stage() {
        let mut report = RunReport {
            version: 1,
            date: "2026-11-29".into(),
            started: "2026-11-29T01:00:00Z".into(),
            finished: "2026-11-29T01:10:00Z".into(),
            status: RunStatus::Ok,
            exit_code: crate::error::exit::OK,
            backup: None,
            export: Some(ExportStage {
                archive: "shared-2026-11-29.tar.zst".into(),
                size: 1,
                sha256: String::new(),
                written: true,
                entries: 1,
                reused: None,
                checked_frames: None,
            }),
            temporaries_removed: Cleaned::default(),
            deleted_days: Vec::new(),
            kept_days: vec!["2026-11-29".into()],
            store_bytes: None,
            exports_bytes: None,
            failed_folders: Vec::new(),
            prune: Some(PruneStage {
                snapshots_forgotten: 0,
                gc: None,
                error: Some("deleting object snapshots/…: Is a directory".into()),
            }),
            error: None,
        };
        let retention = |r: &RunReport| {
            stages(r, true, &[], 14, None)
                .into_iter()
                .find(|s| s.stage == "retention")
                .unwrap()
        };
        assert!(!retention(&report).success);
        assert!(
            stages(&report, true, &[], 14, None)[1].success,
            "the export stands"
        );
        report.prune.as_mut().unwrap().error = None;
        assert!(retention(&report).success);
    }
}
