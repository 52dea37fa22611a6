//! One function per subcommand: load the configuration, call the engine, print the result.

use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use anyhow::{Context, Result};
use cairn_engine::backup::{self, BackupOptions, Progress};
use cairn_engine::catalog::Catalog;
use cairn_engine::config::{Config, open_store};
use cairn_engine::lock::StateLock;
use cairn_engine::repo::Repository;
use cairn_engine::tree::EntryKind;
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

fn open_repo(cfg: &Config) -> Result<Repository> {
    let store = open_store(&cfg.store, "store")?;
    Ok(Repository::open(store)?)
}

pub fn run(cli: &Cli) -> Result<u8> {
    let cfg = load_config(cli)?;
    match &cli.command {
        Command::Init(a) => init(cli, &cfg, a),
        Command::Backup(a) => run_backup(cli, &cfg, a),
        Command::Snapshots => snapshots(cli, &cfg),
        Command::Ls(a) => ls(cli, &cfg, a),
        Command::Catalog(CatalogCommand::Rebuild) => rebuild(cli, &cfg),
    }
}

fn init(cli: &Cli, cfg: &Config, a: &InitArgs) -> Result<u8> {
    let store = open_store(&cfg.store, "store")?;
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

fn run_backup(cli: &Cli, cfg: &Config, a: &BackupArgs) -> Result<u8> {
    let _lock = StateLock::acquire(&cfg.state.dir)?;
    let repo = open_repo(cfg)?;
    let (catalog, sync) = Catalog::open_for(&cfg.state.dir, &repo)?;
    let time = jiff::Timestamp::now();
    let date = match &a.date {
        Some(d) => {
            jiff::civil::Date::strptime("%Y-%m-%d", d).map_err(|_| {
                cairn_engine::Error::usage(format!("--date {d:?} is not YYYY-MM-DD"))
            })?;
            d.clone()
        }
        None => cfg.date_of(time)?,
    };
    let opts = BackupOptions {
        source_root: cfg.source.root.clone(),
        folders: cfg.source.folders.clone(),
        excludes: cfg.source.exclude.clone(),
        one_file_system: cfg.source.one_file_system,
        ignore_inode: a.ignore_inode || cfg.backup.ignore_inode,
        ignore_ctime: a.ignore_ctime || cfg.backup.ignore_ctime,
        compression: cfg.backup.compression,
        time,
        date,
        hook: None,
    };
    let progress = Arc::new(Progress::default());
    let bar = output::BackupBar::start(progress.clone(), cli.quiet || cli.json);
    let result = backup::backup(&repo, &catalog, sync, &opts, &progress);
    bar.finish();
    let out = result.context("backup failed; no snapshot was committed")?;
    let code = if out.snapshot.warnings.is_empty() {
        exit::OK
    } else {
        exit::WARNINGS
    };
    let s = &out.snapshot.summary;
    if cli.json {
        print_json(&serde_json::json!({
            "snapshot": out.id,
            "date": out.snapshot.date,
            "summary": s,
            "warnings": out.snapshot.warnings,
            "catalog_rebuilt": out.sync.rebuilt,
            "exit_code": code,
        }));
    } else if !cli.quiet {
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
    Ok(code)
}

fn snapshots(cli: &Cli, cfg: &Config) -> Result<u8> {
    let _lock = StateLock::acquire(&cfg.state.dir)?;
    let repo = open_repo(cfg)?;
    let (catalog, _) = Catalog::open_for(&cfg.state.dir, &repo)?;
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
    let _lock = StateLock::acquire(&cfg.state.dir)?;
    let repo = open_repo(cfg)?;
    let (catalog, _) = Catalog::open_for(&cfg.state.dir, &repo)?;
    let (_, snap) = catalog.resolve_snapshot(&a.snapshot)?;
    let mut rows = Vec::new();
    let mut visit = |path: &[u8], e: &cairn_engine::tree::Entry| -> cairn_engine::Result<()> {
        rows.push((path.to_vec(), e.clone()));
        Ok(())
    };
    match &a.path {
        None => backup::walk_tree(&repo, &catalog, &snap.root, &mut visit)?,
        Some(p) => {
            let p = p.trim_matches('/');
            let e = backup::find_entry(&repo, &catalog, &snap.root, p.as_bytes())?;
            visit(p.as_bytes(), &e)?;
            if let Some(t) = &e.tree {
                backup::walk_tree(&repo, &catalog, t, &mut |sub, e| {
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
