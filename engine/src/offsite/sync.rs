//! The sync: the offsite lease taken, the plan computed (`plan.rs`) and carried out day by day —
//! uploads with their attempts (`upload.rs`), each day's status written while the lease holds,
//! the run's report — then `keep_daily` on the remote (`prune.rs`). The executor decides only
//! what the plan cannot know: the budget spent, an upload that failed, the lease lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::failure::Failure;
use super::lease::LeaseCheck;
use super::plan::{self, DayAction, DayPlan, DayWork, LeaseClock};
use super::process;
use super::prune;
use super::status::{self, Check, DayOffsite, State};
use super::upload::{Scratch, Uploading, upload_with_attempts};
use super::uploader::Uploader;
use super::{DayFailure, SyncOptions, SyncReport};
use crate::error::Result;
use crate::store::Store;

/// Copies every complete day not yet on the remote, newest first. Holds the offsite lease in
/// the exports location (a second sync exits 4). Writes each day's status and the run's report.
pub fn sync(exports: &dyn Store, up: &dyn Uploader, opts: &SyncOptions) -> Result<SyncReport> {
    let lease = crate::repo::lease::acquire(
        exports,
        status::LEASES,
        "offsite sync",
        crate::export::DAY_LEASE_TTL,
        None,
    )?;
    let report = lease.hold(|| -> Result<SyncReport> {
        let report = sync_leased(exports, up, opts, &|| lease.confirm())?;
        let key = format!("_reports/{}/offsite.json", opts.date);
        exports.put(
            &key,
            &serde_json::to_vec_pretty(&report).expect("serializes"),
        )?;
        Ok(report)
    })?;
    lease.release();
    Ok(report)
}

/// The sync under its lease (`confirm` confirms it): plans, carries the plan out, prunes the
/// remote, and says how it went.
pub(super) fn sync_leased(
    exports: &dyn Store,
    up: &dyn Uploader,
    opts: &SyncOptions,
    confirm: &dyn Fn() -> Result<()>,
) -> Result<SyncReport> {
    let began = Instant::now();
    let report = SyncReport {
        version: 1,
        date: opts.date.clone(),
        remote: up.describe(),
        started: jiff::Timestamp::now().to_string(),
        client: up.client(opts.timeout.min(Duration::from_secs(60))),
        ..SyncReport::default()
    };
    let survey = plan::survey(exports, opts, LeaseClock::Store)?;
    let scratch = Scratch::new(&opts.scratch)?;
    let mut run = Run {
        ctx: Uploading {
            exports,
            up,
            opts,
            scratch: &scratch.0,
            began,
        },
        report,
        statuses: survey.statuses.clone(),
        lease: LeaseCheck::new(confirm),
    };
    run.carry_out(exports, up, opts, &survey)?;
    if opts.keep_daily > 0 && !run.lease.is_lost() {
        prune::after_uploads(
            exports,
            up,
            opts,
            &mut run.report,
            &mut run.statuses,
            &mut run.lease,
        )?;
    }
    let mut report = run.report;
    report.remote_bytes = status::remote_bytes(&run.statuses);
    report.finished = jiff::Timestamp::now().to_string();
    report.exit_code = if run.lease.is_lost() {
        crate::error::exit::LOCKED
    } else if report.failed.is_empty() && report.pending.is_empty() && report.failures.is_empty() {
        crate::error::exit::OK
    } else {
        crate::error::exit::OFFSITE_INCOMPLETE
    };
    Ok(report)
}

/// Whether the sync goes on to the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Go,
    Stop,
}

/// A sync carrying out its plan: what it uploads with, what it has done so far.
struct Run<'a> {
    ctx: Uploading<'a>,
    report: SyncReport,
    /// Every day's status as written so far.
    statuses: BTreeMap<String, DayOffsite>,
    lease: LeaseCheck<'a>,
}

impl Run<'_> {
    /// Each day of `survey`, newest first, planned ([`plan::plan_day`], as [`plan::plan`]
    /// plans it) right before it is carried out, until one stops the sync: the night's own day
    /// never waits behind the checks of older ones, and each is read as it is when its turn
    /// comes.
    fn carry_out(
        &mut self,
        exports: &dyn Store,
        up: &dyn Uploader,
        opts: &SyncOptions,
        survey: &plan::Survey,
    ) -> Result<()> {
        let dates: Vec<String> = survey.days.iter().map(|(d, _)| d.clone()).collect();
        for (i, (date, size)) in survey.days.iter().enumerate() {
            let day = plan::plan_day(exports, up, opts, survey, date, *size)?;
            if self.day(day, &dates, i)? == Next::Stop {
                break;
            }
        }
        Ok(())
    }

    /// Day `i` of `dates` (the plan's days, in order).
    fn day(&mut self, day: DayPlan, dates: &[String], i: usize) -> Result<Next> {
        let DayPlan {
            date,
            action,
            work,
            error,
        } = day;
        match action {
            // `Left` comes only after a day that stops the sync: never reached.
            DayAction::Busy | DayAction::Left => {
                self.report.pending.push(date);
                Ok(Next::Go)
            }
            DayAction::Abort { .. } => Err(error.expect("an aborted day keeps its error")),
            DayAction::Unchecked { warning, stop } => {
                Ok(self.unchecked(&date, warning, stop, &dates[i + 1..]))
            }
            DayAction::UpToDate { check } => {
                let work = work.expect("a checked day was read");
                self.up_to_date(date, check, work, &dates[i..])
            }
            DayAction::Upload { again } => {
                let work = work.expect("a day to upload was read");
                self.upload(date, again, work, dates, i)
            }
        }
    }

    /// A day that could not be checked: it stays as it is, with a warning; a failure only a
    /// person can fix leaves the days after it (`rest`) for the next run.
    fn unchecked(
        &mut self,
        date: &str,
        warning: String,
        stop: Option<Failure>,
        rest: &[String],
    ) -> Next {
        tracing::warn!(date = %date, warning = %warning, "offsite");
        self.report.warnings.push(warning);
        let Some(kind) = stop else {
            return Next::Go;
        };
        *self
            .report
            .failures
            .entry(kind.as_str().to_string())
            .or_default() += 1;
        stop_after(&mut self.report, kind, rest.to_vec());
        Next::Stop
    }

    /// A day found on the remote as it should be; its status is written again only where it
    /// says less than the check found. `rest`: this day and those after it.
    fn up_to_date(
        &mut self,
        date: String,
        check: Check,
        work: DayWork,
        rest: &[String],
    ) -> Result<Next> {
        self.report.up_to_date.push(date);
        let s = work.prior.expect("a checked day was marked uploaded");
        let p = work.parts.as_ref().expect("checked");
        let sizes = (Some(p[1].size), Some(p[2].size));
        // Sizes of statuses written before they were recorded are filled in.
        if s.checked != Some(check) || (s.sha256_file_size, s.manifest_size) != sizes {
            let mut st = s;
            st.checked = Some(check);
            (st.sha256_file_size, st.manifest_size) = sizes;
            st.updated = jiff::Timestamp::now().to_string();
            if !self.save(st)? {
                self.stop(rest);
                return Ok(Next::Stop);
            }
        }
        Ok(Next::Go)
    }

    /// Day `i` of `dates`, uploaded (marked pending first when its copy there was found not as
    /// uploaded), unless the budget is spent; its status written with the outcome.
    fn upload(
        &mut self,
        date: String,
        again: Option<String>,
        mut work: DayWork,
        dates: &[String],
        i: usize,
    ) -> Result<Next> {
        if let Some(reason) = again {
            tracing::warn!(date = %date, %reason, "the remote copy is not as uploaded; uploading it again");
            let mut st = work
                .prior
                .clone()
                .expect("a day uploaded again was marked uploaded");
            st.state = State::Pending;
            st.failure = Some(Failure::of(&reason));
            st.reason = Some(reason);
            st.updated = jiff::Timestamp::now().to_string();
            if !self.save(st)? {
                self.stop(&dates[i..]);
                return Ok(Next::Stop);
            }
        }
        if self.ctx.began.elapsed() >= self.ctx.opts.budget {
            self.report.pending.push(date);
            return Ok(Next::Go);
        }
        let (outcome, attempt) = upload_with_attempts(&self.ctx, &work.keys, &mut work.parts)?;
        let st = self.record(&date, &work, outcome, attempt);
        let failed_for = if st.state == State::Failed {
            st.failure
        } else {
            None
        };
        if !self.save(st)? {
            self.stop(&dates[i..]);
            return Ok(Next::Stop);
        }
        // A failure of the client or the account, not of this day: every further day would
        // meet it too, so they wait for the next run instead of spending the budget.
        if let Some(kind) = failed_for.filter(|k| k.needs_person()) {
            let report = &self.report;
            let rest = dates[i + 1..]
                .iter()
                .filter(|d| !report.uploaded.contains(d) && !report.up_to_date.contains(d))
                .cloned()
                .collect();
            stop_after(&mut self.report, kind, rest);
            return Ok(Next::Stop);
        }
        Ok(Next::Go)
    }

    /// The status of a day after its upload's attempts, with the report told how it went.
    fn record(
        &mut self,
        date: &str,
        work: &DayWork,
        outcome: Result<(u64, Check)>,
        attempt: u32,
    ) -> DayOffsite {
        // As read by the attempt that ended the loop (an upload needs them read).
        let sha = work
            .parts
            .as_ref()
            .ok()
            .and_then(|p| p[0].sha256.clone())
            .unwrap_or_default();
        let sizes = work
            .parts
            .as_ref()
            .map_or((None, None), |p| (Some(p[1].size), Some(p[2].size)));
        let now = jiff::Timestamp::now().to_string();
        let report = &mut self.report;
        match outcome {
            Ok((sent, check)) => {
                report.bytes += sent;
                report.uploaded.push(date.to_string());
                tracing::info!(date = %date, bytes = sent, "archive copied offsite and checked");
                DayOffsite {
                    version: 1,
                    date: date.to_string(),
                    state: State::Uploaded,
                    remote: self.ctx.up.describe(),
                    archive_size: work.size,
                    archive_sha256: sha,
                    sha256_file_size: sizes.0,
                    manifest_size: sizes.1,
                    attempts: 0,
                    uploaded: Some(now.clone()),
                    checked: Some(check),
                    reason: None,
                    failure: None,
                    client: report.client.clone(),
                    updated: now,
                }
            }
            Err(e) => {
                let reason = process::redact(&e.to_string());
                let kind = Failure::of(&reason);
                tracing::error!(date = %date, error = %reason, kind = kind.as_str(), fix = kind.fix(), "offsite copy failed");
                report.failed.push(DayFailure {
                    date: date.to_string(),
                    reason: reason.clone(),
                    kind,
                    fix: kind.fix().to_string(),
                });
                *report
                    .failures
                    .entry(kind.as_str().to_string())
                    .or_default() += 1;
                DayOffsite {
                    version: 1,
                    date: date.to_string(),
                    state: State::Failed,
                    remote: self.ctx.up.describe(),
                    archive_size: work.size,
                    archive_sha256: sha,
                    sha256_file_size: None,
                    manifest_size: None,
                    attempts: work.prior.as_ref().map_or(0, |p| p.attempts) + attempt,
                    uploaded: None,
                    checked: None,
                    reason: Some(reason),
                    failure: Some(kind),
                    client: report.client.clone(),
                    updated: now,
                }
            }
        }
    }

    /// Writes a day's status if the lease still holds; `Ok(false)`: it does not, nothing
    /// written.
    fn save(&mut self, st: DayOffsite) -> Result<bool> {
        if !self.lease.held() {
            let line = self
                .lease
                .lost_line(&format!("writing the status of {}", st.date));
            tracing::warn!("{line}");
            self.report.warnings.push(line);
            return Ok(false);
        }
        status::save(self.ctx.exports, &st)?;
        self.statuses.insert(st.date.clone(), st);
        Ok(true)
    }

    /// Once the lease is lost nothing more is written: the days not done among `rest` are left.
    fn stop(&mut self, rest: &[String]) {
        for d in rest {
            if !self.report.uploaded.contains(d) && !self.report.up_to_date.contains(d) {
                self.report.pending.push(d.clone());
            }
        }
    }
}

/// A failure only a person can fix (no session, a client too old, no space): the days not done
/// are left `pending` for the next run, with one warning line saying why.
fn stop_after(report: &mut SyncReport, kind: Failure, rest: Vec<String>) {
    if !rest.is_empty() {
        report.warnings.push(format!(
            "stopped after a {} failure: {} left for the next run ({})",
            kind.as_str(),
            rest.len(),
            kind.fix()
        ));
        report.pending.extend(rest);
    }
}
