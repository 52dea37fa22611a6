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
    let states: Vec<(&str, bool, &str)> = status["days"]
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
#[ignore = "needs the S3 test server (scripts/test.sh provides it)"]
fn rclone_to_the_s3_server_as_the_remote() {
    let endpoint = super::s3_endpoint();
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
        ("exit1.sh", "echo 'upload refused' >&2; exit 1".to_string(), "upload refused"),
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
#[ignore = "needs the S3 test server (scripts/test.sh provides it)"]
fn exports_on_s3_are_streamed_and_checked_on_the_way() {
    let endpoint = super::s3_endpoint();
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

/// A command client over the directory `remote`: upload (fails while `OFFSITE_DOWN` is set, as
/// a remote that cannot be reached), list (`0 DATE` per day folder at the root, `SIZE NAME` per
/// file of a day) and delete.
fn command_remote(s: &Setup, remote: &Path) -> String {
    let r = remote.display();
    let up = script(
        s,
        "up.sh",
        &format!(
            "[ -n \"$OFFSITE_DOWN\" ] && {{ echo 'remote unreachable' >&2; exit 1; }}\n\
             mkdir -p \"{r}/$(dirname \"$2\")\"; cat \"$1\" > \"{r}/$2\""
        ),
    );
    let ls = script(
        s,
        "ls.sh",
        &format!(
            "d=\"{r}/$1\"; [ -d \"$d\" ] || exit 0\n\
             for f in \"$d\"/*; do\n\
               if [ -z \"$1\" ]; then [ -d \"$f\" ] && echo \"0 $(basename \"$f\")\"\n\
               else [ -f \"$f\" ] && echo \"$(stat -c %s \"$f\") $(basename \"$f\")\"; fi\n\
             done; exit 0"
        ),
    );
    let rm = script(s, "rm.sh", &format!("rm -rf \"{r}/$1\""));
    format!(
        "uploader = \"command\"\nupload = [\"{}\", \"{{file}}\", \"{{dest}}\"]\nlist = [\"{}\", \"{{dir}}\"]\n\
         delete = [\"{}\", \"{{dir}}\"]\nattempts = 1\nretry_wait_secs = 0\nscratch_dir = \"{}\"\n",
        up.display(),
        ls.display(),
        rm.display(),
        s.dir.path().join("scratch").display()
    )
}

/// The day folders on a directory remote, oldest first.
fn remote_days(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// `offsite.keep_daily` counts the remote's own complete, checked days: a pruned exports volume
/// does not make it delete days the exports no longer hold, a night whose upload failed deletes
/// nothing (the replaced, empty exports volume of a lost first copy), and a remote day goes only
/// once `keep_daily` newer complete days are there.
#[test]
fn the_remote_keeps_its_own_newest_days_across_a_pruned_exports_volume_and_a_failing_night() {
    let s = Setup::new();
    three_days(&s);
    let remote = s.dir.path().join("remote");
    let cfg = fs::read_to_string(&s.config).unwrap();
    let client = command_remote(&s, &remote);
    let keep = |n: u32| {
        fs::write(&s.config, &cfg).unwrap();
        offsite(&s, &format!("{client}keep_daily = {n}\n"));
    };
    keep(0);
    let (code, r) = sync(&s);
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        remote_days(&remote),
        ["2026-11-01", "2026-11-02", "2026-11-03"]
    );

    // The exports keep one day; the remote keeps its two newest.
    let out = s.run(&["exports", "prune", "--keep", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    keep(2);
    let (code, r) = sync(&s);
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        r["deleted_remote"],
        serde_json::json!(["2026-11-01"]),
        "{r}"
    );
    assert_eq!(remote_days(&remote), ["2026-11-02", "2026-11-03"], "{r}");

    // The exports volume is replaced (empty), and the first night's upload fails: the remote
    // is all there is, and nothing of it goes.
    fs::remove_dir_all(s.dir.path().join("exports")).unwrap();
    let out = s.run(&["run", "--date", "2026-11-04"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = s
        .cmd(&["--json", "offsite", "sync"])
        .env("OFFSITE_DOWN", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["deleted_remote"], serde_json::json!([]), "{r}");
    assert_eq!(remote_days(&remote), ["2026-11-02", "2026-11-03"], "{r}");

    // The next night uploads; the older days have no status on the new volume, so one checked
    // day is not two, and nothing goes yet.
    let (code, r) = sync(&s);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["uploaded"], serde_json::json!(["2026-11-04"]), "{r}");
    assert_eq!(r["deleted_remote"], serde_json::json!([]), "{r}");
    assert_eq!(
        remote_days(&remote),
        ["2026-11-02", "2026-11-03", "2026-11-04"]
    );
    // Two checked days newer than them: now the older ones go.
    fs::write(s.src().join("notetaking/diary.md"), "day 5\n").unwrap();
    let out = s.run(&["run", "--date", "2026-11-05"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (code, r) = sync(&s);
    assert_eq!(code, 0, "{r}");
    assert_eq!(
        r["deleted_remote"],
        serde_json::json!(["2026-11-02", "2026-11-03"]),
        "{r}"
    );
    assert_eq!(remote_days(&remote), ["2026-11-04", "2026-11-05"]);
}

/// The directory remote never writes through a symlink planted in it: a `.NAME.part` link to a
/// file outside is replaced, not written through, and a day folder that is a symlink is refused
/// (the day fails with the reason), not followed.
#[test]
fn the_directory_remote_never_writes_through_a_symlink() {
    let s = Setup::new();
    let days = three_days(&s);
    let remote = s.dir.path().join("nas");
    let outside = s.dir.path().join("outside");
    fs::create_dir_all(outside.join("dir")).unwrap();
    fs::write(outside.join("victim"), "precious\n").unwrap();
    fs::create_dir_all(remote.join("2026-11-03")).unwrap();
    std::os::unix::fs::symlink(
        outside.join("victim"),
        remote.join("2026-11-03/.shared-2026-11-03.tar.zst.part"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.join("dir"), remote.join("2026-11-02")).unwrap();
    offsite(
        &s,
        &format!(
            "uploader = \"directory\"\npath = \"{}\"\nattempts = 1\nretry_wait_secs = 0\n",
            remote.display()
        ),
    );
    let (code, r) = sync(&s);
    assert!(
        fs::read(outside.join("victim")).unwrap() == b"precious\n",
        "a file outside the remote was overwritten: {r}"
    );
    assert!(
        fs::read_dir(outside.join("dir")).unwrap().next().is_none(),
        "a symlinked day folder was written into: {r}"
    );
    assert_eq!(code, 5, "{r}");
    assert_eq!(
        r["uploaded"],
        serde_json::json!(["2026-11-03", "2026-11-01"]),
        "{r}"
    );
    assert_eq!(r["failed"][0]["date"], "2026-11-02", "{r}");
    assert!(
        r["failed"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("symlink"),
        "{r}"
    );
    for d in [&days[0], &days[2]] {
        let name = format!("shared-{d}.tar.zst");
        let meta = fs::symlink_metadata(remote.join(d).join(&name)).unwrap();
        assert!(meta.is_file(), "{d}: {meta:?}");
        assert_eq!(
            sha256_file(&remote.join(d).join(&name)),
            sha256_file(&s.dir.path().join("exports").join(d).join(&name))
        );
    }
}

/// Parts of secrets are redacted too: one line of a multi-line `*_FILE` secret, and the
/// percent-encoded and form-encoded forms of a secret, reach neither the status, the report nor
/// the logs.
#[test]
fn a_line_of_a_secret_file_and_url_encoded_secrets_are_redacted() {
    let s = Setup::new();
    let days = three_days(&s);
    let secret_file = s.dir.path().join("proton-credentials");
    fs::write(
        &secret_file,
        "username: alice@example.org\npassword: Tr0ub4dor&3 x/y+z\nmailbox: 9f8e7d6c5b4a\n",
    )
    .unwrap();
    let password = "p@ss w/rd+key&more";
    let encoded = [
        "p%40ss%20w%2Frd%2Bkey%26more",
        "p%40ss+w%2Frd%2Bkey%26more",
        "p%40ss%20w%2frd%2bkey%26more",
        "password%3A%20Tr0ub4dor%263%20x%2Fy%2Bz",
    ];
    let leak = script(
        &s,
        "leak-parts.sh",
        &format!(
            "echo \"login as $(sed -n 2p \"$PROTON_CREDENTIALS_FILE\") url=https://x/?p={} form={} lower={} line={}\" >&2; exit 1",
            encoded[0], encoded[1], encoded[2], encoded[3]
        ),
    );
    offsite(
        &s,
        &format!(
            "uploader = \"command\"\nupload = [\"{}\", \"{{file}}\", \"{{dest}}\"]\nlist = [\"{}\", \"{{dir}}\"]\n\
             attempts = 1\nretry_wait_secs = 0\nscratch_dir = \"{}\"\n",
            leak.display(),
            list_script(&s, &s.dir.path().join("remote")).display(),
            s.dir.path().join("scratch").display()
        ),
    );
    let out = s
        .cmd(&["--json", "offsite", "sync"])
        .env("PROTON_CREDENTIALS_FILE", &secret_file)
        .env("PROTON_PASSWORD", password)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        r["failed"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("[redacted]"),
        "{r}"
    );
    let mut texts = vec![
        (
            "stdout".to_string(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ),
        ("logs".to_string(), stderr(&out)),
    ];
    for d in &days {
        let p = s.dir.path().join(format!("exports/_offsite/{d}.json"));
        texts.push((p.display().to_string(), fs::read_to_string(&p).unwrap()));
    }
    for e in fs::read_dir(s.dir.path().join("exports/_reports")).unwrap() {
        for f in fs::read_dir(e.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            texts.push((p.display().to_string(), fs::read_to_string(&p).unwrap()));
        }
    }
    for (what, text) in &texts {
        for part in [
            "Tr0ub4dor",
            "Tr0ub4dor%26",
            encoded[0],
            encoded[1],
            encoded[2],
        ] {
            assert!(!text.contains(part), "{what} holds {part:?}: {text}");
        }
    }
}

/// Whether the process `pid` is still running (not gone, not a zombie).
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|st| {
            let state = st.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        })
        .unwrap_or(false)
}

/// A sync that times out, or that is stopped with SIGTERM or SIGINT, takes every process its
/// client started with it: a helper in the client's process group, and one that a
/// job-control shell put in a group of its own.
#[test]
fn a_stopped_sync_takes_the_clients_helpers_with_it() {
    use std::os::unix::process::ExitStatusExt;
    let s = Setup::new();
    three_days(&s);
    let pids = s.dir.path().join("pids");
    let marker = s.dir.path().join("started");
    let helper = script(
        &s,
        "helper.sh",
        &format!("echo $$ >> \"{}\"; sleep 120", pids.display()),
    );
    // bash's job control puts the second helper in a process group of its own.
    let client = script(
        &s,
        "spawning.sh",
        &format!(
            "{h} &\nbash -c 'set -m; {h} & wait' &\nsleep 1; touch \"{m}\"; wait",
            h = helper.display(),
            m = marker.display()
        ),
    );
    let cfg = fs::read_to_string(&s.config).unwrap();
    let check_gone = |how: &str| {
        std::thread::sleep(Duration::from_millis(500));
        let text = fs::read_to_string(&pids).unwrap_or_default();
        let started: Vec<i32> = text.lines().map(|l| l.trim().parse().unwrap()).collect();
        assert_eq!(started.len(), 2, "{how}: the helpers did not start: {text}");
        let left: Vec<i32> = started.iter().copied().filter(|p| alive(*p)).collect();
        for p in &left {
            // SAFETY: the test's own helper, started above.
            unsafe {
                libc::kill(*p, libc::SIGKILL);
            }
        }
        assert!(left.is_empty(), "{how}: helpers {left:?} outlived the sync");
        fs::remove_file(&pids).unwrap();
        let _ = fs::remove_file(&marker);
    };
    let with_timeout = |secs: u32| {
        fs::write(&s.config, &cfg).unwrap();
        offsite(
            &s,
            &format!(
                "uploader = \"command\"\nupload = [\"{}\", \"{{file}}\", \"{{dest}}\"]\nlist = [\"{}\", \"{{dir}}\"]\n\
                 timeout_secs = {secs}\nattempts = 1\nretry_wait_secs = 0\nbudget_secs = 1\nscratch_dir = \"{}\"\n",
                client.display(),
                list_script(&s, &s.dir.path().join("remote")).display(),
                s.dir.path().join("scratch").display()
            ),
        );
    };
    with_timeout(2);
    let out = s.run(&["offsite", "sync"]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stderr(&out).contains("killed"), "{}", stderr(&out));
    check_gone("timeout");

    with_timeout(600);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut child = s.cmd(&["-q", "offsite", "sync"]).spawn().unwrap();
        while !marker.exists() {
            assert!(child.try_wait().unwrap().is_none(), "the sync ended early");
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: signals our own child.
        unsafe {
            libc::kill(child.id() as i32, sig);
        }
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(sig), "{status:?}");
        check_gone(&format!("signal {sig}"));
    }
}

/// A client that cannot be started is a configuration error: exit 2, one line naming it. A
/// stray file named like a day on the remote is left alone with a warning; the sync goes on
/// and writes its report.
#[test]
fn a_missing_client_exits_2_and_a_stray_file_named_like_a_day_is_skipped() {
    let s = Setup::new();
    let days = three_days(&s);
    let cfg = fs::read_to_string(&s.config).unwrap();
    for section in [
        "uploader = \"command\"\nupload = [\"/nonexistent/proton-drive-sync\", \"{file}\", \"{dest}\"]\n\
         list = [\"/nonexistent/proton-drive-sync\", \"ls\", \"{dir}\"]\n",
        "uploader = \"rclone\"\nrclone = \"/nonexistent/proton-drive-sync\"\nremote = \"nas:x\"\n",
    ] {
        fs::write(&s.config, &cfg).unwrap();
        offsite(&s, section);
        let out = s.run(&["-q", "offsite", "sync"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{section}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{section}: {err}");
        assert!(
            err.contains("/nonexistent/proton-drive-sync"),
            "{section}: {err}"
        );
        let failed = days.iter().any(|d| {
            fs::read_to_string(s.dir.path().join(format!("exports/_offsite/{d}.json")))
                .is_ok_and(|t| t.contains("\"failed\""))
        });
        assert!(
            !failed,
            "{section}: a day was marked failed for a missing client"
        );
    }

    let remote = s.dir.path().join("nas");
    fs::create_dir_all(&remote).unwrap();
    fs::write(remote.join("2026-10-01"), "not a day folder\n").unwrap();
    fs::write(&s.config, &cfg).unwrap();
    offsite(
        &s,
        &format!(
            "uploader = \"directory\"\npath = \"{}\"\nkeep_daily = 2\n",
            remote.display()
        ),
    );
    let out = s.run(&["--json", "offsite", "sync"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("2026-10-01"),
        "no warning: {}",
        stderr(&out)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        r["uploaded"],
        serde_json::json!(["2026-11-03", "2026-11-02"]),
        "{r}"
    );
    assert_eq!(
        fs::read_to_string(remote.join("2026-10-01")).unwrap(),
        "not a day folder\n"
    );
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

/// One byte changed on the remote, same size: found where the client gives a hash (rclone's
/// SHA-256 of a local remote, the directory remote hashing its files) and the day uploaded
/// again; where it gives none (a command client listing sizes), `offsite status` says the check
/// was by size.
#[test]
fn same_size_damage_on_the_remote_is_found_where_a_hash_is_given() {
    let s = Setup::new();
    let days = three_days(&s);
    let cfg = fs::read_to_string(&s.config).unwrap();
    let flip = |p: &Path| {
        let mut b = fs::read(p).unwrap();
        let mid = b.len() / 2;
        b[mid] ^= 1;
        fs::write(p, b).unwrap();
    };
    let checked_by = |s: &Setup| -> Vec<String> {
        let (code, status) = s.json(&["offsite", "status"]);
        assert_eq!(code, 0);
        status["days"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["offsite"]["checked"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    for (kind, root) in [("rclone", "r1"), ("directory", "r2")] {
        let root = s.dir.path().join(root);
        fs::write(&s.config, &cfg).unwrap();
        offsite(
            &s,
            &if kind == "rclone" {
                format!(
                    "uploader = \"rclone\"\nremote = \":local:{}\"\nretry_wait_secs = 0\n",
                    root.display()
                )
            } else {
                format!("uploader = \"directory\"\npath = \"{}\"\n", root.display())
            },
        );
        let (code, r) = sync(&s);
        assert_eq!(code, 0, "{kind}: {r}");
        flip(&root.join("2026-11-02/shared-2026-11-02.tar.zst"));
        let (code, r) = sync(&s);
        assert_eq!(code, 0, "{kind}: {r}");
        assert_eq!(
            r["uploaded"],
            serde_json::json!(["2026-11-02"]),
            "{kind}: same-size damage went unseen: {r}"
        );
        assert_eq!(remote_files(&root), exported(&s, &days), "{kind}");
        assert_eq!(checked_by(&s), ["sha256"; 3], "{kind}");
        for d in &days {
            fs::remove_file(s.dir.path().join(format!("exports/_offsite/{d}.json"))).unwrap();
        }
    }
    let remote = s.dir.path().join("r3");
    fs::write(&s.config, &cfg).unwrap();
    offsite(&s, &command_remote(&s, &remote));
    let (code, r) = sync(&s);
    assert_eq!(code, 0, "{r}");
    assert_eq!(checked_by(&s), ["size"; 3]);
    let out = s.run(&["offsite", "status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table.lines().find(|l| l.starts_with("2026-11-01")).unwrap();
    assert!(
        row.split_whitespace().any(|w| w == "size"),
        "the table does not say the check was by size: {table}"
    );
}

/// The directory remote reads only the day's three files, and only at their expected size: a
/// huge sparse file planted in a day folder, or put at an expected name, is never read (it was
/// hashed in full at every check). The day with the wrong-size file is uploaded again.
#[test]
fn the_directory_remote_reads_no_planted_or_oversized_file() {
    let s = Setup::new();
    let days = three_days(&s);
    let remote = s.dir.path().join("nas");
    offsite(
        &s,
        &format!(
            "uploader = \"directory\"\npath = \"{}\"\nretry_wait_secs = 0\n",
            remote.display()
        ),
    );
    let (code, r) = sync(&s);
    assert_eq!(code, 0, "{r}");
    // 32 GiB each, holes only: reading one takes tens of seconds, listing it none.
    let huge = 32u64 << 30;
    let planted = remote.join("2026-11-03/planted.bin");
    fs::File::create(&planted).unwrap().set_len(huge).unwrap();
    let manifest = remote.join("2026-11-02/shared-2026-11-02.manifest.json");
    fs::remove_file(&manifest).unwrap();
    fs::File::create(&manifest).unwrap().set_len(huge).unwrap();
    let t = std::time::Instant::now();
    let (code, r) = sync(&s);
    let took = t.elapsed();
    assert_eq!(code, 0, "{r}");
    assert!(
        took < Duration::from_secs(15),
        "the sync read the planted files: {took:?}"
    );
    assert_eq!(r["uploaded"], serde_json::json!(["2026-11-02"]), "{r}");
    assert_eq!(
        r["up_to_date"],
        serde_json::json!(["2026-11-03", "2026-11-01"]),
        "{r}"
    );
    fs::remove_file(&planted).unwrap();
    assert_eq!(remote_files(&remote), exported(&s, &days));
}

/// A sync that loses its lease while it deletes remote days (`keep_daily`) stops deleting,
/// says so in its report, writes no status after that, and exits 4.
#[test]
fn a_sync_that_loses_its_lease_stops_deleting_remote_days() {
    let s = Setup::new();
    three_days(&s);
    let remote = s.dir.path().join("remote");
    let cfg = fs::read_to_string(&s.config).unwrap();
    let client = command_remote(&s, &remote);
    fs::write(&s.config, &cfg).unwrap();
    offsite(&s, &client);
    let (code, r) = sync(&s);
    assert_eq!(code, 0, "{r}");
    // The delete command takes the sync's lease away (as another sync judging it lapsed).
    script(
        &s,
        "rm.sh",
        &format!(
            "rm -rf \"{}/$1\"; rm -f \"{}\"/*.json",
            remote.display(),
            s.dir.path().join("exports/_offsite/leases").display()
        ),
    );
    let before = fs::read_to_string(s.dir.path().join("exports/_offsite/2026-11-01.json")).unwrap();
    fs::write(&s.config, &cfg).unwrap();
    offsite(&s, &format!("{client}keep_daily = 1\n"));
    let (code, r) = sync(&s);
    assert_eq!(
        r["deleted_remote"],
        serde_json::json!(["2026-11-01"]),
        "{r}"
    );
    assert_eq!(remote_days(&remote), ["2026-11-02", "2026-11-03"], "{r}");
    assert_eq!(code, 4, "{r}");
    assert!(
        r["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().contains("lease")),
        "{r}"
    );
    assert_eq!(r["exit_code"], 4, "{r}");
    assert_eq!(
        fs::read_to_string(s.dir.path().join("exports/_offsite/2026-11-01.json")).unwrap(),
        before,
        "a status was written after the lease was lost"
    );
}

/// A command client that runs until it is killed, and an `[offsite]` section for it; the client
/// touches the returned marker once it runs.
fn hanging_client(s: &Setup) -> PathBuf {
    let marker = s.dir.path().join("started");
    let client = script(
        s,
        "hang.sh",
        &format!("touch \"{}\"; sleep 120", marker.display()),
    );
    offsite(
        s,
        &format!(
            "uploader = \"command\"\nupload = [\"{}\", \"{{file}}\", \"{{dest}}\"]\nlist = [\"{}\", \"{{dir}}\"]\n\
             timeout_secs = 600\nattempts = 1\nretry_wait_secs = 0\nscratch_dir = \"{}\"\n",
            client.display(),
            list_script(s, &s.dir.path().join("remote")).display(),
            s.dir.path().join("scratch").display()
        ),
    );
    marker
}

/// Waits up to `secs` for `child` to end.
fn wait_ended(child: &mut std::process::Child, secs: u64) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Waits until the client ran (its marker is there), while `child` runs.
fn wait_marker(child: &mut std::process::Child, marker: &Path) {
    while !marker.exists() {
        assert!(child.try_wait().unwrap().is_none(), "the sync ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stopped by SIGTERM as PID 1 (a container without an init, where the signal's default action
/// does nothing), the sync still ends, with 128 + the signal.
#[test]
fn a_stopped_sync_ends_as_pid_1() {
    use std::os::unix::process::ExitStatusExt;
    let s = Setup::new();
    three_days(&s);
    let marker = hanging_client(&s);
    // `unshare --fork` makes cairn PID 1 of a new pid namespace, as a container's ENTRYPOINT.
    let mut c = std::process::Command::new("unshare");
    c.args(["--pid", "--fork", "--mount-proc", "--kill-child"])
        .arg(env!("CARGO_BIN_EXE_cairn"))
        .arg("--config")
        .arg(&s.config)
        .args(["-q", "offsite", "sync"])
        .env_remove("CAIRN_CONFIG");
    let mut unshare = c.spawn().unwrap();
    wait_marker(&mut unshare, &marker);
    let children =
        fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id())).unwrap();
    let cairn: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: signals the test's own cairn (PID 1 of its namespace).
    unsafe {
        libc::kill(cairn, libc::SIGTERM);
    }
    let ended = wait_ended(&mut unshare, 20);
    if ended.is_none() {
        // `--kill-child`: cairn goes with it.
        let _ = unshare.kill();
        let _ = unshare.wait();
    }
    let status = ended.expect("cairn as PID 1 did not end after SIGTERM");
    assert!(
        status.code() == Some(128 + libc::SIGTERM) || status.signal() == Some(libc::SIGTERM),
        "{status:?}"
    );
}

/// Started with SIGHUP ignored (`nohup`), the sync keeps ignoring it; SIGTERM still stops it.
#[test]
fn an_ignored_sighup_stays_ignored() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let s = Setup::new();
    three_days(&s);
    let marker = hanging_client(&s);
    let mut c = s.cmd(&["-q", "offsite", "sync"]);
    // SAFETY: signal(2) is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = c.spawn().unwrap();
    wait_marker(&mut child, &marker);
    // SAFETY: signals our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGHUP);
    }
    let hup = wait_ended(&mut child, 2);
    if hup.is_none() {
        // SAFETY: signals our own child.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
    }
    let status = hup
        .or_else(|| wait_ended(&mut child, 20))
        .expect("the sync did not end");
    assert!(
        hup.is_none(),
        "an ignored SIGHUP stopped the sync: {status:?}"
    );
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}

/// `offsite sync --dry-run` prints the plan and touches nothing; the sync then uploads exactly
/// the days it named.
#[test]
fn a_dry_run_sync_prints_the_plan_the_sync_then_carries_out() {
    let s = Setup::new();
    let days = three_days(&s);
    let remote = s.dir.path().join("remote");
    offsite(
        &s,
        &format!(
            "uploader = \"directory\"\npath = \"{}\"\n",
            remote.display()
        ),
    );
    let (code, plan) = s.json(&["offsite", "sync", "--dry-run"]);
    assert_eq!(code, 0, "{plan}");
    assert!(
        !remote.exists() || fs::read_dir(&remote).unwrap().next().is_none(),
        "a dry run uploaded"
    );
    assert!(
        !s.dir.path().join("exports/_offsite").exists(),
        "a dry run wrote a status"
    );
    let planned: Vec<String> = plan["days"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == "upload")
        .map(|d| d["date"].as_str().unwrap().to_string())
        .collect();
    let mut newest_first = days.clone();
    newest_first.reverse();
    assert_eq!(planned, newest_first, "{plan}");
    let (code, done) = sync(&s);
    assert_eq!(code, 0, "{done}");
    assert_eq!(done["uploaded"], serde_json::json!(newest_first), "{done}");
}
