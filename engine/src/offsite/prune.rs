//! `offsite.keep_daily` on the remote, as a plan and its execution. The plan reads only (what it
//! cannot check it logs as it meets it, as the sync carries it out right away): it finds, newest
//! first, the `keep_daily` newest days that are complete and checked there (checked by this
//! sync, or by [`complete_on_remote`]), and picks the remote days older than the last of them
//! that are cairn's. Fewer such days, or a day failed tonight: nothing is deleted. The execution
//! deletes what the plan picked, confirming the lease before each deletion and each status
//! written after one.
//!
//! The sync plans its deletions after its uploads, from the remote as they left it: what is
//! complete there tonight is known only then. `offsite::plan` projects the same plan as if the
//! planned uploads had gone through.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use super::lease::LeaseCheck;
use super::parts::again;
use super::process;
use super::status::{self, DayOffsite, State};
use super::uploader::{Uploader, Wanted};
use super::{SyncOptions, SyncReport};
use crate::error::{Error, ErrorKind, Result};
use crate::export::DayKeys;
use crate::store::Store;

/// What `keep_daily` deletes on the remote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PrunePlan {
    /// The remote days to delete, oldest first: cairn's own days older than the last of the
    /// `keep_daily` newest complete ones.
    pub delete: Vec<String>,
    /// Folders named like older days that hold no archive of cairn's: left on the remote.
    pub strangers: Vec<String>,
    /// Fewer complete, checked days than `keep_daily` (this many) were found there: nothing is
    /// deleted.
    pub short: Option<usize>,
    /// What could not be listed or checked on the remote (one line each, secrets redacted), in
    /// the order met.
    pub warnings: Vec<String>,
}

/// A remote day that could not be listed or checked: a warning (logged as it is met), unless the
/// client cannot be started, which stops the sync.
fn warn(warnings: &mut Vec<String>, e: &Error, what: String) -> Result<()> {
    if e.kind() == ErrorKind::Config {
        return Err(again(e));
    }
    let line = process::redact(&format!("{what}: {e}"));
    tracing::warn!(warning = %line, "offsite.keep_daily");
    warnings.push(line);
    Ok(())
}

/// `keep_daily` after tonight's uploads: nothing on a night a day failed (the exports may have
/// lost days just when the second copy is needed); otherwise planned from the remote as the
/// uploads left it, and carried out.
pub(super) fn after_uploads(
    exports: &dyn Store,
    up: &dyn Uploader,
    opts: &SyncOptions,
    report: &mut SyncReport,
    statuses: &mut BTreeMap<String, DayOffsite>,
    lease: &mut LeaseCheck<'_>,
) -> Result<()> {
    if !report.failed.is_empty() {
        let line =
            "a day failed to reach the remote: nothing deleted there tonight (offsite.keep_daily)";
        tracing::warn!("{line}");
        report.warnings.push(line.into());
        return Ok(());
    }
    let checked_now: BTreeSet<String> = report
        .uploaded
        .iter()
        .chain(&report.up_to_date)
        .cloned()
        .collect();
    let planned = plan(up, opts, &checked_now, statuses, &[])?;
    execute(planned, exports, up, opts, report, statuses, lease)
}

/// The remote days `keep_daily` deletes, from the remote's own listing: `checked_now` are the
/// days this sync found or made complete there, `statuses` the days' statuses. `to_come` are days
/// this sync is still to upload (only for `offsite::plan`'s projection; empty in the sync): they
/// count as on the remote and as cairn's. Reads only; a remote day that cannot be listed is a
/// warning, a client that cannot be started an error.
pub(super) fn plan(
    up: &dyn Uploader,
    opts: &SyncOptions,
    checked_now: &BTreeSet<String>,
    statuses: &BTreeMap<String, DayOffsite>,
    to_come: &[String],
) -> Result<PrunePlan> {
    let mut plan = PrunePlan::default();
    let mut remote = match up.days(opts.timeout) {
        Ok(d) => d,
        Err(e) => {
            warn(&mut plan.warnings, &e, "listing the remote's days".into())?;
            return Ok(plan);
        }
    };
    remote.extend(to_come.iter().cloned());
    remote.sort();
    remote.dedup();
    if remote.len() <= opts.keep_daily {
        return Ok(plan);
    }
    let complete = newest_complete(up, opts, &remote, checked_now, statuses, &mut plan.warnings)?;
    let Some(oldest_kept) = complete
        .last()
        .filter(|_| complete.len() == opts.keep_daily)
    else {
        tracing::info!(
            complete = complete.len(),
            keep_daily = opts.keep_daily,
            "fewer complete days on the remote than offsite.keep_daily: nothing deleted there"
        );
        plan.short = Some(complete.len());
        return Ok(plan);
    };
    // Only days cairn put there: those with a status, and those whose folder holds the day's
    // archive under its name (a day whose status a replaced exports volume lost). A folder of
    // the user's that is merely named like a date is left alone.
    for d in remote.iter().filter(|d| *d < oldest_kept) {
        if statuses.contains_key(d) || to_come.contains(d) {
            plan.delete.push(d.clone());
            continue;
        }
        let archive = DayKeys::new(d)?.archive_name();
        let want = [Wanted {
            name: &archive,
            size: None,
        }];
        match up.list(d, &want, opts.timeout) {
            Ok(files) if files.iter().any(|f| f.name == archive) => plan.delete.push(d.clone()),
            Ok(_) => plan.strangers.push(d.clone()),
            Err(e) => warn(
                &mut plan.warnings,
                &e,
                format!("checking {d} on the remote"),
            )?,
        }
    }
    Ok(plan)
}

/// Newest first, up to `keep_daily` days of `remote` (sorted) that are complete and checked
/// there: checked by this sync, or found so by [`complete_on_remote`].
fn newest_complete(
    up: &dyn Uploader,
    opts: &SyncOptions,
    remote: &[String],
    checked_now: &BTreeSet<String>,
    statuses: &BTreeMap<String, DayOffsite>,
    warnings: &mut Vec<String>,
) -> Result<Vec<String>> {
    let mut complete = Vec::new();
    for d in remote.iter().rev() {
        if complete.len() == opts.keep_daily {
            break;
        }
        let ok = checked_now.contains(d)
            || match complete_on_remote(up, d, statuses.get(d), opts.timeout) {
                Ok(ok) => ok,
                Err(e) => {
                    warn(warnings, &e, format!("checking {d} on the remote"))?;
                    false
                }
            };
        if ok {
            complete.push(d.clone());
        }
    }
    Ok(complete)
}

/// Carries out `plan`: records what planning met, then deletes its days, oldest first. A remote
/// day that cannot be deleted is a warning; a client that cannot be started stops the sync. The
/// lease is confirmed before each deletion and each status written after one: once it is lost,
/// nothing more is done.
pub(super) fn execute(
    plan: PrunePlan,
    exports: &dyn Store,
    up: &dyn Uploader,
    opts: &SyncOptions,
    report: &mut SyncReport,
    statuses: &mut BTreeMap<String, DayOffsite>,
    lease: &mut LeaseCheck<'_>,
) -> Result<()> {
    // Logged by the plan as they were met.
    report.warnings.extend(plan.warnings);
    if plan.short.is_some() {
        return Ok(());
    }
    if !plan.strangers.is_empty() {
        report.warnings.push(format!(
            "left on the remote, holding no archive of cairn's: {}",
            plan.strangers.join(", ")
        ));
    }
    for old in &plan.delete {
        // Irrevocable: only while the lease is still this sync's.
        if !lease.held() {
            stopped(report, lease, format!("deleting {old} on the remote"));
            return Ok(());
        }
        if let Err(e) = up.delete_day(old, opts.timeout) {
            warn(
                &mut report.warnings,
                &e,
                format!("deleting {old} on the remote"),
            )?;
            continue;
        }
        tracing::info!(date = %old, "remote day deleted (offsite.keep_daily)");
        report.deleted_remote.push(old.clone());
        if let Some(mut st) = statuses.get(old).cloned() {
            if !lease.held() {
                stopped(
                    report,
                    lease,
                    format!("writing the status of {old}, deleted on the remote"),
                );
                return Ok(());
            }
            st.state = State::Pending;
            st.checked = None;
            st.failure = None;
            st.reason = Some("deleted on the remote by offsite.keep_daily".into());
            st.updated = jiff::Timestamp::now().to_string();
            status::save(exports, &st)?;
            statuses.insert(old.clone(), st);
        }
    }
    Ok(())
}

/// The lease was lost before `what`: one warning, and nothing more is done.
fn stopped(report: &mut SyncReport, lease: &LeaseCheck<'_>, what: String) {
    let line = lease.lost_line(&what);
    tracing::warn!(warning = %line, "offsite.keep_daily");
    report.warnings.push(line);
}

/// Whether the remote's copy of `date` is complete and checked, from the remote alone: its three
/// files there with the sizes the day's status recorded when it was uploaded and checked (and the
/// archive's SHA-256, where the remote gives one). A status written before the companions' sizes
/// were recorded has only the archive's: the other two must then merely not be empty. A day
/// without such a status (a replaced exports volume lost them) is not counted: it cannot be told
/// from a partial copy.
fn complete_on_remote(
    up: &dyn Uploader,
    date: &str,
    status: Option<&DayOffsite>,
    timeout: Duration,
) -> Result<bool> {
    let Some(st) = status.filter(|s| s.state == State::Uploaded) else {
        return Ok(false);
    };
    let keys = DayKeys::new(date)?;
    let name = |key: &str| key.rsplit('/').next().expect("DATE/NAME").to_string();
    let files = [
        (name(&keys.archive), Some(st.archive_size)),
        (name(&keys.sha256), st.sha256_file_size),
        (name(&keys.manifest), st.manifest_size),
    ];
    let want: Vec<Wanted<'_>> = files
        .iter()
        .map(|(name, size)| Wanted { name, size: *size })
        .collect();
    let listed = up.list(date, &want, timeout)?;
    let find = |name: &str| listed.iter().find(|f| f.name == name);
    let archive_ok = find(&files[0].0).is_some_and(|f| {
        f.size == st.archive_size && f.sha256.as_ref().is_none_or(|h| *h == st.archive_sha256)
    });
    let others_ok = files[1..]
        .iter()
        .all(|(name, size)| find(name).is_some_and(|f| size.map_or(f.size > 0, |s| f.size == s)));
    Ok(archive_ok && others_ok)
}
