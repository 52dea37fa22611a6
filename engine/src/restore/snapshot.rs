//! Restoring a snapshot: its plan ([`RestorePlan`]) carried out: directories in plan order,
//! then the files' contents in parallel, then second names of hardlinks, special files,
//! symlinks, and directory metadata last.

use std::sync::atomic::Ordering::Relaxed;

use rayon::prelude::*;

use super::file::{FileJob, job_path, locate_chunks, restore_file};
use super::plan::RestorePlan;
use super::target::{Meta, Target, show};
use super::{Counters, RestoreOptions, RestoreReport};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::EntryKind;
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::index::BlobLocation;

/// Restores `snap` (or `opts.paths` inside it) into `opts.target`: plans it, then carries the
/// plan out.
pub fn restore(
    repo: &Repository,
    catalog: &Catalog,
    snap: &Snapshot,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    let plan = RestorePlan::new(repo, catalog, snap, &opts.paths)?;
    execute(repo, catalog, &plan, opts)
}

/// Carries out `plan` in `opts.target` (`opts.paths` was used to make the plan).
pub fn execute(
    repo: &Repository,
    catalog: &Catalog,
    plan: &RestorePlan,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    let target = Target::open(&opts.target, opts.overwrite)?;
    for parent in &plan.roots {
        target.dir(parent, true)?;
    }
    for (parent, e) in &plan.dirs {
        let fd = target.dir(parent, true)?;
        let mut path = parent.clone();
        path.push(e.name.0.clone());
        target.mkdir(&fd, &e.name.0, &show(&path))?;
    }
    let sum = plan.summary();
    crate::progress::meter().begin("restore", "files", Some(sum.files), Some(sum.bytes), &[]);
    let counters = Counters::new(repo);
    let failed = write_files(repo, catalog, &target, plan, opts.verify, &counters);
    let mut report = RestoreReport {
        files: counters.files.load(Relaxed),
        bytes: counters.bytes.load(Relaxed),
        unchanged: counters.unchanged.load(Relaxed),
        verified: counters.verified.load(Relaxed),
        ..Default::default()
    };
    let mut failed = failed;
    links_and_specials(&target, plan, &mut failed, &mut report)?;
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
    let mut dirs: Vec<(Vec<Vec<u8>>, Meta)> = plan
        .dirs
        .iter()
        .map(|(parent, e)| {
            let mut p = parent.clone();
            p.push(e.name.0.clone());
            (p, Meta::of(e))
        })
        .collect();
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    for (parts, meta) in &dirs {
        target.dir_meta(parts, meta)?;
        report.dirs += 1;
    }
    match failure(&failed, plan.files.len() + plan.links.len()) {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Writes the files' contents in parallel; the files that failed, with why.
fn write_files(
    repo: &Repository,
    catalog: &Catalog,
    target: &Target,
    plan: &RestorePlan,
    verify: bool,
    counters: &Counters,
) -> Vec<(String, Error)> {
    // A damaged or missing chunk fails its file, not the restore: the rest is written, and the
    // failures are named together at the end.
    let failed = std::sync::Mutex::new(Vec::new());
    let fail = |job: &FileJob, e: Error| {
        let path = job_path(job);
        tracing::error!(path, error = %e, "file not restored");
        failed.lock().expect("poisoned").push((path, e));
    };
    if !repo.reads_locally() {
        super::remote::restore_files(repo, catalog, target, &plan.files, verify, counters, &fail);
    } else {
        plan.files.par_iter().for_each(|job| {
            let restored = locate_chunks(catalog, job).and_then(|locations| {
                let mut source = |id: &Id, loc: &BlobLocation| {
                    crate::catalog::heal::read_checked(repo, catalog, BlobKind::Data, id, loc)
                };
                restore_file(target, job, &locations, &mut source, verify, counters)
            });
            if let Err(e) = restored {
                fail(job, e);
            }
        });
    }
    failed.into_inner().expect("poisoned")
}

/// Second names of hardlinked files (none to a file that failed), then special files.
fn links_and_specials(
    target: &Target,
    plan: &RestorePlan,
    failed: &mut Vec<(String, Error)>,
    report: &mut RestoreReport,
) -> Result<()> {
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
                report,
            )?,
            _ => report.skipped.push(path),
        }
    }
    Ok(())
}

/// The one error that names the files that failed (the first ten), or `None`.
fn failure(failed: &[(String, Error)], total: usize) -> Option<Error> {
    let (_, first) = failed.first()?;
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
    Some(Error::new(
        first.kind(),
        format!(
            "{} of {} files could not be restored (everything else was): {}",
            failed.len(),
            total,
            named.join("; ")
        ),
    ))
}
