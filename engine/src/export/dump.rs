//! `cairn dump`: one file of a snapshot as its bytes, or a folder (or the whole snapshot) as a
//! tar stream, written to any writer while the snapshot is walked.
//!
//! It is here, beside the daily archive, because its tar stream is the archive's: the header
//! blocks come from `tar::header`, and entries become tar entries by the archive's rules (a
//! directory's name ends in `/`, the later names of a hardlink group are tar hardlinks to the
//! first one met within the same top-level folder, sockets, fifos and devices are left out), so
//! GNU tar and bsdtar read a dump as they read the archive. One difference: a dump keeps every
//! time's nanoseconds in a pax record, since it is extracted once and never stored.
//!
//! Memory stays bounded whatever the size of what is dumped: the walk holds one open listing per
//! level (`read::walk`), a file's content passes one chunk at a time, each checked against its
//! id (`read::read_file_content`), and only the first name of each hardlink group is kept.

use std::io::Write;

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::format::tree::{Entry, EntryKind};
use crate::id::Id;
use crate::read::walk::{Descend, subtree, walk};
use crate::read::{HardlinkGroups, find_entry, load_tree, read_file_content};
use crate::repo::Repository;
use crate::tar::header::header_exact_into;

/// What a dump starts from: the whole snapshot, or one folder or file of it ([`resolve`]).
#[derive(Debug, Clone)]
pub struct DumpSource {
    /// The snapshot's root tree.
    root: Id,
    /// The path in the snapshot, `/`-separated with no empty parts; empty for the whole snapshot.
    path: Vec<u8>,
    /// The entry at `path`; `None` for the whole snapshot.
    entry: Option<Entry>,
}

impl DumpSource {
    /// Whether it is a folder (the whole snapshot is one): what [`dump_tar`] is for.
    pub fn is_dir(&self) -> bool {
        self.entry.as_ref().is_none_or(|e| e.kind == EntryKind::Dir)
    }

    /// Its path in the snapshot, `/`-separated; empty for the whole snapshot.
    pub fn path(&self) -> &[u8] {
        &self.path
    }

    /// Its entry; `None` for the whole snapshot.
    pub fn entry(&self) -> Option<&Entry> {
        self.entry.as_ref()
    }

    /// The path as a person reads it, `/` for the whole snapshot.
    fn shown(&self) -> String {
        if self.path.is_empty() {
            "/".into()
        } else {
            String::from_utf8_lossy(&self.path).into_owned()
        }
    }
}

/// What a dump wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpReport {
    /// Entries written: the file of a plain dump, or the tar stream's directories, files,
    /// symlinks and hardlinks.
    pub entries: u64,
    /// Bytes of file content written.
    pub content_bytes: u64,
    /// Sockets, fifos and devices left out of a tar stream, as the daily archive leaves them out.
    pub left_out: u64,
}

/// What `path` names in the snapshot whose root tree is `root`: the whole snapshot for `/` (or
/// an empty path), otherwise a folder or a file (leading, trailing and doubled `/` are ignored).
/// A path the snapshot does not have is `NotFound`, naming it; a symbolic link, socket, fifo or
/// device is `Usage`, naming it: a dump writes only files and folders.
pub fn resolve(repo: &Repository, catalog: &Catalog, root: &Id, path: &[u8]) -> Result<DumpSource> {
    let parts: Vec<&[u8]> = path
        .split(|b| *b == b'/')
        .filter(|p| !p.is_empty())
        .collect();
    let path = parts.join(&b'/');
    if path.is_empty() {
        return Ok(DumpSource {
            root: *root,
            path,
            entry: None,
        });
    }
    let entry = find_entry(repo, catalog, root, &path)?;
    match entry.kind {
        EntryKind::Dir | EntryKind::File => Ok(DumpSource {
            root: *root,
            path,
            entry: Some(entry),
        }),
        kind => Err(Error::usage(format!(
            "{} is a {kind} in the snapshot: only a file or a folder can be dumped",
            String::from_utf8_lossy(&path)
        ))),
    }
}

/// Writes the content of the file `src` to `out`, each chunk checked against its id as it is
/// read; `Usage` if `src` is a folder (that is [`dump_tar`]'s). A file whose chunks do not hold
/// its size is `Corrupt`, and no byte beyond its size is written.
pub fn dump_file(
    repo: &Repository,
    catalog: &Catalog,
    src: &DumpSource,
    out: &mut dyn Write,
) -> Result<DumpReport> {
    let e = match &src.entry {
        Some(e) if e.kind == EntryKind::File => e,
        _ => {
            return Err(Error::usage(format!(
                "{} is a folder: it is dumped as a tar stream",
                src.shown()
            )));
        }
    };
    let n = copy_content(repo, catalog, &src.path, e, out)?;
    written(out.flush())?;
    Ok(DumpReport {
        entries: 1,
        content_bytes: n,
        left_out: 0,
    })
}

/// Writes `src` to `out` as a tar stream, with the daily archive's header blocks (plus every
/// time's nanoseconds), as the snapshot is walked.
///
/// Paths in the stream are relative to the parent of what is dumped, as `tar -C PARENT NAME`
/// makes them: `notetaking/projects` gives `projects/`, `projects/…`; the whole snapshot gives
/// its top-level folders. A file dumped this way is a stream of that one entry.
pub fn dump_tar(
    repo: &Repository,
    catalog: &Catalog,
    src: &DumpSource,
    out: &mut dyn Write,
) -> Result<DumpReport> {
    let mut w = TarDump {
        repo,
        catalog,
        out,
        header: Vec::with_capacity(2048),
        links: HardlinkGroups::new(),
        report: DumpReport::default(),
    };
    match &src.entry {
        None => walk(
            &src.root,
            b"",
            &mut |id, _| load_tree(repo, catalog, id),
            &mut |path, e| w.entry(path, top_folder(path), e),
        )?,
        Some(e) => {
            // Hardlink groups are scoped to the snapshot's top-level folder, here the same for
            // every entry of the stream.
            let folder = top_folder(&src.path).to_vec();
            let name = src.path.rsplit(|b| *b == b'/').next().unwrap_or_default();
            w.entry(name, &folder, e)?;
            if let Some(tree) = subtree(e) {
                walk(
                    tree,
                    name,
                    &mut |id, _| load_tree(repo, catalog, id),
                    &mut |path, e| w.entry(path, &folder, e),
                )?;
            }
        }
    }
    w.finish()
}

/// The first component of `path`: the top-level folder an entry belongs to.
fn top_folder(path: &[u8]) -> &[u8] {
    path.split(|b| *b == b'/').next().unwrap_or_default()
}

/// Zeros: a file's content is padded with them to a whole 512-byte block.
const ZEROS: [u8; 512] = [0; 512];

/// The tar stream being written.
struct TarDump<'a, 'w> {
    repo: &'a Repository,
    catalog: &'a Catalog,
    out: &'w mut dyn Write,
    /// The header blocks of the entry being written.
    header: Vec<u8>,
    /// The first name in the stream of each hardlink group met so far.
    links: HardlinkGroups<Vec<u8>>,
    report: DumpReport,
}

impl TarDump<'_, '_> {
    /// Writes the entry `e` at `path` in the stream (`folder` being the top-level folder of the
    /// snapshot it is in), as the daily archive writes it.
    fn entry(&mut self, path: &[u8], folder: &[u8], e: &Entry) -> Result<Descend> {
        self.header.clear();
        let mut content = false;
        match e.kind {
            EntryKind::Dir => {
                let mut p = path.to_vec();
                p.push(b'/');
                let kind = tar::EntryType::Directory;
                header_exact_into(&mut self.header, &p, e, kind, 0, None);
            }
            EntryKind::Symlink => {
                let target = e
                    .target
                    .as_ref()
                    .map(|t| t.0.as_slice())
                    .unwrap_or_default();
                let kind = tar::EntryType::Symlink;
                header_exact_into(&mut self.header, path, e, kind, 0, Some(target));
            }
            EntryKind::File => match self.links.link_to(folder, e, || path.to_vec()) {
                Some(first) => {
                    let kind = tar::EntryType::Link;
                    header_exact_into(&mut self.header, path, e, kind, 0, Some(&first));
                }
                None => {
                    let kind = tar::EntryType::Regular;
                    header_exact_into(&mut self.header, path, e, kind, e.size, None);
                    content = true;
                }
            },
            kind => {
                tracing::info!(
                    path = %String::from_utf8_lossy(path),
                    %kind,
                    "left out of the dump, as the daily archive leaves it out"
                );
                self.report.left_out += 1;
                return Ok(Descend::Into);
            }
        }
        written(self.out.write_all(&self.header))?;
        if content {
            let n = copy_content(self.repo, self.catalog, path, e, &mut *self.out)?;
            self.report.content_bytes += n;
            let rem = (n % 512) as usize;
            if rem != 0 {
                written(self.out.write_all(&ZEROS[rem..]))?;
            }
        }
        self.report.entries += 1;
        Ok(Descend::Into)
    }

    /// Ends the stream with its two zero blocks.
    fn finish(self) -> Result<DumpReport> {
        written(self.out.write_all(&ZEROS))?;
        written(self.out.write_all(&ZEROS))?;
        written(self.out.flush())?;
        Ok(self.report)
    }
}

/// A write of the dump, as an engine error (a reader that went away is `Io`, its cause a
/// `BrokenPipe`).
fn written(r: std::io::Result<()>) -> Result<()> {
    r.map_err(|e| Error::io("writing the dump", e))
}

/// Writes the content of the file `e` (at `path`) to `out`, chunk by chunk, each checked; its
/// chunks must hold exactly its size, and no byte beyond it is written (a tar header gave that
/// size before the content).
fn copy_content(
    repo: &Repository,
    catalog: &Catalog,
    path: &[u8],
    e: &Entry,
    out: &mut dyn Write,
) -> Result<u64> {
    let mut bounded = Bounded {
        out,
        left: e.size,
        over: false,
    };
    let mismatch = |what: &str| {
        Error::corrupt(format!(
            "{}: its chunks hold {what} bytes than its size, {}",
            String::from_utf8_lossy(path),
            e.size
        ))
    };
    let n = match read_file_content(repo, catalog, e, &mut bounded) {
        Err(_) if bounded.over => return Err(mismatch("more")),
        n => n?,
    };
    if n != e.size {
        return Err(mismatch("fewer"));
    }
    Ok(n)
}

/// A writer that takes at most `left` more bytes, and notes an attempt to write more.
struct Bounded<'a> {
    out: &'a mut dyn Write,
    left: u64,
    over: bool,
}

impl Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            self.over = true;
            return Err(std::io::Error::other("content beyond the file's size"));
        }
        let n = self.out.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
