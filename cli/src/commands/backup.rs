//! `cairn backup`: backs up the configured folders and commits a snapshot; prints the snapshot's
//! summary line and its warnings (exit 3 when there are any), or the summary as JSON.

use anyhow::{Context, Result};
use cairn_engine::backup::{self, BackupOptions, Progress};
use cairn_engine::catalog::Catalog;
use cairn_engine::config::Config;
use cairn_engine::lease::LeaseMode;
use cairn_engine::lock::StateLock;
use clap::Args;

use super::session::{day_of_run, holding, open_repo, repo_lease};
use crate::output::{bytes, print_json};
use crate::{Cli, exit};

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Do not compare inode numbers in the files cache.
    #[arg(long)]
    ignore_inode: bool,
    /// Do not compare ctimes in the files cache.
    #[arg(long)]
    ignore_ctime: bool,
    /// The day the snapshot belongs to (YYYY-MM-DD); default: today in the configured time zone.
    #[arg(long, value_name = "YYYY-MM-DD")]
    date: Option<String>,
}

pub(super) fn backup_options(
    cfg: &Config,
    date: Option<&str>,
    ignore_inode: bool,
    ignore_ctime: bool,
) -> Result<BackupOptions> {
    let time = jiff::Timestamp::now();
    let date = day_of_run(cfg, date, time)?;
    Ok(BackupOptions {
        source_root: cfg.source.root.clone(),
        folders: cfg.source.folders.clone(),
        optional_folders: cfg.source.optional_folders.clone(),
        excludes: cfg.source.exclude.clone(),
        one_file_system: cfg.source.one_file_system,
        ignore_inode: ignore_inode || cfg.backup.ignore_inode,
        ignore_ctime: ignore_ctime || cfg.backup.ignore_ctime,
        compression: cfg.backup.compression,
        time,
        date,
        hook: crate::failpoint::backup_hook(),
        lease: None,
    })
}

fn print_backup(cli: &Cli, out: &backup::BackupOutcome) {
    let s = &out.snapshot.summary;
    if cli.quiet {
        return;
    }
    println!(
        "snapshot {} committed: {} files, {} in all, {} read, {} new ({} stored in {} packs), {:.1}s",
        out.id.short(),
        s.files,
        bytes(s.bytes),
        bytes(s.bytes_read),
        bytes(s.new_bytes),
        bytes(s.stored_bytes),
        s.packs,
        s.duration_ms as f64 / 1000.0
    );
    for w in &out.snapshot.warnings {
        println!("warning: {} ({}): {}", w.path, w.kind, w.message);
    }
}

pub(super) fn run_backup(cli: &Cli, cfg: &Config, a: &BackupArgs) -> Result<u8> {
    let _lock = StateLock::acquire(&cfg.state.dir)?;
    let repo = open_repo(cfg)?;
    let mut opts = backup_options(cfg, a.date.as_deref(), a.ignore_inode, a.ignore_ctime)?;
    let lease = Some(repo_lease(
        cfg,
        &repo,
        LeaseMode::Writer,
        &format!("backup {}", opts.date),
    )?);
    opts.lease = lease.clone();
    let progress = Progress::default();
    let result = holding(&lease, || {
        let (catalog, sync) = Catalog::open_for(&cfg.state.dir, &repo)?;
        backup::backup(&repo, &catalog, sync, &opts, &progress)
    });
    crate::progress::settle();
    // Every failure commits nothing, except a snapshot written after the lease was lost that
    // could not be withdrawn, whose error says so.
    let out = result.context("backup failed")?;
    let code = if out.snapshot.warnings.is_empty() {
        exit::OK
    } else {
        exit::WARNINGS
    };
    if cli.json {
        print_json(&serde_json::json!({
            "snapshot": out.id,
            "date": out.snapshot.date,
            "summary": out.snapshot.summary,
            "warnings": out.snapshot.warnings,
            "catalog_rebuilt": out.sync.rebuilt,
            "exit_code": code,
        }));
    } else {
        print_backup(cli, &out);
    }
    Ok(code)
}
