//! `cairn backup`: a missing folder, the state lock held by another process, unreadable files as
//! a user that is not root (warnings, exit 3), and a backup killed at its failpoints.

use std::fs;
use std::process::Command;

use serde_json::Value;

use super::{Setup, chown_nobody, killed_at, libc_geteuid, seeded, stderr};

/// A configured folder that is missing fails the backup (exit 1, nothing committed), naming it;
/// named in `source.optional_folders` it may be absent (exit 0, no warning).
#[test]
fn a_missing_folder_fails_unless_it_is_optional() {
    let s = Setup::new();
    fs::remove_dir(s.src().join("backup")).unwrap();
    fs::write(s.src().join("notetaking/a"), "a").unwrap();
    s.run(&["init"]);
    let out = s.run(&["backup"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "source folder backup (No such file or directory (os error 2)) cannot be read"
        ),
        "{}",
        stderr(&out)
    );
    let (_, list) = s.json(&["snapshots"]);
    assert!(list.as_array().unwrap().is_empty(), "nothing is committed");
    let (code, v) = s.json(&["--set", "source.optional_folders=backup", "backup"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["warnings"].as_array().unwrap().len(), 0, "{v}");
}

#[test]
fn a_second_process_on_the_same_state_exits_4() {
    let s = Setup::new();
    s.run(&["init"]);
    let _held = cairn_engine::lock::StateLock::acquire(&s.dir.path().join("state")).unwrap();
    let out = s.run(&["backup"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
}

/// Unreadable files and folders are warnings (exit 3), and the rest is committed. Run as an
/// unprivileged user, since root reads everything.
#[test]
fn unreadable_files_as_non_root_are_warnings() {
    use std::os::unix::fs::PermissionsExt;
    let s = Setup::new();
    fs::write(s.src().join("notetaking/open.md"), "readable").unwrap();
    fs::write(s.src().join("notetaking/locked.md"), "unreadable").unwrap();
    fs::create_dir_all(s.src().join("notetaking/closed-dir")).unwrap();
    fs::write(s.src().join("notetaking/closed-dir/inside"), "x").unwrap();
    fs::set_permissions(
        s.src().join("notetaking/locked.md"),
        fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    fs::set_permissions(
        s.src().join("notetaking/closed-dir"),
        fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    let as_root = unsafe { libc_geteuid() } == 0;
    let mut cmd = if as_root {
        // Everything cairn writes must belong to the unprivileged user.
        fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        for d in ["store", "state", "exports"] {
            fs::create_dir_all(s.dir.path().join(d)).unwrap();
            chown_nobody(&s.dir.path().join(d));
        }
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_cairn"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
    };
    cmd.arg("--config")
        .arg(&s.config)
        .env_remove("CAIRN_CONFIG");
    let init = Command::new(cmd.get_program())
        .args(cmd.get_args())
        .arg("init")
        .output()
        .unwrap();
    assert_eq!(init.status.code(), Some(0), "{}", stderr(&init));
    let out = cmd.args(["--json", "backup"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings: Vec<(String, String)> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["path"].as_str().unwrap().into(),
                w["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        warnings,
        [
            (
                "notetaking/closed-dir".to_string(),
                "unreadable".to_string()
            ),
            ("notetaking/locked.md".into(), "unreadable".into())
        ]
    );
    assert_eq!(
        v["summary"]["files"], 1,
        "the readable file is in the snapshot"
    );
}

/// Kills `cairn backup` with SIGKILL at named points of the run (the engine's hook, armed by
/// `CAIRN_FAILPOINT` in debug builds): after reading a file, after the first and the third data
/// pack, and just before the snapshot is committed. After each kill the earlier snapshot still
/// reads back bit-identical; the next run completes with a snapshot equal to the source.
#[test]
fn killed_mid_backup_the_next_run_completes() {
    let s = Setup::new();
    s.run(&["init"]);
    fs::write(s.src().join("notetaking/day1.md"), "day one\n".repeat(1000)).unwrap();
    let (code, v) = s.json(&["backup"]);
    assert_eq!(code, 0);
    let first = v["snapshot"].as_str().unwrap().to_string();
    // Enough incompressible data for several data packs.
    for i in 0..24 {
        fs::write(
            s.src().join(format!("images/{i:02}.raw")),
            seeded(4 << 20, 77 + i),
        )
        .unwrap();
    }
    for point in [
        "after-read:2",
        "pack-stored:1",
        "pack-stored:3",
        "before-commit:1",
    ] {
        killed_at(&s, &["-q", "backup"], point);
        let (code, v) = s.json(&["snapshots"]);
        assert_eq!(code, 0, "{v}");
        assert_eq!(
            v.as_array().unwrap().len(),
            1,
            "{point}: a killed run committed a snapshot"
        );
    }
    let (code, v) = s.json(&["backup"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["summary"]["files"], 25);
    let second = v["snapshot"].as_str().unwrap().to_string();

    // Read both snapshots back through the engine and compare with the source.
    let cfg = cairn_engine::config::Config::load(Some(&s.config), &[], &[]).unwrap();
    let repo = cairn_engine::repo::Repository::open(
        cairn_engine::setup::open_store(&cfg.store, "store", false).unwrap(),
    )
    .unwrap();
    let (cat, _) = cairn_engine::catalog::Catalog::open_for(&cfg.state.dir, &repo).unwrap();
    for (snap, names) in [
        (&first, vec!["notetaking/day1.md"]),
        (&second, vec!["notetaking/day1.md", "images/07.raw"]),
    ] {
        let (_, sn) = cat.resolve_snapshot(snap).unwrap();
        for name in names {
            let e = cairn_engine::read::find_entry(&repo, &cat, &sn.root, name.as_bytes()).unwrap();
            let mut got = Vec::new();
            cairn_engine::read::read_file_content(&repo, &cat, &e, &mut got).unwrap();
            assert!(
                got == fs::read(s.src().join(name)).unwrap(),
                "{name} in {snap}"
            );
        }
    }
}
