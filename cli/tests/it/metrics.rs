//! Metrics reach a real Pushgateway (Debian's `prometheus-pushgateway` on loopback): a good
//! night's stages, then a failed night's, which must not erase the last success; basic auth from
//! a mounted secret. Every way a stage can fail publishes that failure (the textfile shows it).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Setup, seeded, stderr};

struct Gateway(Child, u16);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn gateway() -> Gateway {
    gateway_with(&[])
}

/// A Pushgateway started with `args` as well (a `--web.config.file`). The tests that start one
/// are `#[ignore]`d; run without it installed, they fail here.
fn gateway_with(args: &[String]) -> Gateway {
    let bin = which("prometheus-pushgateway").unwrap_or_else(|()| {
        panic!(
            "prometheus-pushgateway is not installed (scripts/test.sh installs it through scripts/setup.sh)"
        )
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let g = Gateway(child, port);
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the Pushgateway did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    g
}

fn which(name: &str) -> Result<String, ()> {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .map_err(|_| ())?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if p.is_empty() { Err(()) } else { Ok(p) }
}

/// The gateway's exposition, as Prometheus would scrape it.
fn scrape(port: u16) -> String {
    scrape_as(port, "")
}

/// The exposition, read with `extra` request headers (`Authorization: …\r\n`).
fn scrape_as(port: u16, extra: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: x\r\n{extra}\r\n").as_bytes())
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of `name` with the stage's grouping labels.
fn value(text: &str, name: &str, stage: &str) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| l.contains(&format!("stage=\"{stage}\"")) && l.contains("job=\"cairn\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
#[ignore = "needs prometheus-pushgateway (scripts/test.sh installs it)"]
fn stages_push_successes_and_failures_to_a_pushgateway() {
    let g = gateway();
    let s = Setup::new();
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    std::fs::write(s.src().join("images/a.raw"), seeded(3 << 20, 1)).unwrap();
    let url = format!("metrics.pushgateway=http://127.0.0.1:{}", g.1);
    let out = s.run(&[
        "run",
        "--date",
        "2026-11-29",
        "--set",
        &url,
        "--set",
        "exports.keep_daily=14",
        "--set",
        "exports.capacity_bytes=64000000000",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = scrape(g.1);
    for stage in ["backup", "export", "retention"] {
        assert_eq!(
            value(&text, &format!("cairn_{stage}_success"), stage),
            Some(1.0),
            "{stage}: {text}"
        );
    }
    let ok_at = value(
        &text,
        "cairn_backup_last_success_timestamp_seconds",
        "backup",
    )
    .unwrap();
    assert!(value(&text, "cairn_backup_read_bytes", "backup").unwrap() >= (3 << 20) as f64);
    assert!(value(&text, "cairn_export_archive_bytes", "export").unwrap() > 0.0);
    assert!(value(&text, "cairn_backup_store_bytes", "backup").unwrap() > 0.0);
    // The server's capacity, for the space alert.
    assert_eq!(
        value(&text, "cairn_export_capacity_bytes", "export"),
        Some(64e9)
    );
    // Everything in the exports location: at least the day's archive.
    assert!(
        value(&text, "cairn_export_total_bytes", "export").unwrap()
            > value(&text, "cairn_export_archive_bytes", "export").unwrap()
    );

    // The retention job's `exports prune` publishes how many days it kept and its target:
    // what the exports' growth alert compares.
    let out = s.run(&["exports", "prune", "--keep", "3", "--set", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = scrape(g.1);
    assert_eq!(
        value(&text, "cairn_retention_kept_days", "retention"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, "cairn_retention_keep_days", "retention"),
        Some(3.0),
        "{text}"
    );

    // A night that fails before its backup (the store is gone).
    std::thread::sleep(Duration::from_millis(1100));
    let moved = s.dir.path().join("store-away");
    std::fs::rename(s.dir.path().join("store"), &moved).unwrap();
    let out = s.run(&[
        "run",
        "--date",
        "2026-11-30",
        "--set",
        &url,
        "--set",
        "exports.keep_daily=14",
    ]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = scrape(g.1);
    assert_eq!(
        value(&text, "cairn_backup_success", "backup"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "cairn_backup_last_success_timestamp_seconds",
            "backup"
        ),
        Some(ok_at),
        "a failure erased the last success"
    );
    assert!(
        value(
            &text,
            "cairn_backup_last_attempt_timestamp_seconds",
            "backup"
        )
        .unwrap()
            > ok_at
    );
}

/// `cairn_<stage>_success` in the textfile collector's file below `dir`, if one was written.
fn textfile(dir: &std::path::Path, stage: &str) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(format!("cairn_{stage}.prom"))).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("cairn_{stage}_success ")))
        .and_then(|v| v.parse().ok())
}

/// Each command that publishes a stage publishes its failure however early it fails: a bad
/// `--date`, unusable exports, a missing repository, a refused policy.
#[test]
fn every_early_failure_publishes_the_stages_failure() {
    let s = Setup::new();
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    let a_file = s.dir.path().join("a-file");
    std::fs::write(&a_file, "not a directory").unwrap();
    let bad_exports = format!("exports.path={}", a_file.display());
    let no_store = format!("store.path={}", s.dir.path().join("nowhere").display());
    let run_stages: &[&str] = &["backup", "export", "retention"];
    let cases: Vec<(&str, Vec<&str>, &[&str])> = vec![
        (
            "run with a bad --date",
            vec!["run", "--date", "2026-13-45"],
            run_stages,
        ),
        (
            "run with a --date after tomorrow",
            vec!["run", "--date", "2999-01-01"],
            run_stages,
        ),
        (
            "run with unusable exports",
            vec!["run", "--date", "2026-11-29", "--set", &bad_exports],
            run_stages,
        ),
        (
            "run pruning with a policy that keeps nothing",
            vec![
                "run",
                "--set",
                "retention.prune_in_run=true",
                "--set",
                "retention.keep_daily=0",
            ],
            run_stages,
        ),
        (
            "prune without a repository",
            vec!["prune", "--set", &no_store],
            &["retention"],
        ),
        (
            "prune with a policy that keeps nothing",
            vec!["prune", "--set", "retention.keep_daily=0"],
            &["retention"],
        ),
        (
            "exports prune --keep 0",
            vec!["exports", "prune", "--keep", "0"],
            &["retention"],
        ),
        (
            "exports prune with unusable exports",
            vec!["exports", "prune", "--set", &bad_exports],
            &["retention"],
        ),
        (
            "offsite sync with no uploader",
            vec!["offsite", "sync"],
            &["offsite"],
        ),
    ];
    for (i, (what, args, stages)) in cases.into_iter().enumerate() {
        let dir = s.dir.path().join(format!("metrics-{i}"));
        let sink = format!("metrics.textfile_dir={}", dir.display());
        let out = s.run(&[&args[..], &["--set", &sink]].concat());
        assert_ne!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
        for st in stages {
            assert_eq!(
                textfile(&dir, st),
                Some(0.0),
                "{what}: no failure of the {st} stage published; cairn said: {}",
                stderr(&out)
            );
        }
    }
}

/// A run whose prune fails after the night's backup and archive (`prune_in_run`) exits 0, as the
/// report says, but publishes the retention stage as failed.
#[test]
fn a_run_whose_prune_fails_publishes_retention_failure() {
    let s = Setup::new();
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    let dir = s.dir.path().join("metrics");
    let sink = format!("metrics.textfile_dir={}", dir.display());
    let prune = [
        "--set",
        "retention.prune_in_run=true",
        "--set",
        "retention.keep_daily=1",
        "--set",
        &sink,
    ];
    std::fs::write(s.src().join("images/a.raw"), seeded(1 << 20, 1)).unwrap();
    let out = s.run(&[&["run", "--date", "2026-11-01"][..], &prune].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(textfile(&dir, "retention"), Some(1.0));
    let (_, list) = s.json(&["snapshots"]);
    let first = list[0]["id"].as_str().unwrap().to_string();

    // The second night forgets the first snapshot; once its backup has synced the catalog, the
    // snapshot object becomes a directory, which the store cannot delete.
    std::fs::write(s.src().join("images/a.raw"), seeded(1 << 20, 2)).unwrap();
    let mut night = s
        .cmd(&[&["-q", "--json", "run", "--date", "2026-11-02"][..], &prune].concat())
        .env("CAIRN_FAILPOINT", "before-commit:1:stop")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    super::until_stopped(&mut night);
    let obj = s.dir.path().join("store/snapshots").join(&first);
    std::fs::remove_file(&obj).unwrap();
    std::fs::create_dir_all(obj.join("undeletable")).unwrap();
    // SAFETY: a signal to our own child.
    unsafe {
        libc::kill(night.id() as i32, libc::SIGCONT);
    }
    let out = night.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["prune"]["error"].is_string(), "{report}");
    assert_eq!(textfile(&dir, "backup"), Some(1.0));
    assert_eq!(textfile(&dir, "export"), Some(1.0));
    assert_eq!(
        textfile(&dir, "retention"),
        Some(0.0),
        "the failed prune published retention success: {report}"
    );
}

/// Every file below `dir` whose content holds `needle`.
fn files_holding(dir: &std::path::Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if std::fs::read(&p)
                .unwrap_or_default()
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
            {
                found.push(p);
            }
        }
    }
    found
}

const PUSH_PASSWORD: &str = "pg-Secret-81x";

/// A Pushgateway URL with credentials is refused in one line that does not show them, before
/// the run does anything.
#[test]
fn credentials_in_the_pushgateway_url_are_refused_and_never_printed() {
    let s = Setup::new();
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    for url in [
        format!("http://cairn:{PUSH_PASSWORD}@127.0.0.1:9"),
        format!("https://cairn:{PUSH_PASSWORD}@pushgateway.example"),
        format!("cairn:{PUSH_PASSWORD}@127.0.0.1:9091"),
    ] {
        let out = s.run(&[
            "run",
            "--date",
            "2026-11-29",
            "--set",
            &format!("metrics.pushgateway={url}"),
        ]);
        let err = stderr(&out);
        let all = format!("{}{err}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(out.status.code(), Some(2), "{url}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("metrics.pushgateway"), "{err}");
        assert!(
            !all.contains(PUSH_PASSWORD),
            "the password was printed: {all}"
        );
    }
    assert_eq!(
        files_holding(s.dir.path(), PUSH_PASSWORD),
        Vec::<std::path::PathBuf>::new()
    );
}

/// Basic auth with the password from a mounted secret (`CAIRN_PUSHGATEWAY_PASSWORD_FILE`)
/// reaches a Pushgateway that demands it; a wrong password is a warning that does not show it.
#[test]
#[ignore = "needs prometheus-pushgateway (scripts/test.sh installs it)"]
fn basic_auth_from_a_secret_file_reaches_a_pushgateway() {
    let s = Setup::new();
    // bcrypt of PUSH_PASSWORD (cost 5), as the Pushgateway's web config takes it.
    let web = s.dir.path().join("web.yml");
    std::fs::write(
        &web,
        "basic_auth_users:\n  cairn: $2b$05$cairntestsaltcairnteseumL460hQ5yCouq4mV87i7CPFj4dmlwi\n",
    )
    .unwrap();
    let g = gateway_with(&[format!("--web.config.file={}", web.display())]);
    let open = scrape(g.1);
    assert!(
        open.lines().next().unwrap_or("").contains(" 401 "),
        "the Pushgateway does not demand auth: {open}"
    );
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    let secret = s.dir.path().join("secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("password"), format!("{PUSH_PASSWORD}\n")).unwrap();
    let url = format!("metrics.pushgateway=http://127.0.0.1:{}", g.1);
    let args = [
        "-vv",
        "run",
        "--date",
        "2026-11-29",
        "--set",
        &url,
        "--set",
        "metrics.pushgateway_user=cairn",
    ];
    let out = s
        .cmd(&args)
        .env("CAIRN_PUSHGATEWAY_PASSWORD_FILE", secret.join("password"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("could not push"), "{err}");
    let text = scrape_as(g.1, "Authorization: Basic Y2Fpcm46cGctU2VjcmV0LTgxeA==\r\n");
    assert_eq!(
        value(&text, "cairn_backup_success", "backup"),
        Some(1.0),
        "{text}"
    );

    let wrong = "wrong-Pass-5521";
    let out = s
        .cmd(&args)
        .env("CAIRN_PUSHGATEWAY_PASSWORD", wrong)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("could not push") && err.contains("401"),
        "{err}"
    );
    for pw in [PUSH_PASSWORD, wrong] {
        let all = format!("{}{err}", String::from_utf8_lossy(&out.stdout));
        assert!(!all.contains(pw), "{all}");
        let holding: Vec<_> = files_holding(&s.dir.path().join("exports"), pw);
        assert!(holding.is_empty(), "{holding:?}");
    }

    // A user without a password is a configuration error naming what to set.
    let out = s.run(&args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("CAIRN_PUSHGATEWAY_PASSWORD_FILE"), "{err}");
}
