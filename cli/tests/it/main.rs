//! Tests of the `cairn` binary as users and scripts run it, one module per command (or concern:
//! configuration, errors, metrics, outages, the pod's user). This file holds what they share: a
//! configured [`Setup`] and its commands, output helpers, failpoint kills, the S3 test server.
//!
//! Tests that need what scripts/test.sh provides (the S3 test server, root as in CI, a
//! Pushgateway, pyzstd) are `#[ignore]`d: a plain `cargo test` reports them as ignored, and
//! `--include-ignored` runs them, failing with what is missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

#[path = "../../../engine/tests/it/mtime.rs"]
mod mtime;
#[path = "../../../engine/tests/it/seeded.rs"]
#[allow(dead_code)]
mod seeded;
#[path = "../../../engine/tests/it/survey.rs"]
#[allow(dead_code)]
mod survey;

mod backup;
mod completions;
mod config;
mod dump;
mod errors;
mod exports;
mod first_night;
mod forget;
mod init;
mod metrics;
mod mount;
mod offsite;
mod outage;
mod pod;
mod preflight;
mod progress;
mod proton;
mod prune;
mod restore;
mod resume;
mod run;
mod run_killed;
mod seekable;
mod snapshots_ls;
mod stats;

use mtime::set_mtime;
use seeded::seeded;

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("cairn.toml");
        let root = dir.path();
        fs::write(
            &config,
            format!(
                "[source]\nroot = \"{0}/src\"\n[store]\nkind = \"local\"\npath = \"{0}/store\"\n\
                 [exports]\npath = \"{0}/exports\"\n[state]\ndir = \"{0}/state\"\n",
                root.display()
            ),
        )
        .unwrap();
        for f in ["notetaking", "images", "backup"] {
            fs::create_dir_all(root.join("src").join(f)).unwrap();
        }
        Setup { dir, config }
    }

    fn src(&self) -> PathBuf {
        self.dir.path().join("src")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.arg("--config").arg(&self.config).args(args);
        c.env_remove("CAIRN_CONFIG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn json(&self, args: &[&str]) -> (i32, Value) {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.run(&a);
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap(), v)
    }
}

/// Runs `cairn ARGS` under `script`, which gives it a terminal 200 columns wide as its stdout
/// and stderr; what the terminal showed is the output's stdout.
fn on_terminal(s: &Setup, args: &[&str]) -> Output {
    let line = format!(
        "stty cols 200 rows 50; '{}' --config '{}' {}",
        env!("CARGO_BIN_EXE_cairn"),
        s.config.display(),
        args.iter()
            .map(|a| format!("'{a}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env_remove("CAIRN_CONFIG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts that `o` exited with `code`, showing what it printed if not.
#[track_caller]
fn assert_exit(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "{}{}", stdout(o), stderr(o));
}

/// `diff -r --no-dereference a b` finds nothing (symlinks compared by their targets).
#[track_caller]
fn same_tree(a: &Path, b: &Path) {
    let diff = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(a)
        .arg(b)
        .output()
        .unwrap();
    assert!(
        diff.status.success() && diff.stdout.is_empty(),
        "diff -r {} {}: {}{}",
        a.display(),
        b.display(),
        stdout(&diff),
        stderr(&diff)
    );
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `cairn ARGS` with the failpoint `point` and checks that it was killed there (SIGKILL).
fn killed_at(s: &Setup, args: &[&str], point: &str) {
    use std::os::unix::process::ExitStatusExt;
    let out = s.cmd(args).env("CAIRN_FAILPOINT", point).output().unwrap();
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{point}: cairn {args:?} was not killed there: {:?} {}",
        out.status,
        stderr(&out)
    );
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
    fn chown(path: *const std::ffi::c_char, uid: u32, gid: u32) -> i32;
}

fn chown_to(p: &Path, uid: u32, gid: u32) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { chown(c.as_ptr(), uid, gid) }, 0);
}

fn chown_nobody(p: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { chown(c.as_ptr(), 65534, 65534) }, 0);
}

/// The S3 test server's endpoint (`CAIRN_S3_TEST_ENDPOINT`). The tests that need it are
/// `#[ignore]`d; run with `--include-ignored` and no server, they fail here.
fn s3_endpoint() -> String {
    std::env::var("CAIRN_S3_TEST_ENDPOINT").expect(
        "no S3 test server: CAIRN_S3_TEST_ENDPOINT is unset (scripts/test.sh starts one with scripts/s3-server.sh)",
    )
}

/// A key prefix on the S3 test server that no other test or run uses: `what-pid-nanos`.
fn s3_prefix(what: &str) -> String {
    format!(
        "{what}-{}-{}",
        std::process::id(),
        jiff::Timestamp::now().as_nanosecond()
    )
}

/// Waits until `child` stopped itself (SIGSTOP at a `…:stop` failpoint); if it ended first,
/// fails with what it said on stderr, where that is piped.
fn until_stopped(child: &mut std::process::Child) {
    let pid = child.id();
    loop {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        if stat
            .rsplit(')')
            .next()
            .unwrap()
            .trim_start()
            .starts_with('T')
        {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut said = String::new();
            if let Some(err) = child.stderr.as_mut() {
                let _ = std::io::Read::read_to_string(err, &mut said);
            }
            panic!("it ended ({status}) before its failpoint: {said}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `cmd` with the S3 test server's read-only key (scripts/s3-server.sh makes it).
fn with_read_only_key(cmd: &mut Command) -> &mut Command {
    cmd.env(
        "AWS_ACCESS_KEY_ID",
        std::env::var("CAIRN_S3_TEST_RO_KEY_ID").unwrap(),
    )
    .env(
        "AWS_SECRET_ACCESS_KEY",
        std::env::var("CAIRN_S3_TEST_RO_SECRET").unwrap(),
    )
}

/// A configuration for `s` on the S3 test server at `endpoint`: the store and the exports in the
/// test buckets below `prefix` (`extra` lines added to both sections), the source and the state
/// in `s`'s directory.
fn s3_config(s: &Setup, endpoint: &str, prefix: &str, extra: &str) -> String {
    let location = |bucket: &str, prefix: &str| {
        format!(
            "kind = \"s3\"\nendpoint = \"{endpoint}\"\nregion = \"{}\"\nbucket = \"{}\"\n\
             prefix = \"{prefix}\"\npath_style = true\n{extra}",
            s3_region(),
            std::env::var(bucket).unwrap()
        )
    };
    format!(
        "[source]\nroot = \"{root}/src\"\n[store]\n{}[exports]\n{}[state]\ndir = \"{root}/state\"\n",
        location("CAIRN_S3_TEST_BUCKET", &format!("{prefix}/store")),
        location("CAIRN_S3_TEST_EXPORTS_BUCKET", prefix),
        root = s.dir.path().display()
    )
}

/// The S3 test server's region.
fn s3_region() -> String {
    std::env::var("CAIRN_S3_TEST_REGION").unwrap_or_else(|_| "garage".into())
}

/// A store on the S3 test server at `bucket`/`prefix`, with the test key: what a test reads
/// back or lists independently of the run under test.
fn s3_test_store(endpoint: &str, bucket: &str, prefix: &str) -> cairn_engine::store::S3Store {
    cairn_engine::store::S3Store::new(&cairn_engine::store::S3Config {
        endpoint: Some(endpoint.to_string()),
        region: s3_region(),
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
        path_style: true,
        access_key: std::env::var("AWS_ACCESS_KEY_ID").unwrap(),
        secret_key: std::env::var("AWS_SECRET_ACCESS_KEY").unwrap(),
        session_token: None,
        retry: cairn_engine::store::RetryPolicy::attempts(
            5,
            Duration::from_millis(20),
            Duration::from_millis(200),
        ),
        server_name: "the S3 test server".into(),
    })
    .unwrap()
}
