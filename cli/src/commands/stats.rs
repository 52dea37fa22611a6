//! `cairn stats [SNAPSHOT…]`: what the repository holds (its snapshots, unique blobs, packs and
//! their fill, what a gc would free, the last days' growth) and the daily archives, and for each
//! snapshot named (every one with `--all`) its files, bytes, unique chunks, deduplication and
//! compression; read beside a running nightly job, as a table or as one JSON object.

use anyhow::Result;
use cairn_engine::config::Config;
use cairn_engine::setup::open_store;
use cairn_engine::stats::{
    self, BlobTotals, ExportsStats, GcStats, GcWeighing, Growth, RepoStats, RepoStatsOptions,
    SnapshotStats,
};
use clap::Args;

use super::session::{ReadSession, read_session};
use crate::output::{bytes, print_json};
use crate::{Cli, exit};

/// Arguments of `cairn stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Snapshots to walk for their own figures: `latest`, a date (YYYY-MM-DD) or an id prefix.
    #[arg(value_name = "SNAPSHOT")]
    snapshots: Vec<String>,
    /// Walk every snapshot for its own figures (reads each one's trees).
    #[arg(long, conflicts_with = "snapshots")]
    all: bool,
    /// Leave out the packs' fill and what a gc would free: the figures that read every
    /// snapshot's trees once (as a gc's marking does) and list the store's condemned markers.
    #[arg(long)]
    no_gc: bool,
    /// Days of growth to show, ending today.
    #[arg(long, default_value_t = 14)]
    days: u32,
}

pub(super) fn run_stats(cli: &Cli, cfg: &Config, a: &StatsArgs) -> Result<u8> {
    let now = jiff::Timestamp::now();
    let gc = if a.no_gc {
        None
    } else {
        Some(GcWeighing {
            repack_dead_percent: cfg.gc.repack_dead_percent,
            grace: cfg.gc.grace()?,
            now,
        })
    };
    let opts = RepoStatsOptions {
        gc,
        growth_until: cfg.date_of(now)?,
        growth_days: a.days,
    };
    let ReadSession {
        repo,
        catalog,
        _lock,
    } = read_session(cfg)?;
    // The snapshots named first: one that names nothing fails before anything is walked.
    let named = if a.all {
        catalog.snapshots()?
    } else {
        a.snapshots
            .iter()
            .map(|sel| catalog.resolve_snapshot(sel))
            .collect::<cairn_engine::Result<Vec<_>>>()?
    };
    let repository = stats::repo_stats(&repo, &catalog, &opts)?;
    let snapshots = named
        .iter()
        .map(|(id, snap)| stats::snapshot_stats(&repo, &catalog, id, snap))
        .collect::<cairn_engine::Result<Vec<_>>>()?;
    // The repository's figures stand without the daily archives: a location that cannot be
    // listed is said, not fatal.
    let exports = open_store(&cfg.exports, "exports", true)
        .and_then(|store| stats::exports_stats(store.as_ref()));
    let (exports, exports_error) = match exports {
        Ok(x) => (Some(x), None),
        Err(e) => {
            tracing::warn!(error = %e, "the daily archives could not be listed");
            (None, Some(e.to_string()))
        }
    };
    // What a gc would free comes from its marking, which shows its progress.
    crate::progress::settle();
    if cli.json {
        print_json(&serde_json::json!({
            "repository": repository,
            "exports": exports,
            "exports_error": exports_error,
            "snapshots": snapshots,
        }));
    } else {
        print_repository(&repository);
        if let Some(g) = &repository.gc {
            print_gc(g);
        }
        print_exports(exports.as_ref(), exports_error.as_deref());
        print_growth(&repository.growth);
        for s in &snapshots {
            print_snapshot(s);
        }
    }
    Ok(exit::OK)
}

/// Prints a section's title and its rows, the values in one column.
fn section(title: &str, rows: &[(&str, String)]) {
    println!("{title}");
    for (label, value) in rows {
        println!("  {label:<18} {value}");
    }
}

/// `N, X raw, Y stored`.
fn blobs(t: &BlobTotals) -> String {
    let (raw, stored) = (bytes(t.raw_bytes), bytes(t.stored_bytes));
    format!("{}, {raw} raw, {stored} stored", t.count)
}

/// `N packs, X`.
fn packs(n: u64, size: u64) -> String {
    let noun = if n == 1 { "pack" } else { "packs" };
    format!("{n} {noun}, {}", bytes(size))
}

/// A ratio to two decimals, `-` where there is none.
fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{r:.2}"))
}

fn print_repository(r: &RepoStats) {
    let days = match (&r.first_day, &r.last_day) {
        (Some(first), Some(last)) => format!(" ({first} to {last})"),
        _ => String::new(),
    };
    let mut rows = vec![
        ("snapshots", format!("{}{days}", r.snapshots)),
        ("logical size", bytes(r.logical_bytes)),
        ("data blobs", blobs(&r.data)),
        ("tree blobs", blobs(&r.trees)),
        ("deduplication", ratio(r.dedup_ratio)),
        ("compression", ratio(r.compression_ratio)),
        ("packs", packs(r.packs.count, r.packs.bytes)),
    ];
    if let (Some(live), Some(fill)) = (r.packs.live_bytes, r.packs.fill) {
        let live = bytes(live);
        rows.push(("pack fill", format!("{fill:.2} ({live} live)")));
    }
    section("repository", &rows);
}

fn print_gc(g: &GcStats) {
    let next = &g.next;
    let condemned = packs(g.condemned_packs, g.condemned_bytes);
    let deletable = packs(g.deletable_packs, g.deletable_bytes);
    let condemned = format!("{condemned} ({deletable} past the grace)");
    let condemns = packs(next.condemn_packs as u64, next.condemn_bytes);
    let repacks = packs(next.repack_packs as u64, next.repack_bytes);
    let frees = bytes(next.repack_bytes.saturating_sub(next.repack_live_bytes));
    let repacks = format!("{repacks} (frees {frees})");
    let rows = [
        ("condemned", condemned),
        ("next gc condemns", condemns),
        ("next gc repacks", repacks),
        ("in all", bytes(g.would_free_bytes)),
    ];
    section("what a gc would free", &rows);
}

fn print_exports(exports: Option<&ExportsStats>, error: Option<&str>) {
    let Some(x) = exports else {
        let why = error.unwrap_or("unknown").to_string();
        section("daily archives", &[("not listed", why)]);
        return;
    };
    let span = match (x.days.first(), x.days.last()) {
        (Some(first), Some(last)) => format!(", {} to {}", first.date, last.date),
        _ => String::new(),
    };
    let days = format!("{}, {} complete{span}", x.days.len(), x.complete);
    let rows = [
        ("days", days),
        ("archives", bytes(x.archive_bytes)),
        ("in all", bytes(x.total_bytes)),
    ];
    section("daily archives", &rows);
}

fn print_growth(g: &Growth) {
    println!("growth, {} to {}", g.from, g.until);
    if g.days.is_empty() {
        println!("  no snapshots of these days");
        return;
    }
    println!("  date       snapshots     stored   new data     files       size");
    for d in &g.days {
        let (date, n, files) = (&d.date, d.snapshots, d.files);
        let stored = bytes(d.stored_bytes);
        let new = bytes(d.new_bytes);
        let size = bytes(d.logical_bytes);
        println!("  {date:<10} {n:>9} {stored:>10} {new:>10} {files:>9} {size:>10}");
    }
    let n = g.snapshots;
    let stored = bytes(g.stored_bytes);
    let new = bytes(g.new_bytes);
    println!("  in all     {n:>9} {stored:>10} {new:>10}");
}

fn print_snapshot(s: &SnapshotStats) {
    let title = format!("snapshot {} ({}, {})", s.id.short(), s.date, s.time);
    let (n, links) = (s.files, s.hardlinks);
    let files = format!("{n} ({links} more names of hardlinked files)");
    let mut rows = vec![
        ("files", files),
        ("directories", s.dirs.to_string()),
        ("symlinks", s.symlinks.to_string()),
        ("logical size", bytes(s.logical_bytes)),
        ("unique chunks", blobs(&s.chunks)),
        ("trees", blobs(&s.trees)),
        ("deduplication", ratio(s.dedup_ratio)),
        ("compression", ratio(s.compression_ratio)),
    ];
    if s.specials > 0 {
        rows.push(("special files", s.specials.to_string()));
    }
    if s.missing_chunks > 0 {
        rows.push(("missing chunks", s.missing_chunks.to_string()));
    }
    section(&title, &rows);
}
