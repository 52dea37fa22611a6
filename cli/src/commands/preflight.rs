//! `cairn preflight --role nightly|retention|offsite`: the engine's checks printed one line
//! each (`ok`, `warn`, `FAIL`), or as JSON; exit 1 when one failed. The CronJobs run it as
//! their first init container, so a misconfigured night stops there with its reason in the log
//! and its stages pushed as failed.

use anyhow::Result;
use cairn_engine::config::Config;
use cairn_engine::preflight::{self, Role, Status};
use clap::{Args, ValueEnum};

use crate::output::print_json;
use crate::{Cli, exit};

#[derive(Debug, Args)]
pub struct PreflightArgs {
    /// The job checked for: each needs other things (the share, a key that may delete, the
    /// offsite client).
    #[arg(long, value_enum, default_value = "nightly")]
    role: RoleArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    /// `cairn run`: the share, the state volume, the store and the exports, a key that need
    /// not delete.
    Nightly,
    /// `cairn exports prune` and `cairn prune`: a key that may delete.
    Retention,
    /// `cairn offsite sync`: the exports and the offsite client's session.
    Offsite,
}

pub fn run(cli: &Cli, cfg: &Config, a: &PreflightArgs) -> Result<u8> {
    let role = match a.role {
        RoleArg::Nightly => Role::Nightly,
        RoleArg::Retention => Role::Retention,
        RoleArg::Offsite => Role::Offsite,
    };
    let findings = preflight::run(cfg, role);
    let passed = preflight::passed(&findings);
    if cli.json {
        print_json(&serde_json::json!({
            "role": role,
            "passed": passed,
            "checks": findings,
        }));
    } else {
        for f in &findings {
            if cli.quiet && f.status == Status::Ok {
                continue;
            }
            let mark = match f.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("{mark} {}: {}", f.check, f.detail.replace('\n', " "));
        }
    }
    if passed {
        Ok(exit::OK)
    } else if role == Role::Offsite {
        // The offsite stage failed before its sync, with the kind of failure its session or
        // client check shows: the alert that says a person must act sees it too.
        let mut counts = std::collections::BTreeMap::new();
        for f in findings.iter().filter(|f| f.status == Status::Fail) {
            let kind = cairn_engine::offsite::failure::Failure::of(&f.detail);
            *counts.entry(kind.as_str().to_string()).or_insert(0u64) += 1;
        }
        let stage = super::offsite::failure_gauges(
            cairn_engine::metrics::Stage::new("offsite", false, jiff::Timestamp::now()),
            &counts,
        );
        cfg.metrics.sink().publish(&[stage]);
        Ok(exit::FAILURE)
    } else {
        // The alerts must see a night that never started: its stages, failed.
        super::session::publish_failed(cfg, role.stages());
        Ok(exit::FAILURE)
    }
}
