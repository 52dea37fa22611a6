//! `cairn snapshots`: every snapshot, oldest first, as a table (id, day, time, files, size,
//! warnings), read beside a running nightly job.

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
        println!(
            "{:<10} {:<10} {:<32} {:>9} {:>10} {:>8}",
            "id", "date", "time", "files", "size", "warnings"
        );
        for (id, s) in &all {
            println!(
                "{:<10} {:<10} {:<32} {:>9} {:>10} {:>8}",
                id.short(),
                s.date,
                s.time,
                s.summary.files,
                bytes(s.summary.bytes),
                s.warnings.len()
            );
        }
    }
    Ok(exit::OK)
}
