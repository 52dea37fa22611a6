//! `cairn preflight`, as the CronJobs' first init container runs it: a share the pod's user
//! cannot read, a key that may delete, a wrong key, a missing bucket, a Pushgateway nobody
//! listens on, an offsite remote that is not there: each one line, and exit 1 only for what
//! would fail the night.

use super::pod::{as_pod, assert_may_switch_users, pods_setup};
use super::*;

/// The lines of the command's stdout that start with `mark` (`ok`, `warn`, `FAIL`).
fn lines_marked(out: &Output, mark: &str) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(mark))
        .map(str::to_string)
        .collect()
}

/// The pod's situation: uid 65532 (not root), the share's notes owned by another service's user
/// (uid 1000, group 2000), 0600. Preflight fails naming the file, its owner and mode, and
/// pushes the night's stages as failed; once the file is group-readable and the pod has the
/// group (the module's supplementalGroups), it passes.
#[test]
#[ignore = "needs root to switch to the pod's user (CI runs scripts/test.sh as root)"]
fn preflight_names_the_file_the_pods_user_cannot_read_and_passes_with_the_shares_group() {
    use std::os::unix::fs::PermissionsExt;
    assert_may_switch_users();
    let s = Setup::new();
    let metrics = pods_setup(&s);
    fs::write(s.src().join("notetaking/todo.md"), "- call the plumber\n").unwrap();
    fs::create_dir(s.src().join("notetaking/private")).unwrap();
    let private = s.src().join("notetaking/private/diary.md");
    fs::write(&private, "dear diary\n").unwrap();
    chown_to(&private, 1000, 2000);
    fs::set_permissions(&private, fs::Permissions::from_mode(0o600)).unwrap();
    let preflight = |groups: &str| as_pod(&s, groups, &["preflight", "--role", "nightly"]);

    let out = preflight("");
    assert_exit(&out, 1);
    let failed = lines_marked(&out, "FAIL");
    assert_eq!(failed.len(), 1, "one failure, one line: {}", stdout(&out));
    assert!(
        failed[0].starts_with(
            "FAIL source notetaking: notetaking/private/diary.md is not readable by uid 65532"
        ) && failed[0].contains("owner uid 1000 gid 2000, mode 0600"),
        "{}",
        failed[0]
    );
    assert!(
        stdout(&out).contains("ok   source images:"),
        "{}",
        stdout(&out)
    );
    // The night's stages are published as failed, so the alerts see a night that never began.
    let prom = fs::read_to_string(metrics.join("cairn_backup.prom")).unwrap();
    assert!(prom.contains("cairn_backup_success 0"), "{prom}");

    // The share's group may read it, and the pod has the group: the night may run.
    fs::set_permissions(&private, fs::Permissions::from_mode(0o640)).unwrap();
    let out = preflight("2000");
    assert_exit(&out, 0);
    assert!(lines_marked(&out, "FAIL").is_empty(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("ok   source notetaking: 2 directories listed and 2 files opened, all readable by uid 65532 (gid 65532, groups 2000)"),
        "{}",
        stdout(&out)
    );
    // Without the group it is the same file again.
    let out = preflight("");
    assert_exit(&out, 1);

    // A top level of 2,100 readable photos does not hide an unreadable file below it.
    for i in 0..2100 {
        fs::write(s.src().join(format!("images/{i:05}.jpg")), "jpeg").unwrap();
    }
    fs::create_dir(s.src().join("images/zz")).unwrap();
    let hidden = s.src().join("images/zz/notes.md");
    fs::write(&hidden, "private").unwrap();
    fs::set_permissions(&hidden, fs::Permissions::from_mode(0o600)).unwrap();
    let out = preflight("2000");
    assert_exit(&out, 1);
    let failed = lines_marked(&out, "FAIL");
    assert!(
        failed.len() == 1
            && failed[0].contains("images/zz/notes.md is not readable")
            && failed[0].contains("owner uid 0 gid 0, mode 0600"),
        "{failed:?}"
    );
    // A directory that may be listed but not entered is named, not the file inside it.
    fs::remove_file(&hidden).unwrap();
    fs::write(s.src().join("images/zz/a.md"), "a").unwrap();
    fs::set_permissions(s.src().join("images/zz"), fs::Permissions::from_mode(0o744)).unwrap();
    let out = preflight("2000");
    assert_exit(&out, 1);
    let failed = lines_marked(&out, "FAIL");
    assert!(
        failed.len() == 1
            && failed[0].contains("images/zz may be listed but not entered")
            && failed[0].contains("mode 0744"),
        "{failed:?}"
    );
}

/// On the S3 test server: the test key may delete (a warning for a nightly key), a wrong secret
/// and a missing bucket fail in one line each, a read-only key cannot put, a stopped
/// Pushgateway is a warning line; the JSON form carries the same findings.
#[test]
#[ignore = "needs the S3 test server (scripts/test.sh provides it)"]
fn preflight_on_s3_says_each_problem_in_one_line() {
    let endpoint = s3_endpoint();
    let s = Setup::new();
    let prefix = s3_prefix("preflight");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cfg = s3_config(&s, &endpoint, &prefix, "retry_budget_secs = 2\n");
    cfg.push_str(&format!(
        "[metrics]\npushgateway = \"http://127.0.0.1:{port}\"\n"
    ));
    fs::write(&s.config, cfg).unwrap();
    fs::write(s.src().join("notetaking/todo.md"), "- milk\n").unwrap();

    let out = s.run(&["preflight"]);
    assert_exit(&out, 0);
    assert!(lines_marked(&out, "FAIL").is_empty(), "{}", stdout(&out));
    let warned = lines_marked(&out, "warn");
    assert!(
        warned.iter().any(
            |l| l.starts_with("warn store delete:") && l.contains("the nightly key may delete")
        ),
        "{warned:?}"
    );
    assert!(
        warned.iter().any(|l| l.starts_with("warn pushgateway:") && l.contains(&format!("127.0.0.1:{port}"))),
        "{warned:?}"
    );
    for ok in [
        "ok   store bucket:",
        "ok   store access:",
        "ok   exports access:",
        "ok   clock:",
        "ok   state:",
    ] {
        assert!(stdout(&out).contains(ok), "{ok}: {}", stdout(&out));
    }
    // Retention expects the deleting key: no warning for it there.
    let out = s.run(&["preflight", "--role", "retention"]);
    assert!(
        stdout(&out).contains("ok   store delete:"),
        "{}",
        stdout(&out)
    );

    // A wrong secret: both locations say so, a line each, naming the variables to check.
    let out = s
        .cmd(&["preflight"])
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let failed = lines_marked(&out, "FAIL");
    assert_eq!(failed.len(), 2, "{}", stdout(&out));
    assert!(
        failed[0].starts_with("FAIL store bucket:") && failed[0].contains("AWS_SECRET_ACCESS_KEY"),
        "{failed:?}"
    );
    assert!(failed[1].starts_with("FAIL exports bucket:"), "{failed:?}");

    // A bucket nobody made: one line naming it and `mc mb`.
    let missing = format!("cairn-missing-{}", std::process::id());
    let out = s.run(&["--set", &format!("store.bucket={missing}"), "preflight"]);
    assert_exit(&out, 1);
    let failed = lines_marked(&out, "FAIL");
    assert_eq!(failed.len(), 1, "{}", stdout(&out));
    assert!(
        failed[0].contains(&format!("mc mb ALIAS/{missing}")),
        "{}",
        failed[0]
    );

    // A key that may only read: it cannot put.
    let out = with_read_only_key(&mut s.cmd(&["preflight"]))
        .output()
        .unwrap();
    assert_exit(&out, 1);
    assert!(
        lines_marked(&out, "FAIL")
            .iter()
            .any(|l| l.starts_with("FAIL store access:") && l.contains("put failed")),
        "{}",
        stdout(&out)
    );

    // The same findings as JSON.
    let (code, v) = s.json(&["preflight"]);
    assert_eq!(code, 0);
    assert_eq!(v["role"], "nightly");
    assert_eq!(v["passed"], true);
    let checks = v["checks"].as_array().unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c["check"] == "store delete" && c["status"] == "warn"),
        "{v}"
    );
}

/// The offsite job's checks: the client's remote listed (here a directory), the scratch
/// directory; a remote that cannot be listed (a file where its folder should be) fails in one
/// line.
#[test]
fn preflight_for_offsite_lists_the_remote() {
    let s = Setup::new();
    let remote = s.dir.path().join("remote");
    fs::create_dir(&remote).unwrap();
    let mut cfg = fs::read_to_string(&s.config).unwrap();
    cfg.push_str(&format!(
        "[offsite]\nuploader = \"directory\"\npath = \"{}\"\nscratch_dir = \"{}/scratch\"\n",
        remote.display(),
        s.dir.path().display()
    ));
    fs::write(&s.config, cfg).unwrap();
    let out = s.run(&["preflight", "--role", "offsite"]);
    assert_exit(&out, 0);
    assert!(
        stdout(&out).contains("ok   offsite session:"),
        "{}",
        stdout(&out)
    );
    fs::remove_dir(&remote).unwrap();
    fs::write(&remote, "not a folder").unwrap();
    let out = s.run(&["preflight", "--role", "offsite"]);
    assert_exit(&out, 1);
    let failed = lines_marked(&out, "FAIL");
    assert_eq!(failed.len(), 1, "{}", stdout(&out));
    assert!(
        failed[0].starts_with("FAIL offsite session:"),
        "{}",
        failed[0]
    );
}

/// A server that refuses every request with 403 and no body, as MinIO answers a HEAD signed by a
/// clock 30 minutes behind, saying its own time in `Date`: preflight names the clock, not only
/// the key.
#[test]
fn preflight_names_a_clock_the_server_refuses() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { continue };
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let ahead = jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_mins(30))
                .unwrap()
                .to_zoned(jiff::tz::TimeZone::UTC);
            let date = jiff::fmt::rfc2822::to_string(&ahead).unwrap();
            let _ = c.write_all(
                format!("HTTP/1.1 403 Forbidden\r\nDate: {date}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    let s = Setup::new();
    let endpoint = format!("http://127.0.0.1:{port}");
    let out = s
        .cmd(&[
            "--set",
            "store.kind=s3",
            "--set",
            "store.bucket=b",
            "--set",
            &format!("store.endpoint={endpoint}"),
            "--set",
            "store.retry_budget_secs=1",
            "preflight",
        ])
        .env("AWS_ACCESS_KEY_ID", "id")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .output()
        .unwrap();
    assert_exit(&out, 1);
    let failed = lines_marked(&out, "FAIL");
    assert!(
        failed
            .iter()
            .any(|l| l.starts_with("FAIL store bucket:") && l.contains("clock")),
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .any(|l| l.starts_with("FAIL clock: this machine's clock is -18")),
        "{failed:?}"
    );
}
