//! Repository check: is everything every snapshot needs in the store, and intact?
//!
//! Structure (always): every pack's index parses and matches the size the catalog recorded, every
//! snapshot object decodes to its id, every tree a snapshot reaches decodes, every chunk it names
//! is in a known pack. Data (`--read-data`, or a subset of packs): every pack is downloaded, must
//! hash to its name, and every blob in it must decode to its id. Problems name the pack or blob
//! and the snapshots and paths they affect.
//!
//! Damaged blobs that are found are recorded in the damage register ([`crate::repo::damage`]), so the
//! next backup stores them again from the source; a blob whose damaged copy is noted and that has
//! a good copy elsewhere is healed, not a problem. `--repair` also puts back snapshot objects that
//! the catalog still holds intact and moves the others aside (`quarantine/snapshots/<id>`).

//!
//! One concern a file: `plan` (what is known and which packs are read, before anything is),
//! `packs` (reading them), `snapshots` (unreadable snapshot objects and `--repair`), `walk` (every
//! snapshot's trees), `report` (problems and totals); [`check`] runs them in that order.

mod packs;
mod plan;
mod report;
mod snapshots;
mod walk;

use std::collections::HashSet;

pub use plan::{CheckPlan, CheckPlanSummary, ReadData};
pub use report::{Affected, CheckReport, Problem, ProblemKind};
pub use snapshots::QUARANTINE;

use crate::catalog::{Catalog, SyncReport};
use crate::error::Result;
use crate::id::Id;
use crate::repo::Repository;

/// Checks the repository. `catalog` must come from [`Catalog::open_for`], whose `sync` report
/// names the packs it could not index or found gone.
///
/// With `repair`, unreadable snapshot objects are put back from the catalog's copy where it
/// hashes to the snapshot's id, and moved aside otherwise (this deletes from the store).
pub fn check(
    repo: &Repository,
    catalog: &Catalog,
    sync: &SyncReport,
    read: ReadData,
    repair: bool,
) -> Result<CheckReport> {
    let plan = CheckPlan::new(repo, catalog, sync, read)?;
    execute(repo, catalog, sync, plan, repair)
}

/// Carries out `plan`: reads its packs, looks at the snapshot objects, walks every snapshot.
pub fn execute(
    repo: &Repository,
    catalog: &Catalog,
    sync: &SyncReport,
    mut plan: CheckPlan,
    repair: bool,
) -> Result<CheckReport> {
    packs::read_packs(repo, catalog, &mut plan)?;
    let (snapshot_problems, repaired) = snapshots::snapshot_problems(repo, catalog, sync, repair)?;
    let mut healed = 0;
    for (pack, kind, blob) in plan.damage.blobs.keys() {
        if catalog
            .locate(*kind, blob)?
            .is_some_and(|l| l.pack != *pack)
        {
            healed += 1;
        }
    }
    let (affected, snapshots, trees) = walk_snapshots(repo, catalog, &plan)?;
    let mut problems: Vec<Problem> = affected
        .into_iter()
        .map(|(object, (kind, detail, mut paths))| {
            paths.sort();
            paths.dedup();
            let count = paths.len();
            paths.truncate(report::MAX_LISTED);
            Problem {
                kind,
                object,
                detail,
                affected: paths,
                affected_count: count,
            }
        })
        .collect();
    problems.extend(snapshot_problems);
    // Damage that no snapshot reaches is still damage.
    for (id, (kind, detail)) in &plan.damage.packs {
        let object = format!("pack {id}");
        if !problems.iter().any(|p| p.object == object) {
            problems.push(Problem {
                kind: *kind,
                object,
                detail: detail.clone(),
                affected: vec![],
                affected_count: 0,
            });
        }
    }
    problems.sort_by(|a, b| a.object.cmp(&b.object));
    Ok(CheckReport {
        healed,
        repaired,
        snapshots,
        packs: plan.in_store.len(),
        packs_read: plan.read.len(),
        trees,
        problems,
    })
}

/// Walks every snapshot; trees already found clean are remembered so that shared subtrees cost
/// once. Returns the problems by object, the snapshots walked and the distinct trees seen.
fn walk_snapshots(
    repo: &Repository,
    catalog: &Catalog,
    plan: &CheckPlan,
) -> Result<(walk::Affecting, usize, usize)> {
    let mut affected = walk::Affecting::new();
    let mut clean: HashSet<Id> = HashSet::new();
    let snapshots = catalog.snapshots()?;
    let mut trees_seen: HashSet<Id> = HashSet::new();
    // On an object store, trees are read a whole tree pack at a time (one request each, checked
    // against the pack's id) into a copy of this check's own, not the state volume's cache:
    // the subject is the store. One request per tree took 229 s for 5,291 trees on Garage.
    let trees = catalog
        .tree_cache()
        .map(|c| c.fresh_beside("check-tree-packs"));
    let walked = (|| -> Result<()> {
        for (sid, snap) in &snapshots {
            let mut w = walk::Walker {
                repo,
                catalog,
                damage: &plan.damage,
                clean: &mut clean,
                affected: &mut affected,
                snap: sid.short(),
                seen: &mut trees_seen,
                trees: trees.as_ref(),
            };
            w.tree(&snap.root, "")?;
        }
        Ok(())
    })();
    if let Some(t) = &trees {
        t.remove();
    }
    walked?;
    Ok((affected, snapshots.len(), trees_seen.len()))
}
