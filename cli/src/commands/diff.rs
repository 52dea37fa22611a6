//! `cairn diff A B`: the paths that changed from snapshot A to B, one line each with its mark
//! (`+`, `-`, `M`, `T`, `U`), read beside a running nightly job.

use anyhow::Result;
use cairn_engine::config::Config;
use cairn_engine::query;

use super::session::{ReadSession, read_session};
use crate::output::print_json;
use crate::{Cli, exit};

pub(super) fn run_diff(cli: &Cli, cfg: &Config, a: &str, b: &str) -> Result<u8> {
    let ReadSession {
        repo,
        catalog,
        _lock,
    } = read_session(cfg)?;
    let (_, sa) = catalog.resolve_snapshot(a)?;
    let (_, sb) = catalog.resolve_snapshot(b)?;
    let changes = query::diff(&repo, &catalog, &sa.root, &sb.root)?;
    if cli.json {
        print_json(&serde_json::to_value(&changes).expect("serializes"));
    } else {
        for c in &changes {
            println!("{} {}", c.change, c.path);
        }
    }
    Ok(exit::OK)
}
