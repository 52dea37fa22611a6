//! `cairn ls SNAPSHOT [PATH]`: the entries of a snapshot below a path, recursively, one line each
//! as `ls -l` prints them (names as raw bytes), read beside a running nightly job.

use std::os::unix::ffi::OsStrExt;

use anyhow::Result;
use cairn_engine::config::Config;
use cairn_engine::read;
use cairn_engine::tree::EntryKind;
use clap::Args;

use super::session::{ReadSession, read_session};
use crate::output::print_json;
use crate::{Cli, exit};

#[derive(Debug, Args)]
pub struct LsArgs {
    /// `latest`, a date (YYYY-MM-DD), or an id prefix.
    snapshot: String,
    /// A path inside the snapshot, such as `notetaking/projects`.
    path: Option<String>,
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

pub(super) fn ls(cli: &Cli, cfg: &Config, a: &LsArgs) -> Result<u8> {
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
            // The engine's one walk, from the entry's own path, with the rules every reader
            // shares (only a directory has a listing; paths bounded).
            if let Some(t) = read::walk::subtree(&e) {
                read::walk::walk(
                    t,
                    p.as_bytes(),
                    &mut |id, _| read::load_tree(&repo, &catalog, id),
                    &mut |path, e| visit(path, e).map(|()| read::walk::Descend::Into),
                )?;
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
