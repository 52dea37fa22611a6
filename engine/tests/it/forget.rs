//! Snapshot retention: golden plans for the histories that go wrong in practice (gaps, several
//! runs a day, a change of daylight saving time, a clock that jumped back), and forgetting
//! through the engine: the store and the catalog agree afterwards, and packs are untouched.

use cairn_engine::Id;
use cairn_engine::forget::{self, Plan, Policy, parse_within};
use cairn_engine::snapshot::{SNAPSHOT_VERSION, Snapshot, Summary};

use crate::common::*;

/// A snapshot taken at `time` (RFC 3339) by a run in UTC; its id is its canonical bytes'
/// hash, as in a store.
fn snap(time: &str) -> (Id, Snapshot) {
    snap_in(time, "UTC")
}

/// A snapshot taken at `time` by a run whose day is counted in the time zone `tz`.
fn snap_in(time: &str, tz: &str) -> (Id, Snapshot) {
    let t: jiff::Timestamp = time.parse().unwrap();
    let date = t
        .to_zoned(jiff::tz::TimeZone::get(tz).unwrap())
        .date()
        .to_string();
    snap_labelled(time, &date)
}

/// A snapshot taken at `time` for the day `date` (a run given `--date`).
fn snap_labelled(time: &str, date: &str) -> (Id, Snapshot) {
    let s = Snapshot {
        version: SNAPSHOT_VERSION,
        time: time.into(),
        date: date.into(),
        source: "/shared".into(),
        folders: vec!["notetaking".into()],
        root: Id::of(time.as_bytes()),
        summary: Summary::default(),
        warnings: Vec::new(),
        skipped: Vec::new(),
    };
    (s.encode().0, s)
}

/// Snapshots at `hh:mm` UTC on the given days of November 2026.
fn nights(days: &[u32], at: &str) -> Vec<(Id, Snapshot)> {
    days.iter()
        .map(|d| snap(&format!("2026-11-{d:02}T{at}:00Z")))
        .collect()
}

fn policy(daily: u32, weekly: u32, monthly: u32, within: Option<&str>) -> Policy {
    Policy {
        daily,
        weekly,
        monthly,
        within: within.map(|w| parse_within(w).unwrap()),
    }
}

fn plan_in(snaps: &[(Id, Snapshot)], p: &Policy, tz: &str) -> Plan {
    forget::plan(snaps, p, &jiff::tz::TimeZone::get(tz).unwrap())
}

/// Nights 1–30 with runs skipped on the 5th, 11th–13th, 20th, 25th, 27th and 28th: keep_daily
/// counts days that have a snapshot, so 5 daily keeps reach back past the gaps to the 23rd, and
/// 3 weekly keeps take the newest of ISO weeks 49, 48 and 47 (the 30th is a Monday).
#[test]
fn gaps_in_the_history() {
    let skipped = [5, 11, 12, 13, 20, 25, 27, 28];
    let days: Vec<u32> = (1..=30).filter(|d| !skipped.contains(d)).collect();
    let plan = plan_in(&nights(&days, "01:00"), &policy(5, 3, 1, None), "UTC");
    insta::assert_snapshot!(plan.table());
}

/// Two or three runs on some nights (a manual job beside the nightly one): the newest of each
/// day is the one kept.
#[test]
fn several_runs_a_day() {
    let mut snaps = nights(&[20, 21, 22, 23, 24], "01:00");
    snaps.extend(nights(&[21, 23], "13:30"));
    snaps.extend(nights(&[23], "23:59"));
    let plan = plan_in(&snaps, &policy(3, 0, 0, None), "UTC");
    insta::assert_snapshot!(plan.table());
}

/// Runs around the end of daylight saving time in Berlin (25 October 2026), at 00:30 and 01:30
/// Berlin time: days are Berlin's, so the run at 23:30 UTC on the 24th belongs to the 25th
/// there. The runs' days are what the plan counts; a snapshot without a readable day is placed
/// by its time in the configured zone, which must give the same plan.
#[test]
fn a_change_of_daylight_saving_time() {
    let snaps: Vec<(Id, Snapshot)> = [
        "2026-10-23T23:30:00Z",
        "2026-10-24T22:30:00Z",
        "2026-10-24T23:30:00Z",
        "2026-10-25T23:30:00Z",
        "2026-10-26T00:30:00Z",
        "2026-10-26T23:30:00Z",
    ]
    .iter()
    .map(|t| snap_in(t, "Europe/Berlin"))
    .collect();
    let plan = plan_in(&snaps, &policy(3, 0, 0, None), "Europe/Berlin");
    insta::assert_snapshot!(plan.table());
    let undated: Vec<(Id, Snapshot)> = snaps
        .iter()
        .map(|(id, s)| {
            let mut s = s.clone();
            s.date = "?".into();
            (*id, s)
        })
        .collect();
    let by_time = plan_in(&undated, &policy(3, 0, 0, None), "Europe/Berlin");
    assert_eq!(by_time.table(), plan.table());
    assert_ne!(
        plan_in(&undated, &policy(3, 0, 0, None), "UTC").table(),
        plan.table(),
        "the zone made no difference"
    );
}

/// A clock that jumped back two days for one run (the run of the 15th believed it was the 12th):
/// its snapshot counts as the 12th's newest, the 15th has no snapshot, and keep_within counts
/// from the newest snapshot, not from the wrong clock.
#[test]
fn a_clock_that_jumped_back() {
    let mut snaps = nights(&[10, 11, 12, 13, 14], "01:00");
    snaps.push(snap("2026-11-12T05:00:00Z"));
    let plan = plan_in(&snaps, &policy(2, 0, 0, Some("36h")), "UTC");
    insta::assert_snapshot!(plan.table());
}

/// Days are the runs' days, not their clocks': a backfill of the 2nd run on the 9th (with
/// `--date`) is the 2nd's snapshot, and the 8th keeps its own.
#[test]
fn a_backfilled_day_counts_as_its_own_day() {
    let mut snaps = nights(&[1, 3, 4, 5, 6, 7, 8], "01:00");
    snaps.push(snap_labelled("2026-11-09T10:00:00Z", "2026-11-02"));
    let plan = plan_in(&snaps, &policy(7, 0, 0, None), "UTC");
    let kept: Vec<&str> = plan
        .entries
        .iter()
        .filter(|e| e.kept())
        .map(|e| e.day.as_str())
        .collect();
    assert_eq!(
        kept,
        [
            "2026-11-08",
            "2026-11-07",
            "2026-11-06",
            "2026-11-05",
            "2026-11-04",
            "2026-11-03",
            "2026-11-02"
        ]
    );
}

/// The same snapshots in any order give the same plan.
#[test]
fn the_plan_does_not_depend_on_listing_order() {
    let mut snaps = nights(&(1..=20).collect::<Vec<_>>(), "01:00");
    snaps.extend(nights(&[3, 7], "12:00"));
    snaps.extend(nights(&[7], "12:30"));
    let p = policy(4, 2, 1, Some("3d"));
    let a = plan_in(&snaps, &p, "UTC");
    let mut state = 2026u64;
    for _ in 0..20 {
        // Fisher-Yates with a seeded LCG.
        for i in (1..snaps.len()).rev() {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            snaps.swap(i, (state >> 33) as usize % (i + 1));
        }
        assert_eq!(a, plan_in(&snaps, &p, "UTC"));
    }
}

/// The newest snapshot by time is kept whatever day it is for (a backfill of an old day, run
/// now), and a snapshot with neither a readable day nor time is never forgotten.
#[test]
fn the_latest_and_the_undatable_are_kept() {
    let mut snaps = nights(&[20, 21, 22, 23], "01:00");
    snaps.push(snap_labelled("2026-11-24T09:00:00Z", "2026-10-01"));
    snaps.push(snap_labelled("yesterday", "?"));
    let plan = plan_in(&snaps, &policy(2, 0, 0, None), "UTC");
    let reasons: Vec<(&str, String)> = plan
        .entries
        .iter()
        .map(|e| (e.day.as_str(), format!("{:?}", e.reasons)))
        .collect();
    assert_eq!(
        reasons,
        [
            ("2026-11-23", "[Daily]".to_string()),
            ("2026-11-22", "[Daily]".to_string()),
            ("2026-11-21", "[]".to_string()),
            ("2026-11-20", "[]".to_string()),
            ("2026-10-01", "[Latest]".to_string()),
            ("?", "[TimeUnreadable]".to_string()),
        ]
    );
}

#[test]
fn bad_keep_within_values_are_refused() {
    for bad in [
        "",
        "h",
        "14",
        "14w",
        "-3d",
        "+3d",
        "0h",
        "1.5d",
        "2д",
        "14ч",
        "99999999999d",
    ] {
        assert!(parse_within(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        parse_within("2d").unwrap(),
        jiff::SignedDuration::from_hours(48)
    );
    assert!(policy(0, 0, 0, None).keeps_nothing());
    assert!(!policy(0, 0, 0, Some("1h")).keeps_nothing());
}

/// Forgetting through the engine: the snapshot objects go from the store and the catalog, the
/// kept ones still restore, and no pack is deleted.
#[test]
fn forgetting_deletes_snapshots_and_no_pack() {
    let env = Env::new();
    let mut opts = env.opts();
    for day in 1..=6u32 {
        write(
            &env.src.join(format!("notetaking/day{day}.md")),
            format!("night {day}\n").as_bytes(),
        );
        opts.time = format!("2026-11-{day:02}T01:00:00Z").parse().unwrap();
        opts.date = format!("2026-11-{day:02}");
        env.backup_with(&opts).unwrap();
    }
    let catalog = env.catalog();
    let packs = env.repo.list_packs().unwrap();
    let plan = forget::plan(
        &catalog.snapshots().unwrap(),
        &policy(2, 0, 0, None),
        &jiff::tz::TimeZone::UTC,
    );
    assert_eq!(plan.forgotten().count(), 4);
    let done = forget::forget(&env.repo, &catalog, &plan).unwrap();
    assert_eq!((done.snapshots, done.kept), (4, 2));
    assert_eq!(env.repo.list_snapshot_ids().unwrap().len(), 2);
    assert_eq!(catalog.snapshots().unwrap().len(), 2);
    assert_eq!(env.repo.list_packs().unwrap(), packs);
    let (_, latest) = catalog.resolve_snapshot("latest").unwrap();
    assert_eq!(latest.date, "2026-11-06");
    let target = env.dir.path().join("r");
    cairn_engine::restore::restore(&env.repo, &catalog, &latest, &restore_opts(&target)).unwrap();
    assert_eq!(
        std::fs::read(target.join("notetaking/day1.md")).unwrap(),
        b"night 1\n"
    );
}
