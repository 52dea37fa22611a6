//! `cairn run`, the nightly job: backup, export, the exports' retention and (when configured) a
//! prune, under one lease; publishes every stage's metrics whatever happened and prints what each
//! step did, or the run report as JSON. The exit code is the report's.

use std::sync::Arc;

use anyhow::Result;
use cairn_engine::backup::{BackupOptions, Progress};
use cairn_engine::catalog::Catalog;
use cairn_engine::lease::{self, LeaseMode};
use cairn_engine::lock::StateLock;
use cairn_engine::repo::Repository;
use cairn_engine::run;
use cairn_engine::{config::Config, setup::open_store};
use clap::Args;

use super::backup::backup_options;
use super::gc::gc_options;
use super::session::publish_failed;
use crate::Cli;
use crate::output::{bytes, print_json};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The day of the run (YYYY-MM-DD); default: today in the configured time zone.
    #[arg(long, value_name = "YYYY-MM-DD")]
    date: Option<String>,
    /// Replace a complete archive of another snapshot for the same day.
    #[arg(long)]
    force: bool,
    /// Do not compare inode numbers in the files cache.
    #[arg(long)]
    ignore_inode: bool,
    /// Do not compare ctimes in the files cache.
    #[arg(long)]
    ignore_ctime: bool,
}

/// What a nightly run needs before it starts: the exports location, how it prunes, how it backs
/// up (the day checked).
type NightlyInputs = (
    Arc<dyn cairn_engine::store::Store>,
    Option<run::PruneOptions>,
    BackupOptions,
);

fn nightly_inputs(cfg: &Config, a: &RunArgs) -> Result<NightlyInputs> {
    // The exports location first: from there on every failure ends up in the run report.
    let exports = open_store(&cfg.exports, "exports", true)?;
    let prune = if cfg.retention.prune_in_run {
        let policy = cfg.retention.policy()?;
        if policy.keeps_nothing() {
            return Err(cairn_engine::Error::config(
                "retention.prune_in_run is set but the retention policy keeps no snapshot; a run never forgets everything",
            )
            .into());
        }
        Some(run::PruneOptions {
            policy,
            time_zone: cfg.time_zone()?,
            gc: gc_options(cfg, false)?,
        })
    } else {
        None
    };
    let backup = backup_options(cfg, a.date.as_deref(), a.ignore_inode, a.ignore_ctime)?;
    Ok((exports, prune, backup))
}

pub(super) fn run_nightly(cli: &Cli, cfg: &Config, a: &RunArgs) -> Result<u8> {
    // The run publishes the retention stage only when it does retention itself; otherwise the
    // retention job publishes it, and the run must not overwrite it.
    let with_retention = cfg.exports.keep_daily > 0 || cfg.retention.prune_in_run;
    let run_stages: &[&'static str] = if with_retention {
        &["backup", "export", "retention"]
    } else {
        &["backup", "export"]
    };
    let (exports, prune, backup) = match nightly_inputs(cfg, a) {
        Ok(inputs) => inputs,
        Err(e) => {
            publish_failed(cfg, run_stages);
            return Err(e);
        }
    };
    let opts = run::RunOptions {
        backup,
        exports: exports.as_ref(),
        keep_daily: cfg.exports.keep_daily as usize,
        force: a.force,
        stale_after: std::time::Duration::from_secs(cfg.backup.stale_temp_secs),
        prune,
        export_hook: crate::failpoint::export_hook(),
    };
    let progress = Progress::default();
    let mut lock = None;
    let open = || {
        lock = Some(StateLock::acquire(&cfg.state.dir)?);
        let store = open_store(&cfg.store, "store", false)?;
        let repo = Repository::open(store)?;
        let lease = lease::repository(
            repo.store().clone(),
            LeaseMode::Writer,
            &format!("nightly run {}", opts.backup.date),
            std::time::Duration::from_secs(cfg.store.lease_ttl_secs),
            lease::EXCLUSIVE_PATIENCE,
        )?;
        let lease = Arc::new(lease);
        // The sync, too, under the lease: a gc must not delete what it finds.
        let (catalog, sync) = lease.hold(|| Catalog::open_for(&cfg.state.dir, &repo))?;
        Ok((repo, catalog, sync, Some(lease)))
    };
    let result = run::nightly(open, &opts, &progress);
    crate::progress::settle();
    drop(lock);
    // Published whatever happened, also when not even the run report could be written.
    match &result {
        Ok(report) => {
            cfg.metrics.sink().publish(&run::stages(
                report,
                with_retention,
                &cfg.source.folders,
                cfg.exports.keep_daily as usize,
                cfg.exports.capacity_bytes,
            ));
        }
        Err(_) => publish_failed(cfg, run_stages),
    }
    let report = result?;
    if cli.json {
        print_json(&serde_json::to_value(&report).expect("reports serialize"));
    } else if !cli.quiet {
        if let Some(b) = &report.backup {
            println!(
                "snapshot {} committed: {} files, {} new",
                b.snapshot.short(),
                b.summary.files,
                bytes(b.summary.new_bytes)
            );
            for w in &b.warnings {
                println!("warning: {} ({}): {}", w.path, w.kind, w.message);
            }
        }
        if let Some(e) = &report.export {
            println!(
                "{} {} ({}), sha256 {}",
                if e.written { "wrote" } else { "kept" },
                e.archive,
                bytes(e.size),
                e.sha256
            );
        }
        if !report.deleted_days.is_empty() {
            println!("retention: deleted {}", report.deleted_days.join(", "));
        }
        if let Some(p) = &report.prune {
            match (&p.gc, &p.error) {
                (_, Some(e)) => println!("prune failed (the backup and the archive stand): {e}"),
                (Some(g), None) => println!(
                    "pruned: {} snapshots forgotten, {} packs condemned, {} packs deleted ({} freed){}",
                    p.snapshots_forgotten,
                    g.packs_condemned,
                    g.packs_deleted,
                    bytes(g.bytes_freed),
                    match &g.deferred {
                        Some(why) => format!("; deletion deferred: {why}"),
                        None => String::new(),
                    }
                ),
                (None, None) => {}
            }
        }
    }
    if let Some(err) = &report.error {
        eprintln!("cairn: run {} failed: {err}", report.date);
    }
    Ok(report.exit_code)
}
