//! Snapshot retention: which snapshots a calendar policy keeps, and forgetting the others.
//!
//! The plan depends only on the snapshots' times, the policy and the time zone, so that it can
//! be printed before anything is deleted (`--dry-run`) and pinned by golden tests. Forgetting
//! deletes snapshot objects only: their packs stay until a garbage collection proves them
//! unreferenced, so a forget can never take a chunk from under a backup.

use serde::Serialize;

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::repo::Repository;

/// How many snapshots to keep, by calendar in the configured time zone.
///
/// Each `keep_*` count keeps the newest snapshot of each of that many most recent days (ISO
/// weeks, months) that have a snapshot: a night without a run is not a day kept. `within` keeps
/// every snapshot taken less than that long before the newest one (not before now, so that a
/// wrong clock cannot make it keep nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    /// Keep everything within this span of the newest snapshot.
    #[serde(serialize_with = "span_text")]
    pub within: Option<jiff::SignedDuration>,
}

fn span_text<S: serde::Serializer>(
    d: &Option<jiff::SignedDuration>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&format!("{d:#}")),
        None => s.serialize_none(),
    }
}

impl Policy {
    /// Whether the policy keeps nothing at all: refused unless asked for explicitly.
    pub fn keeps_nothing(&self) -> bool {
        self.daily == 0 && self.weekly == 0 && self.monthly == 0 && self.within.is_none()
    }
}

/// The longest `keep_within`: a hundred years.
const WITHIN_MAX_HOURS: i64 = 24 * 366 * 100;

/// Parses a `keep_within` value: a whole number (digits only) followed by `h` (hours) or `d`
/// (days), at least one hour and at most a hundred years.
pub fn parse_within(text: &str) -> Result<jiff::SignedDuration> {
    parse_span("retention.keep_within", text, false)
}

/// Parses a span such as `"48h"` or `"14d"` for the setting `key`: digits only, then `h` or
/// `d`; zero only when `zero` allows it; at most a hundred years. The error names the setting.
pub fn parse_span(key: &str, text: &str, zero: bool) -> Result<jiff::SignedDuration> {
    let bad = || {
        Error::config(format!(
            "{key} {text:?} is not a span such as \"48h\" or \"14d\"{}",
            if text.starts_with('-') {
                " (it must not be negative)"
            } else {
                ""
            }
        ))
    };
    let Some((at, unit)) = text.char_indices().last() else {
        return Err(bad());
    };
    let num = &text[..at];
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let per = match unit {
        'h' => 1,
        'd' => 24,
        _ => return Err(bad()),
    };
    let hours = num
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(per))
        .filter(|h| *h <= WITHIN_MAX_HOURS);
    match hours {
        Some(0) if !zero => Err(bad()),
        Some(h) => Ok(jiff::SignedDuration::from_hours(h)),
        None => Err(Error::config(format!(
            "{key} {text:?} is longer than a hundred years"
        ))),
    }
}

/// Why a snapshot is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The newest of one of the `keep_daily` most recent days.
    Daily,
    /// The newest of one of the `keep_weekly` most recent ISO weeks.
    Weekly,
    /// The newest of one of the `keep_monthly` most recent months.
    Monthly,
    /// Taken within `keep_within` of the newest snapshot.
    Within,
    /// The newest snapshot by time, the one `latest` names: always kept, whatever day it is
    /// for (a backfill with an old `--date` would otherwise be forgotten as it is made).
    Latest,
    /// Neither its day nor its time can be read: never forgotten by a calendar rule.
    TimeUnreadable,
}

/// One snapshot in a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanEntry {
    pub id: Id,
    /// The snapshot's time, as recorded.
    pub time: String,
    /// Its day in the configured time zone.
    pub day: String,
    /// Empty: forgotten.
    pub reasons: Vec<Reason>,
}

impl PlanEntry {
    pub fn kept(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// What a policy keeps and forgets, newest snapshot first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub entries: Vec<PlanEntry>,
}

impl Plan {
    /// The snapshots the plan forgets.
    pub fn forgotten(&self) -> impl Iterator<Item = &PlanEntry> {
        self.entries.iter().filter(|e| !e.kept())
    }

    /// The plan as a table, one line a snapshot, newest first.
    pub fn table(&self) -> String {
        let mut out =
            String::from("day         time                            snapshot  action  reasons\n");
        for e in &self.entries {
            let reasons: Vec<String> = e
                .reasons
                .iter()
                .map(|r| {
                    serde_json::to_value(r)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                })
                .collect();
            let line = format!(
                "{:<11} {:<31} {}  {:<6}  {}",
                e.day,
                e.time,
                e.id.short(),
                if e.kept() { "keep" } else { "forget" },
                reasons.join(",")
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The plan that forgets exactly `named` (`cairn forget ID…`), whatever a policy would keep.
pub fn plan_named(named: &[(Id, Snapshot)], tz: &jiff::tz::TimeZone) -> Plan {
    let mut p = plan(named, &Policy::default(), tz);
    p.entries.dedup_by_key(|e| e.id);
    for e in &mut p.entries {
        e.reasons.clear();
    }
    p
}

/// The plan of `policy` for `snapshots`.
///
/// A snapshot's day is the day its run belongs to (`date`, which a run derives from its clock
/// in the configured time zone, or takes from `--date`): the same day the daily archives are
/// named by, so that `keep_daily = 14` keeps the snapshots of the 14 days the exports keep. A
/// snapshot whose `date` does not parse is placed by its time in `tz`; one with neither is kept.
/// Snapshots are taken newest day first, and within a day newest time first, so "several
/// snapshots of one day keep the newest" holds whatever the clocks said.
pub fn plan(snapshots: &[(Id, Snapshot)], policy: &Policy, tz: &jiff::tz::TimeZone) -> Plan {
    type Dated<'a> = (
        Option<jiff::civil::Date>,
        Option<jiff::Timestamp>,
        &'a Id,
        &'a Snapshot,
    );
    let mut snaps: Vec<Dated> = snapshots
        .iter()
        .map(|(id, s)| {
            let time = s.time.parse::<jiff::Timestamp>().ok();
            let day = jiff::civil::Date::strptime("%Y-%m-%d", &s.date)
                .ok()
                .or_else(|| time.map(|t| t.to_zoned(tz.clone()).date()));
            (day, time, id, s)
        })
        .collect();
    // Equal days and times by id, so that the plan never depends on the listing order.
    snaps.sort_by(|a, b| (b.0, b.1, b.2).cmp(&(a.0, a.1, a.2)));
    let newest = snaps.iter().filter_map(|(_, t, _, _)| *t).max();
    // What `latest` resolves to: the highest (time, id), as the catalog orders snapshots.
    let latest = snaps
        .iter()
        .filter_map(|(_, t, id, _)| t.map(|t| (t, *id)))
        .max()
        .map(|(_, id)| *id);
    let mut left = [policy.daily, policy.weekly, policy.monthly];
    let mut last: [Option<(i32, i32)>; 3] = [None; 3];
    let entries = snaps
        .into_iter()
        .map(|(day, t, id, s)| {
            let Some(date) = day else {
                return PlanEntry {
                    id: *id,
                    time: s.time.clone(),
                    day: s.date.clone(),
                    reasons: vec![Reason::TimeUnreadable],
                };
            };
            let week = date.iso_week_date();
            let buckets = [
                (i32::from(date.year()), i32::from(date.day_of_year())),
                (i32::from(week.year()), i32::from(week.week())),
                (i32::from(date.year()), i32::from(date.month())),
            ];
            let mut reasons = Vec::new();
            for (k, reason) in [Reason::Daily, Reason::Weekly, Reason::Monthly]
                .into_iter()
                .enumerate()
            {
                // The first (newest) snapshot of each new bucket, while the count lasts.
                if left[k] > 0 && last[k] != Some(buckets[k]) {
                    last[k] = Some(buckets[k]);
                    left[k] -= 1;
                    reasons.push(reason);
                }
            }
            if let (Some(within), Some(newest), Some(t)) = (policy.within, newest, t)
                && newest.duration_since(t) < within
            {
                reasons.push(Reason::Within);
            }
            if latest == Some(*id) {
                reasons.push(Reason::Latest);
            }
            PlanEntry {
                id: *id,
                time: s.time.clone(),
                day: date.to_string(),
                reasons,
            }
        })
        .collect();
    Plan { entries }
}

/// What [`forget`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Forgotten {
    /// Snapshots deleted from the store.
    pub snapshots: u64,
    /// Snapshots kept.
    pub kept: u64,
}

/// Carries out `plan`: deletes each forgotten snapshot's object from the store, then from the
/// catalog. A crash in between leaves a catalog entry that the next sync drops, never the
/// reverse. Packs are not touched. An error says how many were forgotten before it.
pub fn forget(repo: &Repository, catalog: &Catalog, plan: &Plan) -> Result<Forgotten> {
    let mut done = Forgotten::default();
    let total = plan.forgotten().count();
    for e in &plan.entries {
        if e.kept() {
            done.kept += 1;
            continue;
        }
        repo.delete_snapshot(&e.id)
            .and_then(|()| catalog.remove_snapshot(&e.id))
            .map_err(|err| {
                err.context(format!(
                    "forgetting snapshot {} after {} of {total}",
                    e.id.short(),
                    done.snapshots
                ))
            })?;
        done.snapshots += 1;
    }
    Ok(done)
}
