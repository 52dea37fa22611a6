//! `cairn gc`: deletes the packs no snapshot needs and repacks mostly dead ones; prints what was
//! (or with `--dry-run` would be) repacked, condemned and deleted, exit 4 when due packs were left
//! because the repository was in use. `cairn prune` shares its options and output, `cairn run`
//! its options.

use anyhow::Result;
use cairn_engine::catalog::Catalog;
use cairn_engine::config::Config;
use cairn_engine::gc;
use cairn_engine::lock::StateLock;
use clap::Args;

use super::session::open_repo;
use crate::output::{bytes, print_json};
use crate::{Cli, exit};

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Print what would be repacked, condemned and deleted, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// The gc options the configuration describes, at the present time.
pub(super) fn gc_options(cfg: &Config, dry_run: bool) -> Result<gc::GcOptions> {
    Ok(gc::GcOptions {
        grace: cfg.gc.grace()?,
        repack_dead_percent: cfg.gc.repack_dead_percent,
        now: None,
        assume_forgotten: Default::default(),
        lease_ttl: std::time::Duration::from_secs(cfg.store.lease_ttl_secs),
        dry_run,
        hook: crate::failpoint::gc_hook(),
        held: None,
    })
}

pub(super) fn run_gc(cli: &Cli, cfg: &Config, a: &GcArgs) -> Result<u8> {
    let opts = gc_options(cfg, a.dry_run)?;
    let repo = open_repo(cfg)?;
    let _lock = StateLock::acquire(&cfg.state.dir)?;
    let (catalog, _) = Catalog::open_for(&cfg.state.dir, &repo)?;
    let report = gc::gc(&repo, &catalog, &opts)?;
    crate::progress::settle();
    if cli.json {
        print_json(&serde_json::to_value(&report).expect("serializes"));
    } else {
        print_gc(cli, &report, a.dry_run);
    }
    Ok(gc_exit(&report))
}

/// Exit 4 when due packs were left because the repository was in use: the operator (or the
/// CronJob's alert) learns that nothing was freed, and why.
pub(super) fn gc_exit(report: &gc::GcReport) -> u8 {
    match &report.deferred {
        Some(why) => {
            eprintln!(
                "cairn: gc deleted {} packs and left {} due for a later gc: {why}",
                report.packs_deleted, report.packs_waiting
            );
            exit::LOCKED
        }
        None => exit::OK,
    }
}

pub(super) fn print_gc(cli: &Cli, r: &gc::GcReport, dry_run: bool) {
    if cli.quiet {
        return;
    }
    println!(
        "{} snapshots, {} trees, {} chunks live; {} packs in the store",
        r.snapshots, r.trees, r.chunks, r.packs
    );
    let (would, verb) = if dry_run { ("would ", "be ") } else { ("", "") };
    println!(
        "{would}repack {} packs into {} ({}); {would}condemn {} packs; {} condemned packs {verb}waiting for their grace; {} taken back",
        r.packs_repacked,
        r.packs_written,
        bytes(r.bytes_written),
        r.packs_condemned,
        r.packs_waiting,
        r.packs_revived
    );
    println!(
        "{would}delete {} packs, freeing {}",
        r.packs_deleted,
        bytes(r.bytes_freed)
    );
    if r.packs_damaged > 0 {
        println!(
            "{} packs with a damaged blob were left alone (cairn check --read-data names them)",
            r.packs_damaged
        );
    }
    if let Some(b) = &r.beside_backup {
        println!(
            "nothing was condemned or repacked: a backup was running ({b}); a gc that runs alone does it"
        );
    }
}
