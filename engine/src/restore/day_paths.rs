//! Restoring paths of a day's daily archive onto a target by its seek table, from the exports
//! location alone (no catalog, no store): only the frames of the
//! files asked for are fetched, each file's tar header is checked before the file is created, and
//! everything is written through the descriptor-based target every restore writes through. Where
//! this way does not apply, the caller streams the archive, whose restore handles everything.

use std::io::Write;
use std::path::Path;

use super::options::{Overwrite, RestoreReport};
use super::target::{Meta, Target, components, unlink_in_way};
use crate::error::{Error, ErrorKind, Result};
use crate::export::frames::{FrameReader, check_seek_table};
use crate::export::manifest::{DayKeys, Manifest, ManifestEntry};
use crate::export::manifest_stream::read_manifest_filtered;
use crate::format::tree::EntryKind;
use crate::store::Store;

/// Restores `paths` (files, or folders and everything below them) of the archive of `date` into
/// `target`, fetching only their frames, through the descriptor-based target every restore
/// writes through (`O_NOFOLLOW` from the target down: a symlink planted in it is refused, never
/// followed, and no path is ever joined into one longer than PATH_MAX). `Ok(None)` when this way
/// does not apply (no usable manifest or seek table, an entry that is not a plain file or
/// folder, or a target that is not a new or empty directory): the caller then streams the
/// archive, whose restore handles everything.
pub fn restore_paths(
    exports: &dyn Store,
    date: &str,
    paths: &[String],
    target: &Path,
) -> Result<Option<RestoreReport>> {
    let keys = DayKeys::new(date)?;
    let wanted = wanted_paths(paths)?;
    let Some(manifest) = read_wanted(exports, &keys, &wanted)? else {
        return Ok(None);
    };
    let picked = picked_entries(&manifest);
    let plain = picked.iter().all(|e| {
        (e.kind == EntryKind::Dir
            || (e.kind == EntryKind::File
                && e.link.is_none()
                && (e.size == 0 || e.offset.is_some())))
            && components(&e.path.0).is_ok()
    });
    // Only into a new or empty directory. As root, files with an offset only: their owners
    // and modes come from their tar headers (read anyway); a folder's would need its header
    // too, and an empty file without an offset (an older manifest) has none to read, so those
    // stream.
    let fresh = match std::fs::read_dir(target) {
        Ok(mut d) => d.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    };
    let root = rustix::process::geteuid().is_root();
    if !plain
        || !fresh
        || manifest.seek_table.is_none()
        || (root
            && picked
                .iter()
                .any(|e| e.kind == EntryKind::Dir || e.offset.is_none()))
    {
        return Ok(None);
    }
    let reader = match FrameReader::open(exports, &keys, &manifest) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(archive = %keys.archive, error = %e, "no usable seek table; reading the archive from its start");
            return Ok(None);
        }
    };
    let mut onto = OntoTarget {
        t: Target::open(target, Overwrite::Never)?,
        target,
        reader,
        root,
        report: RestoreReport::default(),
        dirs: Vec::new(),
    };
    for e in picked {
        onto.entry(e)?;
    }
    onto.finish()
}

/// Each path asked for, and the prefix of what lies below it, read as the streaming restore
/// reads them (one leading `./`, one trailing `/`, no `.` or `..`): a path that one way
/// restores and the other refuses would depend on the route.
fn wanted_paths(paths: &[String]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    paths
        .iter()
        .map(|p| {
            let p = components(p.as_bytes())?.join(&b'/');
            let under = [&p[..], b"/"].concat();
            Ok((p, under))
        })
        .collect::<Result<_>>()
}

/// The day's manifest with the entries at or below the `wanted` paths. `None` when it does not
/// read or places its seek table wrong (the archive is then streamed); a path it does not hold
/// is refused.
fn read_wanted(
    exports: &dyn Store,
    keys: &DayKeys,
    wanted: &[(Vec<u8>, Vec<u8>)],
) -> Result<Option<Manifest>> {
    let mut found = vec![false; wanted.len()];
    let manifest = read_manifest_filtered(exports, keys, &mut |e| {
        let mut keep = false;
        for (i, (p, under)) in wanted.iter().enumerate() {
            if e.path.0 == *p || e.path.0.starts_with(under) {
                found[i] = true;
                keep = true;
            }
        }
        keep
    });
    let manifest = match manifest {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        // The manifest only speeds the restore up: the archive is streamed without it.
        Err(e) => {
            tracing::warn!(archive = %keys.archive, error = %e, "reading the archive from its start");
            return Ok(None);
        }
    };
    if let Err(e) = check_seek_table(keys, &manifest) {
        tracing::warn!(archive = %keys.archive, error = %e, "reading the archive from its start");
        return Ok(None);
    }
    if let Some(i) = found.iter().position(|f| !f) {
        let date = &keys.date;
        return Err(Error::not_found(format!(
            "{} is not in the archive of {date}",
            String::from_utf8_lossy(&wanted[i].0)
        )));
    }
    Ok(Some(manifest))
}

/// The manifest's entries to restore, in archive order, each path once: a manifest naming one
/// path twice would restore it twice.
fn picked_entries(manifest: &Manifest) -> Vec<&ManifestEntry> {
    let mut picked = manifest.entries.iter().collect::<Vec<_>>();
    let mut seen = std::collections::HashSet::new();
    picked.retain(|e| seen.insert(e.path.0.clone()));
    picked.sort_by_key(|e| e.offset);
    picked
}

/// The entries being written onto the target, and the folders whose metadata waits for the end.
struct OntoTarget<'a> {
    t: Target,
    /// The target's path, for messages.
    target: &'a Path,
    reader: FrameReader<'a>,
    /// Running as root: owners and modes come from the files' tar headers.
    root: bool,
    report: RestoreReport,
    dirs: Vec<(Vec<Vec<u8>>, Meta)>,
}

impl OntoTarget<'_> {
    /// Creates folder `e`, or writes file `e` after its header checked.
    fn entry(&mut self, e: &ManifestEntry) -> Result<()> {
        let OntoTarget {
            t,
            target,
            reader,
            root,
            report,
            dirs,
        } = self;
        // A bad path in the manifest is damage, not a mistake of the user's.
        let parts = components(&e.path.0).map_err(|e| e.with_kind(ErrorKind::Corrupt))?;
        let path = e.path.lossy().into_owned();
        let mut meta = Meta {
            mode: e.mode & 0o7777,
            // No owner but as root, and then from the file's tar header.
            uid: u32::MAX,
            gid: u32::MAX,
            mtime: e.mtime,
            mtime_ns: e.mtime_ns,
        };
        if e.kind == EntryKind::Dir {
            t.dir(&parts, true)?;
            dirs.push((parts, meta));
            return Ok(());
        }
        let (name, parent) = parts.split_last().expect("components are never empty");
        let dir = t.dir(parent, true)?;
        if e.offset.is_some() {
            // The header is checked (and its owner and mode read) before the file is created.
            let h = reader
                .check(e)
                .map_err(|err| err.context(format!("restoring {path}")))?;
            if *root {
                // All from the header, which `check` found to have the manifest's mode: the
                // set-uid bits of a file owned by another user are the header's, never only
                // the manifest's.
                (meta.uid, meta.gid, meta.mode) = (h.uid, h.gid, h.mode);
            }
        }
        let mut created = false;
        let written = t.file(&dir, name, &path, e.size, &meta, &mut |w| {
            created = true;
            if e.size > 0 {
                reader.copy(e, &mut ToSparse(w))?;
            }
            Ok(())
        });
        match written {
            Ok(true) => {
                report.files += 1;
                report.bytes += e.size;
                Ok(())
            }
            // The target was empty when looked at: a file there now appeared during the
            // restore, which then did not give it; not an "unchanged" file and exit 0.
            Ok(false) => Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{path} appeared in {} during the restore and was left as it was",
                    target.display()
                ),
            )),
            Err(err) => {
                // A file that fails its checks is removed, never left cut short under its name.
                if created {
                    let _ = unlink_in_way(&dir, name, &path);
                }
                Err(err.context(format!("restoring {path}")))
            }
        }
    }

    /// Applies the folders' metadata last, deepest first: writing into them changed their times.
    fn finish(mut self) -> Result<Option<RestoreReport>> {
        self.dirs.sort_by_key(|(d, _)| std::cmp::Reverse(d.len()));
        for (parts, meta) in &self.dirs {
            self.t.dir_meta(parts, meta)?;
            self.report.dirs += 1;
        }
        tracing::info!(
            bytes = self.reader.fetched,
            "paths restored by the seek table"
        );
        Ok(Some(self.report))
    }
}

/// The restore target's sparse writer as a `Write`.
struct ToSparse<'a>(&'a mut crate::sparse::SparseWriter);

impl Write for ToSparse<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
