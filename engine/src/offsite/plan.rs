//! What a sync does with each day of the exports, decided before anything is done: a
//! [`SyncPlan`]. Planning reads — the exports' days and files, the statuses, the day leases, and
//! the remote's listing of each day marked uploaded — and writes nothing: no upload, no delete,
//! no status; what it met with a day is logged and reported by the execution once it gets to
//! that day, so that a sync stopped earlier says nothing of the days it never reached. The sync
//! plans with the same functions ([`survey`], then [`plan_day`] for each day right before it
//! carries that day out, newest first, so that the night's own day never waits behind the checks
//! of older ones); [`plan`] is the same plan for every day at once, for a dry run and for tests
//! to hold the sync to.
//!
//! What only the execution can know is not planned: the run's budget (a day planned for upload
//! is left pending once it is spent), an upload that fails, and the lease lost midway. After a
//! failure only a person can fix, or a client that cannot be started, the days after it are not
//! looked at (`Left`), as the sync never reaches them.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Serialize;

use super::SyncOptions;
use super::failure::Failure;
use super::parts::{Part, again, check_listed, parts_of, wanted};
use super::process;
use super::prune::{self, PrunePlan};
use super::status::{self, Check, DayOffsite, State};
use super::uploader::Uploader;
use crate::error::{Error, ErrorKind, Result};
use crate::export::{DayKeys, list_days};
use crate::store::Store;

/// What a sync will do, day by day, newest first.
#[derive(Debug, Serialize)]
pub struct SyncPlan {
    /// The complete days of the exports the sync looks at (with `keep_daily`, only that many of
    /// the newest: older ones would be deleted on the remote again), newest first.
    pub days: Vec<DayPlan>,
    /// With `keep_daily`, the remote days deleted once the planned uploads went through. Only
    /// [`plan`] projects it: the sync plans its deletions after its uploads, from the remote as
    /// they left it (`prune.rs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prune: Option<PrunePlan>,
}

impl SyncPlan {
    /// The days to upload, newest first (as the report's `uploaded` lists them).
    pub fn uploads(&self) -> Vec<String> {
        self.dates(|a| matches!(a, DayAction::Upload { .. }))
    }

    /// The days marked uploaded and found on the remote as they should be.
    pub fn up_to_date(&self) -> Vec<String> {
        self.dates(|a| matches!(a, DayAction::UpToDate { .. }))
    }

    /// The days left for the next run before anything is tried: busy, or not looked at.
    pub fn pending(&self) -> Vec<String> {
        self.dates(|a| matches!(a, DayAction::Busy | DayAction::Left))
    }

    /// The remote days `keep_daily` deletes, oldest first (empty without a projection).
    pub fn deletions(&self) -> Vec<String> {
        self.prune
            .as_ref()
            .map(|p| p.delete.clone())
            .unwrap_or_default()
    }

    fn dates(&self, which: impl Fn(&DayAction) -> bool) -> Vec<String> {
        self.days
            .iter()
            .filter(|d| which(&d.action))
            .map(|d| d.date.clone())
            .collect()
    }
}

/// One day of a [`SyncPlan`].
#[derive(Debug, Serialize)]
pub struct DayPlan {
    /// The day.
    pub date: String,
    /// What the sync does with it.
    #[serde(flatten)]
    pub action: DayAction,
    /// What carrying it out needs, read while planning (absent for a day not looked at).
    #[serde(skip)]
    pub(super) work: Option<DayWork>,
    /// The error the sync stops with at this day ([`DayAction::Abort`]), as it was met.
    #[serde(skip)]
    pub(super) error: Option<Error>,
}

/// What the sync does with a day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum DayAction {
    /// Being written or pruned right now (its day lease is live): left pending for the next run.
    Busy,
    /// Marked uploaded, and on the remote as it should be, checked this way.
    UpToDate { check: Check },
    /// Not on the remote as it should be: uploaded (with its `.sha256` and manifest) and checked
    /// there. `again` says why a day marked uploaded is uploaded again (one line, redacted).
    Upload { again: Option<String> },
    /// Marked uploaded, but the exports or the remote could not be read to check it: it stays as
    /// it is, with this warning (redacted), and is checked again next run. `stop`: the remote's
    /// refusal is one only a person can fix, which stops the sync at this day.
    Unchecked {
        warning: String,
        stop: Option<Failure>,
    },
    /// The client cannot be started (or the exports refuse to be read) at this day's check: the
    /// sync stops there with this error (redacted), a configuration error.
    Abort { reason: String },
    /// Not looked at: the sync stops at an earlier day.
    Left,
}

/// A day's files and status, read by the plan for its execution.
#[derive(Debug)]
pub(super) struct DayWork {
    pub(super) keys: DayKeys,
    /// The archive's size in the exports.
    pub(super) size: u64,
    /// Its status before this sync.
    pub(super) prior: Option<DayOffsite>,
    /// Its three files as the exports hold them, or why they could not be read (then read again
    /// by the upload's first attempt).
    pub(super) parts: Result<Vec<Part>>,
}

impl DayPlan {
    /// A day with nothing read for it.
    fn bare(date: &str, action: DayAction) -> DayPlan {
        DayPlan {
            date: date.to_string(),
            action,
            work: None,
            error: None,
        }
    }
}

/// What the sync reads before it decides anything.
#[derive(Debug)]
pub(super) struct Survey {
    /// Every day's status, by date.
    pub(super) statuses: BTreeMap<String, DayOffsite>,
    /// The complete days of the exports with their archives' sizes, newest first; with
    /// `keep_daily`, only that many.
    pub(super) days: Vec<(String, u64)>,
    /// The days being written or pruned right now (their day lease is live).
    busy: HashSet<String>,
}

/// Whose clock says whether a day lease is live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LeaseClock {
    /// The store's, as every lease holder judges them (reading a local store's clock writes a
    /// file): the sync's.
    Store,
    /// This machine's: for [`plan`] on its own, which must write nothing.
    ThisMachine,
}

/// Reads the statuses, the exports' complete days and the days in use.
pub(super) fn survey(exports: &dyn Store, opts: &SyncOptions, clock: LeaseClock) -> Result<Survey> {
    let statuses = status::load_all(exports)?;
    let mut days: Vec<_> = list_days(exports)?
        .into_iter()
        .filter(|d| d.complete && d.archive_size.is_some())
        .collect();
    days.reverse();
    // With `keep_daily`, only the newest days are copied (older ones would be deleted again).
    if opts.keep_daily > 0 {
        days.truncate(opts.keep_daily);
    }
    // A day being written or pruned right now (its day lease is live) is left for the next run.
    let busy = match clock {
        LeaseClock::Store => crate::export::retention::days_in_use(exports)?,
        LeaseClock::ThisMachine => days_in_use_by_this_clock(exports)?,
    };
    Ok(Survey {
        statuses,
        days: days
            .into_iter()
            .map(|d| (d.date, d.archive_size.expect("filtered")))
            .collect(),
        busy,
    })
}

/// `export::retention::days_in_use`, judged by this machine's clock.
fn days_in_use_by_this_clock(exports: &dyn Store) -> Result<HashSet<String>> {
    let prefix = crate::export::LEASES;
    Ok(crate::repo::lease::live_by_this_clock(exports, prefix)?
        .into_iter()
        .filter_map(|(key, _)| {
            key.strip_prefix(prefix)
                .and_then(|k| k.split('/').next())
                .map(str::to_string)
        })
        .collect())
}

/// What a sync would do now, without doing any of it: each day's action and, with `keep_daily`,
/// the remote days it would delete once its uploads went through. Reads the exports, the
/// statuses and the remote's listings; uploads, deletes and writes nothing, and takes no lease
/// (a sync running meanwhile may change what is read).
pub fn plan(exports: &dyn Store, up: &dyn Uploader, opts: &SyncOptions) -> Result<SyncPlan> {
    let survey = survey(exports, opts, LeaseClock::ThisMachine)?;
    let mut plan = plan_days(exports, up, opts, &survey)?;
    let aborts = plan
        .days
        .iter()
        .any(|d| matches!(d.action, DayAction::Abort { .. }));
    if opts.keep_daily > 0 && !aborts {
        let to_come = plan.uploads();
        let mut checked: BTreeSet<String> = plan.up_to_date().into_iter().collect();
        checked.extend(to_come.iter().cloned());
        plan.prune = Some(prune::plan(up, opts, &checked, &survey.statuses, &to_come)?);
    }
    Ok(plan)
}

/// Each day of `survey`, newest first, with what the sync does with it; after a day that stops
/// the sync, the rest are `Left` unread.
pub(super) fn plan_days(
    exports: &dyn Store,
    up: &dyn Uploader,
    opts: &SyncOptions,
    survey: &Survey,
) -> Result<SyncPlan> {
    let mut days = Vec::with_capacity(survey.days.len());
    let mut stopped = false;
    for (date, size) in &survey.days {
        if stopped {
            days.push(DayPlan::bare(date, DayAction::Left));
            continue;
        }
        let day = plan_day(exports, up, opts, survey, date, *size)?;
        stopped = matches!(
            day.action,
            DayAction::Abort { .. } | DayAction::Unchecked { stop: Some(_), .. }
        );
        days.push(day);
    }
    Ok(SyncPlan { days, prune: None })
}

/// One day: busy, to upload, or — marked uploaded — checked against the remote's listing.
pub(super) fn plan_day(
    exports: &dyn Store,
    up: &dyn Uploader,
    opts: &SyncOptions,
    survey: &Survey,
    date: &str,
    size: u64,
) -> Result<DayPlan> {
    if survey.busy.contains(date) {
        return Ok(DayPlan::bare(date, DayAction::Busy));
    }
    let keys = DayKeys::new(date)?;
    let prior = survey.statuses.get(date).cloned();
    // The day's three files as the exports hold them (one read of its `.sha256`, one listing),
    // for the check of an uploaded day and for every attempt of an upload.
    let parts = parts_of(exports, &keys);
    let (action, error) = match &prior {
        Some(s) if s.state == State::Uploaded => {
            check_uploaded(exports, up, opts, date, size, s, &parts)
        }
        _ => (DayAction::Upload { again: None }, None),
    };
    Ok(DayPlan {
        date: date.to_string(),
        action,
        work: Some(DayWork {
            keys,
            size,
            prior,
            parts,
        }),
        error,
    })
}

/// A day marked uploaded, checked against the remote's listing (one call): each file under its
/// name with the exports' size, and the archive the same as when it went.
fn check_uploaded(
    exports: &dyn Store,
    up: &dyn Uploader,
    opts: &SyncOptions,
    date: &str,
    size: u64,
    s: &DayOffsite,
    parts: &Result<Vec<Part>>,
) -> (DayAction, Option<Error>) {
    let checked = match parts {
        // The exports could not be read just now: that says nothing about the day or its copy,
        // so the day stays as it is and is checked again next run.
        Err(e) if matches!(e.kind(), ErrorKind::Transient | ErrorKind::Io) => {
            let warning = process::redact(&format!(
                "could not check {date} (it is checked again next run): {e}"
            ));
            return (
                DayAction::Unchecked {
                    warning,
                    stop: None,
                },
                None,
            );
        }
        Err(e) => Err(again(e)),
        Ok(p) if p[0].sha256.as_ref() != Some(&s.archive_sha256) || s.archive_size != size => Err(
            Error::new(ErrorKind::Io, "the day was exported again since its upload"),
        ),
        Ok(p) => match up.list(date, &wanted(p), opts.timeout) {
            Ok(listed) => check_listed(exports, date, p, &listed),
            // The client could not list (no session, the service refusing it): that says
            // nothing about the copy there, so the day stays as it is and is checked again next
            // run; a client that cannot start still stops the sync.
            Err(e) if e.kind() != ErrorKind::Config => {
                let warning = process::redact(&format!(
                    "could not check {date} on the remote (it stays {}, checked again next run): {e}",
                    s.state.as_str()
                ));
                // No session, a client the service refuses: the sync fails (exit 5, the kind
                // counted for the alert) and starts no further day.
                let kind = Failure::of(&process::redact(&e.to_string()));
                let stop = kind.needs_person().then_some(kind);
                return (DayAction::Unchecked { warning, stop }, None);
            }
            Err(e) => Err(e),
        },
    };
    match checked {
        Ok(check) => (DayAction::UpToDate { check }, None),
        // A client that cannot be started stops the sync (exit 2), marking nothing.
        Err(e) if e.kind() == ErrorKind::Config => {
            let reason = process::redact(&e.to_string());
            (DayAction::Abort { reason }, Some(e))
        }
        Err(e) => (
            DayAction::Upload {
                again: Some(process::redact(&e.to_string())),
            },
            None,
        ),
    }
}
