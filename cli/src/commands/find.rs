//! `cairn find PATTERN`: the snapshots that hold paths matching a glob, one line per match (id,
//! day, size, path); exit 1 when nothing matches.

use anyhow::Result;
use cairn_engine::config::Config;
use cairn_engine::query;

use super::session::{ReadSession, read_session};
use crate::output::print_json;
use crate::{Cli, exit};

pub(super) fn run_find(cli: &Cli, cfg: &Config, pattern: &str) -> Result<u8> {
    let ReadSession {
        repo,
        catalog,
        _lock,
    } = read_session(cfg)?;
    let found = query::find(&repo, &catalog, pattern)?;
    if cli.json {
        print_json(&serde_json::to_value(&found).expect("serializes"));
    } else {
        for f in &found {
            println!(
                "{} {} {:>12} {}",
                f.snapshot.short(),
                f.date,
                f.size,
                f.path
            );
        }
    }
    Ok(if found.is_empty() {
        exit::FAILURE
    } else {
        exit::OK
    })
}
