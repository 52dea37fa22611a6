//! Retention of the daily archives: which days of the exports location to delete, and deleting
//! them whole. The plan counts only complete days, keeps at least one before an export, never
//! deletes the run's own day, a later one, or a day someone is writing (a live lease).

use crate::error::Result;
use crate::export::{DayKeys, DayStatus, LEASES, day_lease_prefix, list_days_with_status};
use crate::store::Store;

/// When retention runs, relative to the run's own export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention<'a> {
    /// `cairn exports prune`, on the given day (days after it are left alone and not counted).
    Manual(Option<&'a str>),
    /// Before the run's export of `today`: make room for it, but keep at least one complete day
    /// until today's manifest is written.
    BeforeExport(&'a str),
    /// After the run published `today`.
    AfterExport(&'a str),
}

/// The days retention deletes, from `days` (oldest first); `in_use` holds days someone is
/// writing (a live lease), which are never deleted.
///
/// The `keep` newest **complete** days whose night read every configured folder are kept (before an export: `keep - 1` of the days before
/// today, and never fewer than one, since the export may still fail), older complete days go,
/// and so do incomplete days (what a killed export left) that nobody is writing. A run
/// never deletes its own day or a day after it: a day dated in the future (a pod with a wrong
/// clock, a typo in `--date`) is left alone, warned about and not counted, so that it cannot
/// push today's archive out.
pub fn retention_plan(
    days: &[DayStatus],
    keep: usize,
    when: Retention<'_>,
    in_use: &std::collections::HashSet<String>,
) -> Vec<String> {
    // The day the clock says it is, and the run's own day, which is never deleted.
    let (today, keep, own) = match when {
        Retention::Manual(t) => (t, keep, None),
        Retention::BeforeExport(t) => (Some(t), keep.saturating_sub(1).max(1), Some(t)),
        Retention::AfterExport(t) => (Some(t), keep, Some(t)),
    };
    let eligible: Vec<&DayStatus> = days
        .iter()
        .filter(|d| {
            let future = today.is_some_and(|t| d.date.as_str() > t);
            if future {
                tracing::warn!(day = %d.date, "a day dated after the run's own day is left alone by retention");
            }
            // Before the export, the run's own day is not there yet (or is being replaced).
            let own_before = matches!(when, Retention::BeforeExport(_)) && Some(d.date.as_str()) == own;
            !future && !own_before
        })
        .collect();
    // Before the export, today is not there yet (or incomplete): the kept days are older ones.
    // Only days whose night read every configured folder count: a day that lacks a folder (an
    // older cairn published such nights) must not push a whole one out.
    let counted: Vec<&str> = eligible
        .iter()
        .filter(|d| d.counts())
        .map(|d| d.date.as_str())
        .collect();
    let kept: Vec<&str> = counted[counted.len().saturating_sub(keep)..].to_vec();
    let oldest_kept = kept.first().copied();
    eligible
        .iter()
        .filter(|d| Some(d.date.as_str()) != own)
        .filter(|d| !in_use.contains(&d.date))
        .filter(|d| {
            // An incomplete day nobody is writing is what a killed export left: no reader may
            // use it, and on a volume sized for `keep` archives it holds one archive's room.
            // A complete day that does not count goes once it is older than every kept day.
            !d.complete
                || (d.counts() && !kept.contains(&d.date.as_str()))
                || (!d.counts() && oldest_kept.is_some_and(|o| d.date.as_str() < o))
        })
        .map(|d| d.date.clone())
        .collect()
}

/// Days of the exports location that a live lease says someone is writing now.
pub fn days_in_use(exports: &dyn Store) -> Result<std::collections::HashSet<String>> {
    let mut out = std::collections::HashSet::new();
    for (key, _) in crate::repo::lease::live(exports, LEASES)? {
        if let Some(day) = key.strip_prefix(LEASES).and_then(|k| k.split('/').next()) {
            out.insert(day.to_string());
        }
    }
    Ok(out)
}

/// `cairn exports prune`: keeps the `keep` newest complete days (see [`retention_plan`]) and
/// deletes the rest. Returns the deleted dates.
pub fn prune(exports: &dyn Store, keep: usize) -> Result<Vec<String>> {
    prune_for(exports, keep, Retention::Manual(None))
}

/// Applies [`retention_plan`]: each deleted day goes whole (manifest first, so that a day being
/// deleted never looks complete), with its reports and ended leases. Returns the deleted dates.
pub fn prune_for(exports: &dyn Store, keep: usize, when: Retention<'_>) -> Result<Vec<String>> {
    let days = list_days_with_status(exports)?;
    let plan = retention_plan(&days, keep, when, &days_in_use(exports)?);
    let mut deleted = Vec::new();
    for date in &plan {
        let keys = DayKeys::new(date)?;
        exports.delete(&keys.manifest)?;
        for o in exports.list(&format!("{date}/"))? {
            exports.delete(&o.key)?;
        }
        // The whole day goes, also what a killed export left in its folder; a day with a live
        // lease is never in the plan, so there is no live writer to wait for. A key that may not
        // list or abort uploads still prunes the objects.
        if let Err(e) = exports.clean_temporaries(&format!("{date}/"), std::time::Duration::ZERO) {
            tracing::warn!(day = %date, error = %e, "temporary objects of a pruned day remain");
        }
        for o in exports.list(&format!("_reports/{date}/"))? {
            exports.delete(&o.key)?;
        }
        // Ended leases stay behind where the nightly key may not delete them.
        for o in exports.list(&day_lease_prefix(date))? {
            exports.delete(&o.key)?;
        }
        deleted.push(date.clone());
    }
    Ok(deleted)
}
