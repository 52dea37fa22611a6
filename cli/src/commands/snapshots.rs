//! `cairn snapshots`: every snapshot, oldest first, as a table (id, day, time in the configured
//! time zone to the second, files, size, warnings; `--json` keeps RFC 3339 with nanoseconds),
//! read beside a running nightly job.

use anyhow::Result;
use cairn_engine::config::Config;

use super::session::{ReadSession, read_session};
use crate::output::{bytes, print_json};
use crate::{Cli, exit};

pub(super) fn snapshots(cli: &Cli, cfg: &Config) -> Result<u8> {
    let ReadSession {
        repo: _,
        catalog,
        _lock,
    } = read_session(cfg)?;
    let all = catalog.snapshots()?;
    if cli.json {
        let v: Vec<_> = all
            .iter()
            .map(|(id, s)| serde_json::json!({ "id": id, "snapshot": s }))
            .collect();
        print_json(&serde_json::Value::Array(v));
    } else {
        let tz = cfg.time_zone()?;
        println!(
            "{:<10} {:<10} {:<19} {:>9} {:>10} {:>8}",
            "id", "date", "time", "files", "size", "warnings"
        );
        for (id, s) in &all {
            println!(
                "{:<10} {:<10} {:<19} {:>9} {:>10} {:>8}",
                id.short(),
                s.date,
                local_time(&s.time, &tz),
                s.summary.files,
                bytes(s.summary.bytes),
                s.warnings.len()
            );
        }
    }
    Ok(exit::OK)
}

/// `2026-12-07 07:08:40`: a snapshot's time in `tz`, to the second; as stored if it does not
/// parse (it is checked when the snapshot is read, so only a future format would get here).
fn local_time(time: &str, tz: &jiff::tz::TimeZone) -> String {
    match time.parse::<jiff::Timestamp>() {
        Ok(t) => t
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => time.to_string(),
    }
}
