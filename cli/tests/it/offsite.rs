//! The offsite stage with real clients: Debian's rclone to a local remote and to the S3 test
//! server, and command clients that fail, hang, cut files short or print their secret.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Setup, seeded, stderr};

/// Three nights of `cairn run`, so the exports hold three complete days.
fn three_days(s: &Setup) -> Vec<String> {
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    let mut days = Vec::new();
    for day in 1..=3u64 {
        fs::write(s.src().join("images/photo.raw"), seeded(2 << 20, day)).unwrap();
        fs::write(s.src().join("notetaking/diary.md"), format!("day {day}\n")).unwrap();
        let date = format!("2026-11-{day:02}");
        let out = s.run(&["run", "--date", &date]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        days.push(date);
    }
    days
}

/// Appends an `[offsite]` section to the setup's config.
fn offsite(s: &Setup, section: &str) {
    let mut cfg = fs::read_to_string(&s.config).unwrap();
    cfg.push_str("[offsite]\n");
    cfg.push_str(section);
    fs::write(&s.config, cfg).unwrap();
}

fn sha256_file(p: &Path) -> String {
    format!("{:x}", Sha256::digest(fs::read(p).unwrap()))
}

/// Every file of the exports' days, as the remote should hold them: `DATE/NAME` → SHA-256.
fn exported(s: &Setup, days: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for d in days {
        for e in fs::read_dir(s.dir.path().join("exports").join(d)).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            out.push((format!("{d}/{name}"), sha256_file(&p)));
        }
    }
    out.sort();
    out
}

fn remote_files(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for d in fs::read_dir(root).unwrap() {
        let d = d.unwrap().path();
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.push((rel, sha256_file(&p)));
        }
    }
    out.sort();
    out
}

fn sync(s: &Setup) -> (i32, Value) {
    s.json(&["offsite", "sync"])
}

/// rclone to a local remote: every retained day arrives whole; a rerun uploads nothing; a file
/// deleted on the remote brings back exactly its day; days pruned from the exports stay remote.
#[test]
fn rclone_to_a_local_remote_uploads_each_day_once() {
    let s = Setup::new();
    let days = three_days(&s);
    let remote = s.dir.path().join("remote");
    offsite(
        &s,
        &format!(
            "uploader = \"rclone\"\nremote = \":local:{}\"\nretry_wait_secs = 0\n",
            remote.display()
        ),
    );
    let (code, r) = sync(&s);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["uploaded"].as_array().unwrap().len(), 3, "{r}");
    assert_eq!(remote_files(&remote), exported(&s, &days));
    let (code, r) = sync(&s);
    assert_eq!(code, 0, "{r}");
    assert!(
        r["uploaded"].as_array().unwrap().is_empty(),
        "a rerun uploaded: {r}"
    );
    assert_eq!(r["up_to_date"].as_array().unwrap().len(), 3);

    fs::remove_file(remote.join("2026-11-02/shared-2026-11-02.tar.zst")).unwrap();
    let (code, r) = sync(&s);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["uploaded"], serde_json::json!(["2026-11-02"]), "{r}");
    assert_eq!(remote_files(&remote), exported(&s, &days));

    let out = s.run(&["exports", "prune", "--keep", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (code, r) = sync(&s);
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        remote_files(&remote).len(),
        9,
        "days pruned from the exports were deleted on the remote"
    );
    let (code, status) = s.json(&["offsite", "status"]);
    assert_eq!(code, 0);
    let states: Vec<(&str, bool, &str)> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["date"].as_str().unwrap(),
                d["in_exports"].as_bool().unwrap(),
                d["offsite"]["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("2026-11-01", false, "uploaded"),
            ("2026-11-02", false, "uploaded"),
            ("2026-11-03", true, "uploaded")
        ]
    );
    // The run's report sits beside the nightly ones.
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    assert!(
        s.dir
            .path()
            .join(format!("exports/_reports/{today}/offsite.json"))
            .exists()
    );
}

/// rclone to the S3 test server as the remote (credentials only in rclone's environment).
#[test]
fn rclone_to_the_s3_server_as_the_remote() {
    let Some(endpoint) = super::s3_endpoint() else {
        return;
    };
    let s = Setup::new();
    let days = three_days(&s);
    let bucket = std::env::var("CAIRN_S3_TEST_EXPORTS_BUCKET").unwrap();
    let prefix = super::s3_prefix("offsite");
    offsite(
        &s,
        &format!(
            "uploader = \"rclone\"\nremote = \":s3:{bucket}/{prefix}\"\nretry_wait_secs = 0\n"
        ),
    );
    let env = [
        ("RCLONE_S3_PROVIDER", "Other".to_string()),
        ("RCLONE_S3_ENDPOINT", endpoint),
        ("RCLONE_S3_REGION", super::s3_region()),
        (
            "RCLONE_S3_ACCESS_KEY_ID",
            std::env::var("AWS_ACCESS_KEY_ID").unwrap(),
        ),
        (
            "RCLONE_S3_SECRET_ACCESS_KEY",
            std::env::var("AWS_SECRET_ACCESS_KEY").unwrap(),
        ),
        ("RCLONE_S3_FORCE_PATH_STYLE", "true".to_string()),
    ];
    let run = |args: &[&str]| {
        let mut c = s.cmd(args);
        c.env_remove("AWS_CA_BUNDLE");
        for (k, v) in &env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let out = run(&["--json", "offsite", "sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["uploaded"].as_array().unwrap().len(), 3, "{r}");
    // Read back through rclone itself: every file with its SHA-256.
    let mut c = std::process::Command::new("rclone");
    c.args([
        "hashsum",
        "sha256",
        "--download",
        &format!(":s3:{bucket}/{prefix}"),
    ]);
    c.env_remove("AWS_CA_BUNDLE");
    for (k, v) in &env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let mut listed: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (h, name) = l.split_once("  ").unwrap();
            (name.to_string(), h.to_string())
        })
        .collect();
    listed.sort();
    assert_eq!(listed, exported(&s, &days));
    let out = run(&["--json", "offsite", "sync"]);
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["uploaded"].as_array().unwrap().is_empty(), "{r}");
    let mut c = std::process::Command::new("rclone");
    c.args(["purge", &format!(":s3:{bucket}/{prefix}")]);
    c.env_remove("AWS_CA_BUNDLE");
    for (k, v) in &env {
        c.env(k, v);
    }
    c.output().unwrap();
}

/// A client script in the test's directory.
fn script(s: &Setup, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = s.dir.path().join(name);
    fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A list command for the command uploader over a directory: `SIZE NAME` per file of `$1`.
fn list_script(s: &Setup, remote: &Path) -> PathBuf {
    script(
        s,
        "list.sh",
        &format!(
            "d=\"{}/$1\"; [ -d \"$d\" ] || exit 0; for f in \"$d\"/*; do [ -f \"$f\" ] && echo \"$(stat -c %s \"$f\") $(basename \"$f\")\"; done; exit 0",
            remote.display()
        ),
    )
}

const SECRET: &str = "s3cr3t-proton-pass-7781";

/// Command clients that fail in each way leave every day `failed` with the reason, exit 5, the
/// exports untouched, and the secret they were given nowhere: not in the log, the status, the
/// report, or any process's arguments while they ran.
#[test]
fn failing_command_clients_leave_failed_days_and_no_secret() {
    let s = Setup::new();
    let days = three_days(&s);
    let remote = s.dir.path().join("remote");
    let list = list_script(&s, &remote);
    let before = exported(&s, &days);
    for (name, body, says) in [
        ("exit1.sh", "echo 'quota exceeded' >&2; exit 1".to_string(), "quota exceeded"),
        ("hang.sh", "sleep 60".to_string(), "killed"),
        (
            "truncate.sh",
            format!("mkdir -p \"{r}/$(dirname \"$2\")\"; head -c 1000 \"$1\" > \"{r}/$2\"", r = remote.display()),
            "bytes on the remote",
        ),
        (
            "leak.sh",
            "echo \"logging in with $PROTON_PASSWORD\" >&2; echo \"token=$PROTON_PASSWORD\"; exit 2".to_string(),
            "[redacted]",
        ),
    ] {
        let up = script(
            &s,
            name,
            &format!("echo \"$0 $*\" >> \"{}\"\n{body}", s.dir.path().join("argv.log").display()),
        );
        let cfg_before = fs::read_to_string(&s.config).unwrap();
        offsite(
            &s,
            &format!(
                "uploader = \"command\"\nupload = [\"{}\", \"{{file}}\", \"{{dest}}\"]\nlist = [\"{}\", \"{{dir}}\"]\n\
                 timeout_secs = 2\nattempts = 1\nretry_wait_secs = 0\nscratch_dir = \"{}\"\n",
                up.display(),
                list.display(),
                s.dir.path().join("scratch").display()
            ),
        );
        let child = s
            .cmd(&["--json", "offsite", "sync"])
            .env("PROTON_PASSWORD", SECRET)
            // A second secret inside the first: replaced whole, not leaving the first's tail.
            .env("PROTON_TOKEN", &SECRET[..8])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Every process's arguments, while it runs (the clients also write theirs to a file).
        let mut seen_secret = false;
        let pid = child.id();
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while Path::new(&format!("/proc/{pid}")).exists()
            && !fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z")
            && std::time::Instant::now() < deadline
        {
            for p in fs::read_dir("/proc").unwrap().flatten() {
                if let Ok(cmdline) = fs::read(p.path().join("cmdline")) {
                    seen_secret |= String::from_utf8_lossy(&cmdline).contains(SECRET);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        assert!(!seen_secret, "{name}: the secret was in a process's arguments");
        let argv = fs::read_to_string(s.dir.path().join("argv.log")).unwrap_or_default();
        assert!(argv.contains(name), "{name}: the client did not run: {argv}");
        assert!(!argv.contains(SECRET) && !argv.contains(&SECRET[8..]), "{name}: {argv}");
        assert_eq!(out.status.code(), Some(5), "{name}: {}", stderr(&out));
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(
            !log.contains(SECRET) && !log.contains(&SECRET[8..]),
            "{name}: the secret is in the output: {log}"
        );
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(r["failed"].as_array().unwrap().len(), 3, "{name}: {r}");
        assert!(r["failed"][0]["reason"].as_str().unwrap().contains(says), "{name}: {r}");
        for d in &days {
            let st = fs::read_to_string(s.dir.path().join(format!("exports/_offsite/{d}.json"))).unwrap();
            assert!(st.contains("\"failed\""), "{name}: {st}");
            assert!(!st.contains(SECRET), "{name}: {st}");
        }
        for e in fs::read_dir(s.dir.path().join("exports/_reports")).unwrap() {
            for f in fs::read_dir(e.unwrap().path()).unwrap() {
                let text = fs::read_to_string(f.unwrap().path()).unwrap();
                assert!(!text.contains(SECRET), "{name}: a report holds the secret");
            }
        }
        assert_eq!(exported(&s, &days), before, "{name}: the exports changed");
        assert!(
            !s.dir.path().join("scratch").exists()
                || fs::read_dir(s.dir.path().join("scratch")).unwrap().next().is_none(),
            "{name}: a scratch copy was left"
        );
        let _ = fs::remove_dir_all(&remote);
        fs::write(&s.config, cfg_before).unwrap();
    }
}

/// Days already uploaded are checked file by file: a manifest cut short on the remote and an
/// archive deleted there bring back exactly those days. Two syncs at once: the second exits 4
/// naming the first. A sync killed mid-upload leaves no day `uploaded` that is not whole, and
/// the next run finishes.
#[test]
fn concurrent_and_killed_syncs_upload_each_day_once_and_whole() {
    use std::os::unix::process::ExitStatusExt;
    let s = Setup::new();
    let days = three_days(&s);
    let remote = s.dir.path().join("remote");
    let list = list_script(&s, &remote);
    let cfg = fs::read_to_string(&s.config).unwrap();
    let with_client = |client: &Path| {
        fs::write(&s.config, &cfg).unwrap();
        offsite(
            &s,
            &format!(
                "uploader = \"command\"\nupload = [\"{}\", \"{{file}}\", \"{{dest}}\"]\nlist = [\"{}\", \"{{dir}}\"]\nretry_wait_secs = 0\nscratch_dir = \"{}\"\n",
                client.display(),
                list.display(),
                s.dir.path().join("scratch").display()
            ),
        );
    };
    let fast = script(
        &s,
        "fast.sh",
        &format!(
            "mkdir -p \"{r}/$(dirname \"$2\")\"; cat \"$1\" > \"{r}/$2\"",
            r = remote.display()
        ),
    );
    with_client(&fast);
    let (code, r) = sync(&s);
    assert_eq!(code, 0, "{r}");
    assert_eq!(remote_files(&remote), exported(&s, &days));

    // The newest day's manifest cut short on the remote, the middle day's archive deleted.
    let manifest = remote.join("2026-11-03/shared-2026-11-03.manifest.json");
    fs::write(&manifest, &fs::read(&manifest).unwrap()[..10]).unwrap();
    fs::remove_file(remote.join("2026-11-02/shared-2026-11-02.tar.zst")).unwrap();

    let marker = s.dir.path().join("uploading");
    // Writes part of the file, says so, and waits: a client in the middle of an upload.
    let slow = script(
        &s,
        "slow.sh",
        &format!(
            "mkdir -p \"{r}/$(dirname \"$2\")\"; head -c 1000 \"$1\" > \"{r}/$2\"; touch \"{m}\"; sleep 30; cat \"$1\" > \"{r}/$2\"",
            r = remote.display(),
            m = marker.display()
        ),
    );
    with_client(&slow);
    let mut first = s.cmd(&["-q", "offsite", "sync"]).spawn().unwrap();
    while !marker.exists() {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first sync ended early"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = s.run(&["offsite", "sync"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("offsite sync"), "{}", stderr(&out));
    // SAFETY: signals our own child; its client dies with it (PR_SET_PDEATHSIG).
    unsafe {
        libc::kill(first.id() as i32, libc::SIGKILL);
    }
    assert_eq!(first.wait().unwrap().signal(), Some(9));
    let status = |d: &str| {
        fs::read_to_string(s.dir.path().join(format!("exports/_offsite/{d}.json"))).unwrap()
    };
    assert!(
        status("2026-11-03").contains("\"pending\""),
        "a day cut short on the remote is not pending: {}",
        status("2026-11-03")
    );
    // The client went with the killed sync.
    std::thread::sleep(Duration::from_millis(300));
    let alive = std::process::Command::new("pgrep")
        .args(["-f", &slow.display().to_string()])
        .output()
        .unwrap();
    assert!(
        alive.stdout.is_empty(),
        "the client outlived the sync: {}",
        String::from_utf8_lossy(&alive.stdout)
    );

    with_client(&fast);
    let (code, r) = sync(&s);
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        r["uploaded"],
        serde_json::json!(["2026-11-03", "2026-11-02"]),
        "{r}"
    );
    assert_eq!(r["up_to_date"], serde_json::json!(["2026-11-01"]), "{r}");
    assert_eq!(remote_files(&remote), exported(&s, &days));
}

/// The directory uploader (a NAS mirror) and `keep_daily`: only the newest days stay on the
/// remote, and only when asked.
#[test]
fn a_directory_remote_keeps_the_newest_days_only_when_asked() {
    let s = Setup::new();
    let days = three_days(&s);
    let remote = s.dir.path().join("nas");
    let cfg = fs::read_to_string(&s.config).unwrap();
    offsite(
        &s,
        &format!(
            "uploader = \"directory\"\npath = \"{}\"\n",
            remote.display()
        ),
    );
    let (code, r) = sync(&s);
    assert_eq!(code, 0, "{r}");
    assert_eq!(remote_files(&remote), exported(&s, &days));
    assert!(r["deleted_remote"].as_array().unwrap().is_empty());
    fs::write(&s.config, &cfg).unwrap();
    offsite(
        &s,
        &format!(
            "uploader = \"directory\"\npath = \"{}\"\nkeep_daily = 2\n",
            remote.display()
        ),
    );
    let (code, r) = sync(&s);
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        r["deleted_remote"],
        serde_json::json!(["2026-11-01"]),
        "{r}"
    );
    assert_eq!(remote_files(&remote), exported(&s, &days[1..]));
    // The exports keep every day: the stage never deletes there.
    assert_eq!(exported(&s, &days).len(), 9);
}

/// The production path: the exports on the S3 server, streamed through `rclone rcat` (nothing
/// on disk) and through a command client's scratch copy, each checked against its `.sha256` on
/// the way; a day whose archive in the exports was damaged is refused, never uploaded.
#[test]
fn exports_on_s3_are_streamed_and_checked_on_the_way() {
    let Some(endpoint) = super::s3_endpoint() else {
        return;
    };
    let s = Setup::new();
    let prefix = super::s3_prefix("offsite-exports");
    let bucket = std::env::var("CAIRN_S3_TEST_EXPORTS_BUCKET").unwrap();
    let region = super::s3_region();
    let mut cfg = fs::read_to_string(&s.config).unwrap();
    cfg = cfg.replace(
        &format!("[exports]\npath = \"{}/exports\"\n", s.dir.path().display()),
        &format!(
            "[exports]\nkind = \"s3\"\nendpoint = \"{endpoint}\"\nregion = \"{region}\"\nbucket = \"{bucket}\"\nprefix = \"{prefix}\"\npath_style = true\n"
        ),
    );
    fs::write(&s.config, &cfg).unwrap();
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    fs::write(s.src().join("images/photo.raw"), seeded(3 << 20, 9)).unwrap();
    let out = s.run(&["run", "--date", "2026-11-05"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let store = super::s3_test_store(&endpoint, &bucket, &prefix);
    use cairn_engine::store::Store;
    let archive = store.get("2026-11-05/shared-2026-11-05.tar.zst").unwrap();
    let want = format!("{:x}", Sha256::digest(&archive));

    for (kind, section) in [
        (
            "rclone",
            format!(
                "uploader = \"rclone\"\nremote = \":local:{}/r1\"\nretry_wait_secs = 0\n",
                s.dir.path().display()
            ),
        ),
        (
            "command",
            format!(
                "uploader = \"command\"\nupload = [\"{}\", \"{{file}}\", \"{{dest}}\"]\nlist = [\"{}\", \"{{dir}}\"]\nretry_wait_secs = 0\nscratch_dir = \"{}\"\n",
                script(
                    &s,
                    "cp.sh",
                    &format!(
                        "mkdir -p \"{r}/$(dirname \"$2\")\"; cat \"$1\" > \"{r}/$2\"",
                        r = s.dir.path().join("r2").display()
                    )
                )
                .display(),
                list_script(&s, &s.dir.path().join("r2")).display(),
                s.dir.path().join("scratch").display()
            ),
        ),
    ] {
        fs::write(&s.config, &cfg).unwrap();
        offsite(&s, &section);
        let (code, r) = sync(&s);
        assert_eq!(code, 0, "{kind}: {r}");
        assert_eq!(
            r["uploaded"],
            serde_json::json!(["2026-11-05"]),
            "{kind}: {r}"
        );
        let root = s
            .dir
            .path()
            .join(if kind == "rclone" { "r1" } else { "r2" });
        let got = sha256_file(&root.join("2026-11-05/shared-2026-11-05.tar.zst"));
        assert_eq!(got, want, "{kind}: the remote copy differs");
        // Statuses live in the exports, so the next kind starts afresh.
        store.delete("_offsite/2026-11-05.json").unwrap();
    }

    // The archive in the exports damaged (one byte, same size): streamed, the SHA-256 check
    // refuses it, and the day is failed, not uploaded.
    let mut bad = archive.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    store
        .put("2026-11-05/shared-2026-11-05.tar.zst", &bad)
        .unwrap();
    fs::write(&s.config, &cfg).unwrap();
    offsite(
        &s,
        &format!(
            "uploader = \"rclone\"\nremote = \":local:{}/r3\"\nretry_wait_secs = 0\n",
            s.dir.path().display()
        ),
    );
    let (code, r) = sync(&s);
    assert_eq!(code, 5, "{r}");
    assert!(
        r["failed"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("does not match its SHA-256"),
        "{r}"
    );
    for o in store.list("").unwrap() {
        store.delete(&o.key).unwrap();
    }
}
