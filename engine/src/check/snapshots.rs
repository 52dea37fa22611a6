//! Snapshot objects a check cannot read: damaged ones (put back from the catalog's copy, or moved
//! aside, by `--repair`) and intact ones of a newer format (never touched).

use rayon::prelude::*;

use super::report::{Problem, ProblemKind};
use crate::catalog::{Catalog, SyncReport};
use crate::error::Result;
use crate::id::Id;
use crate::repo::Repository;

/// The problems of unreadable snapshot objects, and what `repair` did about the damaged ones.
pub(super) fn snapshot_problems(
    repo: &Repository,
    catalog: &Catalog,
    sync: &SyncReport,
    repair: bool,
) -> Result<(Vec<Problem>, Vec<String>)> {
    let mut repaired = Vec::new();
    let mut problems = Vec::new();
    for (id, detail, damaged) in &unreadable_snapshots(repo, sync)? {
        if !damaged {
            // Intact, of a newer format: never repaired, never moved.
            problems.push(Problem {
                kind: ProblemKind::UnsupportedSnapshot,
                object: format!("snapshot {id}"),
                detail: format!("{detail}; check it with that newer cairn"),
                affected: vec![],
                affected_count: 0,
            });
            continue;
        }
        if repair {
            repaired.push(repair_snapshot(repo, catalog, id)?);
            continue;
        }
        problems.push(Problem {
            kind: ProblemKind::UnreadableSnapshot,
            object: format!("snapshot {id}"),
            detail: format!("{detail} (cairn check --repair puts it back or moves it aside)"),
            affected: vec![],
            affected_count: 0,
        });
    }
    Ok((problems, repaired))
}

/// Snapshot objects in the store that cannot be read, with what is wrong and whether they are
/// damaged (`true`: they do not decode to their id) or intact but of a newer format (`false`):
/// those the catalog sync left out, and those the catalog still holds a good copy of (read
/// again here).
fn unreadable_snapshots(repo: &Repository, sync: &SyncReport) -> Result<Vec<(Id, String, bool)>> {
    let ids = repo.list_snapshot_ids()?;
    let found: Vec<Option<(Id, String, bool)>> = ids
        .par_iter()
        .map(|id| match repo.load_snapshot(id) {
            Ok(_) => Ok(None),
            Err(e) if e.kind() == crate::ErrorKind::Corrupt => Ok(Some((*id, e.to_string(), true))),
            Err(e) if e.kind() == crate::ErrorKind::Unsupported => {
                Ok(Some((*id, e.to_string(), false)))
            }
            Err(e) if e.kind() == crate::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .collect::<Result<_>>()?;
    let mut out: Vec<(Id, String, bool)> = found.into_iter().flatten().collect();
    for hex in &sync.snapshots_unreadable {
        let id = Id::from_hex(hex)?;
        if !out.iter().any(|(i, ..)| *i == id) && ids.contains(&id) {
            out.push((id, "snapshot object does not decode".into(), true));
        }
    }
    out.sort();
    Ok(out)
}

/// Where `--repair` moves a snapshot object that cannot be put back.
pub const QUARANTINE: &str = "quarantine/snapshots/";

/// Puts a damaged snapshot object back from the catalog's copy if that copy hashes to the
/// snapshot's id; otherwise moves the object aside. Returns what was done.
fn repair_snapshot(repo: &Repository, catalog: &Catalog, id: &Id) -> Result<String> {
    let key = format!("{}{id}", crate::repo::SNAPSHOTS);
    if let Some(snap) = catalog.snapshot(id)? {
        let (cid, bytes) = snap.encode();
        if cid == *id {
            repo.store().put(&key, &bytes)?;
            return Ok(format!("snapshot {id}: put back from the catalog's copy"));
        }
    }
    // Read again: only an object that fails its id twice is moved, never one that a flaky read
    // made look damaged.
    let bytes = repo.store().get(&key)?;
    if Id::of(&bytes) == *id {
        return Ok(format!("snapshot {id}: reads intact now; left in place"));
    }
    repo.store().put(&format!("{QUARANTINE}{id}"), &bytes)?;
    repo.store().delete(&key)?;
    Ok(format!(
        "snapshot {id}: moved aside to {QUARANTINE}{id} (no intact copy to put back)"
    ))
}
