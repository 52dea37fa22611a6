//! `cairn check`: the repository's structure and, with `--read-data`, its data; prints the counts,
//! each problem with the snapshots and paths it affects, and what was repaired (exit 1 on a
//! problem).

use anyhow::Result;
use cairn_engine::catalog::Catalog;
use cairn_engine::check;
use cairn_engine::config::Config;
use cairn_engine::lock::StateLock;
use clap::Args;

use super::session::{holding, open_repo, read_lease};
use crate::output::print_json;
use crate::{Cli, exit};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Download every pack and verify every blob.
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Verify a subset of packs: N/M (part N of M) or P% (by pack id, the same packs each time).
    #[arg(long, value_name = "N/M|P%")]
    read_data_subset: Option<String>,
    /// Put back damaged snapshot objects from the catalog's intact copy, or move them aside to
    /// quarantine/snapshots/ (deletes from the store: needs a key that may delete).
    #[arg(long)]
    repair: bool,
    /// Print the plan (packs in the store, damage already known, the packs and bytes that would
    /// be read) and read nothing.
    #[arg(long, conflicts_with = "repair")]
    dry_run: bool,
}

pub(super) fn run_check(cli: &Cli, cfg: &Config, a: &CheckArgs) -> Result<u8> {
    let read = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => s.parse()?,
        (None, true) => check::ReadData::All,
        (None, false) => check::ReadData::None,
    };
    let _lock = StateLock::acquire(&cfg.state.dir)?;
    let repo = open_repo(cfg)?;
    // A shared lease where the key may write: a gc then does not delete packs under the check
    // (which would report them missing); a read-only key checks without one.
    let lease = read_lease(cfg, &repo, "check")?;
    if a.dry_run {
        let plan = holding(&lease, || -> Result<check::CheckPlanSummary> {
            let (catalog, sync) = Catalog::open_for(&cfg.state.dir, &repo)?;
            Ok(check::CheckPlan::new(&repo, &catalog, &sync, read)?.summary())
        })?;
        if cli.json {
            print_json(&serde_json::json!({ "plan": plan }));
        } else if !cli.quiet {
            println!(
                "would read {} of {} packs ({}); {} packs already known damaged or gone",
                plan.packs_to_read,
                plan.packs,
                crate::output::bytes(plan.bytes_to_read),
                plan.packs_known_damaged
            );
        }
        return Ok(exit::OK);
    }
    let report = holding(&lease, || -> Result<check::CheckReport> {
        let (catalog, sync) = Catalog::open_for(&cfg.state.dir, &repo)?;
        Ok(check::check(&repo, &catalog, &sync, read, a.repair)?)
    })?;
    crate::progress::settle();
    if cli.json {
        print_json(&serde_json::to_value(&report).expect("serializes"));
    } else if !cli.quiet {
        println!(
            "{} snapshots, {} packs ({} read), {} trees: {}",
            report.snapshots,
            report.packs,
            report.packs_read,
            report.trees,
            if report.problems.is_empty() {
                "no problems".to_string()
            } else {
                format!("{} problems", report.problems.len())
            }
        );
        for r in &report.repaired {
            println!("repaired: {r}");
        }
        if report.healed > 0 {
            println!(
                "{} damaged blobs have good copies in other packs (healed)",
                report.healed
            );
        }
        for p in &report.problems {
            println!("{}: {} — {}", p.kind, p.object, p.detail);
            for x in &p.affected {
                println!("    snapshot {} {}", x.snapshot, x.path);
            }
            if p.affected_count > p.affected.len() {
                println!(
                    "    … and {} more paths",
                    p.affected_count - p.affected.len()
                );
            }
        }
    }
    Ok(if report.problems.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    })
}
