//! `cairn restore`: a snapshot (by selector, day or time) or a daily archive (a local file, a key
//! or a day in the exports location) into a directory; prints what was restored and what was not.

use anyhow::{Context, Result};
use cairn_engine::catalog::Catalog;
use cairn_engine::lock::StateLock;
use cairn_engine::repo::Repository;
use cairn_engine::snapshot::Snapshot;
use cairn_engine::{config::Config, setup::open_store};
use cairn_engine::{export, restore};
use clap::Args;

use super::session::{holding, open_repo, parse_date, read_lease};
use crate::output::{bytes, print_json};
use crate::{Cli, exit};

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot: `latest`, a date or an id prefix (default: the newest).
    #[arg(long, value_name = "SNAPSHOT", conflicts_with_all = ["date", "as_of", "archive"])]
    snapshot: Option<String>,
    /// The newest snapshot of this day (YYYY-MM-DD).
    #[arg(long, value_name = "YYYY-MM-DD", conflicts_with_all = ["as_of", "archive"])]
    date: Option<String>,
    /// The newest snapshot taken at or before this time (RFC 3339, e.g. 2026-11-20T12:00:00Z).
    #[arg(long, value_name = "TIME", conflicts_with = "archive")]
    as_of: Option<String>,
    /// Restore from a daily archive instead: a local .tar.zst file (or a pipe), a key in the
    /// exports location, or a date whose archive to use. Needs no catalog and no store.
    #[arg(long, value_name = "FILE_OR_KEY")]
    archive: Option<String>,
    /// A path inside the snapshot to restore (repeatable); default: everything.
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// The directory to restore into.
    #[arg(long, value_name = "DIR")]
    target: std::path::PathBuf,
    /// Existing files: never (default), if-changed (size or mtime differ), always.
    #[arg(long, value_name = "MODE", default_value = "never")]
    overwrite: String,
    /// Re-read every restored file and check it against its chunk ids.
    #[arg(long)]
    verify: bool,
    /// Print the plan (what would be made, from the snapshot's trees alone) and write nothing.
    #[arg(long, conflicts_with = "archive")]
    dry_run: bool,
}

/// Starts the progress of a restore from an archive: its bytes read, of its size if known.
fn archive_progress(size: Option<u64>) {
    cairn_engine::progress::meter().begin("restore", "files", None, size, &[]);
}

pub(super) fn run_restore(cli: &Cli, cfg: &Config, a: &RestoreArgs) -> Result<u8> {
    let opts = restore::RestoreOptions {
        target: a.target.clone(),
        paths: a
            .paths
            .iter()
            .map(|p| p.trim_matches('/').to_string())
            .collect(),
        overwrite: a.overwrite.parse()?,
        verify: a.verify,
    };
    if a.dry_run {
        let _lock = StateLock::acquire(&cfg.state.dir)?;
        let repo = open_repo(cfg)?;
        let lease = read_lease(cfg, &repo, "restore")?;
        return holding(&lease, || print_plan(cli, cfg, a, &repo, &opts));
    }
    let (report, from) = if let Some(src) = &a.archive {
        // A local file, or a pipe (`--archive <(curl …)`): anything there but a folder.
        let local = std::fs::metadata(src).ok().filter(|m| !m.is_dir());
        if let Some(md) = local {
            let f = std::fs::File::open(src).with_context(|| format!("opening archive {src}"))?;
            archive_progress(md.is_file().then_some(md.len()));
            (
                restore::restore_archive(std::io::BufReader::new(f), &opts)?,
                src.clone(),
            )
        } else {
            let exports = open_store(&cfg.exports, "exports", true)?;
            // A few paths of a day: only the frames that hold them, by the seek table.
            if let Ok(day) = export::DayKeys::new(src)
                && !opts.paths.is_empty()
                && opts.overwrite == restore::Overwrite::Never
                && !opts.verify
                && let Some(report) = restore::restore_day_paths(
                    exports.as_ref(),
                    &day.date,
                    &opts.paths,
                    &opts.target,
                )?
            {
                (report, day.archive)
            } else {
                let key = match export::DayKeys::new(src) {
                    Ok(day) => day.archive,
                    Err(_) => src.clone(),
                };
                let reader = cairn_engine::store::ObjectReader::open(exports.as_ref(), &key)
                    .with_context(|| {
                        format!(
                            "{src} is neither a local file nor an archive in the exports location"
                        )
                    })?;
                archive_progress(Some(reader.size()));
                (restore::restore_archive(reader, &opts)?, key)
            }
        }
    } else {
        let _lock = StateLock::acquire(&cfg.state.dir)?;
        let repo = open_repo(cfg)?;
        let lease = read_lease(cfg, &repo, "restore")?;
        holding(&lease, || restore_snapshot(cfg, a, &repo, &opts))?
    };
    crate::progress::settle();
    if cli.json {
        print_json(&serde_json::json!({ "from": from, "target": a.target, "report": report }));
    } else if !cli.quiet {
        println!(
            "restored {} files ({}), {} dirs, {} symlinks, {} hardlinks from {from}; {} left as they were{}",
            report.files,
            bytes(report.bytes),
            report.dirs,
            report.symlinks,
            report.hardlinks,
            report.unchanged,
            if report.verified > 0 {
                format!("; {} verified", report.verified)
            } else {
                String::new()
            }
        );
        for s in &report.skipped {
            println!("not restorable here: {s}");
        }
        for w in &report.warnings {
            println!("warning: {w}");
        }
    }
    Ok(exit::OK)
}

/// Restores a snapshot (the repository lease held, if one could be taken).
fn restore_snapshot(
    cfg: &Config,
    a: &RestoreArgs,
    repo: &Repository,
    opts: &restore::RestoreOptions,
) -> Result<(restore::RestoreReport, String)> {
    let (catalog, _) = Catalog::open_for(&cfg.state.dir, repo)?;
    let (id, snap) = chosen(&catalog, a)?;
    let report = restore::restore(repo, &catalog, &snap, opts).with_context(|| {
        format!(
            "restoring snapshot {} into {}",
            id.short(),
            a.target.display()
        )
    })?;
    Ok((report, format!("snapshot {}", id.short())))
}

/// The snapshot `a` names.
fn chosen(catalog: &Catalog, a: &RestoreArgs) -> Result<(cairn_engine::Id, Snapshot)> {
    Ok(match (&a.snapshot, &a.date, &a.as_of) {
        (Some(s), _, _) => catalog.resolve_snapshot(s)?,
        (_, Some(d), _) => catalog.resolve_snapshot(&parse_date(d)?)?,
        (_, _, Some(t)) => {
            let t: jiff::Timestamp = t.parse().map_err(|_| {
                cairn_engine::Error::usage(format!("--as-of {t:?} is not an RFC 3339 time"))
            })?;
            catalog.resolve_as_of(t)?
        }
        _ => catalog.resolve_snapshot("latest")?,
    })
}

/// `--dry-run`: the plan of restoring the chosen snapshot, printed; nothing is written.
fn print_plan(
    cli: &Cli,
    cfg: &Config,
    a: &RestoreArgs,
    repo: &Repository,
    opts: &restore::RestoreOptions,
) -> Result<u8> {
    let (catalog, _) = Catalog::open_for(&cfg.state.dir, repo)?;
    let (id, snap) = chosen(&catalog, a)?;
    let plan = restore::RestorePlan::new(repo, &catalog, &snap, &opts.paths)
        .with_context(|| format!("planning the restore of snapshot {}", id.short()))?;
    let s = plan.summary();
    if cli.json {
        let paths: Vec<serde_json::Value> = plan
            .paths()
            .into_iter()
            .map(|(path, kind)| serde_json::json!({ "path": path, "kind": kind.to_string() }))
            .collect();
        print_json(&serde_json::json!({
            "from": format!("snapshot {}", id.short()),
            "target": a.target,
            "plan": s,
            "paths": paths,
        }));
    } else if !cli.quiet {
        println!(
            "would restore {} files ({}), {} dirs, {} symlinks, {} hardlinks, {} special files from snapshot {} into {}",
            s.files,
            bytes(s.bytes),
            s.dirs,
            s.symlinks,
            s.hardlinks,
            s.specials,
            id.short(),
            a.target.display()
        );
    }
    Ok(exit::OK)
}
