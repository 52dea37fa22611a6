//! `cairn restore` by day, by time and from a daily archive, then `diff`, `find` and `check`
//! (also of a damaged store), as a user types them.

use std::fs;
use std::time::Duration;

use super::survey::{Kind, survey};
use super::{Setup, stderr};

/// restore by date, by time and from the archive alone; check; diff; find — as a user types them.
#[test]
fn restore_check_diff_find_from_the_command_line() {
    let s = Setup::new();
    s.run(&["init"]);
    fs::write(s.src().join("notetaking/a.md"), "first").unwrap();
    let (code, r1) = s.json(&["run", "--date", "2026-11-20"]);
    assert_eq!(code, 0, "{r1}");
    std::thread::sleep(Duration::from_millis(20));
    let between = jiff::Timestamp::now().to_string();
    std::thread::sleep(Duration::from_millis(20));
    fs::write(s.src().join("notetaking/a.md"), "second").unwrap();
    fs::write(s.src().join("images/new.jpg"), "jpg").unwrap();
    let (code, _) = s.json(&["run", "--date", "2026-11-21"]);
    assert_eq!(code, 0);

    let restore_to = |args: &[&str], dir: &str| -> String {
        let target = s.dir.path().join(dir);
        let mut a = vec!["restore", "--target", target.to_str().unwrap(), "--verify"];
        a.extend_from_slice(args);
        let out = s.run(&a);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        fs::read_to_string(target.join("notetaking/a.md")).unwrap()
    };
    assert_eq!(restore_to(&["--date", "2026-11-20"], "r1"), "first");
    assert_eq!(restore_to(&["--as-of", &between], "r2"), "first");
    assert_eq!(restore_to(&[], "r3"), "second");
    assert_eq!(restore_to(&["--archive", "2026-11-20"], "r4"), "first");
    let file = s
        .dir
        .path()
        .join("exports/2026-11-21/shared-2026-11-21.tar.zst");
    assert_eq!(
        restore_to(
            &["--archive", file.to_str().unwrap(), "--path", "notetaking"],
            "r5"
        ),
        "second"
    );
    assert!(
        !s.dir.path().join("r5/images").exists(),
        "--path restores only that path"
    );
    // Restoring again over an existing tree: never by default, always when asked.
    fs::write(s.dir.path().join("r3/notetaking/a.md"), "edited").unwrap();
    assert_eq!(restore_to(&[], "r3"), "edited");
    assert_eq!(restore_to(&["--overwrite", "always"], "r3"), "second");

    let out = s.run(&["diff", "2026-11-20", "2026-11-21"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "+ images/new.jpg\nM notetaking/a.md\n"
    );
    let (code, found) = s.json(&["find", "new.jpg"]);
    assert_eq!(code, 0);
    assert_eq!(found.as_array().unwrap().len(), 1);

    let (code, healthy) = s.json(&["check", "--read-data"]);
    assert_eq!(code, 0, "{healthy}");
    // Damage one pack: check fails with exit 1 and names the affected path.
    let packs = s.dir.path().join("store/packs");
    let victim = survey(&packs, b"", &[])
        .into_values()
        .filter(|n| n.kind == Kind::File)
        .max_by_key(|n| n.size)
        .unwrap()
        .path;
    fs::remove_file(&victim).unwrap();
    let (code, report) = s.json(&["check"]);
    assert_eq!(code, 1, "{report}");
    assert!(!report["problems"].as_array().unwrap().is_empty());
    let out = s.run(&[
        "restore",
        "--target",
        "/nonexistent/../x",
        "--overwrite",
        "sometimes",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

/// `restore --dry-run` prints the plan and writes nothing; the restore that follows does what it
/// said (issue 30: a plan value that a dry run prints, carried out by the execution).
#[test]
fn a_dry_run_restore_prints_the_plan_the_restore_then_carries_out() {
    let s = Setup::new();
    s.run(&["init"]);
    fs::create_dir_all(s.src().join("notetaking/sub")).unwrap();
    fs::write(s.src().join("notetaking/a.md"), "first").unwrap();
    fs::write(s.src().join("notetaking/sub/b.md"), "second note").unwrap();
    std::os::unix::fs::symlink("a.md", s.src().join("notetaking/link")).unwrap();
    let (code, r) = s.json(&["run", "--date", "2026-11-20"]);
    assert_eq!(code, 0, "{r}");
    let target = s.dir.path().join("planned");
    let t = target.to_str().unwrap();
    let (code, plan) = s.json(&["restore", "--target", t, "--dry-run"]);
    assert_eq!(code, 0, "{plan}");
    assert!(!target.exists(), "a dry run wrote to the target");
    let (code, done) = s.json(&["restore", "--target", t]);
    assert_eq!(code, 0, "{done}");
    let (p, d) = (&plan["plan"], &done["report"]);
    for (planned, did) in [
        ("files", "files"),
        ("bytes", "bytes"),
        ("dirs", "dirs"),
        ("symlinks", "symlinks"),
        ("hardlinks", "hardlinks"),
    ] {
        assert_eq!(p[planned], d[did], "{planned}: plan {plan} against {done}");
    }
    assert_eq!(p["files"], 2);
    let paths: Vec<&str> = plan["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    for path in &paths {
        assert!(
            target.join(path).symlink_metadata().is_ok(),
            "{path} planned but not restored"
        );
    }
    assert!(paths.contains(&"notetaking/sub/b.md"), "{paths:?}");
}

/// `check --dry-run --read-data` says which packs and bytes the check would read, and the check
/// then reads exactly that many.
#[test]
fn a_dry_run_check_says_what_the_check_then_reads() {
    let s = Setup::new();
    s.run(&["init"]);
    fs::write(s.src().join("notetaking/a.md"), "first").unwrap();
    fs::write(s.src().join("images/b.raw"), vec![7u8; 300_000]).unwrap();
    let (code, r) = s.json(&["run", "--date", "2026-11-20"]);
    assert_eq!(code, 0, "{r}");
    let (code, plan) = s.json(&["check", "--read-data", "--dry-run"]);
    assert_eq!(code, 0, "{plan}");
    let (code, done) = s.json(&["check", "--read-data"]);
    assert_eq!(code, 0, "{done}");
    assert_eq!(
        plan["plan"]["packs_to_read"], done["packs_read"],
        "{plan} against {done}"
    );
    assert_eq!(plan["plan"]["packs"], done["packs"]);
    assert!(
        plan["plan"]["bytes_to_read"].as_u64().unwrap() > 0,
        "{plan}"
    );
}
