//! `cairn snapshots` and `cairn ls` (with `init`, `backup` and `catalog rebuild` on the way), and
//! the read-only commands (`ls`, `diff`, `find`, `snapshots`) beside a running nightly job.

use std::fs;

use super::{Setup, stderr};

#[test]
fn init_backup_snapshots_ls() {
    let s = Setup::new();
    fs::write(s.src().join("notetaking/todo.md"), "- write tests\n").unwrap();
    fs::create_dir_all(s.src().join("images/2026")).unwrap();
    fs::write(s.src().join("images/2026/cat.jpg"), vec![7u8; 100_000]).unwrap();
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    let again = s.run(&["init"]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "init refuses an existing repository"
    );
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(s.run(&["init", "--exists-ok"]).status.code(), Some(0));

    let (code, v) = s.json(&["backup", "--date", "2026-11-20"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["summary"]["files"], 2);
    assert_eq!(v["date"], "2026-11-20");
    let id = v["snapshot"].as_str().unwrap().to_string();

    let (code, v) = s.json(&["backup"]);
    assert_eq!(code, 0);
    assert_eq!(
        v["summary"]["files_read"], 0,
        "an unchanged rerun reads nothing"
    );

    let (_, list) = s.json(&["snapshots"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    assert_eq!(list[0]["id"], id.as_str());

    let out = s.run(&["ls", &id[..8], "images"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("images/2026/cat.jpg"), "{text}");
    assert!(!text.contains("todo.md"));
    let (_, by_date) = s.json(&["ls", "2026-11-20", "notetaking/todo.md"]);
    assert_eq!(by_date[0]["entry"]["size"], 14);

    let out = s.run(&["ls", "latest", "nope/missing"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope/missing"), "{}", stderr(&out));

    fs::remove_dir_all(s.dir.path().join("state")).unwrap();
    let (code, v) = s.json(&["catalog", "rebuild"]);
    assert_eq!(code, 0);
    assert_eq!(v["snapshots"], 2);
}

/// `ls`, `diff`, `find` and `snapshots` run while the nightly job holds the state directory
/// and the catalog (here: this test process holds both).
#[test]
fn read_only_commands_run_beside_the_nightly_job() {
    let s = Setup::new();
    fs::write(s.src().join("notetaking/a.md"), "alpha").unwrap();
    assert!(s.cmd(&["init"]).status().unwrap().success());
    assert_eq!(s.run(&["backup"]).status.code(), Some(0));
    let state = s.dir.path().join("state");
    let _lock = cairn_engine::lock::StateLock::acquire(&state).unwrap();
    let store = std::sync::Arc::new(
        cairn_engine::store::LocalStore::open(s.dir.path().join("store")).unwrap(),
    );
    let repo = cairn_engine::repo::Repository::open(store).unwrap();
    let (_catalog, _) = cairn_engine::catalog::Catalog::open_for(&state, &repo).unwrap();
    for args in [
        &["snapshots"][..],
        &["ls", "latest"],
        &["find", "*.md"],
        &["diff", "latest", "latest"],
    ] {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    }
    let out = s.run(&["ls", "latest", "notetaking"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("a.md"));
}

/// The table shows each snapshot's time to the second in the configured time zone; `--json`
/// keeps RFC 3339 in UTC with nanoseconds.
#[test]
fn snapshots_show_the_time_in_the_configured_zone() {
    let s = Setup::new();
    let cfg = fs::read_to_string(&s.config).unwrap();
    fs::write(&s.config, format!("timezone = \"Asia/Kolkata\"\n{cfg}")).unwrap();
    fs::write(s.src().join("notetaking/a.md"), "alpha").unwrap();
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    assert_eq!(s.run(&["backup"]).status.code(), Some(0));
    let (_, list) = s.json(&["snapshots"]);
    let time = list[0]["snapshot"]["time"].as_str().unwrap().to_string();
    assert!(time.ends_with('Z') && time.contains('.'), "{time}");
    let t: jiff::Timestamp = time.parse().unwrap();
    let local = t
        .to_zoned(jiff::tz::TimeZone::get("Asia/Kolkata").unwrap())
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string();
    let out = s.run(&["snapshots"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let row = text.lines().nth(1).unwrap();
    assert!(row.contains(&local), "{local} not in {row:?}");
    assert!(!row.contains(&time), "{row:?}");
}
