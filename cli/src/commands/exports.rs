//! `cairn exports list|verify|cat|prune`: the daily archives in the exports location; prints a
//! table of the days, a verified archive's figures, one file's bytes on stdout, or the days
//! deleted (publishing the retention stage).

use anyhow::{Context, Result};
use cairn_engine::{config::Config, setup::open_store};
use cairn_engine::{export, retention, run};
use clap::Subcommand;

use crate::output::{bytes, print_json};
use crate::{Cli, exit};

#[derive(Debug, Subcommand)]
pub enum ExportsCommand {
    /// List the days in the exports location and whether each is complete.
    List,
    /// Re-read a day's archive: sha256, every zstd frame, every tar entry against the manifest.
    Verify {
        /// The day (YYYY-MM-DD).
        date: String,
    },
    /// Write one file of a day's archive to stdout, reading only the frames that hold it.
    Cat {
        /// The day (YYYY-MM-DD).
        date: String,
        /// The file's path in the archive, e.g. `notetaking/todo.md` (any bytes: names need not
        /// be UTF-8).
        path: std::ffi::OsString,
    },
    /// Delete all but the newest daily archives (for a separate key that may delete).
    Prune {
        /// Days to keep; default: exports.keep_daily.
        #[arg(long)]
        keep: Option<usize>,
    },
}

pub(super) fn exports_list(cli: &Cli, cfg: &Config) -> Result<u8> {
    let exports = open_store(&cfg.exports, "exports", true)?;
    let days = export::list_days_with_status(exports.as_ref())?;
    if cli.json {
        // Each day with its state spelled out, as the table shows it.
        let days: Vec<serde_json::Value> = days
            .iter()
            .map(|d| {
                let mut v = serde_json::to_value(d).expect("serializes");
                v["state"] = d.state().into();
                v
            })
            .collect();
        print_json(&serde_json::Value::Array(days));
    } else {
        println!("{:<10} {:<14} {:>10}", "date", "status", "size");
        for d in &days {
            let size = d.archive_size.map(bytes).unwrap_or_else(|| "-".into());
            println!("{:<10} {:<14} {:>10}", d.date, d.state(), size);
        }
    }
    Ok(exit::OK)
}

pub(super) fn exports_cat(cfg: &Config, date: &str, path: &std::ffi::OsStr) -> Result<u8> {
    use std::os::unix::ffi::OsStrExt;
    let exports = open_store(&cfg.exports, "exports", false)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut path = path.as_bytes();
    while let Some(rest) = path.strip_prefix(b"/") {
        path = rest;
    }
    let route = export::extract::extract(exports.as_ref(), date, path, &mut out)?;
    std::io::Write::flush(&mut out).context("writing to stdout")?;
    tracing::info!(?route, "file read from the archive");
    Ok(exit::OK)
}

pub(super) fn exports_prune(cli: &Cli, cfg: &Config, keep: Option<usize>) -> Result<u8> {
    let keep = keep.unwrap_or(cfg.exports.keep_daily as usize);
    // Every way this fails is the retention stage's failure, the refusals included.
    let result = (|| -> Result<(Vec<String>, usize)> {
        if keep == 0 {
            return Err(cairn_engine::Error::usage("refusing to keep 0 daily archives").into());
        }
        let exports = open_store(&cfg.exports, "exports", true)?;
        // Days after today (a typo in --date, a pod with a wrong clock) are never counted or
        // deleted.
        let today = cfg.date_of(jiff::Timestamp::now())?;
        let deleted = retention::prune_for(
            exports.as_ref(),
            keep,
            retention::Retention::Manual(Some(&today)),
        )?;
        let kept = export::list_days_with_status(exports.as_ref())?
            .iter()
            .filter(|d| d.counts())
            .count();
        Ok((deleted, kept))
    })();
    let stage =
        cairn_engine::metrics::Stage::new("retention", result.is_ok(), jiff::Timestamp::now());
    let stage = match &result {
        Ok((d, kept)) => {
            run::kept_days_gauges(run::deleted_days_gauge(stage, d.len()), *kept, keep)
        }
        Err(_) => stage,
    };
    cfg.metrics.sink().publish(&[stage]);
    let (deleted, _) = result?;
    if cli.json {
        print_json(&serde_json::json!({ "deleted": deleted, "kept": keep }));
    } else if !cli.quiet {
        println!(
            "deleted {} days{}",
            deleted.len(),
            if deleted.is_empty() {
                String::new()
            } else {
                format!(": {}", deleted.join(", "))
            }
        );
    }
    Ok(exit::OK)
}

pub(super) fn exports_verify(cli: &Cli, cfg: &Config, date: &str) -> Result<u8> {
    let exports = open_store(&cfg.exports, "exports", true)?;
    let report = export::verify(exports.as_ref(), date)
        .with_context(|| format!("verifying the archive of {date}"))?;
    crate::progress::settle();
    if cli.json {
        print_json(&serde_json::to_value(&report).expect("serializes"));
    } else if !cli.quiet {
        println!(
            "{}: ok, {} entries, {}, sha256 {}",
            report.date,
            report.entries,
            bytes(report.size),
            report.sha256
        );
    }
    Ok(exit::OK)
}
