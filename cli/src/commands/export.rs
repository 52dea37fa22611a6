//! `cairn export`: writes the daily archive of a snapshot to the exports location (archive,
//! `.sha256`, manifest); prints the archive's name, size, entries and sha256.

use anyhow::{Context, Result};
use cairn_engine::catalog::Catalog;
use cairn_engine::export;
use cairn_engine::lock::StateLock;
use cairn_engine::repo::Repository;
use cairn_engine::{config::Config, setup::open_store};
use clap::Args;

use super::session::{day_of_run, holding, open_repo, read_lease};
use crate::output::{bytes, print_json};
use crate::{Cli, exit};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The day of the archive (YYYY-MM-DD); default: the snapshot's day, or today.
    #[arg(long, value_name = "YYYY-MM-DD")]
    date: Option<String>,
    /// The snapshot to export (`latest`, a date or an id prefix); default: the newest snapshot
    /// of the day.
    #[arg(long, value_name = "SNAPSHOT")]
    snapshot: Option<String>,
    /// Replace a complete archive of another snapshot for the same day.
    #[arg(long)]
    force: bool,
}

pub(super) fn run_export(cli: &Cli, cfg: &Config, a: &ExportArgs) -> Result<u8> {
    let _lock = StateLock::acquire(&cfg.state.dir)?;
    let repo = open_repo(cfg)?;
    // The archive goes to the exports location: a store key that may only read will do.
    let lease = read_lease(cfg, &repo, "export")?;
    holding(&lease, || export_under_lease(cli, cfg, a, &repo))
}

fn export_under_lease(cli: &Cli, cfg: &Config, a: &ExportArgs, repo: &Repository) -> Result<u8> {
    let repo = repo.clone();
    let (catalog, _) = Catalog::open_for(&cfg.state.dir, &repo)?;
    let date = a
        .date
        .as_deref()
        .map(|d| day_of_run(cfg, Some(d), jiff::Timestamp::now()))
        .transpose()?;
    let (id, snap) = match (&a.snapshot, &date) {
        (Some(sel), _) => catalog.resolve_snapshot(sel)?,
        (None, Some(d)) => catalog.resolve_snapshot(d)?,
        (None, None) => catalog.resolve_snapshot(&cfg.date_of(jiff::Timestamp::now())?)?,
    };
    let date = date.unwrap_or_else(|| snap.date.clone());
    let exports = open_store(&cfg.exports, "exports", true)?;
    let opts = export::ExportOptions {
        date,
        level: cfg.backup.compression,
        force: a.force,
        hook: crate::failpoint::export_hook(),
    };
    let published = export::export(&repo, &catalog, exports.as_ref(), (&id, &snap), &opts)
        .with_context(|| format!("exporting snapshot {} as {}", id.short(), opts.date))?;
    crate::progress::settle();
    let m = published.manifest();
    let reused = match &published {
        export::Published::Written(_, r) => Some(r),
        export::Published::Unchanged(_) => None,
    };
    let written = reused.is_some();
    if cli.json {
        print_json(&serde_json::json!({
            "date": m.date, "snapshot": m.snapshot, "archive": m.archive, "entries": m.entry_count,
            "skipped": m.skipped.len(), "written": written, "reused": reused,
            "checked_frames": reused.map(|r| r.checked_frames),
        }));
    } else if !cli.quiet {
        println!(
            "{} {}: {} ({} entries) sha256 {}",
            if written {
                "wrote"
            } else {
                "already complete:"
            },
            m.archive.name,
            bytes(m.archive.size),
            m.entry_count,
            m.archive.sha256
        );
    }
    Ok(exit::OK)
}
