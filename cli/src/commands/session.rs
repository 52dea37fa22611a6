//! What the commands share: the configuration loaded from the file, the environment and `--set`,
//! the repository opened, the read session of the read-only commands, the repository leases,
//! the `--date` checks, and the failed stages published when a command stops early.

use std::sync::Arc;

use anyhow::Result;
use cairn_engine::catalog::Catalog;
use cairn_engine::lease::{self, Lease, LeaseMode};
use cairn_engine::lock::StateLock;
use cairn_engine::repo::Repository;
use cairn_engine::{config::Config, setup::open_store};

use crate::Cli;

pub(super) fn load_config(cli: &Cli) -> Result<Config> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CAIRN_"))
        .collect();
    Ok(Config::load(cli.config.as_deref(), &env, &cli.sets)?)
}

/// What a read-only command (`ls`, `diff`, `find`, `snapshots`) reads through: the catalog as
/// the last backup or run on this state volume left it, opened without the state lock, so that
/// it runs beside the nightly job and lists nothing in the store. Without a usable catalog (a new
/// or lost state volume) it takes the lock and builds one, as the other commands do.
pub(super) struct ReadSession {
    pub(super) repo: Repository,
    pub(super) catalog: Catalog,
    pub(super) _lock: Option<StateLock>,
}

pub(super) fn read_session(cfg: &Config) -> Result<ReadSession> {
    let repo = open_repo(cfg)?;
    if let Some(catalog) = Catalog::open_reader(&cfg.state.dir, &repo)? {
        return Ok(ReadSession {
            repo,
            catalog,
            _lock: None,
        });
    }
    let lock = StateLock::acquire(&cfg.state.dir)?;
    let (catalog, _) = Catalog::open_for(&cfg.state.dir, &repo)?;
    Ok(ReadSession {
        repo,
        catalog,
        _lock: Some(lock),
    })
}

/// Takes the repository lease of `mode` for `purpose` (kind `Locked`, exit 4, naming the holder
/// when a conflicting one is live).
pub(super) fn repo_lease(
    cfg: &Config,
    repo: &Repository,
    mode: LeaseMode,
    purpose: &str,
) -> Result<Arc<Lease<'static>>> {
    Ok(Arc::new(lease::repository(
        repo.store().clone(),
        mode,
        purpose,
        std::time::Duration::from_secs(cfg.store.lease_ttl_secs),
        lease::EXCLUSIVE_PATIENCE,
    )?))
}

/// A shared lease for a command that only reads the store (a restore, an export, a check): a key
/// that may not write cannot take one, and reads on without it, with a warning.
pub(super) fn read_lease(
    cfg: &Config,
    repo: &Repository,
    purpose: &str,
) -> Result<Option<Arc<Lease<'static>>>> {
    match repo_lease(cfg, repo, LeaseMode::Shared, purpose) {
        Ok(l) => Ok(Some(l)),
        Err(e)
            if e.downcast_ref::<cairn_engine::Error>()
                .is_some_and(|e| e.kind() == cairn_engine::ErrorKind::Locked) =>
        {
            Err(e)
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not take a shared lease of the repository (a read-only key?); going on without one");
            Ok(None)
        }
    }
}

/// Runs `work` while `lease` (if any) is kept alive.
pub(super) fn holding<T>(lease: &Option<Arc<Lease<'static>>>, work: impl FnOnce() -> T) -> T {
    match lease {
        Some(l) => l.hold(work),
        None => work(),
    }
}

pub(super) fn open_repo(cfg: &Config) -> Result<Repository> {
    let store = open_store(&cfg.store, "store", false)?;
    Ok(Repository::open(store)?)
}

pub(super) fn parse_date(d: &str) -> Result<String> {
    jiff::civil::Date::strptime("%Y-%m-%d", d)
        .map_err(|_| cairn_engine::Error::usage(format!("--date {d:?} is not YYYY-MM-DD")))?;
    Ok(d.to_string())
}

/// The day a backup or an export is filed under: `--date`, which may lie at most one day after
/// today (a day far in the future would outrank every real one in retention; one day of slack
/// covers a job started just before midnight in another zone), or today in the configured zone.
pub(super) fn day_of_run(
    cfg: &Config,
    date: Option<&str>,
    time: jiff::Timestamp,
) -> Result<String> {
    let today = cfg.date_of(time)?;
    let Some(d) = date else {
        return Ok(today);
    };
    let d = parse_date(d)?;
    let latest = jiff::civil::Date::strptime("%Y-%m-%d", &today)
        .ok()
        .and_then(|t| t.tomorrow().ok())
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or(today.clone());
    if d > latest {
        return Err(cairn_engine::Error::usage(format!(
            "--date {d} is after tomorrow ({latest} in the configured time zone); a day in the future would outrank every real day in retention"
        ))
        .into());
    }
    Ok(d)
}

/// Publishes `stages` as failed, now: for a command that stops before it has figures, so that
/// the alerts see a failure however early it came.
pub(super) fn publish_failed(cfg: &Config, stages: &[&'static str]) {
    let now = jiff::Timestamp::now();
    let failed: Vec<_> = stages
        .iter()
        .map(|st| cairn_engine::metrics::Stage::new(st, false, now))
        .collect();
    cfg.metrics.sink().publish(&failed);
}
