//! What every command shares: the configuration (file, environment, `--set`) and the command
//! line. A usage or configuration error exits 2 with one clear line; store and state paths are
//! checked; a `--date` after tomorrow is refused.

use std::fs;
use std::process::Command;

use serde_json::Value;

use super::{Setup, stderr};

#[test]
fn usage_and_configuration_errors_exit_2_with_one_clear_line() {
    let s = Setup::new();
    let cases: [(&[&str], &str); 4] = [
        (&["backup", "--set", "backup.compression=40"], "compression"),
        (&["backup", "--set", "store.colour=red"], "colour"),
        (&["backup", "--date", "yesterday"], "--date"),
        (&["ls", "latest!", "x"], "latest!"),
    ];
    s.run(&["init"]);
    for (args, needle) in cases {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(
            err.trim_end()
                .lines()
                .filter(|l| l.starts_with("cairn:"))
                .count(),
            1,
            "{err}"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["--config", "/nonexistent.toml", "snapshots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("/nonexistent.toml"));
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_config_file_of_endless_zeros_exits_2_with_one_line() {
    // Read whole, /dev/zero took 7 GB before the read was bounded to 1 MiB.
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["--config", "/dev/zero", "snapshots"])
        .env_remove("CAIRN_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("/dev/zero") && err.contains("1 MiB"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

#[test]
fn environment_overrides_the_file() {
    let s = Setup::new();
    s.run(&["init"]);
    fs::create_dir_all(s.dir.path().join("other/notes")).unwrap();
    fs::write(s.dir.path().join("other/notes/x"), "x").unwrap();
    let out = s
        .cmd(&["--json", "backup"])
        .env("CAIRN_SOURCE_ROOT", s.dir.path().join("other"))
        .env("CAIRN_SOURCE_FOLDERS", "notes")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["files"], 1);
}

/// Configuration and OS errors: one line, each cause once, naming the file and the line.
#[test]
fn config_and_os_errors_print_once_on_one_line() {
    let s = Setup::new();
    let bad = s.dir.path().join("bad.toml");
    fs::write(&bad, "[source]\nroot = \"/x\"\nfolders = [\"a\"\n[store]\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config")
        .arg(&bad)
        .arg("snapshots")
        .env_remove("CAIRN_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(bad.to_str().unwrap()), "{err}");
    assert!(err.contains("line 4"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["--config", "/nonexistent.toml", "snapshots"])
        .env_remove("CAIRN_CONFIG")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// A store path that does not exist is a configuration error (exit 2) that creates nothing,
/// except for `cairn init`; a store or state path that is a file is one too.
#[test]
fn store_and_state_paths_are_checked() {
    let s = Setup::new();
    let store = s.dir.path().join("store");
    for args in [&["snapshots"][..], &["backup"]] {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(store.to_str().unwrap()),
            "{}",
            stderr(&out)
        );
        assert!(!store.exists(), "{args:?} created the store directory");
    }
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    assert!(store.is_dir());

    let s = Setup::new();
    let store = s.dir.path().join("store");
    fs::write(&store, "a file").unwrap();
    for args in [&["init"][..], &["snapshots"]] {
        let out = s.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(store.to_str().unwrap()),
            "{}",
            stderr(&out)
        );
    }

    let s = Setup::new();
    s.run(&["init"]);
    let state = s.dir.path().join("state");
    fs::write(&state, "a file").unwrap();
    let out = s.run(&["snapshots"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(state.to_str().unwrap()),
        "{}",
        stderr(&out)
    );
}

/// A day far in the future (a typo in --date) would outrank every real day in retention: run,
/// backup and export refuse it with one line (exit 2); tomorrow is still accepted.
#[test]
fn a_date_after_tomorrow_is_refused() {
    let s = Setup::new();
    assert!(s.cmd(&["init"]).status().unwrap().success());
    for cmd in ["run", "backup", "export"] {
        let out = s.cmd(&[cmd, "--date", "2062-11-23"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{cmd}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("2062-11-23"), "{err}");
    }
    let tomorrow = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date()
        .tomorrow()
        .unwrap()
        .strftime("%Y-%m-%d")
        .to_string();
    let out = s.cmd(&["backup", "--date", &tomorrow]).output().unwrap();
    assert_ne!(out.status.code(), Some(2), "{}", stderr(&out));
}
