//! `cairn prune`, the retention job: `forget` by the policy, then `gc`, under the state lock;
//! prints both steps' output and publishes the retention stage.

use anyhow::Result;
use cairn_engine::catalog::Catalog;
use cairn_engine::config::Config;
use cairn_engine::lease::LeaseMode;
use cairn_engine::lock::StateLock;
use cairn_engine::{gc, run};
use clap::Args;

use super::forget::{forget_step, refuse_empty_policy};
use super::gc::{gc_exit, gc_options, print_gc};
use super::session::{holding, open_repo, repo_lease};
use crate::Cli;
use crate::output::print_json;

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Print the plan and what gc would do, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Accept a policy that keeps no snapshot at all (every keep_* 0 and no keep_within).
    #[arg(long)]
    allow_empty: bool,
}

pub(super) fn run_prune(cli: &Cli, cfg: &Config, a: &PruneArgs) -> Result<u8> {
    let result = prune_steps(cli, cfg, a);
    // The retention stage, however the prune ended (a dry run changes nothing and publishes
    // nothing): a prune that stops at its lock or its policy failed as much as a failed gc.
    if !a.dry_run {
        let stage =
            cairn_engine::metrics::Stage::new("retention", result.is_ok(), jiff::Timestamp::now());
        let stage = match &result {
            Ok((forgot, g)) => {
                run::prune_gauges(stage, forgot["forgotten"].as_u64().unwrap_or(0), Some(g))
            }
            Err(_) => stage,
        };
        cfg.metrics.sink().publish(&[stage]);
    }
    let (forgot, report) = result?;
    if cli.json {
        print_json(&serde_json::json!({ "forget": forgot, "gc": report }));
    } else {
        print_gc(cli, &report, a.dry_run);
    }
    Ok(gc_exit(&report))
}

/// Forgets, then collects garbage, under the state lock: what `cairn prune` did (the forget
/// step's JSON and the gc's report).
fn prune_steps(
    cli: &Cli,
    cfg: &Config,
    a: &PruneArgs,
) -> Result<(serde_json::Value, gc::GcReport)> {
    let policy = cfg.retention.policy()?;
    refuse_empty_policy(&policy, a.allow_empty)?;
    let mut opts = gc_options(cfg, a.dry_run)?;
    let repo = open_repo(cfg)?;
    let _lock = StateLock::acquire(&cfg.state.dir)?;
    let (catalog, _) = Catalog::open_for(&cfg.state.dir, &repo)?;
    let (forgot, forgotten) = {
        let lease = if a.dry_run {
            None
        } else {
            Some(repo_lease(cfg, &repo, LeaseMode::Shared, "prune")?)
        };
        holding(&lease, || {
            forget_step(cli, cfg, a.dry_run, &policy, &repo, &catalog, &[])
        })?
    };
    if a.dry_run {
        // What gc would find once the plan's snapshots are gone.
        opts.assume_forgotten = forgotten;
    }
    let report = gc::gc(&repo, &catalog, &opts)?;
    crate::progress::settle();
    Ok((forgot, report))
}
