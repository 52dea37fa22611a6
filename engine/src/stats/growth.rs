//! How the repository grew over the last days, from the counters each backup recorded in its
//! snapshot (`Summary`): no tree is read and nothing is requested. Forgotten snapshots are gone
//! with their counters, so a day whose snapshots were all forgotten shows nothing.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::Id;

/// The longest window [`growth`] looks at, in days.
const MAX_DAYS: u32 = 3660;

/// One day with snapshots in the window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DayGrowth {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Snapshots of the day.
    pub snapshots: u64,
    /// Bytes of the packs its backups wrote (compressed chunks and trees, with the packs'
    /// indexes): what the day added to the store.
    pub stored_bytes: u64,
    /// Plaintext bytes of the chunks its backups found new to the repository.
    pub new_bytes: u64,
    /// Files in the day's newest snapshot.
    pub files: u64,
    /// Sizes of the files of the day's newest snapshot added up, as its backup counted them.
    pub logical_bytes: u64,
}

/// The days of a window that have snapshots, and their sums.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Growth {
    /// The window's first day.
    pub from: String,
    /// Its last day.
    pub until: String,
    /// Snapshots in the window.
    pub snapshots: u64,
    /// Bytes of the packs their backups wrote.
    pub stored_bytes: u64,
    /// Plaintext bytes of the chunks their backups found new.
    pub new_bytes: u64,
    /// The days with snapshots, oldest first.
    pub days: Vec<DayGrowth>,
}

/// The growth over the `days` days that end with `until` (`YYYY-MM-DD`, kind `Usage` if it is
/// not one), from `snapshots` (oldest first, as [`crate::catalog::Catalog::snapshots`] gives
/// them). A snapshot filed under a day after `until` is left out.
pub fn growth(snapshots: &[(Id, Snapshot)], until: &str, days: u32) -> Result<Growth> {
    let last = jiff::civil::Date::strptime("%Y-%m-%d", until)
        .map_err(|_| Error::usage(format!("{until:?} is not a day (YYYY-MM-DD)")))?;
    let back = i64::from(days.clamp(1, MAX_DAYS)) - 1;
    let from = last.saturating_sub(jiff::Span::new().days(back));
    let from = from.strftime("%Y-%m-%d").to_string();
    let mut by_day: BTreeMap<&str, DayGrowth> = BTreeMap::new();
    for (_, s) in snapshots {
        if s.date.as_str() < from.as_str() || s.date.as_str() > until {
            continue;
        }
        let d = by_day.entry(s.date.as_str()).or_default();
        d.snapshots += 1;
        d.stored_bytes += s.summary.stored_bytes;
        d.new_bytes += s.summary.new_bytes;
        // Oldest first: the last one seen is the day's newest.
        d.files = s.summary.files;
        d.logical_bytes = s.summary.bytes;
    }
    let days: Vec<DayGrowth> = by_day
        .into_iter()
        .map(|(date, d)| DayGrowth {
            date: date.to_string(),
            ..d
        })
        .collect();
    Ok(Growth {
        from,
        until: until.to_string(),
        snapshots: days.iter().map(|d| d.snapshots).sum(),
        stored_bytes: days.iter().map(|d| d.stored_bytes).sum(),
        new_bytes: days.iter().map(|d| d.new_bytes).sum(),
        days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::{SNAPSHOT_VERSION, Summary};

    /// A snapshot of `date` taken at `time`, whose backup wrote `stored` bytes and saw `files`.
    fn snap(date: &str, time: &str, stored: u64, files: u64) -> (Id, Snapshot) {
        let s = Snapshot {
            version: SNAPSHOT_VERSION,
            time: time.to_string(),
            date: date.to_string(),
            source: "/src".to_string(),
            folders: Vec::new(),
            root: Id::of(b"root"),
            summary: Summary {
                files,
                bytes: files * 10,
                new_bytes: stored / 2,
                stored_bytes: stored,
                ..Summary::default()
            },
            warnings: Vec::new(),
            skipped: Vec::new(),
        };
        (Id::of(time.as_bytes()), s)
    }

    #[test]
    fn growth_keeps_the_window_and_each_days_newest_snapshot() {
        let all = [
            snap("2026-11-01", "2026-11-01T01:00:00Z", 100, 1),
            snap("2026-11-14", "2026-11-14T01:00:00Z", 10, 2),
            snap("2026-11-14", "2026-11-14T13:00:00Z", 20, 3),
            snap("2026-11-27", "2026-11-27T01:00:00Z", 40, 4),
            snap("2026-11-28", "2026-11-28T01:00:00Z", 80, 5),
        ];
        let g = growth(&all, "2026-11-27", 14).unwrap();
        assert_eq!(g.from, "2026-11-14");
        assert_eq!(g.until, "2026-11-27");
        let days: Vec<_> = g
            .days
            .iter()
            .map(|d| (d.date.as_str(), d.snapshots, d.stored_bytes, d.files))
            .collect();
        assert_eq!(days.len(), 2, "{days:?}");
        assert_eq!(days[0], ("2026-11-14", 2, 30, 3));
        assert_eq!(days[1], ("2026-11-27", 1, 40, 4));
        assert_eq!(g.snapshots, 3);
        assert_eq!(g.stored_bytes, 70);
        assert_eq!(g.new_bytes, 35);
        assert!(growth(&all, "yesterday", 14).is_err());
        assert_eq!(growth(&all, "2026-11-28", 1).unwrap().snapshots, 1);
    }
}
