//! Retention, garbage collection and repository leases as the CronJobs run them: gc killed at
//! each commit point and rerun, two runs against one store, a dead holder's lease, and bad input.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use super::{Setup, killed_at, seeded, stderr, until_stopped, with_read_only_key};

/// Every file below `dir` with its bytes, by path.
fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Every object key below the store.
fn objects(s: &Setup) -> Vec<String> {
    let root = s.dir.path().join("store");
    let mut keys: Vec<String> = files(&root).into_keys().collect();
    keys.sort();
    keys
}

/// Four days of backups in which a big file comes and goes, so that after forgetting the first
/// two days some packs are dead and some mostly dead. Returns each day's source.
fn history(s: &Setup) -> Vec<(String, std::collections::BTreeMap<String, Vec<u8>>)> {
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    let mut days = Vec::new();
    for day in 1..=4u64 {
        fs::write(s.src().join("notetaking/diary.md"), format!("day {day}\n")).unwrap();
        fs::write(s.src().join("images/a.raw"), seeded(3 << 20, day)).unwrap();
        if day <= 2 {
            fs::write(s.src().join("backup/old.img"), seeded(5 << 20, 100 + day)).unwrap();
        } else {
            let _ = fs::remove_file(s.src().join("backup/old.img"));
        }
        let date = format!("2026-11-{day:02}");
        let out = s.run(&["backup", "--date", &date]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        days.push((date, files(&s.src())));
    }
    days
}

/// Restores each of `days` that is still kept and compares it with its source.
fn assert_days_restore(s: &Setup, days: &[(String, std::collections::BTreeMap<String, Vec<u8>>)]) {
    for (date, source) in days {
        let target = s.dir.path().join(format!("restore-{date}"));
        let _ = fs::remove_dir_all(&target);
        let out = s.run(&[
            "restore",
            "--date",
            date,
            "--target",
            target.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(0), "{date}: {}", stderr(&out));
        assert!(files(&target) == *source, "{date} restores as it was");
    }
}

const KEEP2: [&str; 8] = [
    "--set",
    "retention.keep_daily=2",
    "--set",
    "gc.grace=0h",
    "--set",
    "gc.unsafe_short_grace=true",
    "--set",
    "gc.repack_dead_percent=30",
];

/// gc killed (SIGKILL) at each of its commit points, then run again: check stays clean, every
/// kept day restores, and the rerun finishes what the killed one began.
#[test]
fn gc_killed_at_each_commit_point_is_safe_to_rerun() {
    for point in [
        "gc-marked",
        "gc-repacked",
        "gc-condemned",
        "gc-deleting",
        "gc-pack-deleted:1",
    ] {
        let s = Setup::new();
        let days = history(&s);
        let forget = s.run(&[&["forget"][..], &KEEP2].concat());
        assert_eq!(forget.status.code(), Some(0), "{}", stderr(&forget));
        killed_at(&s, &[&["-q", "gc"][..], &KEEP2].concat(), point);
        let out = s.run(&["check", "--read-data"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{point}: check after the kill: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        let (code, r) = s.json(&[&["gc"][..], &KEEP2].concat());
        assert_eq!(code, 0, "{point}: rerun: {r}");
        let out = s.run(&["check", "--read-data"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{point}: check after the rerun: {}{}",
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
        assert_days_restore(&s, &days[2..]);
        // Nothing is left to delete once both ran: the dead data is gone.
        let (code, again) = s.json(&[&["gc"][..], &KEEP2].concat());
        assert_eq!(
            (code, &again["packs_deleted"], &again["packs_condemned"]),
            (0, &0.into(), &0.into()),
            "{point}: {again}"
        );
        assert!(
            !objects(&s).iter().any(|k| k.starts_with("_leases/")),
            "{point}: a lease was left behind: {:?}",
            objects(&s)
        );
    }
}

/// A whole prune on the command line: the plan, the bytes freed, the grace honoured across
/// runs (a pack condemned now is deleted only by a run after the grace), and the run report.
#[test]
fn prune_frees_the_forgotten_days_after_the_grace() {
    let s = Setup::new();
    let days = history(&s);
    let packs_bytes = || -> u64 {
        files(&s.dir.path().join("store/packs"))
            .values()
            .map(|v| v.len() as u64)
            .sum()
    };
    let before = packs_bytes();
    let keep = ["--set", "retention.keep_daily=2", "--set", "gc.grace=1h"];
    let listing = objects(&s);
    let (code, dry) = s.json(&[&["prune", "--dry-run"][..], &keep].concat());
    assert_eq!(code, 0, "{dry}");
    assert_eq!(dry["forget"]["forgotten"], 2);
    assert_eq!(objects(&s), listing, "a dry run wrote to the store");
    assert_eq!(packs_bytes(), before);
    let (code, r) = s.json(&[&["prune"][..], &keep].concat());
    assert_eq!(code, 0, "{r}");
    assert!(r["gc"]["packs_condemned"].as_u64().unwrap() > 0, "{r}");
    // The dry run said what the real one did.
    for k in ["packs_condemned", "packs_repacked", "packs_deleted"] {
        assert_eq!(dry["gc"][k], r["gc"][k], "{k}: {dry} / {r}");
    }
    assert_eq!(r["gc"]["packs_deleted"], 0, "deleted before the grace: {r}");
    assert!(objects(&s).iter().any(|k| k.starts_with("condemned/")));
    // The same grace, an hour later: the markers' times are moved back, as the clock would.
    for k in objects(&s).iter().filter(|k| k.starts_with("condemned/")) {
        let parts: Vec<&str> = k.rsplitn(3, '.').collect();
        let (due, since, head) = (
            parts[0].parse::<i64>().unwrap(),
            parts[1].parse::<i64>().unwrap(),
            parts[2],
        );
        let root = s.dir.path().join("store");
        fs::rename(
            root.join(k),
            root.join(format!("{head}.{}.{}", since - 3601, due - 3601)),
        )
        .unwrap();
    }
    let (code, r) = s.json(&[&["gc"][..], &keep].concat());
    assert_eq!(code, 0, "{r}");
    assert!(r["packs_deleted"].as_u64().unwrap() > 0, "{r}");
    assert!(
        packs_bytes() < before - (8 << 20),
        "{before} → {}",
        packs_bytes()
    );
    let out = s.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_days_restore(&s, &days[2..]);
    // A catalog on a lost state volume rebuilds without the collected packs, and agrees.
    fs::remove_dir_all(s.dir.path().join("state")).unwrap();
    let out = s.run(&["check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Two nightly runs on two state directories against one store: the second finds the first's
/// writer lease and exits 4 naming it, having written nothing; the first then finishes.
#[test]
fn a_second_run_against_the_same_store_exits_4_naming_the_holder() {
    let s = Setup::new();
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    fs::write(s.src().join("images/a.raw"), seeded(6 << 20, 1)).unwrap();
    let mut first = s
        .cmd(&["-q", "run", "--date", "2026-11-29"])
        .env("CAIRN_FAILPOINT", "before-commit:1:stop")
        .env("HOSTNAME", "pod-nightly")
        .spawn()
        .unwrap();
    // Stopped at its commit point, holding its lease.
    let pid = first.id() as i32;
    until_stopped(&mut first);
    let before = objects(&s);
    let out = s
        .cmd(&[
            "run",
            "--date",
            "2026-11-29",
            "--set",
            &format!("state.dir={}/state-b", s.dir.path().display()),
        ])
        .env("HOSTNAME", "pod-manual")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("pod-nightly") && err.contains(&format!("pid {pid}")),
        "{err}"
    );
    assert_eq!(objects(&s), before, "the second run wrote to the store");
    // SAFETY: signals to our own child.
    unsafe {
        libc::kill(pid, libc::SIGCONT);
    }
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let (_, list) = s.json(&["snapshots"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
}

/// A backup killed on one pod leaves its lease; a backup on another pod is refused while the
/// lease lives, and takes it over with a warning once it expired.
#[test]
fn a_dead_pods_lease_is_taken_over_after_it_expires() {
    let s = Setup::new();
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    fs::write(s.src().join("images/a.raw"), seeded(6 << 20, 1)).unwrap();
    let ttl = ["--set", "store.lease_ttl_secs=10"];
    let out = s
        .cmd(&[&["-q", "backup"][..], &ttl].concat())
        .env("CAIRN_FAILPOINT", "before-commit:1")
        .env("HOSTNAME", "pod-a")
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(9), "{}", stderr(&out));
    let started = std::time::Instant::now();
    let other = format!("state.dir={}/state-b", s.dir.path().display());
    let out = s
        .cmd(&[&["backup", "--set", &other][..], &ttl].concat())
        .env("HOSTNAME", "pod-b")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("pod-a"), "{}", stderr(&out));
    // Past its expiry (the lease's TTL after its last refresh), by a clock run 11 s ahead
    // instead of a sleep.
    let ahead = Duration::from_secs(11)
        .saturating_sub(started.elapsed())
        .as_secs()
        + 1;
    let out = s
        .cmd(&[&["backup", "--set", &other][..], &ttl].concat())
        .env("HOSTNAME", "pod-b")
        .env("CAIRN_TEST_CLOCK_AHEAD_SECS", ahead.to_string())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("expired lease"), "{}", stderr(&out));
}

/// Bad input is one clear line and changes nothing.
#[test]
fn bad_retention_and_gc_input_is_one_line_and_changes_nothing() {
    let s = Setup::new();
    history(&s);
    let before = objects(&s);
    for (args, code, says) in [
        (
            vec!["prune", "--set", "retention.keep_daily=0"],
            2,
            "--allow-empty",
        ),
        (vec!["forget", "deadbeef"], 1, "deadbeef"),
        (vec!["forget", "2026-11-01", "feedface"], 1, "feedface"),
        (vec!["gc", "--set", "gc.grace=-1h"], 2, "gc.grace"),
        (vec!["gc", "--set", "gc.grace=soon"], 2, "gc.grace"),
        // Below the minimum only with the explicit, unsafe override.
        (
            vec!["gc", "--set", "gc.grace=0h"],
            2,
            "gc.grace 0h is shorter than the 1h minimum",
        ),
        (
            vec!["gc", "--set", "gc.grace=0d"],
            2,
            "gc.unsafe_short_grace",
        ),
        (
            vec!["gc", "--set", "gc.repack_dead_percent=0"],
            2,
            "repack_dead_percent",
        ),
        (
            vec![
                "run",
                "--set",
                "retention.prune_in_run=true",
                "--set",
                "retention.keep_daily=0",
            ],
            2,
            "prune_in_run",
        ),
    ] {
        let out = s.run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(objects(&s), before, "{args:?} changed the store");
    }
}

/// A gc with a key that may not delete (Garage's read-only key) refuses in one line before it
/// writes anything: no marker, no new pack, no lease.
#[test]
#[ignore = "needs the S3 test server (scripts/test.sh provides it)"]
fn gc_with_a_key_that_may_not_delete_changes_nothing() {
    let endpoint = super::s3_endpoint();
    let s = Setup::new();
    let prefix = super::s3_prefix("gc-ro");
    let bucket = std::env::var("CAIRN_S3_TEST_BUCKET").unwrap();
    let region = super::s3_region();
    fs::write(
        &s.config,
        format!(
            "[source]\nroot = \"{root}/src\"\n\
             [store]\nkind = \"s3\"\nendpoint = \"{endpoint}\"\nregion = \"{region}\"\nbucket = \"{bucket}\"\nprefix = \"{prefix}\"\npath_style = true\n\
             [exports]\npath = \"{root}/exports\"\n[state]\ndir = \"{root}/state\"\n",
            root = s.dir.path().display()
        ),
    )
    .unwrap();
    history(&s);
    let out = s.run(&[&["forget"][..], &KEEP2].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let store = super::s3_test_store(&endpoint, &bucket, &prefix);
    use cairn_engine::store::Store;
    let listing = || -> Vec<(String, u64)> {
        let mut v: Vec<_> = store
            .list("")
            .unwrap()
            .into_iter()
            .map(|o| (o.key, o.size))
            .collect();
        v.sort();
        v
    };
    let before = listing();
    let out = with_read_only_key(&mut s.cmd(&[&["gc"][..], &KEEP2].concat()))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("may delete") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(listing(), before, "the refused gc changed the store");
    // The same gc with the owner's key does its work.
    let (code, r) = s.json(&[&["gc"][..], &KEEP2].concat());
    assert_eq!(code, 0, "{r}");
    assert!(r["packs_deleted"].as_u64().unwrap() > 0, "{r}");
    for o in store.list("").unwrap() {
        store.delete(&o.key).unwrap();
    }
}

/// `retention.prune_in_run` makes the nightly run forget and collect after its export, under its
/// own writer lease, and the run report says what was freed.
#[test]
fn the_nightly_run_prunes_when_configured() {
    let s = Setup::new();
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    let prune = [
        "--set",
        "retention.prune_in_run=true",
        "--set",
        "retention.keep_daily=2",
        "--set",
        "gc.grace=0h",
        "--set",
        "gc.unsafe_short_grace=true",
    ];
    let mut freed = 0;
    for day in 1..=4u64 {
        fs::write(s.src().join("images/day.raw"), seeded(3 << 20, day)).unwrap();
        let date = format!("2026-11-{day:02}");
        let (code, report) = s.json(&[&["run", "--date", &date][..], &prune].concat());
        assert_eq!(code, 0, "{report}");
        let p = &report["prune"];
        assert_eq!(
            p["snapshots_forgotten"],
            u64::from(day > 2),
            "{date}: {report}"
        );
        freed += p["gc"]["bytes_freed"].as_u64().unwrap();
        let stored: serde_json::Value = serde_json::from_slice(
            &fs::read(
                s.dir
                    .path()
                    .join(format!("exports/_reports/{date}/run.json")),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(stored["prune"], *p, "the stored report says the same");
    }
    assert!(freed > 4 << 20, "{freed} bytes freed");
    let (_, list) = s.json(&["snapshots"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let out = s.run(&["check", "--read-data"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        !objects(&s).iter().any(|k| k.starts_with("_leases/")),
        "{:?}",
        objects(&s)
    );
}

/// A backup (and a check) that meets a gc deleting (an exclusive lease) waits for it instead of
/// failing the night, and goes on once the lease is gone.
#[test]
fn a_backup_and_a_check_wait_for_a_gc_that_is_deleting() {
    let s = Setup::new();
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    fs::write(s.src().join("notetaking/a.md"), "a\n").unwrap();
    for command in ["backup", "check"] {
        let store: std::sync::Arc<dyn cairn_engine::store::Store> = std::sync::Arc::new(
            cairn_engine::store::LocalStore::open(s.dir.path().join("store")).unwrap(),
        );
        let deleting = cairn_engine::lease::repository(
            store,
            cairn_engine::lease::LeaseMode::Exclusive,
            "garbage collection (deleting)",
            Duration::from_secs(60),
            Duration::ZERO,
        )
        .unwrap();
        let mut child = s
            .cmd(&["-v", command])
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Longer than the five quick attempts that end in exit 4 for other holders.
        std::thread::sleep(Duration::from_secs(4));
        assert!(child.try_wait().unwrap().is_none(), "{command} gave up");
        deleting.release();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{command}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("waiting for an exclusive lease"),
            "{command}: {}",
            stderr(&out)
        );
    }
    let (_, list) = s.json(&["snapshots"]);
    assert_eq!(list.as_array().unwrap().len(), 1);
}

/// The history, its first two days forgotten, and a new file for a backup that then stops at its
/// commit point (SIGSTOP), holding its writer lease, with its new packs stored and unreferenced.
fn backup_stopped_before_commit(s: &Setup, extra: &[&str]) -> std::process::Child {
    backup_stopped_at(s, "before-commit", extra)
}

/// [`backup_stopped_before_commit`], stopped at the failpoint `point` instead.
fn backup_stopped_at(s: &Setup, point: &str, extra: &[&str]) -> std::process::Child {
    history(s);
    let out = s.run(&[&["forget"][..], &KEEP2].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    fs::write(s.src().join("images/new.raw"), seeded(4 << 20, 77)).unwrap();
    let mut backup = s
        .cmd(&[&["-q", "backup", "--date", "2026-11-05"][..], extra].concat())
        .env("CAIRN_FAILPOINT", format!("{point}:1:stop"))
        .env("HOSTNAME", "pod-nightly")
        .spawn()
        .unwrap();
    until_stopped(&mut backup);
    backup
}

/// What a disaster restore sees: a state volume that never saw the store restores the newest
/// snapshot exactly as the source is, and `check --read-data` from it is clean.
fn assert_newest_restores_from_a_fresh_state(s: &Setup, fresh: &str) {
    let state = [
        "--set",
        &format!("state.dir={}/{fresh}", s.dir.path().display()),
    ];
    let target = s.dir.path().join(format!("restore-{fresh}"));
    let out = s.run(
        &[
            &["restore", "--target", target.to_str().unwrap()][..],
            &state,
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        files(&target) == files(&s.src()),
        "the newest snapshot restores as the source is"
    );
    let out = s.run(&[&["check", "--read-data"][..], &state].concat());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}

/// A gc on a pod whose clock runs two hours ahead (libfaketime), beside a backup that holds its
/// writer lease: it judges the lease on the store's clock, so it neither takes the lease over nor
/// condemns the backup's new packs, and the backup then commits a snapshot that a fresh state
/// volume restores.
#[test]
fn a_gc_whose_clock_runs_ahead_leaves_a_running_backup_alone() {
    let s = Setup::new();
    let mut backup = backup_stopped_before_commit(&s, &[]);
    let out = s
        .cmd(&[
            "--json",
            "gc",
            "--set",
            "retention.keep_daily=2",
            "--set",
            &format!("state.dir={}/state-retention", s.dir.path().display()),
        ])
        .env("HOSTNAME", "pod-retention")
        .env("FAKETIME", "+2h")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .env("LD_PRELOAD", faketime_lib())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        !err.contains("taking over"),
        "the gc took the lease over: {err}"
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["packs_condemned"], 0, "{r}");
    assert!(
        r["beside_backup"]
            .as_str()
            .unwrap_or("")
            .contains("pod-nightly"),
        "{r}"
    );
    // SAFETY: a signal to our own child.
    unsafe {
        libc::kill(backup.id() as i32, libc::SIGCONT);
    }
    let status = backup.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "the backup after the gc: {status:?}"
    );
    assert_newest_restores_from_a_fresh_state(&s, "state-fresh");
}

/// A backup stalled past its lease (10 s TTL, stopped 12 s) right after it confirmed it, while a
/// gc with no grace condemns and deletes what looked unreferenced: the backup must not leave a
/// snapshot whose packs are gone. Either it fails with nothing committed, or what it commits
/// restores.
#[test]
fn a_backup_stalled_past_its_lease_commits_nothing_a_gc_deleted() {
    let s = Setup::new();
    let ttl = ["--set", "store.lease_ttl_secs=10"];
    let mut backup = backup_stopped_at(&s, "confirmed", &ttl);
    let snapshots = || {
        objects(&s)
            .into_iter()
            .filter(|k| k.starts_with("snapshots/"))
            .count()
    };
    let before = snapshots();
    std::thread::sleep(Duration::from_secs(12));
    let out = s.run(
        &[
            &["gc"][..],
            &KEEP2,
            &ttl,
            &[
                "--set",
                &format!("state.dir={}/state-retention", s.dir.path().display()),
            ],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // SAFETY: a signal to our own child.
    unsafe {
        libc::kill(backup.id() as i32, libc::SIGCONT);
    }
    let status = backup.wait().unwrap();
    let committed = snapshots() > before;
    assert_eq!(
        committed,
        status.code() == Some(0),
        "exit {status:?} and committed {committed}"
    );
    if committed {
        assert_newest_restores_from_a_fresh_state(&s, "state-fresh");
    } else {
        let out = s.run(&["check", "--read-data"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
}

/// libfaketime's preload library (Debian's `faketime` package; scripts/setup.sh installs it).
fn faketime_lib() -> String {
    let found = [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists());
    found
        .expect("libfaketime is installed (scripts/setup.sh)")
        .to_string()
}
