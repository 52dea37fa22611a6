//! Progress of the long operations. On a terminal (`script` gives cairn a pseudo-terminal) each
//! shows one line that reaches its final totals and is cleared at the end; with `-q`, `--json`
//! or no terminal nothing but the periodic log line is written, which a slow restore (its
//! archive fed through a pipe, a piece at a time) shows with growing bytes.

use std::fs;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::dump::have;
use super::{Setup, assert_exit, on_terminal, seeded, stderr, stdout};

/// The sequence that clears a terminal line (what indicatif sends to clear its bar).
const CLEAR_LINE: &str = "\x1b[2K";

/// A source of a few files, backed up and exported as 2026-11-29.
fn exported() -> Setup {
    let s = Setup::new();
    fs::write(s.src().join("notetaking/a.md"), b"note a\n").unwrap();
    fs::write(s.src().join("notetaking/b.md"), seeded(100_000, 1)).unwrap();
    fs::write(s.src().join("images/photo.raw"), seeded(3 << 20, 2)).unwrap();
    assert_exit(&s.run(&["init"]), 0);
    assert_exit(&s.run(&["backup", "--date", "2026-11-29"]), 0);
    assert_exit(&s.run(&["export", "--date", "2026-11-29"]), 0);
    s
}

/// Runs `cairn ARGS` on a terminal; returns what the terminal showed.
fn terminal(s: &Setup, args: &[&str]) -> String {
    let out = on_terminal(s, args);
    assert_exit(&out, 0);
    stdout(&out)
}

/// The terminal showed `final_line` (the operation's last figures) and cleared it afterwards.
#[track_caller]
fn shown_and_cleared(screen: &str, final_line: &str) {
    let at = screen
        .rfind(final_line)
        .unwrap_or_else(|| panic!("no {final_line:?} in {screen:?}"));
    assert!(
        screen[at..].contains(CLEAR_LINE),
        "the line {final_line:?} was not cleared: {screen:?}"
    );
}

/// Each long operation shows its line on a terminal, with its final totals, then clears it.
#[test]
fn long_operations_show_a_line_on_a_terminal_that_ends_at_the_totals_and_is_cleared() {
    if !have("script") {
        return;
    }
    let s = exported();
    // A second backup knows the first one's totals from the start.
    let screen = terminal(&s, &["backup", "--date", "2026-11-30"]);
    shown_and_cleared(&screen, "backup: 3/3 files, 3.1 MiB/3.1 MiB (100%)");
    let screen = terminal(&s, &["export", "--date", "2026-11-30"]);
    shown_and_cleared(&screen, "export 2026-11-30: ");
    assert!(screen.contains("(100%)"), "{screen:?}");
    let t = s.dir.path().join("restored");
    let target = t.to_str().unwrap();
    let screen = terminal(&s, &["restore", "--target", target]);
    shown_and_cleared(&screen, "restore: 3/3 files, 3.1 MiB/3.1 MiB (100%)");
    let screen = terminal(&s, &["check", "--read-data"]);
    shown_and_cleared(&screen, "check: reading packs: ");
    assert!(screen.contains("(100%)"), "{screen:?}");
    let screen = terminal(&s, &["exports", "verify", "2026-11-30"]);
    shown_and_cleared(&screen, "verify 2026-11-30: ");
    assert!(screen.contains("(100%)"), "{screen:?}");
    // Nothing to repack or delete: the marking is gc's last stage.
    let screen = terminal(&s, &["gc"]);
    shown_and_cleared(&screen, "marking what snapshots use: 2/2 snapshots");
    let t = s.dir.path().join("from-archive");
    let archive = s
        .dir
        .path()
        .join("exports/2026-11-30/shared-2026-11-30.tar.zst");
    let screen = terminal(
        &s,
        &[
            "restore",
            "--archive",
            archive.to_str().unwrap(),
            "--target",
            t.to_str().unwrap(),
        ],
    );
    shown_and_cleared(&screen, "restore: ");
    assert!(screen.contains("(100%)"), "{screen:?}");

    if have("rclone") {
        let mut cfg = fs::read_to_string(&s.config).unwrap();
        let remote = s.dir.path().join("remote");
        cfg.push_str(&format!(
            "[offsite]\nuploader = \"rclone\"\nremote = \":local:{}\"\nretry_wait_secs = 0\n",
            remote.display()
        ));
        fs::write(&s.config, cfg).unwrap();
        let screen = terminal(&s, &["offsite", "sync"]);
        // Newest first: the last day sent is the oldest, with its three files.
        shown_and_cleared(&screen, "offsite 2026-11-29: 3/3 files");
        assert!(screen.contains("(100%)"), "{screen:?}");
    }
}

/// With `-q` or `--json` on a terminal, and with no terminal at all, no progress line is drawn.
#[test]
fn quiet_json_and_no_terminal_draw_no_line() {
    if !have("script") {
        return;
    }
    let s = exported();
    let t = s.dir.path().join("restored");
    let target = t.to_str().unwrap();
    let screen = terminal(&s, &["-q", "restore", "--target", target]);
    assert!(!screen.contains("restore:"), "{screen:?}");
    let screen = terminal(
        &s,
        &[
            "--json",
            "restore",
            "--overwrite",
            "always",
            "--target",
            target,
        ],
    );
    assert!(!screen.contains("restore:"), "{screen:?}");
    assert!(!screen.contains(CLEAR_LINE), "{screen:?}");
    let out = s.run(&["restore", "--overwrite", "always", "--target", target]);
    assert_exit(&out, 0);
    assert_eq!(stderr(&out), "", "no terminal: nothing on stderr");
    let out = s.run(&["check", "--read-data"]);
    assert_exit(&out, 0);
    assert_eq!(stderr(&out), "");
}

/// The progress log lines of a restore where no terminal watches, parsed as JSON: at least two
/// over three seconds with `log.progress_interval_s = 1`, bytes growing, with `-q` too.
#[test]
fn a_slow_restore_logs_its_progress_where_no_terminal_watches() {
    let s = exported();
    let archive = fs::read(
        s.dir
            .path()
            .join("exports/2026-11-29/shared-2026-11-29.tar.zst"),
    )
    .unwrap();
    for quiet in [false, true] {
        let fifo = s.dir.path().join(format!("archive-{quiet}.fifo"));
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let t = s.dir.path().join(format!("slow-{quiet}"));
        let mut args = vec![];
        if quiet {
            args.push("-q");
        }
        args.extend([
            "restore",
            "--archive",
            fifo.to_str().unwrap(),
            "--target",
            t.to_str().unwrap(),
        ]);
        let child = s
            .cmd(&args)
            .env("CAIRN_LOG_PROGRESS_INTERVAL_S", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The archive in ten pieces over about three seconds: a slow link.
        let mut w = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        for piece in archive.chunks(archive.len().div_ceil(10)) {
            w.write_all(piece).unwrap();
            w.flush().unwrap();
            std::thread::sleep(Duration::from_millis(330));
        }
        drop(w);
        let out = child.wait_with_output().unwrap();
        assert_exit(&out, 0);
        let err = stderr(&out);
        let lines: Vec<Value> = err
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?} in {err}")))
            .collect();
        assert!(
            lines
                .iter()
                .all(|v| v["target"] == "cairn::progress" && v["message"] == "progress"),
            "only progress lines: {err}"
        );
        assert!(lines.len() >= 2, "{err}");
        let bytes: Vec<u64> = lines.iter().map(|v| v["bytes"].as_u64().unwrap()).collect();
        assert!(
            bytes.windows(2).all(|w| w[0] < w[1]),
            "bytes do not grow: {bytes:?}"
        );
        assert!(*bytes.last().unwrap() <= archive.len() as u64);
        assert!(lines.iter().all(|v| v["stage"] == "restore"), "{err}");
    }
}
