//! One function per subcommand: load the configuration, call the engine, print the result.

use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use anyhow::{Context, Result};
use cairn_engine::backup::{self, BackupOptions, Progress};
use cairn_engine::catalog::Catalog;
use cairn_engine::config::{Config, open_store};
use cairn_engine::lease::{self, Lease, LeaseMode};
use cairn_engine::lock::StateLock;
use cairn_engine::repo::Repository;
use cairn_engine::tree::EntryKind;
use cairn_engine::{check, export, forget, gc, query, read, restore, retention, run};
use clap::{Args, Subcommand};

use crate::output::{self, bytes, print_json};
use crate::{Cli, Command, exit};

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Succeed without changes if the store already holds a repository.
    #[arg(long)]
    exists_ok: bool,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Do not compare inode numbers in the files cache.
    #[arg(long)]
    ignore_inode: bool,
    /// Do not compare ctimes in the files cache.
    #[arg(long)]
    ignore_ctime: bool,
    /// The day the snapshot belongs to (YYYY-MM-DD); default: today in the configured time zone.
    #[arg(long, value_name = "YYYY-MM-DD")]
    date: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The day of the archive (YYYY-MM-DD); default: the snapshot's day, or today.
    #[arg(long, value_name = "YYYY-MM-DD")]
    date: Option<String>,
    /// The snapshot to export (`latest`, a date or an id prefix); default: the newest snapshot
    /// of the day.
    #[arg(long, value_name = "SNAPSHOT")]
    snapshot: Option<String>,
    /// Replace a complete archive of another snapshot for the same day.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The day of the run (YYYY-MM-DD); default: today in the configured time zone.
    #[arg(long, value_name = "YYYY-MM-DD")]
    date: Option<String>,
    /// Replace a complete archive of another snapshot for the same day.
    #[arg(long)]
    force: bool,
    /// Do not compare inode numbers in the files cache.
    #[arg(long)]
    ignore_inode: bool,
    /// Do not compare ctimes in the files cache.
    #[arg(long)]
    ignore_ctime: bool,
}

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

#[derive(Debug, Subcommand)]
pub enum OffsiteCommand {
    /// Copy every retained day not yet on the remote, newest first, and check it there (exit 5
    /// when some day failed or was left for the next run).
    Sync,
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

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot: `latest`, a date or an id prefix (default: the newest).
    #[arg(long, value_name = "SNAPSHOT", conflicts_with_all = ["date", "as_of", "archive"])]
    snapshot: Option<String>,
    /// The newest snapshot of this day (YYYY-MM-DD).
    #[arg(long, value_name = "YYYY-MM-DD", conflicts_with_all = ["as_of", "archive"])]
    date: Option<String>,
    /// The newest snapshot taken at or before this time (RFC 3339, e.g. 2026-11-20T12:00:00Z).
    #[arg(long, value_name = "TIME", conflicts_with = "archive")]
    as_of: Option<String>,
    /// Restore from a daily archive instead: a local .tar.zst file, a key in the exports
    /// location, or a date whose archive to use. Needs no catalog and no store.
    #[arg(long, value_name = "FILE_OR_KEY")]
    archive: Option<String>,
    /// A path inside the snapshot to restore (repeatable); default: everything.
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<String>,
    /// The directory to restore into.
    #[arg(long, value_name = "DIR")]
    target: std::path::PathBuf,
    /// Existing files: never (default), if-changed (size or mtime differ), always.
    #[arg(long, value_name = "MODE", default_value = "never")]
    overwrite: String,
    /// Re-read every restored file and check it against its chunk ids.
    #[arg(long)]
    verify: bool,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// Forget exactly these snapshots (id prefixes, dates or `latest`) instead of applying the
    /// policy; every one must exist, or nothing is forgotten.
    snapshots: Vec<String>,
    /// Print the plan (newest snapshot first) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Accept a policy that keeps no snapshot at all (every keep_* 0 and no keep_within).
    #[arg(long)]
    allow_empty: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Print what would be repacked, condemned and deleted, and change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Print the plan and what gc would do, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Accept a policy that keeps no snapshot at all (every keep_* 0 and no keep_within).
    #[arg(long)]
    allow_empty: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Download every pack and verify every blob.
    #[arg(long, conflicts_with = "read_data_subset")]
    read_data: bool,
    /// Verify a subset of packs: N/M (part N of M) or P% (by pack id, the same packs each time).
    #[arg(long, value_name = "N/M|P%")]
    read_data_subset: Option<String>,
    /// Put back damaged snapshot objects from the catalog's intact copy, or move them aside to
    /// quarantine/snapshots/ (deletes from the store: needs a key that may delete).
    #[arg(long)]
    repair: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// `latest`, a date (YYYY-MM-DD), or an id prefix.
    snapshot: String,
    /// A path inside the snapshot, such as `notetaking/projects`.
    path: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Throw the catalog away and rebuild it from the store.
    Rebuild,
}

fn load_config(cli: &Cli) -> Result<Config> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CAIRN_"))
        .collect();
    Ok(Config::load(cli.config.as_deref(), &env, &cli.sets)?)
}

/// What a read-only command (`ls`, `diff`, `find`, `snapshots`) reads through: the catalog as
/// the last backup or run on this state volume left it, opened without the state lock, so that
/// it runs beside the nightly job and lists nothing in the store. Without a usable catalog (a new
/// or lost state volume) it takes the lock and builds one, as the other commands do.
struct ReadSession {
    repo: Repository,
    catalog: Catalog,
    _lock: Option<StateLock>,
}

fn read_session(cfg: &Config) -> Result<ReadSession> {
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
fn repo_lease(
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
fn read_lease(
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
fn holding<T>(lease: &Option<Arc<Lease<'static>>>, work: impl FnOnce() -> T) -> T {
    match lease {
        Some(l) => l.hold(work),
        None => work(),
    }
}

/// The gc options the configuration describes, at the present time.
fn gc_options(cfg: &Config, dry_run: bool) -> Result<gc::GcOptions> {
    Ok(gc::GcOptions {
        grace: cfg.gc.grace()?,
        repack_dead_percent: cfg.gc.repack_dead_percent,
        now: None,
        assume_forgotten: Default::default(),
        lease_ttl: std::time::Duration::from_secs(cfg.store.lease_ttl_secs),
        dry_run,
        hook: crate::failpoint::gc_hook(),
        held: None,
    })
}

fn open_repo(cfg: &Config) -> Result<Repository> {
    let store = open_store(&cfg.store, "store", false)?;
    Ok(Repository::open(store)?)
}

pub fn run(cli: &Cli) -> Result<u8> {
    let cfg = load_config(cli)?;
    match &cli.command {
        Command::Init(a) => init(cli, &cfg, a),
        Command::Preflight(a) => crate::preflight::run(cli, &cfg, a),
        Command::Backup(a) => run_backup(cli, &cfg, a),
        Command::Export(a) => run_export(cli, &cfg, a),
        Command::Run(a) => run_nightly(cli, &cfg, a),
        Command::Exports(ExportsCommand::List) => exports_list(cli, &cfg),
        Command::Exports(ExportsCommand::Verify { date }) => exports_verify(cli, &cfg, date),
        Command::Exports(ExportsCommand::Prune { keep }) => exports_prune(cli, &cfg, *keep),
        Command::Exports(ExportsCommand::Cat { date, path }) => exports_cat(&cfg, date, path),
        Command::Offsite(OffsiteCommand::Sync) => crate::offsite::sync(cli, &cfg),
        Command::Offsite(OffsiteCommand::Status) => crate::offsite::status(cli, &cfg),
        Command::Offsite(OffsiteCommand::Login { timeout_mins }) => {
            crate::offsite::login(cli, &cfg, *timeout_mins)
        }
        Command::Restore(a) => run_restore(cli, &cfg, a),
        Command::Check(a) => run_check(cli, &cfg, a),
        Command::Diff { a, b } => run_diff(cli, &cfg, a, b),
        Command::Find { pattern } => run_find(cli, &cfg, pattern),
        Command::Snapshots => snapshots(cli, &cfg),
        Command::Forget(a) => run_forget(cli, &cfg, a),
        Command::Gc(a) => run_gc(cli, &cfg, a),
        Command::Prune(a) => run_prune(cli, &cfg, a),
        Command::Ls(a) => ls(cli, &cfg, a),
        Command::Catalog(CatalogCommand::Rebuild) => rebuild(cli, &cfg),
    }
}

fn init(cli: &Cli, cfg: &Config, a: &InitArgs) -> Result<u8> {
    // The buckets first: a missing one is made where the key may, or named with the command
    // that makes it, before anything is written.
    for (loc, section) in [(&cfg.store, "store"), (&cfg.exports, "exports")] {
        if cairn_engine::config::ensure_bucket(loc, section, true).context("cairn init")?
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

fn parse_date(d: &str) -> Result<String> {
    jiff::civil::Date::strptime("%Y-%m-%d", d)
        .map_err(|_| cairn_engine::Error::usage(format!("--date {d:?} is not YYYY-MM-DD")))?;
    Ok(d.to_string())
}

/// The day a backup or an export is filed under: `--date`, which may lie at most one day after
/// today (a day far in the future would outrank every real one in retention; one day of slack
/// covers a job started just before midnight in another zone), or today in the configured zone.
fn day_of_run(cfg: &Config, date: Option<&str>, time: jiff::Timestamp) -> Result<String> {
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

fn backup_options(
    cfg: &Config,
    date: Option<&str>,
    ignore_inode: bool,
    ignore_ctime: bool,
) -> Result<BackupOptions> {
    let time = jiff::Timestamp::now();
    let date = day_of_run(cfg, date, time)?;
    Ok(BackupOptions {
        source_root: cfg.source.root.clone(),
        folders: cfg.source.folders.clone(),
        optional_folders: cfg.source.optional_folders.clone(),
        excludes: cfg.source.exclude.clone(),
        one_file_system: cfg.source.one_file_system,
        ignore_inode: ignore_inode || cfg.backup.ignore_inode,
        ignore_ctime: ignore_ctime || cfg.backup.ignore_ctime,
        compression: cfg.backup.compression,
        time,
        date,
        hook: crate::failpoint::backup_hook(),
        lease: None,
    })
}

fn print_backup(cli: &Cli, out: &backup::BackupOutcome) {
    let s = &out.snapshot.summary;
    if cli.quiet {
        return;
    }
    println!(
        "snapshot {} committed: {} files, {} in all, {} read, {} new ({} stored in {} packs), {:.1}s",
        out.id.short(),
        s.files,
        bytes(s.bytes),
        bytes(s.bytes_read),
        bytes(s.new_bytes),
        bytes(s.stored_bytes),
        s.packs,
        s.duration_ms as f64 / 1000.0
    );
    for w in &out.snapshot.warnings {
        println!("warning: {} ({}): {}", w.path, w.kind, w.message);
    }
}

fn run_backup(cli: &Cli, cfg: &Config, a: &BackupArgs) -> Result<u8> {
    let _lock = StateLock::acquire(&cfg.state.dir)?;
    let repo = open_repo(cfg)?;
    let mut opts = backup_options(cfg, a.date.as_deref(), a.ignore_inode, a.ignore_ctime)?;
    let lease = Some(repo_lease(
        cfg,
        &repo,
        LeaseMode::Writer,
        &format!("backup {}", opts.date),
    )?);
    opts.lease = lease.clone();
    let progress = Arc::new(Progress::default());
    let bar = output::BackupBar::start(progress.clone(), cli.quiet || cli.json);
    let result = holding(&lease, || {
        let (catalog, sync) = Catalog::open_for(&cfg.state.dir, &repo)?;
        backup::backup(&repo, &catalog, sync, &opts, &progress)
    });
    bar.finish();
    // Every failure commits nothing, except a snapshot written after the lease was lost that
    // could not be withdrawn, whose error says so.
    let out = result.context("backup failed")?;
    let code = if out.snapshot.warnings.is_empty() {
        exit::OK
    } else {
        exit::WARNINGS
    };
    if cli.json {
        print_json(&serde_json::json!({
            "snapshot": out.id,
            "date": out.snapshot.date,
            "summary": out.snapshot.summary,
            "warnings": out.snapshot.warnings,
            "catalog_rebuilt": out.sync.rebuilt,
            "exit_code": code,
        }));
    } else {
        print_backup(cli, &out);
    }
    Ok(code)
}

fn run_export(cli: &Cli, cfg: &Config, a: &ExportArgs) -> Result<u8> {
    let _lock = StateLock::acquire(&cfg.state.dir)?;
    let repo = open_repo(cfg)?;
    // The archive goes to the exports location: a store key that may only read will do.
    let lease = read_lease(cfg, &repo, "export")?;
    holding(&lease, || export_under_lease(cli, cfg, a, &repo))
}

fn export_under_lease(cli: &Cli, cfg: &Config, a: &ExportArgs, repo: &Repository) -> Result<u8> {
    let repo = repo.clone();
    let (catalog, _) = Catalog::open_for(&cfg.state.dir, &repo)?;
    let date = a
        .date
        .as_deref()
        .map(|d| day_of_run(cfg, Some(d), jiff::Timestamp::now()))
        .transpose()?;
    let (id, snap) = match (&a.snapshot, &date) {
        (Some(sel), _) => catalog.resolve_snapshot(sel)?,
        (None, Some(d)) => catalog.resolve_snapshot(d)?,
        (None, None) => catalog.resolve_snapshot(&cfg.date_of(jiff::Timestamp::now())?)?,
    };
    let date = date.unwrap_or_else(|| snap.date.clone());
    let exports = open_store(&cfg.exports, "exports", true)?;
    let opts = export::ExportOptions {
        date,
        level: cfg.backup.compression,
        force: a.force,
        hook: crate::failpoint::export_hook(),
    };
    let published = export::export(&repo, &catalog, exports.as_ref(), (&id, &snap), &opts)
        .with_context(|| format!("exporting snapshot {} as {}", id.short(), opts.date))?;
    let m = published.manifest();
    let reused = match &published {
        export::Published::Written(_, r) => Some(r),
        export::Published::Unchanged(_) => None,
    };
    let written = reused.is_some();
    if cli.json {
        print_json(&serde_json::json!({
            "date": m.date, "snapshot": m.snapshot, "archive": m.archive, "entries": m.entry_count,
            "skipped": m.skipped.len(), "written": written, "reused": reused,
            "checked_frames": reused.map(|r| r.checked_frames),
        }));
    } else if !cli.quiet {
        println!(
            "{} {}: {} ({} entries) sha256 {}",
            if written {
                "wrote"
            } else {
                "already complete:"
            },
            m.archive.name,
            bytes(m.archive.size),
            m.entry_count,
            m.archive.sha256
        );
    }
    Ok(exit::OK)
}

/// Publishes `stages` as failed, now: for a command that stops before it has figures, so that
/// the alerts see a failure however early it came.
pub(crate) fn publish_failed(cfg: &Config, stages: &[&'static str]) {
    let now = jiff::Timestamp::now();
    let failed: Vec<_> = stages
        .iter()
        .map(|st| cairn_engine::metrics::Stage::new(st, false, now))
        .collect();
    cfg.metrics.sink().publish(&failed);
}

/// What a nightly run needs before it starts: the exports location, how it prunes, how it backs
/// up (the day checked).
type NightlyInputs = (
    Arc<dyn cairn_engine::store::Store>,
    Option<run::PruneOptions>,
    BackupOptions,
);

fn nightly_inputs(cfg: &Config, a: &RunArgs) -> Result<NightlyInputs> {
    // The exports location first: from there on every failure ends up in the run report.
    let exports = open_store(&cfg.exports, "exports", true)?;
    let prune = if cfg.retention.prune_in_run {
        let policy = cfg.retention.policy()?;
        if policy.keeps_nothing() {
            return Err(cairn_engine::Error::config(
                "retention.prune_in_run is set but the retention policy keeps no snapshot; a run never forgets everything",
            )
            .into());
        }
        Some(run::PruneOptions {
            policy,
            time_zone: cfg.time_zone()?,
            gc: gc_options(cfg, false)?,
        })
    } else {
        None
    };
    let backup = backup_options(cfg, a.date.as_deref(), a.ignore_inode, a.ignore_ctime)?;
    Ok((exports, prune, backup))
}

fn run_nightly(cli: &Cli, cfg: &Config, a: &RunArgs) -> Result<u8> {
    // The run publishes the retention stage only when it does retention itself; otherwise the
    // retention job publishes it, and the run must not overwrite it.
    let with_retention = cfg.exports.keep_daily > 0 || cfg.retention.prune_in_run;
    let run_stages: &[&'static str] = if with_retention {
        &["backup", "export", "retention"]
    } else {
        &["backup", "export"]
    };
    let (exports, prune, backup) = match nightly_inputs(cfg, a) {
        Ok(inputs) => inputs,
        Err(e) => {
            publish_failed(cfg, run_stages);
            return Err(e);
        }
    };
    let opts = run::RunOptions {
        backup,
        exports: exports.as_ref(),
        keep_daily: cfg.exports.keep_daily as usize,
        force: a.force,
        stale_after: std::time::Duration::from_secs(cfg.backup.stale_temp_secs),
        prune,
        export_hook: crate::failpoint::export_hook(),
    };
    let progress = Arc::new(Progress::default());
    let bar = output::BackupBar::start(progress.clone(), cli.quiet || cli.json);
    let mut lock = None;
    let open = || {
        lock = Some(StateLock::acquire(&cfg.state.dir)?);
        let store = open_store(&cfg.store, "store", false)?;
        let repo = Repository::open(store)?;
        let lease = lease::repository(
            repo.store().clone(),
            LeaseMode::Writer,
            &format!("nightly run {}", opts.backup.date),
            std::time::Duration::from_secs(cfg.store.lease_ttl_secs),
            lease::EXCLUSIVE_PATIENCE,
        )?;
        let lease = Arc::new(lease);
        // The sync, too, under the lease: a gc must not delete what it finds.
        let (catalog, sync) = lease.hold(|| Catalog::open_for(&cfg.state.dir, &repo))?;
        Ok((repo, catalog, sync, Some(lease)))
    };
    let result = run::nightly(open, &opts, &progress);
    drop(lock);
    bar.finish();
    // Published whatever happened, also when not even the run report could be written.
    match &result {
        Ok(report) => {
            cfg.metrics.sink().publish(&run::stages(
                report,
                with_retention,
                &cfg.source.folders,
                cfg.exports.keep_daily as usize,
                cfg.exports.capacity_bytes,
            ));
        }
        Err(_) => publish_failed(cfg, run_stages),
    }
    let report = result?;
    if cli.json {
        print_json(&serde_json::to_value(&report).expect("reports serialize"));
    } else if !cli.quiet {
        if let Some(b) = &report.backup {
            println!(
                "snapshot {} committed: {} files, {} new",
                b.snapshot.short(),
                b.summary.files,
                bytes(b.summary.new_bytes)
            );
            for w in &b.warnings {
                println!("warning: {} ({}): {}", w.path, w.kind, w.message);
            }
        }
        if let Some(e) = &report.export {
            println!(
                "{} {} ({}), sha256 {}",
                if e.written { "wrote" } else { "kept" },
                e.archive,
                bytes(e.size),
                e.sha256
            );
        }
        if !report.deleted_days.is_empty() {
            println!("retention: deleted {}", report.deleted_days.join(", "));
        }
        if let Some(p) = &report.prune {
            match (&p.gc, &p.error) {
                (_, Some(e)) => println!("prune failed (the backup and the archive stand): {e}"),
                (Some(g), None) => println!(
                    "pruned: {} snapshots forgotten, {} packs condemned, {} packs deleted ({} freed){}",
                    p.snapshots_forgotten,
                    g.packs_condemned,
                    g.packs_deleted,
                    bytes(g.bytes_freed),
                    match &g.deferred {
                        Some(why) => format!("; deletion deferred: {why}"),
                        None => String::new(),
                    }
                ),
                (None, None) => {}
            }
        }
    }
    if let Some(err) = &report.error {
        eprintln!("cairn: run {} failed: {err}", report.date);
    }
    Ok(report.exit_code)
}

fn exports_list(cli: &Cli, cfg: &Config) -> Result<u8> {
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

fn exports_cat(cfg: &Config, date: &str, path: &std::ffi::OsStr) -> Result<u8> {
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

fn exports_prune(cli: &Cli, cfg: &Config, keep: Option<usize>) -> Result<u8> {
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

fn exports_verify(cli: &Cli, cfg: &Config, date: &str) -> Result<u8> {
    let exports = open_store(&cfg.exports, "exports", true)?;
    let report = export::verify(exports.as_ref(), date)
        .with_context(|| format!("verifying the archive of {date}"))?;
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

fn run_restore(cli: &Cli, cfg: &Config, a: &RestoreArgs) -> Result<u8> {
    let opts = restore::RestoreOptions {
        target: a.target.clone(),
        paths: a
            .paths
            .iter()
            .map(|p| p.trim_matches('/').to_string())
            .collect(),
        overwrite: a.overwrite.parse()?,
        verify: a.verify,
    };
    let (report, from) = if let Some(src) = &a.archive {
        let local = std::path::Path::new(src);
        if local.is_file() {
            let f = std::fs::File::open(local).with_context(|| format!("opening archive {src}"))?;
            (
                restore::restore_archive(std::io::BufReader::new(f), &opts)?,
                src.clone(),
            )
        } else {
            let exports = open_store(&cfg.exports, "exports", true)?;
            // A few paths of a day: only the frames that hold them, by the seek table.
            if let Ok(day) = export::DayKeys::new(src)
                && !opts.paths.is_empty()
                && opts.overwrite == restore::Overwrite::Never
                && !opts.verify
                && let Some(report) = export::extract::restore_paths(
                    exports.as_ref(),
                    &day.date,
                    &opts.paths,
                    &opts.target,
                )?
            {
                (report, day.archive)
            } else {
                let key = match export::DayKeys::new(src) {
                    Ok(day) => day.archive,
                    Err(_) => src.clone(),
                };
                let reader = cairn_engine::store::ObjectReader::open(exports.as_ref(), &key)
                    .with_context(|| {
                        format!(
                            "{src} is neither a local file nor an archive in the exports location"
                        )
                    })?;
                (restore::restore_archive(reader, &opts)?, key)
            }
        }
    } else {
        let _lock = StateLock::acquire(&cfg.state.dir)?;
        let repo = open_repo(cfg)?;
        let lease = read_lease(cfg, &repo, "restore")?;
        holding(&lease, || restore_snapshot(cfg, a, &repo, &opts))?
    };
    if cli.json {
        print_json(&serde_json::json!({ "from": from, "target": a.target, "report": report }));
    } else if !cli.quiet {
        println!(
            "restored {} files ({}), {} dirs, {} symlinks, {} hardlinks from {from}; {} left as they were{}",
            report.files,
            bytes(report.bytes),
            report.dirs,
            report.symlinks,
            report.hardlinks,
            report.unchanged,
            if report.verified > 0 {
                format!("; {} verified", report.verified)
            } else {
                String::new()
            }
        );
        for s in &report.skipped {
            println!("not restorable here: {s}");
        }
        for w in &report.warnings {
            println!("warning: {w}");
        }
    }
    Ok(exit::OK)
}

/// Restores a snapshot (the repository lease held, if one could be taken).
fn restore_snapshot(
    cfg: &Config,
    a: &RestoreArgs,
    repo: &Repository,
    opts: &restore::RestoreOptions,
) -> Result<(restore::RestoreReport, String)> {
    let (catalog, _) = Catalog::open_for(&cfg.state.dir, repo)?;
    let (id, snap) = match (&a.snapshot, &a.date, &a.as_of) {
        (Some(s), _, _) => catalog.resolve_snapshot(s)?,
        (_, Some(d), _) => catalog.resolve_snapshot(&parse_date(d)?)?,
        (_, _, Some(t)) => {
            let t: jiff::Timestamp = t.parse().map_err(|_| {
                cairn_engine::Error::usage(format!("--as-of {t:?} is not an RFC 3339 time"))
            })?;
            catalog.resolve_as_of(t)?
        }
        _ => catalog.resolve_snapshot("latest")?,
    };
    let report = restore::restore(repo, &catalog, &snap, opts).with_context(|| {
        format!(
            "restoring snapshot {} into {}",
            id.short(),
            a.target.display()
        )
    })?;
    Ok((report, format!("snapshot {}", id.short())))
}

fn run_check(cli: &Cli, cfg: &Config, a: &CheckArgs) -> Result<u8> {
    let read = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => s.parse()?,
        (None, true) => check::ReadData::All,
        (None, false) => check::ReadData::None,
    };
    let _lock = StateLock::acquire(&cfg.state.dir)?;
    let repo = open_repo(cfg)?;
    // A shared lease where the key may write: a gc then does not delete packs under the check
    // (which would report them missing); a read-only key checks without one.
    let lease = read_lease(cfg, &repo, "check")?;
    let report = holding(&lease, || -> Result<check::CheckReport> {
        let (catalog, sync) = Catalog::open_for(&cfg.state.dir, &repo)?;
        Ok(check::check(&repo, &catalog, &sync, read, a.repair)?)
    })?;
    if cli.json {
        print_json(&serde_json::to_value(&report).expect("serializes"));
    } else if !cli.quiet {
        println!(
            "{} snapshots, {} packs ({} read), {} trees: {}",
            report.snapshots,
            report.packs,
            report.packs_read,
            report.trees,
            if report.problems.is_empty() {
                "no problems".to_string()
            } else {
                format!("{} problems", report.problems.len())
            }
        );
        for r in &report.repaired {
            println!("repaired: {r}");
        }
        if report.healed > 0 {
            println!(
                "{} damaged blobs have good copies in other packs (healed)",
                report.healed
            );
        }
        for p in &report.problems {
            println!("{}: {} — {}", p.kind, p.object, p.detail);
            for x in &p.affected {
                println!("    snapshot {} {}", x.snapshot, x.path);
            }
            if p.affected_count > p.affected.len() {
                println!(
                    "    … and {} more paths",
                    p.affected_count - p.affected.len()
                );
            }
        }
    }
    Ok(if report.problems.is_empty() {
        exit::OK
    } else {
        exit::FAILURE
    })
}

fn run_diff(cli: &Cli, cfg: &Config, a: &str, b: &str) -> Result<u8> {
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

fn run_find(cli: &Cli, cfg: &Config, pattern: &str) -> Result<u8> {
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

fn run_forget(cli: &Cli, cfg: &Config, a: &ForgetArgs) -> Result<u8> {
    let policy = cfg.retention.policy()?;
    if a.snapshots.is_empty() {
        refuse_empty_policy(&policy, a.allow_empty)?;
    }
    let repo = open_repo(cfg)?;
    let _lock = StateLock::acquire(&cfg.state.dir)?;
    let lease = if a.dry_run {
        None
    } else {
        Some(repo_lease(cfg, &repo, LeaseMode::Shared, "forget")?)
    };
    holding(&lease, || {
        let (catalog, _) = Catalog::open_for(&cfg.state.dir, &repo)?;
        let named = a
            .snapshots
            .iter()
            .map(|sel| catalog.resolve_snapshot(sel))
            .collect::<cairn_engine::Result<Vec<_>>>()?;
        let (out, _) = forget_step(cli, cfg, a.dry_run, &policy, &repo, &catalog, &named)?;
        if cli.json {
            print_json(&out);
        }
        Ok(exit::OK)
    })
}

/// Plans (and unless `dry_run` carries out) the forgetting, prints the table, and returns the
/// JSON for `--json`.
fn forget_step(
    cli: &Cli,
    cfg: &Config,
    dry_run: bool,
    policy: &forget::Policy,
    repo: &Repository,
    catalog: &Catalog,
    named: &[(cairn_engine::Id, cairn_engine::snapshot::Snapshot)],
) -> Result<(
    serde_json::Value,
    std::collections::HashSet<cairn_engine::Id>,
)> {
    let plan = if named.is_empty() {
        forget::plan(&catalog.snapshots()?, policy, &cfg.time_zone()?)
    } else {
        forget::plan_named(named, &cfg.time_zone()?)
    };
    if !dry_run {
        forget::forget(repo, catalog, &plan).context("forgetting snapshots")?;
    }
    let forgotten = plan.forgotten().count();
    if !cli.json && !cli.quiet {
        print!("{}", plan.table());
        let verb = if dry_run { "would forget" } else { "forgot" };
        println!(
            "{verb} {forgotten} of {} snapshots; their data stays in the store until a garbage collection",
            plan.entries.len()
        );
    }
    let ids = plan.forgotten().map(|e| e.id).collect();
    Ok((
        serde_json::json!({
            "policy": policy,
            "dry_run": dry_run,
            "plan": plan.entries,
            "forgotten": forgotten,
            "kept": plan.entries.len() - forgotten,
        }),
        ids,
    ))
}

fn run_gc(cli: &Cli, cfg: &Config, a: &GcArgs) -> Result<u8> {
    let opts = gc_options(cfg, a.dry_run)?;
    let repo = open_repo(cfg)?;
    let _lock = StateLock::acquire(&cfg.state.dir)?;
    let (catalog, _) = Catalog::open_for(&cfg.state.dir, &repo)?;
    let report = gc::gc(&repo, &catalog, &opts)?;
    if cli.json {
        print_json(&serde_json::to_value(&report).expect("serializes"));
    } else {
        print_gc(cli, &report, a.dry_run);
    }
    Ok(gc_exit(&report))
}

fn run_prune(cli: &Cli, cfg: &Config, a: &PruneArgs) -> Result<u8> {
    let result = prune_steps(cli, cfg, a);
    // The retention stage, however the prune ended (a dry run changes nothing and publishes
    // nothing): a prune that stops at its lock or its policy failed as much as a failed gc.
    if !a.dry_run {
        let stage =
            cairn_engine::metrics::Stage::new("retention", result.is_ok(), jiff::Timestamp::now());
        let stage = match &result {
            Ok((forgot, g)) => {
                run::prune_gauges(stage, forgot["forgotten"].as_u64().unwrap_or(0), Some(g))
            }
            Err(_) => stage,
        };
        cfg.metrics.sink().publish(&[stage]);
    }
    let (forgot, report) = result?;
    if cli.json {
        print_json(&serde_json::json!({ "forget": forgot, "gc": report }));
    } else {
        print_gc(cli, &report, a.dry_run);
    }
    Ok(gc_exit(&report))
}

/// Forgets, then collects garbage, under the state lock: what `cairn prune` did (the forget
/// step's JSON and the gc's report).
fn prune_steps(
    cli: &Cli,
    cfg: &Config,
    a: &PruneArgs,
) -> Result<(serde_json::Value, gc::GcReport)> {
    let policy = cfg.retention.policy()?;
    refuse_empty_policy(&policy, a.allow_empty)?;
    let mut opts = gc_options(cfg, a.dry_run)?;
    let repo = open_repo(cfg)?;
    let _lock = StateLock::acquire(&cfg.state.dir)?;
    let (catalog, _) = Catalog::open_for(&cfg.state.dir, &repo)?;
    let (forgot, forgotten) = {
        let lease = if a.dry_run {
            None
        } else {
            Some(repo_lease(cfg, &repo, LeaseMode::Shared, "prune")?)
        };
        holding(&lease, || {
            forget_step(cli, cfg, a.dry_run, &policy, &repo, &catalog, &[])
        })?
    };
    if a.dry_run {
        // What gc would find once the plan's snapshots are gone.
        opts.assume_forgotten = forgotten;
    }
    let report = gc::gc(&repo, &catalog, &opts)?;
    Ok((forgot, report))
}

/// Exit 4 when due packs were left because the repository was in use: the operator (or the
/// CronJob's alert) learns that nothing was freed, and why.
fn gc_exit(report: &gc::GcReport) -> u8 {
    match &report.deferred {
        Some(why) => {
            eprintln!(
                "cairn: gc deleted {} packs and left {} due for a later gc: {why}",
                report.packs_deleted, report.packs_waiting
            );
            exit::LOCKED
        }
        None => exit::OK,
    }
}

fn print_gc(cli: &Cli, r: &gc::GcReport, dry_run: bool) {
    if cli.quiet {
        return;
    }
    println!(
        "{} snapshots, {} trees, {} chunks live; {} packs in the store",
        r.snapshots, r.trees, r.chunks, r.packs
    );
    let (would, verb) = if dry_run { ("would ", "be ") } else { ("", "") };
    println!(
        "{would}repack {} packs into {} ({}); {would}condemn {} packs; {} condemned packs {verb}waiting for their grace; {} taken back",
        r.packs_repacked,
        r.packs_written,
        bytes(r.bytes_written),
        r.packs_condemned,
        r.packs_waiting,
        r.packs_revived
    );
    println!(
        "{would}delete {} packs, freeing {}",
        r.packs_deleted,
        bytes(r.bytes_freed)
    );
    if r.packs_damaged > 0 {
        println!(
            "{} packs with a damaged blob were left alone (cairn check --read-data names them)",
            r.packs_damaged
        );
    }
    if let Some(b) = &r.beside_backup {
        println!(
            "nothing was condemned or repacked: a backup was running ({b}); a gc that runs alone does it"
        );
    }
}

/// A policy that keeps nothing is refused unless asked for: it would forget every snapshot.
fn refuse_empty_policy(policy: &forget::Policy, allow_empty: bool) -> Result<()> {
    if policy.keeps_nothing() && !allow_empty {
        return Err(cairn_engine::Error::usage(
            "the retention policy keeps no snapshot (keep_daily, keep_weekly and keep_monthly are 0 and keep_within is unset); refusing to forget every snapshot without --allow-empty",
        )
        .into());
    }
    Ok(())
}

fn snapshots(cli: &Cli, cfg: &Config) -> Result<u8> {
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

fn kind_char(k: EntryKind) -> char {
    match k {
        EntryKind::File => '-',
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::Fifo => 'p',
        EntryKind::Socket => 's',
        EntryKind::Chardev => 'c',
        EntryKind::Blockdev => 'b',
    }
}

fn ls(cli: &Cli, cfg: &Config, a: &LsArgs) -> Result<u8> {
    let ReadSession {
        repo,
        catalog,
        _lock,
    } = read_session(cfg)?;
    let (_, snap) = catalog.resolve_snapshot(&a.snapshot)?;
    let mut rows = Vec::new();
    let mut visit = |path: &[u8], e: &cairn_engine::tree::Entry| -> cairn_engine::Result<()> {
        rows.push((path.to_vec(), e.clone()));
        Ok(())
    };
    match &a.path {
        None => read::walk_tree(&repo, &catalog, &snap.root, &mut visit)?,
        Some(p) => {
            let p = p.trim_matches('/');
            let e = read::find_entry(&repo, &catalog, &snap.root, p.as_bytes())?;
            visit(p.as_bytes(), &e)?;
            if let Some(t) = &e.tree {
                read::walk_tree(&repo, &catalog, t, &mut |sub, e| {
                    let mut full = p.as_bytes().to_vec();
                    full.push(b'/');
                    full.extend_from_slice(sub);
                    visit(&full, e)
                })?;
            }
        }
    }
    if cli.json {
        let v: Vec<_> = rows
            .iter()
            .map(|(p, e)| {
                serde_json::json!({ "path": String::from_utf8_lossy(p), "path_bytes_hex": cairn_engine::id::hex(p),
                    "entry": e })
            })
            .collect();
        print_json(&serde_json::Value::Array(v));
    } else {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for (p, e) in rows {
            let mtime = jiff::Timestamp::new(e.mtime, e.mtime_ns as i32)
                .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_else(|_| e.mtime.to_string());
            write!(
                out,
                "{}{:04o} {:>5} {:>5} {:>12} {} ",
                kind_char(e.kind),
                e.mode,
                e.uid,
                e.gid,
                e.size,
                mtime
            )?;
            out.write_all(std::ffi::OsStr::from_bytes(&p).as_bytes())?;
            if let Some(t) = &e.target {
                out.write_all(b" -> ")?;
                out.write_all(&t.0)?;
            }
            out.write_all(b"\n")?;
        }
    }
    Ok(exit::OK)
}

fn rebuild(cli: &Cli, cfg: &Config) -> Result<u8> {
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
