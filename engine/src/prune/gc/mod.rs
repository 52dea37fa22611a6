//! Garbage collection: deletes the packs no snapshot needs, and repacks the mostly dead ones.
//!
//! The deletion protocol (docs/FORMAT.md, "Deleting packs") has two phases, so that no blob a
//! snapshot needs is ever deleted, whatever runs beside it:
//!
//! 1. **Condemn**, under a shared repository lease (restores and exports go on). While another
//!    writer (a backup) holds the repository, nothing is condemned or repacked: its packs are
//!    unreferenced until its snapshot is committed, and condemning them would make every reader
//!    treat the newest snapshot's data as gone. The writers are listed after the packs and
//!    before the snapshots, so a backup whose pack was listed either still holds its lease then,
//!    or committed before the snapshots are read. Otherwise every tree and
//!    chunk reachable from the store's snapshots is marked live. A pack with no live blob that
//!    the catalog relies on is condemned: a `condemned/` marker records when, and from when it
//!    may go (now + grace). A pack whose dead bytes reach the repack threshold has its live
//!    blobs copied, frame for frame, into new packs, which are stored and indexed *before* the
//!    old pack is condemned. Every catalog forgets condemned packs at its next sync, so no
//!    backup that starts after the marker deduplicates against them.
//! 2. **Delete**, under an exclusive lease (no backup, export or restore holds a lease): the
//!    snapshots are read again and any new ones marked; a condemned pack is deleted only when
//!    its grace has passed and none of its blobs is live without another copy. A condemned pack
//!    that a snapshot now needs (a backup that had synced before the marker deduplicated against
//!    it) is taken back: its marker is removed.
//!
//! Every step is safe to interrupt: new packs are only extra copies until their old pack is
//! condemned, a marker without its pack is kept for a while then removed, and a rerun starts by
//! marking again. The `hook` lets tests stop or interleave a run at each commit point.

//!
//! One concern a file: `options` (options, report, plan), `survey` (the checks before and
//! between phases), `mark` (what is live, condemned packs taken back), `weigh` (the plan: which
//! packs to condemn and repack), `repack`, `delete`, and `collect`, which runs the phases in
//! order and carries the plan out; `estimate` marks and weighs from the catalog alone, for
//! `cairn stats`.

mod collect;
mod delete;
mod estimate;
mod mark;
mod options;
mod repack;
mod survey;
mod weigh;

use std::time::Duration;

pub use estimate::{GcEstimate, estimate};
pub use options::{GcHook, GcOptions, GcPlan, GcPoint, GcReport};

use crate::catalog::Catalog;
use crate::error::Result;
use crate::repo::Repository;
use crate::repo::lease::{self, LeaseMode, LeaseStore};

/// The store prefix of the lease that keeps gcs apart: two would repack the same packs and
/// each keep the other from deleting.
pub const GC_LEASES: &str = "_leases/gc/";

/// Runs a garbage collection of `repo`, whose catalog on this state volume is `catalog`.
///
/// It holds the gc lease (one gc at a time) and a shared repository lease; the deleting phase
/// takes the exclusive one. A dry run takes none and writes nothing.
pub fn gc(repo: &Repository, catalog: &Catalog, opts: &GcOptions) -> Result<GcReport> {
    if opts.dry_run {
        return collect::collect(repo, catalog, opts, None).map(|(report, _)| report);
    }
    let store = repo.store();
    // Before anything is written: a key that may not delete would leave new packs and markers
    // that no run of it can ever finish. Deleting a key that does not exist is allowed exactly
    // when deleting is.
    survey::probe_delete(store.as_ref())?;
    let take = |prefix: &str, purpose: &str, mode| {
        lease::acquire_as(
            LeaseStore::Owned(store.clone()),
            prefix,
            purpose,
            opts.lease_ttl,
            mode,
            &[],
            Duration::ZERO,
            None,
        )
    };
    let alone = take(GC_LEASES, "garbage collection", LeaseMode::Exclusive)?;
    let shared = take(lease::REPOSITORY, "garbage collection", LeaseMode::Shared)?;
    let result = alone.hold(|| {
        shared
            .hold(|| collect::collect(repo, catalog, opts, Some(&shared)).map(|(report, _)| report))
    });
    shared.release();
    alone.release();
    result
}

/// What a gc of `repo` with `opts` would do, as a dry run computes it: nothing is written, no
/// lease taken. A run that nothing disturbs carries out exactly this plan.
pub fn plan(repo: &Repository, catalog: &Catalog, opts: &GcOptions) -> Result<GcPlan> {
    let opts = GcOptions {
        dry_run: true,
        hook: None,
        ..opts.clone()
    };
    collect::collect(repo, catalog, &opts, None).map(|(_, plan)| plan)
}
