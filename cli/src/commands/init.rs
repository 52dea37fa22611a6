//! `cairn init`: creates the repository in the configured store (and a missing bucket where the
//! key may); prints the repository's id, or `{"repository": …}` with `--json`.

use anyhow::{Context, Result};
use cairn_engine::repo::Repository;
use cairn_engine::{config::Config, setup::open_store};
use clap::Args;

use crate::output::print_json;
use crate::{Cli, exit};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Succeed without changes if the store already holds a repository.
    #[arg(long)]
    exists_ok: bool,
}

pub(super) fn init(cli: &Cli, cfg: &Config, a: &InitArgs) -> Result<u8> {
    // The buckets first: a missing one is made where the key may, or named with the command
    // that makes it, before anything is written.
    for (loc, section) in [(&cfg.store, "store"), (&cfg.exports, "exports")] {
        if cairn_engine::setup::ensure_bucket(loc, section, true).context("cairn init")?
            == Some(true)
            && !cli.quiet
            && !cli.json
        {
            println!("created bucket {}", loc.bucket.as_deref().unwrap_or(""));
        }
    }
    let store = open_store(&cfg.store, "store", true)?;
    let params = cairn_engine::chunk::ChunkerParams::default();
    let repo = match Repository::init(store.clone(), params, cfg.backup.pack_size_mib << 20) {
        Ok(r) => r,
        Err(e) if a.exists_ok && e.kind() == cairn_engine::ErrorKind::Conflict => {
            Repository::open(store)?
        }
        Err(e) => return Err(e).context("cairn init"),
    };
    if cli.json {
        print_json(&serde_json::json!({ "repository": repo.config() }));
    } else if !cli.quiet {
        println!("repository {} ready", &repo.config().id[..8]);
    }
    Ok(exit::OK)
}
