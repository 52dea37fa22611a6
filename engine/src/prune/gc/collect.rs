//! A gc's phases in order, each carrying out its part of the plan: survey the store, mark what is
//! live, weigh the packs (the plan), repack, condemn, review the condemned packs, and delete the
//! due ones under the exclusive lease. A dry run stops after deciding each phase's part.

use std::collections::HashMap;
use std::time::Duration;

use super::delete::delete_due;
use super::mark::{Condemned, Live, condemned_in, review};
use super::options::{GcOptions, GcPlan, GcPoint, GcReport};
use super::repack::repack_packs;
use super::survey::{backup_beside, refuse_unreadable_snapshots};
use super::weigh::{Weighed, weigh};
use crate::catalog::Catalog;
use crate::error::{ErrorKind, Result};
use crate::format::pack::PackEntry;
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::condemn::{self, Marker, Reason};
use crate::repo::lease::{self, Lease, LeaseMode, LeaseStore};

/// One gc between its phases.
struct Run<'a> {
    repo: &'a Repository,
    catalog: &'a Catalog,
    opts: &'a GcOptions,
    /// `gc.grace` in seconds.
    grace: i64,
    /// The store's clock minus this machine's.
    skew: jiff::SignedDuration,
    report: GcReport,
    plan: GcPlan,
    live: Live,
    /// Packs in the store, condemned ones included, with their sizes.
    in_store: HashMap<Id, u64>,
    /// Condemned packs' markers in force.
    markers: HashMap<Id, Marker>,
    /// The backup running beside this gc, if one is.
    writer: Option<String>,
}

/// The gc itself, under `shared` (none in a dry run): its report and the plan it carried out.
pub(super) fn collect(
    repo: &Repository,
    catalog: &Catalog,
    opts: &GcOptions,
    shared: Option<&Lease<'_>>,
) -> Result<(GcReport, GcPlan)> {
    let mut run = Run::survey(repo, catalog, opts)?;
    run.mark()?;
    let Weighed {
        unreferenced,
        repack,
        ..
    } = run.weigh()?;
    let mut condemned: Vec<(Id, Reason)> = unreferenced
        .into_iter()
        .map(|p| (p, Reason::Unreferenced))
        .collect();
    condemned.extend(run.repack(&repack)?);
    run.call(GcPoint::Repacked);
    run.condemn(condemned)?;
    let (due, present) = run.due()?;
    run.delete(shared, due, present)
}

impl<'a> Run<'a> {
    /// Before anything is decided: the clocks, the catalog synced, the writers beside this gc
    /// (listed after the packs and before the snapshots: see the module's doc), every snapshot
    /// readable, the packs and markers in the store.
    fn survey(repo: &'a Repository, catalog: &'a Catalog, opts: &'a GcOptions) -> Result<Run<'a>> {
        let store = repo.store();
        // Markers are timed by the store's clock, like leases: a gc on a node whose clock runs
        // ahead must not find packs due that another machine condemned a moment ago.
        let skew = match (opts.now, opts.dry_run) {
            (None, false) => {
                lease::store_now(store.as_ref())?.duration_since(jiff::Timestamp::now())
            }
            _ => jiff::SignedDuration::ZERO,
        };
        if !opts.dry_run {
            catalog.resync(repo)?;
        }
        let writer = backup_beside(store.as_ref(), opts.held.as_deref(), opts.dry_run)?;
        refuse_unreadable_snapshots(repo, catalog)?;
        let in_store: HashMap<Id, u64> = repo.list_packs()?.into_iter().collect();
        let (markers, kept) = condemn::list_all(store.as_ref())?;
        if !opts.dry_run {
            // A backup took these back with a key that may not delete: their markers go now.
            for pack in &kept {
                condemn::clear_kept(store.as_ref(), pack)?;
            }
        }
        let report = GcReport {
            packs: in_store.len(),
            packs_kept: kept.len(),
            ..GcReport::default()
        };
        Ok(Run {
            repo,
            catalog,
            opts,
            grace: i64::try_from(opts.grace.as_secs()).unwrap_or(i64::MAX),
            skew,
            report,
            plan: GcPlan::default(),
            live: Live {
                skip: opts.assume_forgotten.clone(),
                ..Live::default()
            },
            in_store,
            markers,
            writer,
        })
    }

    /// Now, in Unix seconds, by the store's clock (or the options' simulated one).
    fn now(&self) -> i64 {
        self.opts
            .now
            .unwrap_or_else(|| {
                jiff::Timestamp::now()
                    .saturating_add(self.skew)
                    .expect("a duration")
            })
            .as_second()
    }

    fn call(&self, p: GcPoint) {
        fire_hook(self.opts, p);
    }

    /// Marks every tree and chunk the snapshots reach; condemned packs that hold a tree the
    /// catalog forgot are taken back.
    fn mark(&mut self) -> Result<()> {
        let mut fallback = Condemned::new(self.repo, condemned_in(&self.markers, &self.in_store));
        self.live.mark(self.repo, self.catalog, &mut fallback)?;
        if !self.opts.dry_run {
            fallback.revive(self.repo.store().as_ref(), self.catalog)?;
        }
        for pack in &fallback.revived {
            self.markers.remove(pack);
        }
        self.report.packs_revived = fallback.revived.len();
        self.report.snapshots = self.live.walked.len();
        self.report.trees = self.live.trees.len();
        self.report.chunks = self.live.chunks.len();
        self.call(GcPoint::Marked);
        Ok(())
    }

    /// The plan's packs to condemn and to repack. Not beside a backup: its new blobs look dead
    /// until its snapshot is committed.
    fn weigh(&mut self) -> Result<Weighed> {
        let weighed = match &self.writer {
            Some(w) => {
                tracing::warn!(backup = %w, "a backup is running: this gc condemns and repacks nothing (a gc that runs alone does)");
                self.report.beside_backup = Some(w.clone());
                Vec::new()
            }
            None => self.catalog.pack_indexes()?,
        };
        let w = weigh(
            self.catalog,
            &self.live,
            weighed,
            &self.markers,
            self.opts.repack_dead_percent,
        )?;
        self.plan.condemn = w.unreferenced.clone();
        self.plan.repack = w.repack.iter().map(|(p, _)| *p).collect();
        Ok(w)
    }

    /// Repacks `repack` (a dry run counts them as done); the packs to condemn as repacked.
    fn repack(&mut self, repack: &[(Id, Vec<PackEntry>)]) -> Result<Vec<(Id, Reason)>> {
        if self.opts.dry_run {
            self.report.packs_repacked = repack.len();
            return Ok(repack.iter().map(|(p, _)| (*p, Reason::Repacked)).collect());
        }
        if repack.is_empty() {
            return Ok(Vec::new());
        }
        let (done, written, bytes, damaged) = repack_packs(self.repo, self.catalog, repack)?;
        self.report.packs_repacked = done.len();
        self.report.packs_written = written;
        self.report.bytes_written = bytes;
        self.report.packs_damaged = damaged;
        Ok(done.into_iter().map(|p| (p, Reason::Repacked)).collect())
    }

    /// Writes the markers of `condemned` (a dry run counts them as written, so that with a
    /// grace of 0 it says what the real run would delete), then marks again what a backup may
    /// have committed meanwhile.
    fn condemn(&mut self, mut condemned: Vec<(Id, Reason)>) -> Result<()> {
        let store = self.repo.store();
        // The writers again, right before the markers: a backup that started during a long walk
        // synced before them, and may be deduplicating against what would be condemned. The
        // repacked packs' new copies stay, as extra copies.
        if !self.opts.dry_run
            && !condemned.is_empty()
            && let Some(w) = backup_beside(store.as_ref(), self.opts.held.as_deref(), false)?
        {
            tracing::warn!(backup = %w, "a backup started beside this gc: it condemns nothing (a gc that runs alone does)");
            self.report.beside_backup = Some(w);
            condemned.clear();
        }
        self.report.packs_condemned = condemned.len();
        for (pack, reason) in &condemned {
            let since = self.now();
            let due = since.saturating_add(self.grace);
            let key = if self.opts.dry_run {
                condemn::key(pack, since, due)
            } else {
                condemn::write(store.as_ref(), pack, since, due, *reason)?
            };
            let marker = Marker {
                pack: *pack,
                since,
                due,
                key,
            };
            self.markers.insert(*pack, marker);
        }
        if self.opts.dry_run {
            self.call(GcPoint::Condemned);
            return Ok(());
        }
        let packs = condemned.iter().map(|(p, _)| *p).collect();
        self.catalog.forget_condemned(&packs)?;
        self.call(GcPoint::Condemned);
        if !condemned.is_empty() {
            // A backup that started after the writers were listed may have committed a snapshot
            // that needs a pack condemned just now (it deduplicated against it): marked, and
            // such packs taken back, before anything is judged due.
            self.catalog.resync(self.repo)?;
            refuse_unreadable_snapshots(self.repo, self.catalog)?;
            let packs = condemned_in(&self.markers, &self.in_store);
            let mut fallback = Condemned::new(self.repo, packs);
            self.live.mark(self.repo, self.catalog, &mut fallback)?;
            fallback.revive(store.as_ref(), self.catalog)?;
            for pack in &fallback.revived {
                self.markers.remove(pack);
            }
            self.report.packs_revived += fallback.revived.len();
        }
        Ok(())
    }

    /// The condemned packs due now, and every condemned pack still in the store. Markers of
    /// packs long gone are removed; condemned packs a live blob needs are taken back first.
    fn due(&mut self) -> Result<(Vec<Marker>, Vec<Marker>)> {
        let store = self.repo.store();
        // Markers of packs that are gone: kept a while so that other catalogs learn the pack
        // was collected, then removed.
        if !self.opts.dry_run {
            for m in self.markers.values() {
                if !self.in_store.contains_key(&m.pack)
                    && self.now() >= m.due.saturating_add(condemn::MARKER_KEPT)
                {
                    condemn::remove(store.as_ref(), &m.pack)?;
                }
            }
        }
        let present: Vec<Marker> = self
            .markers
            .values()
            .filter(|m| self.in_store.contains_key(&m.pack))
            .cloned()
            .collect();
        // Taken back before anything is due: a snapshot made by a backup that had synced before
        // the marker may need a condemned pack.
        let refs: Vec<&Marker> = present.iter().collect();
        let reviewed = review(self.repo, self.catalog, &self.live, &refs, &self.in_store)?;
        if !self.opts.dry_run {
            for pack in &reviewed.revived {
                condemn::remove(store.as_ref(), pack)?;
            }
        }
        self.report.packs_revived += reviewed.revived.len();
        let (now, grace) = (self.now(), self.grace);
        let due: Vec<Marker> = present
            .iter()
            .filter(|m| {
                !reviewed.revived.contains(&m.pack)
                    && !reviewed.kept.contains(&m.pack)
                    && m.is_due(now, grace)
            })
            .cloned()
            .collect();
        self.report.packs_waiting = present.len() - reviewed.revived.len() - due.len();
        let mut planned: Vec<Id> = due.iter().map(|m| m.pack).collect();
        planned.sort();
        self.plan.bytes_freed = planned.iter().map(|p| self.in_store[p]).sum();
        self.plan.delete = planned;
        Ok((due, present))
    }

    /// Deletes the due packs under the exclusive repository lease (a dry run reports them).
    fn delete(
        mut self,
        shared: Option<&Lease<'_>>,
        due: Vec<Marker>,
        present: Vec<Marker>,
    ) -> Result<(GcReport, GcPlan)> {
        if due.is_empty() || self.opts.dry_run {
            self.report.packs_deleted = due.len();
            self.report.bytes_freed = due.iter().map(|m| self.in_store[&m.pack]).sum();
            return Ok((self.report, self.plan));
        }
        let store = self.repo.store();
        let shared = shared.expect("a gc that deletes holds a shared lease");
        let mut beside = vec![shared.key()];
        beside.extend(self.opts.held.as_deref());
        let exclusive = match lease::acquire_as(
            LeaseStore::Owned(store.clone()),
            lease::REPOSITORY,
            "garbage collection (deleting)",
            self.opts.lease_ttl,
            LeaseMode::Exclusive,
            &beside,
            Duration::ZERO,
            None,
        ) {
            Ok(l) => l,
            Err(e) if e.kind() == ErrorKind::Locked => {
                tracing::warn!(error = %e, due = due.len(), "condemned packs are due but the repository is in use; they are deleted by a later gc");
                self.report.packs_waiting += due.len();
                self.report.deferred = Some(e.to_string());
                return Ok((self.report, self.plan));
            }
            Err(e) => return Err(e),
        };
        let (due, present): (Vec<&Marker>, Vec<&Marker>) =
            (due.iter().collect(), present.iter().collect());
        // Through the options, not `self`, which the deleting borrows.
        let opts = self.opts;
        let call = |p: GcPoint| fire_hook(opts, p);
        let done = exclusive.hold(|| {
            delete_due(
                self.repo,
                self.catalog,
                &mut self.live,
                (&due, &present),
                &exclusive,
                &self.in_store,
                &call,
            )
        })?;
        exclusive.release();
        self.report.packs_revived += done.revived;
        self.report.packs_deleted = done.deleted;
        self.report.bytes_freed = done.freed;
        self.report.packs_waiting += done.waiting;
        if let Some(why) = done.stopped {
            self.report.deferred = Some(why);
        }
        Ok((self.report, self.plan))
    }
}

/// Calls the options' hook, if any, at commit point `p`.
fn fire_hook(opts: &GcOptions, p: GcPoint) {
    if let Some(h) = &opts.hook {
        (h.0)(p);
    }
}
