//! The `cairn` command: parses arguments, sets up logging and progress display, calls the
//! engine, prints results and maps failures to the documented exit codes. All behaviour lives
//! in `cairn-engine`.

mod commands;
mod failpoint;
mod output;
mod progress;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes (see README and docs/DECISIONS.md, "Exit code 4"): 0 success, 1 failure, 2 usage
/// or configuration error, 3 committed with warnings, 4 held or lost (the state directory, a
/// lease in the store, or due packs left by gc), 5 `offsite sync` incomplete.
pub use cairn_engine::error::exit;

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Content-addressed nightly backups of a shared volume"
)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, global = true, env = "CAIRN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override one configuration key, e.g. `--set store.path=/backups` (repeatable).
    #[arg(long = "set", global = true, value_name = "SECTION.KEY=VALUE")]
    sets: Vec<String>,
    /// Print results as JSON on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Only errors on stderr, and during a long operation a progress log line every
    /// `log.progress_interval_s` (0: none); no progress line.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a repository in the configured store.
    Init(commands::init::InitArgs),
    /// Check what a job needs before it runs: the share readable, buckets, keys, clock, state
    /// space, Pushgateway, offsite session; one line each, exit 1 if one failed.
    Preflight(commands::preflight::PreflightArgs),
    /// Back up the configured folders and commit a snapshot.
    Backup(commands::backup::BackupArgs),
    /// Write the daily archive of a snapshot: shared-DATE.tar.zst, .sha256, manifest.json.
    Export(commands::export::ExportArgs),
    /// The nightly job: backup, export, keep the newest daily archives, write a run report.
    Run(commands::run::RunArgs),
    /// Inspect the daily archives.
    #[command(subcommand)]
    Exports(commands::exports::ExportsCommand),
    /// The offsite copy of the daily archives (Proton Drive, any rclone remote, a directory).
    #[command(subcommand)]
    Offsite(commands::offsite::OffsiteCommand),
    /// Restore a snapshot (or paths in it) or a daily archive into a directory.
    Restore(commands::restore::RestoreArgs),
    /// Check the repository: structure, and with --read-data the data itself.
    Check(commands::check::CheckArgs),
    /// Paths added (+), removed (-), changed (M), retyped (T) or with new metadata (U) from A to B.
    Diff {
        /// Older snapshot: `latest`, a date or an id prefix.
        a: String,
        /// Newer snapshot.
        b: String,
    },
    /// Which snapshots hold paths matching a glob (a bare name matches at any depth).
    Find {
        /// The glob, e.g. `*.jpg` or `notetaking/projects/**`.
        pattern: String,
    },
    /// List snapshots, oldest first.
    Snapshots,
    /// Forget the snapshots the [retention] policy does not keep (deletes snapshot objects:
    /// needs a key that may delete; their data stays in the store).
    Forget(commands::forget::ForgetArgs),
    /// Delete the packs no snapshot needs (after the [gc] grace) and repack mostly dead ones
    /// (needs a key that may delete).
    Gc(commands::gc::GcArgs),
    /// Forget by the [retention] policy, then collect garbage: the retention job's command.
    Prune(commands::prune::PruneArgs),
    /// List the entries of a snapshot, recursively, below an optional path.
    Ls(commands::ls::LsArgs),
    /// Maintain the local catalog.
    #[command(subcommand)]
    Catalog(commands::catalog::CatalogCommand),
    /// Browse the snapshots and the daily archives as a read-only filesystem (FUSE) until
    /// unmounted, interrupted or terminated.
    Mount(commands::mount::MountArgs),
    /// Write a file of a snapshot to stdout, or a folder as a tar stream.
    Dump(commands::dump::DumpArgs),
    /// What the repository and its snapshots hold: files, bytes, deduplication, compression,
    /// packs, what a gc would free, the daily archives, growth.
    Stats(commands::stats::StatsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout.
    Completions(commands::completions::CompletionsArgs),
    /// Print the man page (roff) to stdout.
    Man,
}

/// The only crates allowed to log below `info`: cairn's own. Every other crate is held at
/// `info` whatever `CAIRN_LOG` asks for — SigV4 signing logs the canonical request with every
/// signed header (`x-amz-security-token` among them) at debug, the HTTP layers log headers at
/// trace, and a dependency added later must not be able to print a credential either.
const VERBOSE_TARGETS: [&str; 2] = ["cairn_engine", "cairn"];

fn init_logging(cli: &Cli) {
    use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{Layer, fmt};
    let default = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    // A second filter that must also agree, so that no directive in CAIRN_LOG (even one naming
    // another crate) can lift it above info.
    let cap = VERBOSE_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::INFO),
        |t, target| t.with_target(*target, LevelFilter::TRACE),
    );
    // Progress lines are logged at info whatever the level asked for (`-q` included): where no
    // terminal shows the progress line they are the only sign of how far a long night got.
    let progress = Targets::new().with_target("cairn::progress", LevelFilter::INFO);
    let filter = filter.or(progress).and(cap);
    let layer = fmt::layer().with_writer(|| progress::LogWriter);
    let layer = if std::io::stderr().is_terminal() {
        layer
            .compact()
            .without_time()
            .with_target(false)
            .with_filter(filter)
            .boxed()
    } else {
        layer
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_filter(filter)
            .boxed()
    };
    tracing_subscriber::registry().with(layer).init();
}

/// The error and its contexts on one line. Each cause appears once by construction: an engine
/// error prints its cause and does not return it again as a source.
fn one_line(err: &anyhow::Error) -> String {
    let parts: Vec<String> = err.chain().map(ToString::to_string).collect();
    parts.join(": ").replace('\n', " ")
}

/// Buffers of at least this size are mapped on their own and given back when freed.
///
/// glibc raises its mmap threshold each time a large mapped buffer is freed; after that, the
/// 8 MiB reads and 16 MiB upload parts of a run on S3 are carved from per-thread arenas and stay
/// resident. Fixing the threshold took a next-day export on S3 from 309 to 219 MB peak for 0.8 s
/// (9%) more in page faults; restores and backups were unchanged (docs/DECISIONS.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 4 << 20;

fn main() -> ExitCode {
    // An operator's own setting (glibc reads `MALLOC_MMAP_THRESHOLD_` itself) is left alone.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: called before any other thread exists; only sets an allocator parameter.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    init_logging(&cli);
    test_clock();
    match commands::run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let code = exit_code_for(&err);
            let line = one_line(&err);
            eprintln!("cairn: {line}");
            if cli.json {
                output::print_json(&serde_json::json!({ "error": line, "exit_code": code }));
            }
            ExitCode::from(code)
        }
    }
}

/// `CAIRN_TEST_CLOCK_AHEAD_SECS=N` makes a debug build read every store's clock N seconds ahead,
/// so that the CLI's tests find a lease lapsed without sleeping through its time to live.
/// Release builds, the ones deployed, ignore it.
fn test_clock() {
    #[cfg(debug_assertions)]
    if let Some(secs) = std::env::var("CAIRN_TEST_CLOCK_AHEAD_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    {
        cairn_engine::lease::set_process_clock_ahead(std::time::Duration::from_secs(secs));
    }
}

/// Maps an error chain to an exit code by the engine error kind inside it.
fn exit_code_for(err: &anyhow::Error) -> u8 {
    use cairn_engine::ErrorKind;
    let kind = err
        .chain()
        .find_map(|e| e.downcast_ref::<cairn_engine::Error>())
        .map(|e| e.kind());
    kind.map_or(exit::FAILURE, ErrorKind::exit_code)
}
