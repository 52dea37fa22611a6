//! `cairn offsite sync|status|login`: the offsite stage's commands, their metrics and output.

use std::time::Duration;

use anyhow::Result;
use cairn_engine::metrics::Stage;
use cairn_engine::offsite::failure::Failure;
use cairn_engine::offsite::{self as engine, process::redact};
use cairn_engine::{
    config::{Config, OffsiteKind},
    setup::open_store,
};
use clap::Subcommand;

use super::session::publish_failed;
use crate::output::{bytes, print_json};
use crate::{Cli, exit};

#[derive(Debug, Subcommand)]
pub enum OffsiteCommand {
    /// Copy every retained day not yet on the remote, newest first, and check it there (exit 5
    /// when some day failed or was left for the next run).
    Sync {
        /// Print the plan (each day's action, and what keep_daily would delete on the remote)
        /// and upload, delete and write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Each day in the exports and on the remote, as last checked.
    Status,
    /// The one-time Proton login (uploader = "proton-drive"): prints the sign-in URL to open on
    /// any device, waits for the sign-in, keeps only the client's session (0600) in
    /// offsite.session_dir and lists the remote with it.
    Login {
        /// How long to wait for the sign-in.
        #[arg(long, default_value_t = 10)]
        timeout_mins: u64,
    },
}

/// The offsite stage's metrics of a finished sync: its figures, the failures by kind, the
/// bytes on the remote against its quota, and the client's version as a label.
fn stage(cfg: &Config, r: &engine::SyncReport, now: jiff::Timestamp) -> Stage {
    let mut st = Stage::new("offsite", r.exit_code == exit::OK, now)
        .gauge(
            "uploaded_archives",
            "Days uploaded by this run.",
            r.uploaded.len() as f64,
        )
        .gauge(
            "uploaded_bytes",
            "Bytes uploaded by this run.",
            r.bytes as f64,
        )
        .gauge(
            "pending_archives",
            "Days left for the next run.",
            r.pending.len() as f64,
        )
        .gauge(
            "failed_archives",
            "Days that failed in this run.",
            r.failed.len() as f64,
        )
        .gauge(
            "remote_bytes",
            "Bytes of the days on the remote, as uploaded and checked.",
            r.remote_bytes as f64,
        );
    st = failure_gauges(st, &r.failures);
    if let Some(q) = cfg.offsite.quota_bytes {
        st = st.gauge(
            "quota_bytes",
            "The remote's storage quota (offsite.quota_bytes).",
            q as f64,
        );
    }
    if let Some(c) = &r.client {
        st = st.labeled(
            "client_info",
            "The offsite client and its version, as it says them (the value is 1).",
            ("client", c),
            1.0,
        );
    }
    st
}

/// `cairn_offsite_failures{reason}` for every kind, 0 where none occurred: a fixed failure's
/// series must fall back to 0.
pub fn failure_gauges(mut st: Stage, counts: &std::collections::BTreeMap<String, u64>) -> Stage {
    for kind in Failure::ALL {
        st = st.labeled(
            "failures",
            "Days that failed in this run, by kind of failure.",
            ("reason", kind.as_str()),
            counts.get(kind.as_str()).copied().unwrap_or(0) as f64,
        );
    }
    st
}

pub fn sync(cli: &Cli, cfg: &Config, dry_run: bool) -> Result<u8> {
    // A stage that cannot even start is a failure the alerts must see.
    let opened = cfg.offsite.uploader().and_then(|up| {
        let exports = open_store(&cfg.exports, "exports", false)?;
        Ok((up, exports, cfg.date_of(jiff::Timestamp::now())?))
    });
    let (up, exports, date) = match opened {
        Ok(o) => o,
        Err(e) => {
            publish_failed(cfg, &["offsite"]);
            return Err(e.into());
        }
    };
    let o = &cfg.offsite;
    let opts = engine::SyncOptions {
        date,
        timeout: Duration::from_secs(o.timeout_secs),
        budget: Duration::from_secs(o.budget_secs),
        attempts: o.attempts,
        retry_wait: Duration::from_secs(o.retry_wait_secs),
        keep_daily: o.keep_daily as usize,
        scratch: o.scratch_dir.clone(),
    };
    if dry_run {
        let plan = engine::plan(exports.as_ref(), up.as_ref(), &opts)
            .map_err(|e| cairn_engine::Error::new(e.kind(), redact(&e.to_string())))?;
        if cli.json {
            print_json(&serde_json::to_value(&plan).expect("serializes"));
        } else if !cli.quiet {
            println!(
                "offsite {}: would upload {}; {} already there; {} left for the next run; would delete {} on the remote",
                up.describe(),
                list_or_none(&plan.uploads()),
                plan.up_to_date().len(),
                plan.pending().len(),
                list_or_none(&plan.deletions())
            );
        }
        return Ok(exit::OK);
    }
    // An error may quote a client: scrubbed like its output.
    let result = engine::sync(exports.as_ref(), up.as_ref(), &opts)
        .map_err(|e| cairn_engine::Error::new(e.kind(), redact(&e.to_string())));
    crate::progress::settle();
    let now = jiff::Timestamp::now();
    let st = match &result {
        Ok(r) => stage(cfg, r, now),
        Err(_) => Stage::new("offsite", false, now),
    };
    cfg.metrics.sink().publish(&[st]);
    let report = result?;
    if cli.json {
        print_json(&serde_json::to_value(&report).expect("serializes"));
    } else if !cli.quiet {
        println!(
            "offsite {}: {} uploaded ({}), {} already there, {} failed, {} left for the next run; {} on the remote",
            report.remote,
            report.uploaded.len(),
            bytes(report.bytes),
            report.up_to_date.len(),
            report.failed.len(),
            report.pending.len(),
            bytes(report.remote_bytes),
        );
        for f in &report.failed {
            println!(
                "failed {} ({}): {}; fix: {}",
                f.date,
                f.kind.as_str(),
                f.reason,
                f.fix
            );
        }
        if !report.deleted_remote.is_empty() {
            println!(
                "deleted on the remote: {}",
                report.deleted_remote.join(", ")
            );
        }
        for w in &report.warnings {
            println!("warning: {w}");
        }
    }
    Ok(report.exit_code)
}

pub fn status(cli: &Cli, cfg: &Config) -> Result<u8> {
    let exports = open_store(&cfg.exports, "exports", false)?;
    let days = engine::overview(exports.as_ref())?;
    let statuses = engine::status::load_all(exports.as_ref())?;
    let remote = engine::remote_bytes(&statuses);
    // The client of the newest status that names one: what the last sync ran.
    let client = statuses.values().rev().find_map(|s| s.client.clone());
    if cli.json {
        print_json(&serde_json::json!({
            "days": days,
            "remote_bytes": remote,
            "quota_bytes": cfg.offsite.quota_bytes,
            "client": client,
        }));
        return Ok(exit::OK);
    }
    println!(
        "client: {}; on the remote: {}{}",
        client
            .as_deref()
            .unwrap_or("unknown (no sync has recorded it)"),
        bytes(remote),
        cfg.offsite.quota_bytes.map_or(String::new(), |q| format!(
            " of {} ({:.0}%)",
            bytes(q),
            remote as f64 * 100.0 / q.max(1) as f64
        ))
    );
    // `by`: how the remote copy was last checked, `sha256` or `size` (the remote gives no hash).
    println!(
        "{:<10}  {:<14} {:>10}  {:<9} {:<20}  {:<6}  reason",
        "date", "exports", "size", "offsite", "checked", "by"
    );
    for d in &days {
        let (state, when, by, reason) = match &d.offsite {
            Some(o) => (
                o.state.as_str(),
                o.uploaded.as_deref().unwrap_or("-"),
                o.checked.map_or("-", |c| c.as_str()),
                match (o.failure, o.reason.as_deref()) {
                    (Some(k), Some(r)) => format!("{} ({r}); fix: {}", k.as_str(), k.fix()),
                    (None, Some(r)) => r.to_string(),
                    _ => String::new(),
                },
            ),
            None => ("pending", "-", "-", String::new()),
        };
        println!(
            "{:<10}  {:<14} {:>10}  {:<9} {:<20}  {:<6}  {}",
            d.date,
            d.exports_state,
            d.archive_size.map(bytes).unwrap_or_else(|| "-".into()),
            state,
            when.get(..19).unwrap_or(when),
            by,
            reason
        );
    }
    Ok(exit::OK)
}

pub fn login(cli: &Cli, cfg: &Config, timeout_mins: u64) -> Result<u8> {
    let o = &cfg.offsite;
    if o.uploader != Some(OffsiteKind::ProtonDrive) {
        return Err(cairn_engine::Error::config(
            "cairn offsite login is for offsite.uploader = \"proton-drive\"; with rclone, run `rclone config` (docs/OPERATIONS.md, The Proton login)",
        )
        .into());
    }
    let client = engine::proton::ProtonDrive::new(
        o.proton_drive.clone(),
        o.remote.clone(),
        o.session_dir.clone(),
    );
    let mut out = std::io::stdout();
    let days = client
        .login(Duration::from_secs(timeout_mins.max(1) * 60), &mut out)
        .map_err(|e| cairn_engine::Error::new(e.kind(), redact(&e.to_string())))?;
    if cli.json {
        print_json(&serde_json::json!({ "session": "ok", "remote": o.remote, "days": days }));
    } else if !cli.quiet {
        println!(
            "session ok: {} listed with it ({days} days there); it is kept in {} (0600), never the password",
            o.remote,
            o.session_dir.join(engine::proton::SESSION_FILE).display()
        );
    }
    Ok(exit::OK)
}

/// Dates for a line of text: comma-separated, or "none".
fn list_or_none(dates: &[String]) -> String {
    if dates.is_empty() {
        "none".into()
    } else {
        dates.join(", ")
    }
}
