//! The daily archive: `shared-DATE.tar.zst`, its `.sha256` and its `manifest.json`, built from a
//! committed snapshot without reading the source.
//!
//! The archive is a POSIX pax tar whose entries follow bytewise path order, with headers derived
//! only from the snapshot, so one snapshot always gives the same bytes. It is written as a
//! sequence of zstd frames: tar headers, padding and the contents of small files are compressed
//! into frames of their own, and the stored chunk frames of larger files are copied from the packs
//! as they are, so building the archive costs I/O rather than compression. A zstd decoder sees one
//! stream whose content is the tar.
//!
//! Publication: the archive streams into an object that appears only when complete; then the
//! `.sha256`; the manifest is written last, and its presence is what makes a day complete.
//!
//! One concern a file: `manifest` (the day's names, what `manifest.json` holds and reading it
//! back whole), `manifest_write` (writing it, one entry a line), `manifest_stream` (reading the
//! entries of a few files as a stream), `report` (what an export reports), `walk` (the snapshot's
//! trees in archive order, and the stages joined by `write_archive`), `assemble` (tar bytes into
//! groups, and the runs of stored frames), `groups` (the group cut rule, compression under a
//! memory budget, reuse of yesterday's frames), `sink` (the ordered writer, the SHA-256 thread and
//! the frame checker), `days` (which days exist, and `verify`), `status` (the day's
//! `archive.json`: whose snapshot, with what warnings), `extract` (one file out of a day's
//! archive), `frames` (reading an archive by its seek table), `header_check` (the tar headers
//! before a file, read as the streaming readers read them); restoring paths of a day by the seek
//! table is `restore::day_paths`'s. This file publishes a day under its lease. Tar header bytes are
//! `tar::header`'s, and the retention of days is `retention`'s.

mod assemble;
mod days;
pub mod dump;
pub mod extract;
pub(crate) mod frames;
mod groups;
mod header_check;
pub(crate) mod manifest;
pub(crate) mod manifest_stream;
mod manifest_write;
mod report;
pub mod retention;
mod sink;
mod status;
mod walk;

pub use days::{
    DayStatus, VerifyReport, list_days, list_days_with_status, survey, total_bytes, verify,
};
use groups::Reuse;
pub use groups::SMALL_FILE;
pub use manifest::{
    ArchiveInfo, DayKeys, GroupFrame, LeftOut, MANIFEST_VERSION, MAX_MANIFEST, Manifest,
    ManifestEntry, NotReused, SeekTableInfo, read_manifest,
};
pub use report::{Published, Reused};
pub use status::{ArchiveStatus, read_status, status_key};
use walk::{Written, write_archive};

use crate::catalog::Catalog;
use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::repo::Repository;
use crate::store::{ObjectWriter, Store};

/// How to publish one day's archive.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The day (`YYYY-MM-DD`).
    pub date: String,
    /// zstd level for header and small-file frames.
    pub level: i32,
    /// Replace a complete archive of another snapshot.
    pub force: bool,
    /// Called at the steps of publication; lets tests interleave two writers exactly.
    pub hook: Option<ExportHook>,
}

/// Where in publishing an [`ExportHook`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportPoint {
    /// The writer's lease object is written and not yet checked against the others.
    LeaseWritten,
    /// The day's lease is held; nothing of the day was read or written yet.
    Leased,
    /// The archive's bytes are written and not yet published under the day's name.
    ArchiveBuilt,
    /// The archive object is complete; `.sha256` and manifest are not written yet.
    ArchiveWritten,
    /// The `.sha256` is written; the manifest is next.
    BeforeManifest,
}

/// A callback for [`ExportOptions::hook`].
#[derive(Clone)]
pub struct ExportHook(pub std::sync::Arc<dyn Fn(ExportPoint) + Send + Sync>);

impl std::fmt::Debug for ExportHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportHook")
    }
}

/// How long a day's lease lives without a refresh: a writer that died blocks the day's rerun on
/// another machine at most this long (on its own machine, not at all).
pub const DAY_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The store prefix of the leases of one day in the exports location.
pub fn day_lease_prefix(date: &str) -> String {
    format!("{LEASES}{date}/")
}

/// The store prefix of every day's leases in the exports location.
pub const LEASES: &str = "_leases/";

/// Publishes the daily archive of snapshot `snap_id` into `exports`.
///
/// If the day already has a complete archive of the same tree (a snapshot with the same root),
/// nothing is written: the bytes would be identical. If it has one of a different tree, the
/// call fails with kind `Conflict` unless `force` is set.
///
/// Two writers of one day (two pods, each with its own state volume) are kept apart by a lease
/// in the exports location (see [`crate::repo::lease`]): the second fails with kind `Locked`, naming
/// the first, and the check above is made while the lease is held, so it holds under
/// concurrency too.
pub fn export(
    repo: &Repository,
    catalog: &Catalog,
    exports: &dyn Store,
    (snap_id, snap): (&Id, &Snapshot),
    opts: &ExportOptions,
) -> Result<Published> {
    let keys = DayKeys::new(&opts.date)?;
    let call = |p: ExportPoint| {
        if let Some(h) = &opts.hook {
            (h.0)(p);
        }
    };
    let lease_hook = |_: crate::repo::lease::LeasePoint| call(ExportPoint::LeaseWritten);
    let lease = crate::repo::lease::acquire(
        exports,
        &day_lease_prefix(&keys.date),
        &format!("publishing {}", keys.date),
        DAY_LEASE_TTL,
        Some(&lease_hook),
    )?;
    call(ExportPoint::Leased);
    let published =
        lease.hold(|| publish(repo, catalog, exports, (snap_id, snap), opts, &keys, &lease))?;
    lease.release();
    Ok(published)
}

/// [`export`] with the day's lease held.
fn publish(
    repo: &Repository,
    catalog: &Catalog,
    exports: &dyn Store,
    (snap_id, snap): (&Id, &Snapshot),
    opts: &ExportOptions,
    keys: &DayKeys,
    lease: &crate::repo::lease::Lease<'_>,
) -> Result<Published> {
    let call = |p: ExportPoint| {
        if let Some(h) = &opts.hook {
            (h.0)(p);
        }
    };
    let replacing = match day_before(repo, exports, (snap_id, snap), opts.force, keys)? {
        DayBefore::Same(m) => return Ok(Published::Unchanged(*m)),
        DayBefore::Replace => true,
        DayBefore::Empty => false,
    };
    let (mut writer, reuse, written) =
        build_archive(repo, catalog, exports, snap, opts.level, keys)?;
    call(ExportPoint::ArchiveBuilt);
    // Each object of the day is published only while the lease is still this writer's: one that
    // lost it (stalled longer than the lease's TTL) must not replace another writer's archive.
    lease.confirm()?;
    // The day stops looking complete before its archive is replaced: a reader never finds a
    // manifest beside an archive it does not describe.
    if replacing {
        exports.delete(&keys.manifest)?;
    }
    writer.finish()?;
    call(ExportPoint::ArchiveWritten);
    let Written {
        size,
        sha256,
        entries,
        skipped,
        groups,
        reused_groups,
        not_reused,
        runs,
        reused_runs,
        checked_frames,
        seek_table,
    } = written;
    lease.confirm()?;
    exports.put(
        &keys.sha256,
        format!("{sha256}  {}\n", keys.archive_name()).as_bytes(),
    )?;
    lease.confirm()?;
    status::write_status(
        exports,
        &ArchiveStatus::of(&keys.date, snap_id, snap, &repo.config().id),
    )?;
    call(ExportPoint::BeforeManifest);
    let reused = Reused {
        not_reused: reuse.is_some().then_some(not_reused),
        from: reuse.map(|r| r.date),
        groups: groups.len() as u64,
        reused_groups,
        runs: runs.len() as u64,
        reused_runs,
        checked_frames,
    };
    let manifest = Manifest {
        format_version: MANIFEST_VERSION,
        date: keys.date.clone(),
        snapshot: *snap_id,
        root: snap.root,
        snapshot_time: snap.time.clone(),
        source: snap.source.clone(),
        folders: snap.folders.clone(),
        archive: ArchiveInfo {
            name: keys.archive_name(),
            size,
            sha256,
        },
        entries: Vec::new(),
        entry_count: entries.count(),
        skipped,
        excluded: snap.skipped.clone(),
        warnings: snap.warnings.clone(),
        groups,
        runs,
        seek_table: Some(seek_table),
    };
    let mut out = exports.create(&keys.manifest)?;
    manifest.write_with(entries, &mut out)?;
    // The manifest makes the day complete: only while the lease is still this writer's.
    lease.confirm()?;
    out.finish()?;
    Ok(Published::Written(manifest, reused))
}

/// What the day holds before this writer publishes it.
enum DayBefore {
    /// No complete archive.
    Empty,
    /// A complete archive of the same tree: the bytes would be identical.
    Same(Box<Manifest>),
    /// A complete archive that is to be replaced.
    Replace,
}

/// The day's complete archive, if it has one, against snapshot `snap_id`: the same tree is kept;
/// another is replaced when `force` is set or its night, of this repository, had warnings or
/// failed ([`own_rerun`]); otherwise the call fails with kind `Conflict`.
fn day_before(
    repo: &Repository,
    exports: &dyn Store,
    (snap_id, snap): (&Id, &Snapshot),
    force: bool,
    keys: &DayKeys,
) -> Result<DayBefore> {
    match read_manifest(exports, keys) {
        // Same trees, same bytes: a rerun of the night with nothing changed keeps the archive.
        Ok(m) if m.root == snap.root => Ok(DayBefore::Same(Box::new(m))),
        Ok(m) if !force && !own_rerun(repo, exports, keys, &m)? => Err(Error::new(
            ErrorKind::Conflict,
            format!(
                "{} already holds a complete archive of snapshot {}, whose content differs from snapshot {}; refusing to replace it (use --force)",
                keys.date,
                m.snapshot.short(),
                snap_id.short()
            ),
        )),
        // Forced, or a rerun of a night of this repository that had warnings or failed: the
        // day stops looking complete just before its archive is replaced (in `publish`), so
        // that a failed or killed build leaves the old day whole.
        Ok(m) => {
            if !force {
                tracing::warn!(
                    day = %keys.date,
                    old = %m.snapshot.short(),
                    new = %snap_id.short(),
                    "replacing the day's archive: its night, of this repository, had warnings or failed"
                );
            }
            Ok(DayBefore::Replace)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(DayBefore::Empty),
        Err(e) => Err(e),
    }
}

/// Starts the export's stage in [`crate::progress`]: tar bytes of the snapshot, estimated from
/// its summary (a header per entry, half a block of padding per file on average, the end).
fn begin_progress(snap: &Snapshot, date: &str) {
    let s = &snap.summary;
    let tar = s.bytes + 768 * s.files + 512 * (s.dirs + s.symlinks + s.specials) + 1024;
    crate::progress::meter().begin(
        format!("export {date}"),
        "frames",
        None,
        Some(tar),
        &["groups reused", "groups compressed", "frames reused"],
    );
}

/// Writes the archive of `snap` into a new archive object of the day, drawing on the newest
/// earlier day's archive; returns the object (not yet finished, so not yet visible), the archive
/// drawn on, and what was written.
fn build_archive<'a>(
    repo: &Repository,
    catalog: &Catalog,
    exports: &'a dyn Store,
    snap: &Snapshot,
    level: i32,
    keys: &DayKeys,
) -> Result<(Box<dyn ObjectWriter + 'a>, Option<Reuse<'a>>, Written)> {
    let mut reuse = earlier_archive(exports, keys)?;
    let mut writer = exports.create(&keys.archive)?;
    begin_progress(snap, &keys.date);
    let written = match write_archive(repo, catalog, snap, level, reuse.as_ref(), writer.as_mut()) {
        // A damaged earlier archive costs one more pass, never the export.
        Err(e) if reuse.as_ref().is_some_and(|r| r.was_damaged()) => {
            tracing::warn!("{e}; writing the archive again without reusing it");
            reuse = None;
            drop(writer);
            writer = exports.create(&keys.archive)?;
            begin_progress(snap, &keys.date);
            write_archive(repo, catalog, snap, level, None, writer.as_mut())?
        }
        written => written?,
    };
    // The total was an estimate from the snapshot's summary: the archive is written now.
    let meter = crate::progress::meter();
    let r = meter.read();
    meter.totals(None, Some(r.bytes));
    Ok((writer, reuse, written))
}

/// Whether the day's complete archive `m` may be replaced without `--force`: its night was this
/// repository's own and had warnings (the manifest lists them) or failed after publishing (the
/// day's run report says so). An operator who fixed a permission reruns the Job and gets the
/// night's backup; an archive of another repository (another writer of the same exports) or of
/// a clean night is refused as before. Two writers at once are kept apart by the day's lease.
fn own_rerun(repo: &Repository, exports: &dyn Store, keys: &DayKeys, m: &Manifest) -> Result<bool> {
    let by_snapshot = || match repo.load_snapshot(&m.snapshot) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Corrupt) => Ok(false),
        Err(e) => Err(e),
    };
    let own = match status::read_status(exports, &keys.date) {
        Ok(Some(st)) => st.repository == repo.config().id && st.snapshot == m.snapshot,
        // A day of an older cairn: its snapshot is in this repository, or it is not its own.
        Ok(None) => by_snapshot()?,
        Err(e) => {
            tracing::warn!(day = %keys.date, error = %e, "the day's archive status does not read; asking the repository for its snapshot");
            by_snapshot()?
        }
    };
    if !own {
        return Ok(false);
    }
    if !m.warnings.is_empty() {
        return Ok(true);
    }
    // The day's run report counts only if it is the night that published this archive (its
    // backup committed the manifest's snapshot and it exported): a later run of the day that
    // failed, a refused rerun among them, says nothing about this archive.
    Ok(matches!(
        run_status(exports, &keys.date)?,
        Some((status, Some(snap), true)) if snap == m.snapshot && (status == "warnings" || status == "failed")
    ))
}

/// The day's run report, if it has one that reads: its `status`, the snapshot its backup
/// committed, and whether it has an export stage.
fn run_status(exports: &dyn Store, date: &str) -> Result<Option<(String, Option<Id>, bool)>> {
    /// A report lists the night's warnings; beyond this it is not read for its status.
    const MAX_REPORT: u64 = 64 << 20;
    let key = format!("_reports/{date}/run.json");
    let status::Small::Bytes(bytes) = status::get_small(exports, &key, MAX_REPORT)? else {
        return Ok(None);
    };
    #[derive(serde::Deserialize)]
    struct Backup {
        snapshot: Id,
    }
    #[derive(serde::Deserialize)]
    struct Head {
        status: String,
        backup: Option<Backup>,
        export: Option<serde::de::IgnoredAny>,
    }
    Ok(serde_json::from_slice::<Head>(&bytes)
        .ok()
        .map(|h| (h.status, h.backup.map(|b| b.snapshot), h.export.is_some())))
}

/// The group frames of the newest complete archive of a day before this one, if there is one
/// whose manifest lists them. An unreadable earlier day only costs the reuse, never the export.
fn earlier_archive<'a>(exports: &'a dyn Store, today: &DayKeys) -> Result<Option<Reuse<'a>>> {
    let days = list_days(exports)?;
    let date = |d: &str| jiff::civil::Date::strptime("%Y-%m-%d", d).ok();
    let today_date = date(&today.date);
    // Only days before this one: a day after it (planted, or a clock that was ahead) would
    // otherwise be drawn on by every night until then.
    let Some(day) = days
        .iter()
        .rev()
        .find(|d| d.complete && date(&d.date).is_some_and(|d| Some(d) < today_date))
    else {
        return Ok(None);
    };
    let keys = DayKeys::new(&day.date)?;
    let (groups, runs) = match manifest::read_frame_lists(exports, &keys) {
        Ok(lists) => lists,
        Err(e) => {
            tracing::warn!("not reusing frames of {}: {e}", day.date);
            return Ok(None);
        }
    };
    if groups.is_empty() && runs.is_empty() {
        return Ok(None);
    }
    Ok(Some(Reuse {
        store: exports,
        key: keys.archive,
        date: day.date.clone(),
        frames: groups.into_iter().map(|g| (g.recipe, g)).collect(),
        runs: runs.into_iter().map(|r| (r.recipe, r)).collect(),
        damaged: Default::default(),
    }))
}
