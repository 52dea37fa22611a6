//! Every error a user meets is one line of words: no `Some(…)`, `Ok(…)`, `Err(…)`, `None` or
//! `Struct { field: … }`, Rust's debug forms, which say nothing to an operator. The CLI's error
//! paths are driven one by one and their output scanned.

use std::fs;

use super::{Setup, stderr, stdout};

/// What a debug form looks like in a message.
fn debug_forms(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        for word in [
            "Some(", "Ok(", "Err(", "None", "PathBuf", "Os {", " { kind:", "Dir", "Symlink",
            "Chardev", "Blockdev", "Fifo",
        ] {
            let wordy = |c: char| c.is_alphanumeric() || c == '_';
            let hit = line.match_indices(word).any(|(i, _)| {
                // A whole word: not part of another one ("Look(", "Nonexistent").
                let glued_before = line[..i].chars().next_back().is_some_and(wordy);
                let glued_after = word.ends_with(wordy)
                    && line[i + word.len()..].chars().next().is_some_and(wordy);
                !glued_before && !glued_after
            });
            if hit {
                found.push(format!("{word}: {line}"));
            }
        }
        // `Name { field: value … }`
        for (i, w) in line.match_indices(" { ") {
            let before = line[..i]
                .rsplit(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("");
            let after = &line[i + w.len()..];
            let field = after.split(':').next().unwrap_or("");
            if before.starts_with(|c: char| c.is_ascii_uppercase())
                && !field.is_empty()
                && field.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                && after.len() > field.len()
            {
                found.push(format!("struct: {line}"));
            }
        }
    }
    found
}

#[test]
fn the_scan_finds_debug_forms() {
    assert_eq!(debug_forms("the run itself: Some(\"reading\")").len(), 1);
    assert_eq!(
        debug_forms("invalid chunker sizes ChunkerParams { min: 1, avg: 2 }").len(),
        1
    );
    assert_eq!(debug_forms("got None").len(), 1);
    assert!(debug_forms("Nonexistent folder; a note (Some words)").is_empty());
    assert_eq!(debug_forms("notetaking is a Dir in the archive").len(), 1);
    assert_eq!(debug_forms("the manifest says Some(2560)").len(), 1);
    assert!(debug_forms("--date \"2026-13-45\" is not YYYY-MM-DD").is_empty());
}

#[test]
fn error_messages_hold_no_debug_forms() {
    let s = Setup::new();
    let dir = s.dir.path();
    let bad_toml = dir.join("bad.toml");
    fs::write(&bad_toml, "[source\nroot = 1").unwrap();
    let unknown_key = dir.join("unknown.toml");
    fs::write(&unknown_key, "[source]\nrooot = \"/x\"\n").unwrap();
    let p = |p: &std::path::Path| p.display().to_string();
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // Before there is a repository, and with configurations that do not load.
    let early: Vec<(Vec<String>, Option<i32>)> = vec![
        (
            args(&["--config", "/nonexistent/cairn.toml", "snapshots"]),
            Some(2),
        ),
        (args(&["--config", &p(&bad_toml), "snapshots"]), Some(2)),
        (args(&["--config", &p(&unknown_key), "snapshots"]), Some(2)),
        (args(&["--set", "nosuch", "snapshots"]), Some(2)),
        (
            args(&["--set", "backup.compression=99", "snapshots"]),
            Some(2),
        ),
        (
            args(&["--set", "source.optional_folders=elsewhere", "snapshots"]),
            Some(2),
        ),
        (args(&["run", "--date", "2026-13-45"]), Some(2)),
        (args(&["backup"]), None),
        (args(&["check"]), None),
        (args(&["gc"]), None),
        (
            args(&[
                "--set",
                "store.kind=s3",
                "--set",
                "store.bucket=b",
                "--set",
                "store.endpoint=http://127.0.0.1:1",
                "snapshots",
            ]),
            None,
        ),
    ];
    // With a repository and nothing in it.
    let later: Vec<(Vec<String>, Option<i32>)> = vec![
        (args(&["ls", "nosuchsnapshot"]), None),
        (
            args(&["restore", "--target", &p(&dir.join("r")), "ffff"]),
            None,
        ),
        (args(&["diff", "a", "b"]), None),
        (args(&["find", "["]), None),
        (
            args(&["exports", "cat", "2026-11-01", "notetaking/a"]),
            None,
        ),
        (args(&["exports", "verify", "2026-11-01"]), None),
        (args(&["offsite", "sync"]), None),
        (args(&["forget", "nosuchsnapshot"]), None),
        (args(&["export", "--date", "2099-01-01"]), None),
        (
            args(&["preflight", "--set", "source.root=/nonexistent"]),
            Some(1),
        ),
    ];
    let mut problems = Vec::new();
    let mut run_all = |cases: &[(Vec<String>, Option<i32>)], s: &Setup| {
        for (args, code) in cases {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = s
                .cmd(&args)
                .env_remove("AWS_ACCESS_KEY_ID")
                .env_remove("AWS_SECRET_ACCESS_KEY")
                .output()
                .unwrap();
            assert_ne!(
                out.status.code(),
                Some(0),
                "{args:?} succeeded: {}",
                stdout(&out)
            );
            if let Some(c) = code {
                assert_eq!(out.status.code(), Some(*c), "{args:?}: {}", stderr(&out));
            }
            let text = format!("{}{}", stdout(&out), stderr(&out));
            for f in debug_forms(&text) {
                problems.push(format!("{args:?}: {f}"));
            }
        }
    };
    run_all(&early, &s);
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    run_all(&later, &s);
    // With a published day: a folder asked for as a file, and a manifest whose offset is off.
    fs::write(dir.join("src/notetaking/a.md"), "a\n".repeat(5000)).unwrap();
    let day = "2026-11-02";
    assert_eq!(s.run(&["run", "--date", day]).status.code(), Some(0));
    let manifest = dir.join(format!("exports/{day}/shared-{day}.manifest.json"));
    let text = fs::read_to_string(&manifest).unwrap();
    let at = text.find("\"offset\": ").expect("the manifest has offsets") + "\"offset\": ".len();
    let end = at + text[at..].find(|c: char| !c.is_ascii_digit()).unwrap();
    let off: u64 = text[at..end].parse().unwrap();
    fs::write(
        &manifest,
        format!("{}{}{}", &text[..at], off + 512, &text[end..]),
    )
    .unwrap();
    run_all(
        &[
            (args(&["exports", "cat", day, "notetaking"]), None),
            (args(&["exports", "verify", day]), None),
        ],
        &s,
    );
    // A run that fails and whose report cannot be written either (`_reports` is a file).
    fs::remove_dir_all(dir.join("exports/_reports")).unwrap();
    fs::write(dir.join("exports/_reports"), "in the way").unwrap();
    fs::remove_dir_all(dir.join("src/images")).unwrap();
    run_all(&[(vec!["run".into()], None)], &s);
    let out = s.run(&["run"]);
    assert!(
        stderr(&out).contains("the run itself failed: source folder images"),
        "{}",
        stderr(&out)
    );
    assert!(
        problems.is_empty(),
        "debug forms in messages:\n{}",
        problems.join("\n")
    );
}
