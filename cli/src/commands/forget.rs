//! `cairn forget`: forgets the snapshots the `[retention]` policy does not keep (or the ones
//! named); prints the plan as a table and how many were forgotten. `cairn prune` runs the same
//! step.

use anyhow::{Context, Result};
use cairn_engine::catalog::Catalog;
use cairn_engine::config::Config;
use cairn_engine::forget;
use cairn_engine::lease::LeaseMode;
use cairn_engine::lock::StateLock;
use cairn_engine::repo::Repository;
use clap::Args;

use super::session::{holding, open_repo, repo_lease};
use crate::output::print_json;
use crate::{Cli, exit};

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Forget exactly these snapshots (id prefixes, dates or `latest`) instead of applying the
    /// policy; every one must exist, or nothing is forgotten.
    snapshots: Vec<String>,
    /// Print the plan (newest snapshot first) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Accept a policy that keeps no snapshot at all (every keep_* 0 and no keep_within).
    #[arg(long)]
    allow_empty: bool,
}

pub(super) fn run_forget(cli: &Cli, cfg: &Config, a: &ForgetArgs) -> Result<u8> {
    let policy = cfg.retention.policy()?;
    if a.snapshots.is_empty() {
        refuse_empty_policy(&policy, a.allow_empty)?;
    }
    let repo = open_repo(cfg)?;
    let _lock = StateLock::acquire(&cfg.state.dir)?;
    let lease = if a.dry_run {
        None
    } else {
        Some(repo_lease(cfg, &repo, LeaseMode::Shared, "forget")?)
    };
    holding(&lease, || {
        let (catalog, _) = Catalog::open_for(&cfg.state.dir, &repo)?;
        let named = a
            .snapshots
            .iter()
            .map(|sel| catalog.resolve_snapshot(sel))
            .collect::<cairn_engine::Result<Vec<_>>>()?;
        let (out, _) = forget_step(cli, cfg, a.dry_run, &policy, &repo, &catalog, &named)?;
        if cli.json {
            print_json(&out);
        }
        Ok(exit::OK)
    })
}

/// Plans (and unless `dry_run` carries out) the forgetting, prints the table, and returns the
/// JSON for `--json`.
pub(super) fn forget_step(
    cli: &Cli,
    cfg: &Config,
    dry_run: bool,
    policy: &forget::Policy,
    repo: &Repository,
    catalog: &Catalog,
    named: &[(cairn_engine::Id, cairn_engine::snapshot::Snapshot)],
) -> Result<(
    serde_json::Value,
    std::collections::HashSet<cairn_engine::Id>,
)> {
    let plan = if named.is_empty() {
        forget::plan(&catalog.snapshots()?, policy, &cfg.time_zone()?)
    } else {
        forget::plan_named(named, &cfg.time_zone()?)
    };
    if !dry_run {
        forget::forget(repo, catalog, &plan).context("forgetting snapshots")?;
    }
    let forgotten = plan.forgotten().count();
    if !cli.json && !cli.quiet {
        print!("{}", plan.table());
        let verb = if dry_run { "would forget" } else { "forgot" };
        println!(
            "{verb} {forgotten} of {} snapshots; their data stays in the store until a garbage collection",
            plan.entries.len()
        );
    }
    let ids = plan.forgotten().map(|e| e.id).collect();
    Ok((
        serde_json::json!({
            "policy": policy,
            "dry_run": dry_run,
            "plan": plan.entries,
            "forgotten": forgotten,
            "kept": plan.entries.len() - forgotten,
        }),
        ids,
    ))
}

/// A policy that keeps nothing is refused unless asked for: it would forget every snapshot.
pub(super) fn refuse_empty_policy(policy: &forget::Policy, allow_empty: bool) -> Result<()> {
    if policy.keeps_nothing() && !allow_empty {
        return Err(cairn_engine::Error::usage(
            "the retention policy keeps no snapshot (keep_daily, keep_weekly and keep_monthly are 0 and keep_within is unset); refusing to forget every snapshot without --allow-empty",
        )
        .into());
    }
    Ok(())
}
