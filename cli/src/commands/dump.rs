//! `cairn dump SNAPSHOT PATH`: a file of a snapshot to stdout as its bytes, or a folder (`/` for
//! the whole snapshot) as a tar stream that GNU tar and bsdtar extract as they extract the daily
//! archive, as `restic dump` does; read beside a running nightly job, like `ls`. The stream is
//! written as the snapshot is walked (`cairn_engine::export::dump`), never held whole.

use std::io::{IsTerminal, Write};

use anyhow::Result;
use cairn_engine::config::Config;
use cairn_engine::export::dump;
use clap::{Args, ValueEnum};

use super::session::{ReadSession, read_session};
use crate::{Cli, exit};

/// Arguments of `cairn dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// `latest`, a date (YYYY-MM-DD), or an id prefix.
    snapshot: String,
    /// A file or folder inside the snapshot, such as `notetaking/projects`; `/` for the whole
    /// snapshot. A folder is written as a tar stream whose paths start with its own name.
    path: String,
    /// `auto`: a folder as a tar stream, a file as its bytes; `tar`: a tar stream either way.
    #[arg(long, value_enum, default_value = "auto")]
    archive: Archive,
}

/// What `cairn dump` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Archive {
    /// A folder as a tar stream, a file as its bytes.
    Auto,
    /// A tar stream, of a single file too.
    Tar,
}

/// Runs `cairn dump`.
pub(super) fn run_dump(cli: &Cli, cfg: &Config, a: &DumpArgs) -> Result<u8> {
    let ReadSession {
        repo,
        catalog,
        _lock,
    } = read_session(cfg)?;
    let (_, snap) = catalog.resolve_snapshot(&a.snapshot)?;
    let src = dump::resolve(&repo, &catalog, &snap.root, a.path.as_bytes())?;
    let tar = src.is_dir() || a.archive == Archive::Tar;
    let stdout = std::io::stdout();
    if tar && stdout.is_terminal() {
        return Err(cairn_engine::Error::usage(format!(
            "refusing to write a tar stream of {} to a terminal: redirect it to a file or a pipe (| tar -x -C DIR)",
            a.path
        ))
        .into());
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let dumped = if tar {
        dump::dump_tar(&repo, &catalog, &src, &mut out)
    } else {
        dump::dump_file(&repo, &catalog, &src, &mut out)
    };
    let report = match dumped {
        Ok(report) => report,
        // The reader went away (`cairn dump … | head`): it has what it wanted.
        Err(e) if broken_pipe(&e) => return Ok(exit::OK),
        Err(e) => return Err(e.into()),
    };
    if report.left_out > 0 && !cli.quiet {
        // Best effort: a closed stderr does not fail a dump that was written.
        let _ = writeln!(
            std::io::stderr(),
            "cairn: left out {} socket(s), fifo(s) or device(s), as the daily archive leaves them out",
            report.left_out
        );
    }
    Ok(exit::OK)
}

/// Whether `e` is a write to a reader that went away.
fn broken_pipe(e: &cairn_engine::Error) -> bool {
    e.cause()
        .and_then(|c| c.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}
