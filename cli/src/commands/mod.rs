//! The subcommands, one module each (as restic's `cmd_*.go` and rustic's `commands/`): its clap
//! arguments, its run function and its printing. [`run()`] loads the configuration and
//! dispatches; `session` holds what the commands share (the configuration, the read session, the
//! repository leases, the `--date` checks, the failed stages published on an early stop).

pub(crate) mod backup;
pub(crate) mod catalog;
pub(crate) mod check;
pub(crate) mod completions;
mod diff;
pub(crate) mod dump;
pub(crate) mod export;
pub(crate) mod exports;
mod find;
pub(crate) mod forget;
pub(crate) mod gc;
pub(crate) mod init;
pub(crate) mod ls;
pub(crate) mod mount;
pub(crate) mod offsite;
pub(crate) mod preflight;
pub(crate) mod prune;
pub(crate) mod restore;
pub(crate) mod run;
mod session;
mod snapshots;
pub(crate) mod stats;

use std::io::IsTerminal;

use anyhow::Result;
use cairn_engine::config::Config;

use crate::progress::{self, Show};

use crate::{Cli, Command};
use catalog::CatalogCommand;
use exports::ExportsCommand;
use offsite::OffsiteCommand;

pub fn run(cli: &Cli) -> Result<u8> {
    // These describe the command line itself and need no configuration.
    match &cli.command {
        Command::Completions(a) => return completions::run_completions(a),
        Command::Man => return completions::run_man(),
        _ => {}
    }
    let cfg = session::load_config(cli)?;
    // One watcher for every command: those that run a long stage show it, the rest nothing.
    let show = if !cli.quiet && !cli.json && std::io::stderr().is_terminal() {
        Show::Line
    } else {
        Show::Log(std::time::Duration::from_secs(cfg.log.progress_interval_s))
    };
    progress::watch(show);
    let result = dispatch(cli, &cfg);
    progress::settle();
    result
}

fn dispatch(cli: &Cli, cfg: &Config) -> Result<u8> {
    match &cli.command {
        Command::Init(a) => init::init(cli, cfg, a),
        Command::Preflight(a) => preflight::run(cli, cfg, a),
        Command::Backup(a) => backup::run_backup(cli, cfg, a),
        Command::Export(a) => export::run_export(cli, cfg, a),
        Command::Run(a) => run::run_nightly(cli, cfg, a),
        Command::Exports(ExportsCommand::List) => exports::exports_list(cli, cfg),
        Command::Exports(ExportsCommand::Verify { date }) => {
            exports::exports_verify(cli, cfg, date)
        }
        Command::Exports(ExportsCommand::Prune { keep }) => exports::exports_prune(cli, cfg, *keep),
        Command::Exports(ExportsCommand::Cat { date, path }) => {
            exports::exports_cat(cfg, date, path)
        }
        Command::Offsite(OffsiteCommand::Sync { dry_run }) => offsite::sync(cli, cfg, *dry_run),
        Command::Offsite(OffsiteCommand::Status) => offsite::status(cli, cfg),
        Command::Offsite(OffsiteCommand::Login { timeout_mins }) => {
            offsite::login(cli, cfg, *timeout_mins)
        }
        Command::Restore(a) => restore::run_restore(cli, cfg, a),
        Command::Check(a) => check::run_check(cli, cfg, a),
        Command::Diff { a, b } => diff::run_diff(cli, cfg, a, b),
        Command::Find { pattern } => find::run_find(cli, cfg, pattern),
        Command::Snapshots => snapshots::snapshots(cli, cfg),
        Command::Forget(a) => forget::run_forget(cli, cfg, a),
        Command::Gc(a) => gc::run_gc(cli, cfg, a),
        Command::Prune(a) => prune::run_prune(cli, cfg, a),
        Command::Ls(a) => ls::ls(cli, cfg, a),
        Command::Catalog(CatalogCommand::Rebuild) => catalog::rebuild(cli, cfg),
        Command::Mount(a) => mount::run_mount(cli, cfg, a),
        Command::Dump(a) => dump::run_dump(cli, cfg, a),
        Command::Stats(a) => stats::run_stats(cli, cfg, a),
        Command::Completions(_) | Command::Man => {
            unreachable!("answered before the configuration is loaded")
        }
    }
}
