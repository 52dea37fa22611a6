//! Restoring from a daily archive alone (no catalog, no store index): a checked tar stream,
//! every name checked as for snapshots.

use std::io::Read;

use super::target::{Meta, Target, components, show, wanted};
use super::{RestoreOptions, RestoreReport};
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::EntryKind;
use crate::tar::guard::PaxNames;

/// An owner id from an archive as a `uid_t`: ids that do not fit 32 bits (a crafted pax record
/// of 99999999999 would otherwise become 1215752191, someone else's id) become `u32::MAX`,
/// which `chown` takes as "leave unchanged", so the entry keeps the restoring user's owner.
pub(super) fn archive_owner(
    id: std::io::Result<u64>,
    which: &str,
    path: &str,
    warnings: &mut Vec<String>,
) -> u32 {
    match id {
        Ok(v) if v < u64::from(u32::MAX) => v as u32,
        Ok(v) => {
            let w = format!("{path}: {which} {v} does not fit 32 bits; the owner was left as is");
            tracing::warn!("{w}");
            warnings.push(w);
            u32::MAX
        }
        Err(_) => {
            let w = format!("{path}: unreadable {which}; the owner was left as is");
            tracing::warn!("{w}");
            warnings.push(w);
            u32::MAX
        }
    }
}

/// Restores from a daily archive alone (no catalog, no store index): a `.tar.zst` stream.
/// Every path, symlink and hardlink name in it is checked as for snapshots; an unsafe one fails
/// the restore with a message naming it, before anything is written for that entry.
pub fn restore_archive(reader: impl Read, opts: &RestoreOptions) -> Result<RestoreReport> {
    let target = Target::open(&opts.target, opts.overwrite)?;
    let filters: Vec<Vec<Vec<u8>>> = opts
        .paths
        .iter()
        .map(|p| components(p.as_bytes()))
        .collect::<Result<_>>()?;
    let dec = zstd::stream::read::Decoder::new(Metered(reader))
        .map_err(|e| Error::corrupt("zstd decoder").with_source(e))?;
    // Guarded: the tar crate reads long names and pax headers whole before we see them. Names
    // with a newline come from the guard, which reads pax records by length as tar does.
    let (guard, names) = crate::tar::guard::TarGuard::with_names(dec);
    let mut archive = tar::Archive::new(guard);
    let mut restore = ArchiveRestore {
        target,
        filters,
        report: RestoreReport::default(),
        dirs: Vec::new(),
        symlinks: Vec::new(),
        files: Default::default(),
    };
    for item in archive.entries().map_err(damaged)? {
        let mut item = item.map_err(damaged)?;
        let posix = names.borrow().clone();
        restore.entry(&mut item, posix)?;
    }
    restore.finish()
}

/// The archive as damaged, with the tar crate's error as its cause.
fn damaged(e: std::io::Error) -> Error {
    Error::corrupt("the archive is damaged").with_source(e)
}

/// One restore from an archive: the target, what is wanted of the archive, and what is kept for
/// the end (symlinks last, so that none redirects a later write; folders' metadata after their
/// contents).
struct ArchiveRestore {
    target: Target,
    filters: Vec<Vec<Vec<u8>>>,
    report: RestoreReport,
    dirs: Vec<(Vec<Vec<u8>>, Meta)>,
    symlinks: Vec<(Vec<Vec<u8>>, Vec<u8>, Meta)>,
    /// The files restored so far, which a hardlink may point to.
    files: std::collections::HashSet<Vec<Vec<u8>>>,
}

impl ArchiveRestore {
    /// Reads one archive entry's name and metadata (its path and link name from the guard's
    /// `posix` names when they hold a newline) and restores it, if it is wanted.
    fn entry<R: Read>(&mut self, item: &mut tar::Entry<'_, R>, posix: PaxNames) -> Result<()> {
        let raw = posix.path.unwrap_or_else(|| item.path_bytes().into_owned());
        if raw == b"." || raw == b"./" {
            return Ok(()); // the archive root of `tar -C dir .`
        }
        // A bad path inside an archive is damage, not a mistake of the user's.
        let parts = components(&raw)
            .map_err(|e| e.context("archive entry").with_kind(ErrorKind::Corrupt))?;
        if !wanted(&parts, &self.filters) {
            return Ok(());
        }
        let h = item.header();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let (mode, uid, gid) = (
            h.mode().unwrap_or(0o600),
            archive_owner(h.uid(), "uid", &shown, &mut self.report.warnings),
            archive_owner(h.gid(), "gid", &shown, &mut self.report.warnings),
        );
        let device = match (h.device_major(), h.device_minor()) {
            (Ok(Some(major)), Ok(Some(minor))) => Some(libc::makedev(major, minor)),
            _ => None,
        };
        let kind = h.entry_type();
        let link = posix
            .linkpath
            .or_else(|| item.link_name_bytes().map(|l| l.into_owned()));
        let (mtime, mtime_ns) = crate::tar::header::archive_mtime(item)?;
        let meta = Meta {
            mode,
            uid,
            gid,
            mtime,
            mtime_ns,
        };
        self.place(item, parts, kind, (link, device), meta)
    }

    /// Restores an entry of type `kind` at `parts`, with its link name or device number.
    fn place<R: Read>(
        &mut self,
        item: &mut tar::Entry<'_, R>,
        parts: Vec<Vec<u8>>,
        kind: tar::EntryType,
        (link, device): (Option<Vec<u8>>, Option<u64>),
        meta: Meta,
    ) -> Result<()> {
        let (target, report) = (&self.target, &mut self.report);
        let path = show(&parts);
        let (name, parent) = parts.split_last().expect("components are never empty");
        match kind {
            tar::EntryType::Directory => {
                target.dir(&parts, true)?;
                self.dirs.push((parts.clone(), meta));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let dir = target.dir(parent, true)?;
                let size = item.size();
                let written = target.file(&dir, name, &path, size, &meta, &mut |w| {
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let n = item.read(&mut buf).map_err(damaged)?;
                        if n == 0 {
                            return Ok(());
                        }
                        w.write(&buf[..n])?;
                    }
                })?;
                crate::progress::meter().items(1);
                if written {
                    report.files += 1;
                    report.bytes += size;
                } else {
                    report.unchanged += 1;
                }
                self.files.insert(parts.clone());
            }
            tar::EntryType::Link => {
                let from = components(&link.unwrap_or_default()).map_err(|e| {
                    e.context(format!("hardlink {path}"))
                        .with_kind(ErrorKind::Corrupt)
                })?;
                if !self.files.contains(&from) {
                    return Err(Error::corrupt(format!(
                        "hardlink {path} points to {}, which is not a file restored before it",
                        show(&from)
                    )));
                }
                let dir = target.dir(parent, true)?;
                if target.hardlink(&from, &dir, name, &path)? {
                    report.hardlinks += 1;
                }
                self.files.insert(parts.clone());
            }
            tar::EntryType::Symlink => {
                target.dir(parent, true)?;
                self.symlinks
                    .push((parts.clone(), link.unwrap_or_default(), meta));
            }
            tar::EntryType::Fifo => {
                let dir = target.dir(parent, true)?;
                if target.fifo(&dir, name, &meta, &path)? {
                    report.fifos += 1;
                }
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                target.dir(parent, true)?;
                let kind = if kind == tar::EntryType::Block {
                    EntryKind::Blockdev
                } else {
                    EntryKind::Chardev
                };
                target.special_device(parent, name, (kind, device), &meta, &path, report)?;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName => {}
            _ => report.skipped.push(path),
        }
        Ok(())
    }

    /// Creates the symlinks, then applies the folders' metadata, deepest first: writing into
    /// them changed their times.
    fn finish(mut self) -> Result<RestoreReport> {
        let (target, report) = (&self.target, &mut self.report);
        for (parts, t, meta) in &self.symlinks {
            let (name, parent) = parts.split_last().expect("non-empty");
            let dir = target.dir(parent, false)?;
            if target.symlink(&dir, name, t, meta, &show(parts))? {
                report.symlinks += 1;
            }
        }
        self.dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        for (parts, meta) in &self.dirs {
            target.dir_meta(parts, meta)?;
            report.dirs += 1;
        }
        Ok(self.report)
    }
}

/// Counts the archive's bytes as they are read, for [`crate::progress`]: the caller knows the
/// archive's size and begins the stage with it as the total.
struct Metered<R>(R);

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.read(buf)?;
        crate::progress::meter().bytes(n as u64);
        Ok(n)
    }
}
