//! What a gc checks before and between its phases: that its key may delete, which backup runs
//! beside it (then it condemns nothing), and that every snapshot in the store can be read (what
//! an unreadable one needs is unknown, so nothing may be collected).

use std::collections::HashSet;

use crate::catalog::Catalog;
use crate::error::{Error, ErrorKind, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::condemn;
use crate::repo::lease::{self, LeaseMode};

/// The backup (a live writer lease of the repository other than `held`, the caller's own) that
/// runs beside this gc, described for the report.
pub(super) fn backup_beside(
    store: &dyn crate::store::Store,
    held: Option<&str>,
    dry_run: bool,
) -> Result<Option<String>> {
    let live = if dry_run {
        lease::live_by_this_clock(store, lease::REPOSITORY)?
    } else {
        lease::live(store, lease::REPOSITORY)?
    };
    Ok(live
        .into_iter()
        .find(|(k, l)| l.mode == LeaseMode::Writer && Some(k.as_str()) != held)
        .map(|(_, l)| {
            format!(
                "{} ({} pid {} since {})",
                l.purpose, l.host, l.pid, l.started
            )
        }))
}

/// Refuses to collect beside a snapshot it cannot read: what it references is unknown.
pub(super) fn refuse_unreadable_snapshots(repo: &Repository, catalog: &Catalog) -> Result<()> {
    let known: HashSet<Id> = catalog.snapshots()?.into_iter().map(|(id, _)| id).collect();
    for id in repo.list_snapshot_ids()? {
        if known.contains(&id) {
            continue;
        }
        // Committed since the catalog's sync (a backup beside this gc): walked like the rest.
        match repo.load_snapshot(&id) {
            Ok(snap) => catalog.add_snapshot(&id, &snap)?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    format!(
                        "gc stopped: snapshot {} was written by a newer cairn, so what it needs is unknown to this one: {e}",
                        id.short()
                    ),
                ));
            }
            Err(e) => {
                return Err(Error::new(
                    e.kind(),
                    format!(
                        "gc stopped: snapshot {} cannot be read, so what it needs is unknown ({e}; cairn check --repair moves a damaged one aside)",
                        id.short()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Fails, naming the store, when its key may not delete.
pub(super) fn probe_delete(store: &dyn crate::store::Store) -> Result<()> {
    let key = format!("{}probe-{}", condemn::CONDEMNED, crate::id::random_hex(8)?);
    match store.delete(&key) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::new(
            e.kind(),
            format!(
                "gc needs a key that may delete, and this store's may not ({e}); nothing was changed"
            ),
        )),
    }
}
