//! `cairn forget`: the `[retention]` policy applied (dry run first), and a policy that keeps
//! nothing refused.

use std::fs;

use super::{Setup, stderr};

/// `cairn forget`: a policy that keeps nothing is refused in one line and changes nothing; the
/// dry run prints the plan and deletes nothing; the real run forgets the snapshots of the oldest
/// days and the rest still restore.
#[test]
fn forget_keeps_the_newest_days_and_refuses_to_keep_nothing() {
    let s = Setup::new();
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    for day in 1..=5 {
        fs::write(s.src().join("notetaking/diary.md"), format!("day {day}\n")).unwrap();
        let date = format!("2026-11-{day:02}");
        let out = s.run(&["backup", "--date", &date]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
    // Counted in the store, not the catalog, which `snapshots` reads.
    let store_snapshots = s.dir.path().join("store/snapshots");
    let count = || fs::read_dir(&store_snapshots).unwrap().count();
    let out = s.run(&["forget", "--set", "retention.keep_daily=0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("--allow-empty"), "{err}");
    let out = s.run(&["forget", "--set", "retention.keep_within=3w"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("keep_within"), "{}", stderr(&out));
    assert_eq!(count(), 5);

    let keep3 = ["--set", "retention.keep_daily=3"];
    let (code, plan) = s.json(&[&["forget", "--dry-run"][..], &keep3].concat());
    assert_eq!(
        (code, &plan["forgotten"], &plan["dry_run"]),
        (0, &2.into(), &true.into())
    );
    assert_eq!(count(), 5, "a dry run deleted snapshots");

    let (code, done) = s.json(&[&["forget"][..], &keep3].concat());
    assert_eq!(
        (code, &done["forgotten"], &done["kept"]),
        (0, &2.into(), &3.into())
    );
    let (_, list) = s.json(&["snapshots"]);
    let days: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["snapshot"]["date"].as_str().unwrap())
        .collect();
    assert_eq!(days, ["2026-11-03", "2026-11-04", "2026-11-05"]);
    let target = s.dir.path().join("r");
    let out = s.run(&[
        "restore",
        "--date",
        "2026-11-03",
        "--target",
        target.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(target.join("notetaking/diary.md")).unwrap(),
        "day 3\n"
    );
}
