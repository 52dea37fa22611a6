//! The commit point of a backup: every pack it stored is durable, so the snapshot may name them
//! once none of the packs it relies on is condemned or gone and its lease is still its own. A
//! lease lost while the snapshot was written withdraws the snapshot again.

use std::path::Path;

use super::options::{BackupOptions, BackupOutcome, HookPoint};
use crate::catalog::{Catalog, SyncReport};
use crate::error::{Error, Result};
use crate::format::snapshot::Snapshot;
use crate::id::Id;
use crate::repo::Repository;

/// Writes `snapshot` into `repo` and records it in `catalog`, after confirming the lease and
/// securing the packs it relies on; `sync` is what the catalog did first, for the outcome.
pub(super) fn commit(
    repo: &Repository,
    catalog: &Catalog,
    opts: &BackupOptions,
    snapshot: Snapshot,
    sync: SyncReport,
) -> Result<BackupOutcome> {
    // The commit point: every pack the backup stored is durable, so the snapshot may now name
    // them — once none of them is condemned or gone, and the lease is still this backup's.
    if let Some(lease) = &opts.lease {
        lease.confirm()?;
    }
    secure_packs(repo, catalog)?;
    if let Some(lease) = &opts.lease {
        lease.confirm()?;
    }
    if let Some(h) = &opts.hook {
        (h.0)(HookPoint::Confirmed, Path::new(""));
    }
    let id = repo.put_snapshot(&snapshot)?;
    // Confirmed again once the snapshot is there: a lease still this backup's means no gc took
    // it over while the snapshot was written (a takeover removes or ends the object, and the
    // expiry is on the store's clock). One that was lost means a gc may have deleted packs it
    // needs after walking the snapshots: the snapshot is withdrawn, and the backup fails.
    if let Some(lease) = &opts.lease
        && let Err(lost) = lease.confirm()
    {
        return Err(withdraw(repo, &id, lost));
    }
    catalog.add_snapshot(&id, &snapshot)?;
    catalog.flush()?;
    tracing::info!(snapshot = %id, files = snapshot.summary.files, bytes_read = snapshot.summary.bytes_read,
        new_bytes = snapshot.summary.new_bytes, warnings = snapshot.warnings.len(), "snapshot committed");
    Ok(BackupOutcome { id, snapshot, sync })
}

/// Right before the commit: no pack this backup relies on (every pack its catalog knows) is
/// condemned, or was deleted by a gc.
///
/// The catalog forgot the condemned packs when it synced, so a known pack that a marker names
/// was condemned since (by a gc that listed the writers before this backup took its lease), or
/// is one this backup stored again under the name of a condemned pack (packing is
/// deterministic): it is taken back with a `.kept` object, which a key that may not delete can
/// write. A known pack that is gone was deleted by a gc that judged this backup's lease lapsed:
/// the backup fails and commits nothing; the next one stores that data again.
fn secure_packs(repo: &Repository, catalog: &Catalog) -> Result<()> {
    let store = repo.store().as_ref();
    let known = catalog.pack_sizes()?;
    // A gc deletes only packs whose marker is in force, and the marker outlives the pack: the
    // condemned packs the catalog knows are the only ones to look for.
    let mut missing = Vec::new();
    for pack in crate::repo::condemn::list(store)?
        .keys()
        .filter(|p| known.contains_key(p))
    {
        match store.size(&crate::repo::pack_key(pack)) {
            Err(e) if e.kind() == crate::error::ErrorKind::NotFound => missing.push(*pack),
            Err(e) => return Err(e),
            Ok(_) => {
                tracing::info!(pack = %pack, "a pack this backup relies on is condemned; taking it back");
                crate::repo::condemn::keep(store, pack)?;
            }
        }
    }
    missing.sort();
    if let Some(first) = missing.first() {
        return Err(Error::new(
            crate::error::ErrorKind::Conflict,
            format!(
                "{} pack(s) this backup relies on are gone from the store (pack {} among them): \
                 a gc deleted them while this backup's lease had lapsed; nothing was committed, \
                 and the next backup stores their data again",
                missing.len(),
                first.short()
            ),
        ));
    }
    Ok(())
}

/// The error of a backup whose lease was lost while its snapshot `id` was written: the snapshot
/// is deleted, or, with a key that may not delete, named for `cairn check`.
fn withdraw(repo: &Repository, id: &Id, lost: Error) -> Error {
    let what = match repo.delete_snapshot(id) {
        Ok(()) => "it was withdrawn and nothing was committed".to_string(),
        Err(e) => format!(
            "it stays in the store, as this key may not delete it ({e}): cairn check names what \
             it misses, and cairn forget {} (with a key that may delete) removes it",
            id.short()
        ),
    };
    Error::new(
        lost.kind(),
        format!(
            "the lease was lost while snapshot {} was written ({lost}), so a gc may have deleted \
             packs it needs; {what}",
            id.short()
        ),
    )
}
