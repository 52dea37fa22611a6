//! `cairn stats`: a repository with known duplication (one 10 MiB file under three names and a
//! hardlink, and compressible notes), its figures against the bytes written; what a gc would
//! free after a forget, against gc's own plan and run; an unknown snapshot in one line.

use std::fs;

use serde_json::Value;

use super::{Setup, seeded, stderr};

/// Compressible text of at least `len` bytes, different for each `seed`.
fn text(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 100);
    let mut i = 0u64;
    while out.len() < len {
        let line = format!("note {seed}, line {i}: the quick brown fox jumps over the lazy dog\n");
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out
}

/// A count in the JSON.
#[track_caller]
fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

/// A ratio in the JSON.
#[track_caller]
fn r(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a ratio: {v}"))
}

/// One snapshot holding a 10 MiB file under three names and a fourth, hardlinked one, and three
/// notes: its files, logical bytes (the hardlink once), unique chunks (one copy of the 10 MiB),
/// deduplication and compression ratios, and the repository's and the archives' figures. Then a
/// second backup without one note and with a file more in each folder, and the first snapshot
/// forgotten: its tree pack holds nothing a snapshot needs, so a gc would free it; `stats` says
/// what `gc --dry-run` plans, and after the gc, that it is condemned and waiting for its grace.
#[test]
fn stats_count_duplicated_content_once_and_what_a_gc_would_free() {
    let s = Setup::new();
    let big = seeded(10 << 20, 42);
    for name in [
        "images/photo.raw",
        "backup/photo-copy.raw",
        "notetaking/photo-again.raw",
    ] {
        fs::write(s.src().join(name), &big).unwrap();
    }
    let photo = s.src().join("images/photo.raw");
    fs::hard_link(&photo, s.src().join("images/photo-link.raw")).unwrap();
    let notes = [
        ("notetaking/todo.md", text(40_000, 1)),
        ("notetaking/ideas.md", text(30_000, 2)),
        ("images/captions.txt", text(20_000, 3)),
    ];
    for (name, t) in &notes {
        fs::write(s.src().join(name), t).unwrap();
    }
    let big_len = big.len() as u64;
    let notes_len: u64 = notes.iter().map(|(_, t)| t.len() as u64).sum();
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    let (code, first) = s.json(&["backup"]);
    assert_eq!(code, 0, "{first}");
    let out = s.run(&["export"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let (code, v) = s.json(&["stats", "latest"]);
    assert_eq!(code, 0, "{v}");
    let snap = &v["snapshots"][0];
    assert_eq!(snap["id"], first["snapshot"]);
    assert_eq!(n(&snap["files"]), 4 + 3, "{snap}");
    assert_eq!(n(&snap["hardlinks"]), 1, "{snap}");
    assert_eq!(n(&snap["dirs"]), 3, "{snap}");
    let logical = 3 * big_len + notes_len;
    assert_eq!(n(&snap["logical_bytes"]), logical, "the hardlink once");
    let raw = big_len + notes_len;
    let chunks = &snap["chunks"];
    assert_eq!(n(&chunks["raw_bytes"]), raw, "one copy of the 10 MiB");
    assert_eq!(n(&snap["missing_chunks"]), 0);
    assert_eq!(n(&snap["trees"]["count"]), 4, "the root and 3 folders");
    let dedup = r(&snap["dedup_ratio"]);
    let expected = logical as f64 / raw as f64;
    assert!((dedup - expected).abs() < 1e-9, "{dedup} vs {expected}");
    assert!((2.9..3.0).contains(&dedup), "{dedup}");
    let stored = n(&chunks["stored_bytes"]);
    assert!(stored < raw, "the notes compress: {stored} of {raw}");
    assert!(stored > big_len, "random bytes do not: {stored}");
    let compression = r(&snap["compression_ratio"]);
    let expected = raw as f64 / stored as f64;
    assert!((compression - expected).abs() < 1e-9, "{compression}");

    let repo = &v["repository"];
    assert_eq!(n(&repo["snapshots"]), 1);
    assert_eq!(repo["data"], *chunks, "every chunk is the snapshot's");
    assert_eq!(n(&repo["trees"]["count"]), 4);
    assert_eq!(repo["logical_bytes"], first["summary"]["bytes"]);
    let fill = r(&repo["packs"]["fill"]);
    assert!((0.9..=1.0).contains(&fill), "{fill}");
    let gc = &repo["gc"];
    assert_eq!(n(&gc["would_free_bytes"]), 0, "nothing dead: {gc}");
    let live = n(&repo["packs"]["live_bytes"]);
    assert_eq!(n(&gc["next"]["live_bytes"]), live);
    let growth = &repo["growth"];
    assert_eq!(growth["until"], first["date"], "today");
    assert_eq!(growth["days"][0]["date"], first["date"]);
    let written = &first["summary"]["stored_bytes"];
    assert_eq!(growth["stored_bytes"], *written, "{growth}");

    let (_, days) = s.json(&["exports", "list"]);
    let exports = &v["exports"];
    let listed = exports["days"].as_array().unwrap().len();
    assert_eq!(listed, 1, "{exports}");
    assert_eq!(n(&exports["complete"]), 1);
    assert_eq!(exports["archive_bytes"], days[0]["archive_size"]);
    assert!(n(&exports["total_bytes"]) > n(&exports["archive_bytes"]));

    let out = s.run(&["stats", "latest"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    let line = format!("  deduplication      {dedup:.2}");
    assert!(table.contains(&line), "no {line:?} in\n{table}");
    assert!(table.contains("what a gc would free"), "{table}");
    let (code, v) = s.json(&["stats", "--no-gc"]);
    assert_eq!(code, 0, "{v}");
    assert!(v["repository"]["gc"].is_null() && v["repository"]["packs"]["fill"].is_null());

    fs::remove_file(s.src().join("notetaking/ideas.md")).unwrap();
    fs::write(s.src().join("images/new.txt"), "new\n").unwrap();
    fs::write(s.src().join("backup/new.txt"), "also new\n").unwrap();
    let (code, second) = s.json(&["backup"]);
    assert_eq!(code, 0, "{second}");
    let (code, v) = s.json(&["stats", "--all"]);
    assert_eq!(code, 0, "{v}");
    let all = v["snapshots"].as_array().unwrap();
    assert_eq!(all.len(), 2, "{v}");
    assert_eq!(n(&all[1]["files"]), 4 + 2 + 2, "{}", all[1]);
    let id = first["snapshot"].as_str().unwrap();
    let out = s.run(&["forget", id]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let (code, v) = s.json(&["stats"]);
    assert_eq!(code, 0, "{v}");
    assert!(v["snapshots"].as_array().unwrap().is_empty());
    assert_eq!(n(&v["repository"]["snapshots"]), 1);
    let gc = &v["repository"]["gc"];
    let next = &gc["next"];
    // At least the first backup's tree pack: every tree in it is the forgotten snapshot's.
    assert!(n(&next["condemn_packs"]) >= 1, "{gc}");
    assert!(n(&next["condemn_bytes"]) > 0, "{gc}");
    let would_free = n(&gc["would_free_bytes"]);
    assert!(would_free >= n(&next["condemn_bytes"]), "{gc}");
    assert_eq!(n(&gc["condemned_packs"]), 0, "{gc}");
    let (code, plan) = s.json(&["gc", "--dry-run"]);
    assert_eq!(code, 0, "{plan}");
    let repacks = n(&next["repack_packs"]);
    let planned = n(&next["condemn_packs"]) + repacks;
    assert_eq!(n(&plan["packs_repacked"]), repacks, "{plan} {gc}");
    assert_eq!(n(&plan["packs_condemned"]), planned, "{plan} {gc}");

    let (code, done) = s.json(&["gc"]);
    assert_eq!(code, 0, "{done}");
    assert_eq!(n(&done["packs_condemned"]), planned, "{done}");
    assert_eq!(n(&done["packs_deleted"]), 0, "grace 24 h: {done}");
    let (code, v) = s.json(&["stats"]);
    assert_eq!(code, 0, "{v}");
    let gc = &v["repository"]["gc"];
    assert_eq!(n(&gc["condemned_packs"]), planned, "{gc}");
    assert!(n(&gc["condemned_bytes"]) > 0, "{gc}");
    assert_eq!(n(&gc["deletable_packs"]), 0, "in grace: {gc}");
    assert_eq!(n(&gc["next"]["condemn_packs"]), 0, "{gc}");
    assert_eq!(n(&gc["next"]["repack_packs"]), 0, "{gc}");
}

/// A snapshot that is not there (an id prefix, a day) fails `stats` with exit 1 and one line
/// naming it, before anything is walked.
#[test]
fn stats_of_an_unknown_snapshot_fails_in_one_line_naming_it() {
    let s = Setup::new();
    fs::write(s.src().join("notetaking/a.md"), "alpha\n").unwrap();
    assert_eq!(s.run(&["init"]).status.code(), Some(0));
    assert_eq!(s.run(&["backup"]).status.code(), Some(0));
    let failure = i32::from(cairn_engine::error::exit::FAILURE);
    for sel in ["deadbeef", "2001-01-01"] {
        let out = s.run(&["stats", sel]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(failure), "{sel}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(sel), "{err}");
        assert!(out.stdout.is_empty(), "{sel}: nothing printed");
    }
}
