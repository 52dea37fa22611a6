//! Deleting, under the exclusive repository lease: new snapshots marked once more, condemned
//! packs a snapshot now needs taken back, and the due ones deleted while the lease is confirmed
//! still this run's alone before each delete.

use std::collections::HashMap;

use super::mark::{Condemned, Live, review};
use super::options::GcPoint;
use super::survey::refuse_unreadable_snapshots;
use crate::catalog::Catalog;
use crate::error::{ErrorKind, Result};
use crate::id::Id;
use crate::repo::condemn::{self, Marker};
use crate::repo::lease::Lease;
use crate::repo::{Repository, pack_key};

/// What the deleting phase did.
pub(super) struct Deleted {
    pub(super) deleted: usize,
    pub(super) freed: u64,
    pub(super) revived: usize,
    /// Due packs left for a later run (the lease was lost midway).
    pub(super) waiting: usize,
    /// Why the deleting stopped early.
    pub(super) stopped: Option<String>,
}

/// The deleting phase, under the exclusive lease.
pub(super) fn delete_due(
    repo: &Repository,
    catalog: &Catalog,
    live: &mut Live,
    (due, condemned): (&[&Marker], &[&Marker]),
    lease: &Lease<'_>,
    in_store: &HashMap<Id, u64>,
    call: &dyn Fn(GcPoint),
) -> Result<Deleted> {
    let store = repo.store();
    // Snapshots committed since the marking (a backup that finished before this lease).
    catalog.resync(repo)?;
    refuse_unreadable_snapshots(repo, catalog)?;
    // A new snapshot's trees may be in any condemned pack, due or not (a backup beside the
    // marking stored tree packs that were condemned as unreferenced).
    let mut fallback = Condemned::new(
        repo,
        condemned
            .iter()
            .map(|m| (m.pack, in_store[&m.pack]))
            .collect(),
    );
    live.mark(repo, catalog, &mut fallback)?;
    fallback.revive(store.as_ref(), catalog)?;
    // Markers in force now: a backup that ran between the phases may have taken packs back.
    let in_force = condemn::list(store.as_ref())?;
    let due: Vec<&Marker> = due
        .iter()
        .filter(|m| !fallback.revived.contains(&m.pack) && in_force.contains_key(&m.pack))
        .copied()
        .collect();
    let reviewed = review(repo, catalog, live, &due, in_store)?;
    for pack in &reviewed.revived {
        condemn::remove(store.as_ref(), pack)?;
    }
    let mut revived = reviewed.revived;
    revived.extend(fallback.revived.iter().copied());
    let kept = due
        .iter()
        .filter(|m| reviewed.kept.contains(&m.pack))
        .count();
    let due: Vec<&Marker> = due
        .into_iter()
        .filter(|m| !reviewed.kept.contains(&m.pack))
        .collect();
    let due = &due;
    call(GcPoint::Deleting);
    crate::progress::meter().begin(
        "gc: deleting",
        "packs",
        Some(due.iter().filter(|m| !revived.contains(&m.pack)).count() as u64),
        Some(
            due.iter()
                .filter(|m| !revived.contains(&m.pack))
                .map(|m| in_store[&m.pack])
                .sum(),
        ),
        &[],
    );
    let mut done = Deleted {
        deleted: 0,
        freed: 0,
        revived: revived.len(),
        waiting: kept,
        stopped: None,
    };
    for m in due.iter().filter(|m| !revived.contains(&m.pack)) {
        // Irrevocable: only while the lease is still this run's alone.
        if let Err(e) = lease.confirm() {
            tracing::warn!(error = %e, "stopping the deletion");
            done.stopped = Some(e.to_string());
            done.waiting +=
                due.iter().filter(|m| !revived.contains(&m.pack)).count() - done.deleted;
            return Ok(done);
        }
        match store.delete(&pack_key(&m.pack)) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e.context(format!("deleting pack {}", m.pack.short()))),
        }
        match store.delete(&crate::repo::damage::note_key(&m.pack)) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                tracing::warn!(pack = %m.pack, error = %e, "could not delete the damage note of a deleted pack")
            }
            _ => {}
        }
        if let Some(c) = catalog.tree_cache() {
            c.forget(&m.pack);
        }
        done.deleted += 1;
        done.freed += in_store[&m.pack];
        crate::progress::meter().items(1);
        crate::progress::meter().bytes(in_store[&m.pack]);
        tracing::debug!(pack = %m.pack, "pack deleted");
        call(GcPoint::PackDeleted);
    }
    Ok(done)
}
