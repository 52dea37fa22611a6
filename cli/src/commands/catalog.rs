//! `cairn catalog rebuild`: throws the local catalog away and rebuilds it from the store; prints
//! its counts and any unreadable packs (exit 1 when there are).

use anyhow::Result;
use cairn_engine::catalog::Catalog;
use cairn_engine::config::Config;
use cairn_engine::lock::StateLock;
use clap::Subcommand;

use super::session::open_repo;
use crate::output::print_json;
use crate::{Cli, exit};

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Throw the catalog away and rebuild it from the store.
    Rebuild,
}

pub(super) fn rebuild(cli: &Cli, cfg: &Config) -> Result<u8> {
    let _lock = StateLock::acquire(&cfg.state.dir)?;
    let repo = open_repo(cfg)?;
    let (catalog, report) = Catalog::rebuild(&cfg.state.dir, &repo)?;
    let (packs, chunks) = catalog.counts()?;
    if cli.json {
        print_json(&serde_json::json!({
            "packs": packs, "chunks": chunks, "snapshots": report.snapshots_added,
            "unreadable_packs": report.packs_unreadable,
        }));
    } else if !cli.quiet {
        println!(
            "catalog rebuilt: {packs} packs, {chunks} chunks, {} snapshots{}",
            report.snapshots_added,
            if report.packs_unreadable.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} unreadable packs (run cairn check)",
                    report.packs_unreadable.len()
                )
            }
        );
    }
    Ok(if report.packs_unreadable.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    })
}
