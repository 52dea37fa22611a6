//! Restoring a snapshot: a plan of directories, files, hardlinks and symlinks from the trees,
//! then the files' contents in parallel, then symlinks and directory metadata last.

use std::sync::atomic::Ordering::Relaxed;

use rayon::prelude::*;

use super::file::{FileJob, job_path, locate_chunks, restore_file};
use super::target::{Meta, Target, components, show};
use super::{Counters, RestoreOptions, RestoreReport};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Entry, EntryKind, check_path_len_of};
use crate::id::Id;
use crate::read::{HardlinkGroups, find_entry, load_tree};
use crate::repo::Repository;
use crate::repo::index::BlobLocation;

/// A path as checked components.
pub(super) type Parts = Vec<Vec<u8>>;

pub(super) struct Plan {
    dirs: Vec<(Vec<Vec<u8>>, Meta)>,
    files: Vec<FileJob>,
    links: Vec<(Parts, Entry, Parts)>,
    symlinks: Vec<(Vec<Vec<u8>>, Entry)>,
    specials: Vec<(Vec<Vec<u8>>, Entry)>,
    /// The first name planned of each hardlink group.
    first_of: HardlinkGroups<Parts>,
}

impl Plan {
    /// Plans `e` at `parent` and everything below it, depth first in tree order. Walks with an
    /// explicit stack, and refuses (kind `Corrupt`) a path longer than a snapshot may hold, so
    /// a crafted chain of trees neither overflows the stack nor nests directories without end.
    fn add(
        &mut self,
        repo: &Repository,
        catalog: &Catalog,
        target: &Target,
        parent: &[Vec<u8>],
        e: Entry,
    ) -> Result<()> {
        let mut todo = vec![(parent.to_vec(), e)];
        while let Some((parent, e)) = todo.pop() {
            let mut path = parent.clone();
            path.push(e.name.0.clone());
            let len = path.iter().map(Vec::len).sum::<usize>() + path.len() - 1;
            check_path_len_of(&path.join(&b'/'), len)?;
            match e.kind {
                EntryKind::Dir => {
                    let fd = target.dir(&parent, true)?;
                    target.mkdir(&fd, &e.name.0, &show(&path))?;
                    let tree = e.tree.ok_or_else(|| {
                        Error::corrupt(format!("{}: directory without a tree", show(&path)))
                    })?;
                    // Reversed onto the stack, so that they come off it in tree order.
                    for child in load_tree(repo, catalog, &tree)?.entries.into_iter().rev() {
                        todo.push((path.clone(), child));
                    }
                    self.dirs.push((path, Meta::of(&e)));
                }
                EntryKind::File => {
                    if let Some(first) = self.first_of.link_to(&path[0], &e, || path.clone()) {
                        self.links.push((parent, e, first));
                        continue;
                    }
                    self.files.push(FileJob { parent, entry: e });
                }
                EntryKind::Symlink => self.symlinks.push((parent, e)),
                _ => self.specials.push((parent, e)),
            }
        }
        Ok(())
    }
}

/// Restores `snap` (or `opts.paths` inside it) into `opts.target`.
pub fn restore(
    repo: &Repository,
    catalog: &Catalog,
    snap: &Snapshot,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    let target = Target::open(&opts.target, opts.overwrite)?;
    let mut plan = Plan {
        dirs: Vec::new(),
        files: Vec::new(),
        links: Vec::new(),
        symlinks: Vec::new(),
        specials: Vec::new(),
        first_of: HardlinkGroups::new(),
    };
    if opts.paths.is_empty() {
        for e in load_tree(repo, catalog, &snap.root)?.entries {
            plan.add(repo, catalog, &target, &[], e)?;
        }
    } else {
        for p in &opts.paths {
            let parts = components(p.as_bytes())?;
            let e = find_entry(repo, catalog, &snap.root, p.as_bytes())?;
            let parent = &parts[..parts.len() - 1];
            target.dir(parent, true)?;
            plan.add(repo, catalog, &target, parent, e)?;
        }
    }
    let counters = Counters::new(repo);
    // A damaged or missing chunk fails its file, not the restore: the rest is written, and the
    // failures are named together at the end.
    let failed = std::sync::Mutex::new(Vec::new());
    let fail = |job: &FileJob, e: Error| {
        let path = job_path(job);
        tracing::error!(path, error = %e, "file not restored");
        failed.lock().expect("poisoned").push((path, e));
    };
    if !repo.reads_locally() {
        super::remote::restore_files(
            repo,
            catalog,
            &target,
            &plan.files,
            opts.verify,
            &counters,
            &fail,
        );
    } else {
        plan.files.par_iter().for_each(|job| {
            let restored = locate_chunks(catalog, job).and_then(|locations| {
                let mut source = |id: &Id, loc: &BlobLocation| {
                    crate::catalog::heal::read_checked(repo, catalog, BlobKind::Data, id, loc)
                };
                restore_file(
                    &target,
                    job,
                    &locations,
                    &mut source,
                    opts.verify,
                    &counters,
                )
            });
            if let Err(e) = restored {
                fail(job, e);
            }
        });
    }
    let mut failed: Vec<(String, Error)> = failed.into_inner().expect("poisoned");
    let total = plan.files.len() + plan.links.len();
    let mut report = RestoreReport {
        files: counters.files.load(Relaxed),
        bytes: counters.bytes.load(Relaxed),
        unchanged: counters.unchanged.load(Relaxed),
        verified: counters.verified.load(Relaxed),
        ..Default::default()
    };
    for (parent, e, first) in &plan.links {
        let fd = target.dir(parent, false)?;
        let path = format!("{}/{}", show(parent), e.name.lossy());
        // A second name of a file that failed: nothing sound to link to.
        let first_path = show(first);
        if let Some(kind) = failed
            .iter()
            .find(|(p, _)| *p == first_path)
            .map(|(_, e)| e.kind())
        {
            failed.push((
                path,
                Error::new(kind, format!("hardlink to {first_path}, which failed")),
            ));
            continue;
        }
        if target.hardlink(first, &fd, &e.name.0, &path)? {
            report.hardlinks += 1;
        } else {
            report.unchanged += 1;
        }
    }
    for (parent, e) in &plan.specials {
        let path = format!("{}/{}", show(parent), e.name.lossy());
        match e.kind {
            EntryKind::Fifo => {
                let fd = target.dir(parent, false)?;
                if target.fifo(&fd, &e.name.0, &Meta::of(e), &path)? {
                    report.fifos += 1;
                }
            }
            EntryKind::Chardev | EntryKind::Blockdev => target.special_device(
                parent,
                &e.name.0,
                (e.kind, e.rdev),
                &Meta::of(e),
                &path,
                &mut report,
            )?,
            _ => report.skipped.push(path),
        }
    }
    // Last: nothing written after this point could be redirected through a new symlink.
    for (parent, e) in &plan.symlinks {
        let fd = target.dir(parent, false)?;
        let path = format!("{}/{}", show(parent), e.name.lossy());
        let t = e
            .target
            .as_ref()
            .map(|t| t.0.as_slice())
            .unwrap_or_default();
        if target.symlink(&fd, &e.name.0, t, &Meta::of(e), &path)? {
            report.symlinks += 1;
        } else {
            report.unchanged += 1;
        }
    }
    // Deepest first, so that setting a parent's mtime is the last change inside it.
    plan.dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    for (parts, meta) in &plan.dirs {
        target.dir_meta(parts, meta)?;
        report.dirs += 1;
    }
    if let Some((_, first)) = failed.first() {
        const SHOWN: usize = 10;
        let mut named: Vec<String> = failed
            .iter()
            .take(SHOWN)
            .map(|(path, e)| {
                let e = e.to_string();
                if e.contains(path.as_str()) {
                    e
                } else {
                    format!("{path}: {e}")
                }
            })
            .collect();
        if failed.len() > SHOWN {
            named.push(format!("and {} more", failed.len() - SHOWN));
        }
        return Err(Error::new(
            first.kind(),
            format!(
                "{} of {} files could not be restored (everything else was): {}",
                failed.len(),
                total,
                named.join("; ")
            ),
        ));
    }
    Ok(report)
}
