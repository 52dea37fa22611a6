//! Metrics reach a real Pushgateway (Debian's `prometheus-pushgateway` on loopback): a good
//! night's stages, then a failed night's, which must not erase the last success.

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

fn gateway() -> Option<Gateway> {
    let Ok(bin) = which("prometheus-pushgateway") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but prometheus-pushgateway is not installed (scripts/setup.sh installs it)"
        );
        eprintln!("skipping: no prometheus-pushgateway");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(bin)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
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
    Some(g)
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
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
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
fn stages_push_successes_and_failures_to_a_pushgateway() {
    let Some(g) = gateway() else {
        return;
    };
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
