//! `cairn run` killed mid-night: every day that looks complete verifies, the rerun completes, and
//! the temporaries a kill leaves are removed once older than the (configurable) safe age.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::survey::temporaries;
use super::{Setup, seeded, stderr};

/// Sets a file's mtime `secs` seconds into the past, as if the machine had been off that long.
fn age(path: &Path, secs: u64) {
    let t = std::time::SystemTime::now() - Duration::from_secs(secs);
    let f = fs::File::options().write(true).open(path).unwrap();
    f.set_modified(t).unwrap();
}

/// Changes the share the way a day does: a few large files rewritten, some notes edited.
fn a_day_of_changes(src: &Path, day: u64) {
    for i in 0..4 {
        let n = (day * 4 + i) % 12;
        fs::write(
            src.join(format!("images/{n:02}.raw")),
            seeded(3 << 20, day * 100 + i),
        )
        .unwrap();
    }
    for i in 0..20 {
        let n = (day * 20 + i) % 300;
        fs::write(
            src.join(format!("notetaking/n{n:03}.md")),
            format!("note {n} as of day {day}\n").repeat(100),
        )
        .unwrap();
    }
}

/// `cairn run` killed with SIGKILL at 24 or more points spread over backup and export: after each
/// kill every complete-looking day verifies, the rerun of the night completes, and its start-up
/// cleanup removes every temporary file the kill left once it is older than the safe age (aged
/// by hand past the default hour, or with `CAIRN_BACKUP_STALE_TEMP_SECS=0`, in turn). Pruned
/// days leave no folder behind.
#[test]
fn killed_runs_leave_no_stale_temporaries_and_no_inconsistent_day() {
    let s = Setup::new();
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    for n in 0..12 {
        fs::write(
            s.src().join(format!("images/{n:02}.raw")),
            seeded(3 << 20, 1000 + n),
        )
        .unwrap();
    }
    for n in 0..300 {
        fs::write(
            s.src().join(format!("notetaking/n{n:03}.md")),
            format!("note {n}\n").repeat(300),
        )
        .unwrap();
    }
    let exports = s.dir.path().join("exports");
    let store = s.dir.path().join("store");
    let date = |d: u64| {
        jiff::civil::date(2026, 1, 1)
            .checked_add(jiff::Span::new().days(d as i64))
            .unwrap()
            .to_string()
    };
    let run = |d: u64| s.run(&["-q", "run", "--date", &date(d)]);
    assert_eq!(run(0).status.code(), Some(0));
    // How long a night with a day of changes takes, to spread the kills over it: the shorter of
    // two, since other tests share the machine and later nights may run alone.
    let mut night = Duration::MAX;
    for day in 1..=2 {
        a_day_of_changes(&s.src(), day);
        let t = std::time::Instant::now();
        let out = run(day);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        night = night.min(t.elapsed());
    }
    let snapshots = || fs::read_dir(store.join("snapshots")).unwrap().count();
    // Kill points cycle through 12 fractions of a night until 24 kills have hit a running
    // process. A run that ends before its kill point shortens the estimate of a night: the first
    // nights were measured while other tests loaded the machine.
    let (cycle, wanted, most) = (12u64, 24, 60u64);
    let (mut in_backup, mut in_export, mut left_behind) = (0, 0, 0);
    let mut k = 0u64;
    while in_backup + in_export < wanted && k < most {
        let day = k + 3;
        a_day_of_changes(&s.src(), day);
        let before = snapshots();
        let frac = ((k % cycle) as f64 + 0.5) / cycle as f64;
        let started = std::time::Instant::now();
        let mut child = s.cmd(&["-q", "run", "--date", &date(day)]).spawn().unwrap();
        let mut running = true;
        while started.elapsed() < night.mul_f64(frac) {
            if child.try_wait().unwrap().is_some() {
                running = false;
                night = night.min(started.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        running &= child.try_wait().unwrap().is_none();
        child.kill().unwrap_or(());
        child.wait().unwrap();
        if running {
            if snapshots() == before {
                in_backup += 1;
            } else {
                in_export += 1;
            }
        }
        // Whatever the kill interrupted, a day that looks complete is consistent.
        let ex = cairn_engine::store::LocalStore::open(&exports).unwrap();
        for d in cairn_engine::export::list_days(&ex).unwrap() {
            if d.complete {
                cairn_engine::export::verify(&ex, &d.date).unwrap_or_else(|e| {
                    let held: Vec<_> = fs::read_dir(exports.join(&d.date))
                        .map(|r| r.flatten().map(|e| e.file_name()).collect())
                        .unwrap_or_default();
                    panic!(
                        "kill {k}: day {} looks complete: {e}; it holds {held:?}",
                        d.date
                    )
                });
            }
        }
        // The temporaries the kill left, once older than the safe age, go at the next start.
        let left: Vec<PathBuf> = [&store, &exports]
            .iter()
            .flat_map(|d| temporaries(d))
            .collect();
        left_behind += usize::from(!left.is_empty());
        // Half the time the files are aged past the default safe age of an hour, half the
        // time the safe age is set to 0 through the environment.
        let out = if k.is_multiple_of(2) {
            for p in &left {
                age(p, 2 * 3600);
            }
            run(day)
        } else {
            s.cmd(&["-q", "run", "--date", &date(day)])
                .env("CAIRN_BACKUP_STALE_TEMP_SECS", "0")
                .output()
                .unwrap()
        };
        assert_eq!(out.status.code(), Some(0), "kill {k}: {}", stderr(&out));
        let still: Vec<PathBuf> = [&store, &exports]
            .iter()
            .flat_map(|d| temporaries(d))
            .collect();
        assert!(
            still.is_empty(),
            "kill {k} left {left:?}; after the rerun: {still:?}"
        );
        // Every day folder is a listed day: pruning leaves no folder of hidden files behind.
        let listed: Vec<String> = cairn_engine::export::list_days(&ex)
            .unwrap()
            .into_iter()
            .map(|d| d.date)
            .collect();
        let mut folders: Vec<String> = fs::read_dir(&exports)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n != "_reports")
            .collect();
        folders.sort();
        assert_eq!(folders, listed, "kill {k}");
        k += 1;
    }
    eprintln!(
        "{k} kill points; {in_backup} hit the backup, {in_export} what follows; \
         {left_behind} left temporary files"
    );
    assert!(
        left_behind >= 2,
        "only {left_behind} kills left temporary files"
    );
    assert!(
        in_backup + in_export >= 20,
        "only {} of {k} kills hit a running process",
        in_backup + in_export
    );
    assert!(
        in_backup >= 3 && in_export >= 3,
        "kills in backup: {in_backup}, in export: {in_export}"
    );
}

/// The safe age is a configuration key: with 0, the next run removes the temporaries of every
/// process that is gone, however young.
#[test]
fn the_safe_age_of_temporaries_is_configurable() {
    let s = Setup::new();
    fs::write(s.src().join("notetaking/a.md"), "a").unwrap();
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let exports = s.dir.path().join("exports");
    fs::create_dir_all(exports.join("2026-11-28")).unwrap();
    let young = exports.join(format!("2026-11-28/.shared-2026-11-28.tar.zst.tmp-{pid}-0"));
    fs::write(&young, "half an archive").unwrap();
    let out = s.run(&["run", "--date", "2026-11-29"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        young.exists(),
        "younger than the default safe age of an hour"
    );
    let out = s.run(&[
        "run",
        "--date",
        "2026-11-29",
        "--set",
        "backup.stale_temp_secs=0",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!young.exists());
    assert!(
        !exports.join("2026-11-28").exists(),
        "the emptied folder goes too"
    );
}
