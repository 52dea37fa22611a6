//! The Proton stage on Proton's official Drive CLI, against a stand-in written from its public
//! interface (testdata/fake-proton-drive: Proton's CLI cannot be installed here): the one-time
//! login, three nights uploaded once each and checked by listing, and every failure the service
//! is known for, each with its own kind, fix, metric and exit 5, after which the next sync
//! uploads exactly what is missing. No session secret reaches any output, status or report.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::Value;

use super::{Setup, assert_exit, seeded, stderr, stdout};

const ROOT: &str = "/my-files/Backups/homelab/shared-archives";

fn fake() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fake-proton-drive/proton-drive")
}

/// A setup whose offsite stage is the fake `proton-drive`, with its session in `session/` and
/// the metrics as textfiles in `metrics/`.
fn proton_setup() -> Setup {
    let s = Setup::new();
    let dir = s.dir.path();
    let mut cfg = fs::read_to_string(&s.config).unwrap();
    cfg.push_str(&format!(
        "[offsite]\nuploader = \"proton-drive\"\nproton_drive = \"{}\"\nremote = \"{ROOT}\"\n\
         session_dir = \"{d}/session\"\nscratch_dir = \"{d}/scratch\"\nretry_wait_secs = 0\n\
         attempts = 2\ntimeout_secs = 60\nquota_bytes = 500000000\n\
         [metrics]\ntextfile_dir = \"{d}/metrics\"\n",
        fake().display(),
        d = dir.display()
    ));
    fs::write(&s.config, cfg).unwrap();
    fs::create_dir_all(dir.join("metrics")).unwrap();
    s
}

fn session(s: &Setup) -> PathBuf {
    s.dir.path().join("session")
}

/// `cairn offsite login` as the bootstrap Job runs it: the URL is printed, the "browser"
/// approves, the session is kept 0600. Returns what it printed.
fn login(s: &Setup) -> String {
    let mut child = s
        .cmd(&["offsite", "login", "--timeout-mins", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut said = String::new();
    loop {
        let mut line = String::new();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "login ended early: {said}"
        );
        said.push_str(&line);
        if line.starts_with("https://") {
            break;
        }
    }
    assert!(said.contains("Open this URL on any device"), "{said}");
    // The operator opens the URL on a laptop and signs in.
    fs::write(session(s).join("fake-approve"), "").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    said.push_str(&rest);
    assert!(status.success(), "{said}");
    said
}

/// The session file's secret values (tokens, passphrases).
fn session_secrets(s: &Setup) -> Vec<String> {
    let v: Value =
        serde_json::from_slice(&fs::read(session(s).join("auth-session.json")).unwrap()).unwrap();
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(x) => out.push(x.clone()),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&v, &mut out);
    out
}

/// Every byte cairn wrote where people and tools read: statuses, reports, metrics.
fn written_text(s: &Setup) -> String {
    let mut text = String::new();
    for sub in ["exports/_offsite", "exports/_reports", "metrics"] {
        let mut stack = vec![s.dir.path().join(sub)];
        while let Some(d) = stack.pop() {
            let Ok(rd) = fs::read_dir(&d) else { continue };
            for e in rd {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    text.push_str(&String::from_utf8_lossy(&fs::read(&p).unwrap()));
                }
            }
        }
    }
    text
}

fn night(s: &Setup, day: u64) -> String {
    let date = format!("2026-11-{day:02}");
    fs::write(s.src().join("images/photo.raw"), seeded(1 << 20, day)).unwrap();
    fs::write(s.src().join("notetaking/diary.md"), format!("day {day}\n")).unwrap();
    let out = s.run(&["run", "--date", &date]);
    assert_exit(&out, 0);
    date
}

fn sync(s: &Setup) -> (Output, Value) {
    let out = s.run(&["--json", "offsite", "sync"]);
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, v)
}

/// How many times the fake was asked to upload each file name.
fn uploads(s: &Setup) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    let log = fs::read_to_string(session(s).join("fake-calls.log")).unwrap_or_default();
    for line in log.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let argv: Vec<&str> = v["argv"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        if argv.contains(&"upload") {
            // The local file is the second to last argument.
            let file = argv[argv.len() - 2];
            let name = file.rsplit('/').next().unwrap().to_string();
            *out.entry(name).or_default() += 1;
        }
    }
    out
}

fn faults(s: &Setup, json: &str) {
    fs::write(session(s).join("fake-faults.json"), json).unwrap();
}

fn metric(s: &Setup, line_start: &str) -> Option<f64> {
    let text = fs::read_to_string(s.dir.path().join("metrics/cairn_offsite.prom")).ok()?;
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The bootstrap, then three nights: each day uploaded once, checked by listing; the client's
/// version in the status and a metric; the session checked by preflight, then expired.
#[test]
fn a_login_then_three_nights_upload_each_day_once() {
    let s = proton_setup();
    assert_exit(&s.run(&["init"]), 0);
    let said = login(&s);
    assert!(
        said.contains("https://account.proton.me/desktop/login"),
        "{said}"
    );
    assert!(said.contains("session ok"), "{said}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(session(&s).join("auth-session.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = s.run(&["preflight", "--role", "offsite"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("ok   offsite session: proton-drive"),
        "{}",
        stdout(&out)
    );

    let mut outputs = said.clone();
    let mut days = Vec::new();
    for day in 1..=3 {
        days.push(night(&s, day));
        let (out, r) = sync(&s);
        outputs.push_str(&format!("{}{}", stdout(&out), stderr(&out)));
        assert_exit(&out, 0);
        assert_eq!(r["uploaded"].as_array().unwrap().len(), 1, "{r}");
        assert_eq!(
            r["up_to_date"].as_array().unwrap().len(),
            day as usize - 1,
            "{r}"
        );
        assert_eq!(r["client"], "proton-drive cli-drive@0.8.0+fake0001", "{r}");
    }
    // Each of the nine files went up exactly once.
    let counts = uploads(&s);
    assert_eq!(counts.len(), 9, "{counts:?}");
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    // On the remote, as in the exports.
    for d in &days {
        for suffix in [".tar.zst", ".tar.zst.sha256", ".manifest.json"] {
            let name = format!("shared-{d}{suffix}");
            let remote = session(&s).join(format!("fake-remote{ROOT}/{d}/{name}"));
            let local = s.dir.path().join(format!("exports/{d}/{name}"));
            assert_eq!(
                fs::read(&remote).unwrap(),
                fs::read(&local).unwrap(),
                "{name}"
            );
        }
    }
    let out = s.run(&["offsite", "status"]);
    outputs.push_str(&stdout(&out));
    assert!(
        stdout(&out).starts_with("client: proton-drive cli-drive@0.8.0+fake0001; on the remote:"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        metric(
            &s,
            "cairn_offsite_client_info{client=\"proton-drive cli-drive@0.8.0+fake0001\"}"
        ),
        Some(1.0)
    );
    assert!(metric(&s, "cairn_offsite_remote_bytes").unwrap() > (3 << 20) as f64);
    assert_eq!(metric(&s, "cairn_offsite_quota_bytes"), Some(500000000.0));

    // The session lapses: preflight says so, naming what to do.
    let secrets = session_secrets(&s);
    faults(&s, r#"{"session_expired": true}"#);
    let out = s.run(&["preflight", "--role", "offsite"]);
    outputs.push_str(&format!("{}{}", stdout(&out), stderr(&out)));
    assert_exit(&out, 1);
    assert!(
        stdout(&out).contains("FAIL offsite session:")
            && stdout(&out).contains("You need to login first"),
        "{}",
        stdout(&out)
    );
    // Pushed with its kind, so the alert that says a person must act fires (the preflight is
    // the offsite job's first init container: the sync never runs that night).
    assert_eq!(
        metric(&s, "cairn_offsite_failures{reason=\"session_expired\"}"),
        Some(1.0)
    );
    // A sync anyway, with no new day: it cannot check the days there, fails and says why.
    let (out, r) = sync(&s);
    outputs.push_str(&format!("{}{}", stdout(&out), stderr(&out)));
    assert_exit(&out, 5);
    assert_eq!(r["failures"]["session_expired"], 1, "{r}");
    // No secret of the session anywhere.
    let written = written_text(&s);
    for secret in secrets.iter().filter(|x| x.len() >= 8) {
        assert!(
            !outputs.contains(secret.as_str()),
            "a session secret was printed"
        );
        assert!(
            !written.contains(secret.as_str()),
            "a session secret was written"
        );
    }
}

/// Each failure the service is known for: its kind and fix in the day's status and the report,
/// a metric by kind, exit 5; once the fault is gone the next sync uploads exactly the failed
/// day's files (the earlier day stays as it is).
#[test]
fn each_proton_failure_says_what_to_do_and_the_next_sync_catches_up() {
    let cases: [(&str, &str, &str); 8] = [
        (
            r#"{"session_expired": true}"#,
            "session_expired",
            "log in again",
        ),
        (
            r#"{"too_old": true}"#,
            "client_too_old",
            "newer proton-drive",
        ),
        (r#"{"rate_limit": 10}"#, "rate_limited", "HTTP 429"),
        (r#"{"quota": true}"#, "quota_exceeded", "storage is full"),
        (
            r#"{"stale_draft": "shared-2026-11-02.tar.zst"}"#,
            "stale_draft",
            "draft",
        ),
        (
            r#"{"conflict": "shared-2026-11-02.tar.zst"}"#,
            "name_conflict",
            "remove it there",
        ),
        (
            r#"{"truncate": "shared-2026-11-02.tar.zst"}"#,
            "not_as_uploaded",
            "uploaded again",
        ),
        (
            r#"{"omit": "shared-2026-11-02.manifest.json"}"#,
            "not_as_uploaded",
            "uploaded again",
        ),
    ];
    for (fault, kind, fix) in cases {
        let s = proton_setup();
        assert_exit(&s.run(&["init"]), 0);
        login(&s);
        night(&s, 1);
        let (out, _) = sync(&s);
        assert_exit(&out, 0);
        let day = night(&s, 2);
        let before = uploads(&s);
        faults(&s, fault);
        let (out, r) = sync(&s);
        assert_exit(&out, 5);
        let failed = &r["failed"][0];
        assert_eq!(failed["date"], day.as_str(), "{fault}: {r}");
        assert_eq!(failed["kind"], kind, "{fault}: {r}");
        assert!(
            failed["fix"].as_str().unwrap().contains(fix),
            "{fault}: {r}"
        );
        assert_eq!(r["failures"][kind], 1, "{fault}: {r}");
        // A failure of the account or the client stops the sync: the earlier day is not
        // tried (it would fail the same way) and stays as it was.
        if ["session_expired", "client_too_old", "quota_exceeded"].contains(&kind) {
            assert_eq!(
                r["pending"],
                serde_json::json!(["2026-11-01"]),
                "{fault}: {r}"
            );
            assert!(
                r["warnings"][0]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("stopped after a {kind} failure")),
                "{fault}: {r}"
            );
        }
        let st: Value = serde_json::from_slice(
            &fs::read(s.dir.path().join(format!("exports/_offsite/{day}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(st["state"], "failed", "{fault}: {st}");
        assert_eq!(st["failure"], kind, "{fault}: {st}");
        assert_eq!(
            metric(&s, &format!("cairn_offsite_failures{{reason=\"{kind}\"}}")),
            Some(1.0),
            "{fault}"
        );
        let shown = s.run(&["offsite", "status"]);
        assert!(
            stdout(&shown).contains(&format!("{kind} (")),
            "{}",
            stdout(&shown)
        );

        // The fault is gone (a new session where it was lost): exactly the failed day goes up.
        fs::remove_file(session(&s).join("fake-faults.json")).unwrap();
        if !session(&s).join("auth-session.json").exists() {
            login(&s);
        }
        let mid = uploads(&s);
        let (out, r) = sync(&s);
        assert_exit(&out, 0);
        assert_eq!(r["uploaded"], serde_json::json!([day]), "{fault}: {r}");
        let after = uploads(&s);
        let again: Vec<&String> = after
            .iter()
            .filter(|(k, n)| mid.get(*k).copied().unwrap_or(0) < **n)
            .map(|(k, _)| k)
            .collect();
        assert!(
            again.iter().all(|k| k.contains(&day)) && !again.is_empty(),
            "{fault}: uploaded again {again:?}"
        );
        assert!(
            before
                .keys()
                .filter(|k| k.contains("2026-11-01"))
                .all(|k| after[k] == 1),
            "{fault}: the earlier day went up again"
        );
        assert_eq!(
            metric(&s, &format!("cairn_offsite_failures{{reason=\"{kind}\"}}")),
            Some(0.0),
            "{fault}"
        );
    }
}

/// A rate limit that lasts one upload is waited out and retried within the run: exit 0.
#[test]
fn a_short_rate_limit_is_retried_within_the_run() {
    let s = proton_setup();
    assert_exit(&s.run(&["init"]), 0);
    login(&s);
    night(&s, 1);
    faults(&s, r#"{"rate_limit": 1}"#);
    let (out, r) = sync(&s);
    assert_exit(&out, 0);
    assert_eq!(r["uploaded"].as_array().unwrap().len(), 1, "{r}");
}

/// `keep_daily` on Proton Drive deletes only the days cairn put there: a folder of the user's
/// named like a date stays, and a day whose name the trash already holds is not deleted for
/// good (the CLI would delete the first trashed item of that name, maybe the user's).
#[test]
fn keep_daily_deletes_only_cairns_days_and_never_a_users_trashed_item() {
    let s = proton_setup();
    let mut cfg = fs::read_to_string(&s.config).unwrap();
    cfg = cfg.replace("attempts = 2\n", "attempts = 2\nkeep_daily = 1\n");
    fs::write(&s.config, cfg).unwrap();
    assert_exit(&s.run(&["init"]), 0);
    login(&s);
    let remote = session(&s).join(format!("fake-remote{ROOT}"));
    // The user's own: a dated folder beside the days, and a trashed item named like day 1.
    fs::create_dir_all(remote.join("2020-01-01")).unwrap();
    fs::write(remote.join("2020-01-01/holiday.jpg"), "photo").unwrap();
    let trash = session(&s).join("fake-remote/trash");
    fs::create_dir_all(trash.join("2026-11-01")).unwrap();
    fs::write(trash.join("2026-11-01/keep-me.txt"), "mine").unwrap();
    night(&s, 1);
    let (out, _) = sync(&s);
    assert_exit(&out, 0);
    night(&s, 2);
    let (out, r) = sync(&s);
    assert_exit(&out, 0);
    let warnings = r["warnings"].to_string();
    assert!(
        warnings.contains("left on the remote, holding no archive of cairn's: 2020-01-01"),
        "{r}"
    );
    assert!(
        remote.join("2020-01-01/holiday.jpg").exists(),
        "the user's folder was deleted"
    );
    assert!(warnings.contains("items of that name"), "{r}");
    let kept = fs::read_dir(&trash)
        .unwrap()
        .any(|e| e.unwrap().path().join("keep-me.txt").exists());
    assert!(kept, "the user's trashed item was deleted for good");
}
