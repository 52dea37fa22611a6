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

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;

use crate::catalog::Catalog;
use crate::error::{Error, ErrorKind, Result};
use crate::format::pack::{BlobKind, PackEntry};
use crate::id::Id;
use crate::read::walk::Descend;
use crate::repo::condemn::{self, Marker, Reason};
use crate::repo::index::{BlobIndex, BlobLocation};
use crate::repo::lease::{self, Lease, LeaseMode, LeaseStore};
use crate::repo::packer::Packer;
use crate::repo::{Repository, pack_key};

/// The commit points of a gc, in order; a [`GcHook`] is called at each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcPoint {
    /// Every snapshot is walked; nothing was written.
    Marked,
    /// The repacked blobs' new packs are stored and indexed; no old pack is condemned yet.
    Repacked,
    /// The markers of this run are written and the catalog forgot their packs.
    Condemned,
    /// The exclusive lease is held and the due packs are chosen; none is deleted yet.
    Deleting,
    /// One pack was deleted (called once per pack).
    PackDeleted,
}

impl GcPoint {
    /// Every point, for callers that name them.
    pub const ALL: [GcPoint; 5] = [
        GcPoint::Marked,
        GcPoint::Repacked,
        GcPoint::Condemned,
        GcPoint::Deleting,
        GcPoint::PackDeleted,
    ];

    /// The point's name (`CAIRN_FAILPOINT=gc-condemned`).
    pub fn name(self) -> &'static str {
        match self {
            GcPoint::Marked => "gc-marked",
            GcPoint::Repacked => "gc-repacked",
            GcPoint::Condemned => "gc-condemned",
            GcPoint::Deleting => "gc-deleting",
            GcPoint::PackDeleted => "gc-pack-deleted",
        }
    }
}

/// A callback for [`GcOptions::hook`].
#[derive(Clone)]
pub struct GcHook(pub std::sync::Arc<dyn Fn(GcPoint) + Send + Sync>);

impl std::fmt::Debug for GcHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GcHook")
    }
}

/// How a gc runs.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// How long a pack stays condemned before it may be deleted (`gc.grace`, default 24 h).
    pub grace: Duration,
    /// A pack whose dead bytes are at least this percentage of it is repacked (`gc.repack_dead_percent`).
    pub repack_dead_percent: u8,
    /// The clock: `None` reads the system's each time a time is recorded or compared; tests
    /// set a simulated one.
    pub now: Option<jiff::Timestamp>,
    /// Snapshots to count as gone (`prune --dry-run`: the ones the forget would delete).
    pub assume_forgotten: HashSet<Id>,
    /// Time-to-live of the repository leases.
    pub lease_ttl: Duration,
    /// Plan only: write, condemn and delete nothing.
    pub dry_run: bool,
    /// Called at the commit points.
    pub hook: Option<GcHook>,
    /// The key of a repository lease the caller holds (`cairn run`'s writer lease), which this
    /// gc's own leases stand beside.
    pub held: Option<String>,
}

/// What a gc did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Snapshots whose trees were walked.
    pub snapshots: usize,
    /// Distinct trees walked.
    pub trees: usize,
    /// Distinct live chunks.
    pub chunks: usize,
    /// Packs in the store, condemned ones included.
    pub packs: usize,
    /// Packs whose live blobs were copied into new packs.
    pub packs_repacked: usize,
    /// New packs written by the repacking.
    pub packs_written: usize,
    /// Bytes of the new packs.
    pub bytes_written: u64,
    /// Packs condemned by this run.
    pub packs_condemned: usize,
    /// Condemned packs not yet due (their grace has not passed).
    pub packs_waiting: usize,
    /// Condemned packs taken back because a snapshot needs them.
    pub packs_revived: usize,
    /// Packs deleted.
    pub packs_deleted: usize,
    /// Bytes of the deleted packs.
    pub bytes_freed: u64,
    /// Packs skipped because a blob in them failed its check (`cairn check` reports them).
    pub packs_damaged: usize,
    /// Why the deleting phase did not run although packs were due (a lease in the way).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deferred: Option<String>,
    /// The backup that was running beside this gc, which therefore condemned and repacked
    /// nothing (a later gc that runs alone does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beside_backup: Option<String>,
    /// Packs taken back by a `.kept` object (a backup needed them) whose markers were removed.
    pub packs_kept: usize,
}

/// What is live: every tree and chunk reachable from the snapshots walked so far.
#[derive(Debug, Default)]
struct Live {
    trees: HashSet<Id>,
    chunks: HashSet<Id>,
    walked: HashSet<Id>,
    /// Snapshots not to walk (see [`GcOptions::assume_forgotten`]).
    skip: HashSet<Id>,
}

impl Live {
    fn contains(&self, kind: BlobKind, id: &Id) -> bool {
        match kind {
            BlobKind::Data => self.chunks.contains(id),
            BlobKind::Tree => self.trees.contains(id),
        }
    }

    /// Marks everything below the snapshots of `catalog` not walked yet. Trees are walked once
    /// however many snapshots share them, with an explicit stack (no recursion). A tree the
    /// catalog does not know is looked for in the condemned packs: a backup that ran beside the
    /// marking may have committed a snapshot whose new tree pack was condemned as unreferenced.
    fn mark(
        &mut self,
        repo: &Repository,
        catalog: &Catalog,
        condemned: &mut Condemned<'_>,
    ) -> Result<()> {
        for (sid, snap) in catalog.snapshots()? {
            if self.skip.contains(&sid) || !self.walked.insert(sid) {
                continue;
            }
            if !self.trees.insert(snap.root) {
                continue;
            }
            // The one walk every reader uses, so gc refuses exactly what they refuse; a tree
            // shared with a snapshot walked before is not walked again.
            let (trees, chunks) = (&mut self.trees, &mut self.chunks);
            crate::read::walk::walk(
                &snap.root,
                b"",
                &mut |tree, _| match crate::read::load_tree(repo, catalog, tree) {
                    Err(e) if e.kind() == ErrorKind::NotFound => {
                        match condemned.find(BlobKind::Tree, tree)? {
                            Some(loc) => crate::format::tree::Tree::decode(&repo.read_blob(
                                BlobKind::Tree,
                                tree,
                                &loc,
                            )?),
                            None => Err(e),
                        }
                    }
                    t => t,
                },
                &mut |_, e| {
                    chunks.extend(e.chunks.iter().copied());
                    Ok(match crate::read::walk::subtree(e) {
                        Some(sub) if trees.insert(*sub) => Descend::Into,
                        _ => Descend::Skip,
                    })
                },
            )
            .map_err(|e| {
                e.context(format!(
                    "gc stopped: snapshot {} cannot be walked (cairn check names the damage)",
                    sid.short()
                ))
            })?;
        }
        Ok(())
    }
}

/// The condemned packs still in the store, whose indexes are read (one ranged read each) only
/// when a tree is missing from the catalog; a pack a live tree is found in is revived.
struct Condemned<'a> {
    repo: &'a Repository,
    packs: Vec<(Id, u64)>,
    index: Option<HashMap<(BlobKind, Id), (Id, PackEntry)>>,
    entries: HashMap<Id, (u64, Vec<PackEntry>)>,
    revived: HashSet<Id>,
}

impl<'a> Condemned<'a> {
    fn new(repo: &'a Repository, packs: Vec<(Id, u64)>) -> Condemned<'a> {
        Condemned {
            repo,
            packs,
            index: None,
            entries: HashMap::new(),
            revived: HashSet::new(),
        }
    }

    /// Where a blob is in a condemned pack, if it is; that pack is then revived.
    fn find(&mut self, kind: BlobKind, id: &Id) -> Result<Option<BlobLocation>> {
        if self.index.is_none() {
            let mut index = HashMap::new();
            for (pack, size) in &self.packs {
                let entries = match self.repo.read_pack_index(pack, *size) {
                    Ok(e) => e,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => {
                        tracing::warn!(pack = %pack, error = %e, "the index of a condemned pack cannot be read");
                        continue;
                    }
                };
                for e in &entries {
                    index.entry((e.kind, e.id)).or_insert((*pack, *e));
                }
                self.entries.insert(*pack, (*size, entries));
            }
            self.index = Some(index);
        }
        let found = self
            .index
            .as_ref()
            .and_then(|i| i.get(&(kind, *id)).copied());
        Ok(found.map(|(pack, e)| {
            self.revived.insert(pack);
            BlobLocation::of(pack, &e)
        }))
    }

    /// Takes the revived packs back: their markers go and the catalog indexes them again.
    fn revive(&self, store: &dyn crate::store::Store, catalog: &Catalog) -> Result<()> {
        for pack in &self.revived {
            tracing::info!(pack = %pack, "a condemned pack holds a tree a snapshot needs; taking it back");
            condemn::remove(store, pack)?;
            if let Some((size, entries)) = self.entries.get(pack) {
                catalog.add_pack(pack, *size, entries)?;
            }
        }
        Ok(())
    }
}

/// The index a repack writes through: a blob counts as stored only where it stays, so the live
/// blobs of the packs being left are stored again.
struct Staying<'a> {
    catalog: &'a Catalog,
    leaving: &'a HashSet<Id>,
}

impl BlobIndex for Staying<'_> {
    fn contains(&self, kind: BlobKind, id: &Id) -> Result<bool> {
        Ok(self.catalog.contains(kind, id)?
            && self
                .catalog
                .locate(kind, id)?
                .is_some_and(|l| !self.leaving.contains(&l.pack)))
    }

    fn locate(&self, kind: BlobKind, id: &Id) -> Result<Option<BlobLocation>> {
        self.catalog.locate(kind, id)
    }

    fn pack_stored(&self, pack: &Id, size: u64, entries: &[PackEntry]) -> Result<()> {
        self.catalog.pack_stored(pack, size, entries)
    }
}

/// The store prefix of the lease that keeps gcs apart: two would repack the same packs and
/// each keep the other from deleting.
pub const GC_LEASES: &str = "_leases/gc/";

/// Runs a garbage collection of `repo`, whose catalog on this state volume is `catalog`.
///
/// It holds the gc lease (one gc at a time) and a shared repository lease; the deleting phase
/// takes the exclusive one. A dry run takes none and writes nothing.
pub fn gc(repo: &Repository, catalog: &Catalog, opts: &GcOptions) -> Result<GcReport> {
    if opts.dry_run {
        return collect(repo, catalog, opts, None);
    }
    let store = repo.store();
    // Before anything is written: a key that may not delete would leave new packs and markers
    // that no run of it can ever finish. Deleting a key that does not exist is allowed exactly
    // when deleting is.
    probe_delete(store.as_ref())?;
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
    let result = alone.hold(|| shared.hold(|| collect(repo, catalog, opts, Some(&shared))));
    shared.release();
    alone.release();
    result
}

/// The gc itself, under `shared` (none in a dry run).
fn collect(
    repo: &Repository,
    catalog: &Catalog,
    opts: &GcOptions,
    shared: Option<&Lease<'_>>,
) -> Result<GcReport> {
    let store = repo.store();
    let call = |p: GcPoint| {
        if let Some(h) = &opts.hook {
            (h.0)(p);
        }
    };
    let grace = i64::try_from(opts.grace.as_secs()).unwrap_or(i64::MAX);
    // Markers are timed by the store's clock, like leases: a gc on a node whose clock runs
    // ahead must not find packs due that another machine condemned a moment ago.
    let skew = match (opts.now, opts.dry_run) {
        (None, false) => lease::store_now(store.as_ref())?.duration_since(jiff::Timestamp::now()),
        _ => jiff::SignedDuration::ZERO,
    };
    let now = || {
        opts.now
            .unwrap_or_else(|| {
                jiff::Timestamp::now()
                    .saturating_add(skew)
                    .expect("a duration")
            })
            .as_second()
    };
    {
        let mut report = GcReport::default();
        let mut live = Live {
            skip: opts.assume_forgotten.clone(),
            ..Live::default()
        };
        if !opts.dry_run {
            catalog.resync(repo)?;
        }
        // After the packs were listed and before the snapshots are: see the module's doc.
        let writer = backup_beside(store.as_ref(), opts.held.as_deref(), opts.dry_run)?;
        refuse_unreadable_snapshots(repo, catalog)?;
        let in_store: HashMap<Id, u64> = repo.list_packs()?.into_iter().collect();
        report.packs = in_store.len();
        let (mut markers, kept) = condemn::list_all(store.as_ref())?;
        if !opts.dry_run {
            // A backup took these back with a key that may not delete: their markers go now.
            for pack in &kept {
                condemn::clear_kept(store.as_ref(), pack)?;
            }
        }
        report.packs_kept = kept.len();
        let mut fallback = Condemned::new(repo, condemned_in(&markers, &in_store));
        live.mark(repo, catalog, &mut fallback)?;
        if !opts.dry_run {
            fallback.revive(store.as_ref(), catalog)?;
        }
        for pack in &fallback.revived {
            markers.remove(pack);
        }
        report.packs_revived = fallback.revived.len();
        report.snapshots = live.walked.len();
        report.trees = live.trees.len();
        report.chunks = live.chunks.len();
        call(GcPoint::Marked);

        // Weigh every pack the catalog relies on: bytes of live blobs located in it. Not beside
        // a backup: its new blobs look dead until its snapshot is committed.
        let mut unreferenced = Vec::new();
        let mut repack = Vec::new();
        let weighed = match &writer {
            Some(w) => {
                tracing::warn!(backup = %w, "a backup is running: this gc condemns and repacks nothing (a gc that runs alone does)");
                report.beside_backup = Some(w.clone());
                Vec::new()
            }
            None => catalog.pack_indexes()?,
        };
        for (pack, _size, entries) in weighed {
            if markers.contains_key(&pack) {
                continue;
            }
            let mut needed = Vec::new();
            let (mut needed_bytes, mut dead_bytes) = (0u64, 0u64);
            for e in &entries {
                // Needed here: live, and this is the copy the catalog relies on — or the copy it
                // relies on is damaged, and then every copy stays.
                let relied_on = catalog
                    .locate(e.kind, &e.id)?
                    .is_some_and(|l| l.pack == pack);
                if live.contains(e.kind, &e.id)
                    && (relied_on || !catalog.contains(e.kind, &e.id)?)
                {
                    needed_bytes += u64::from(e.length);
                    needed.push(*e);
                } else {
                    dead_bytes += u64::from(e.length);
                }
            }
            // Frames only: a pack's index costs the same in its repacked copy, so counting it
            // as dead would repack small packs forever.
            if needed.is_empty() {
                unreferenced.push(pack);
            } else if dead_bytes * 100
                >= (needed_bytes + dead_bytes) * u64::from(opts.repack_dead_percent)
            {
                repack.push((pack, needed));
            }
        }
        repack.sort_by_key(|(p, _)| *p);
        unreferenced.sort();

        let mut condemned: Vec<(Id, Reason)> = unreferenced
            .into_iter()
            .map(|p| (p, Reason::Unreferenced))
            .collect();
        if !repack.is_empty() && !opts.dry_run {
            let (done, written, bytes, damaged) = repack_packs(repo, catalog, &repack)?;
            report.packs_repacked = done.len();
            report.packs_written = written;
            report.bytes_written = bytes;
            report.packs_damaged = damaged;
            condemned.extend(done.into_iter().map(|p| (p, Reason::Repacked)));
        } else if opts.dry_run {
            report.packs_repacked = repack.len();
            condemned.extend(repack.iter().map(|(p, _)| (*p, Reason::Repacked)));
        }
        call(GcPoint::Repacked);

        // The writers again, right before the markers: a backup that started during a long walk
        // synced before them, and may be deduplicating against what would be condemned. The
        // repacked packs' new copies stay, as extra copies.
        if !opts.dry_run
            && !condemned.is_empty()
            && let Some(w) = backup_beside(store.as_ref(), opts.held.as_deref(), false)?
        {
            tracing::warn!(backup = %w, "a backup started beside this gc: it condemns nothing (a gc that runs alone does)");
            report.beside_backup = Some(w);
            condemned.clear();
        }
        report.packs_condemned = condemned.len();
        for (pack, reason) in &condemned {
            let since = now();
            let due = since.saturating_add(grace);
            // A dry run counts its markers as written, so that with a grace of 0 it says what
            // the real run would delete.
            let key = if opts.dry_run {
                condemn::key(pack, since, due)
            } else {
                condemn::write(store.as_ref(), pack, since, due, *reason)?
            };
            markers.insert(
                *pack,
                Marker {
                    pack: *pack,
                    since,
                    due,
                    key,
                },
            );
        }
        if !opts.dry_run {
            catalog.forget_condemned(&condemned.iter().map(|(p, _)| *p).collect())?;
        }
        call(GcPoint::Condemned);
        if !opts.dry_run && !condemned.is_empty() {
            // A backup that started after the writers were listed may have committed a snapshot
            // that needs a pack condemned just now (it deduplicated against it): marked, and
            // such packs taken back, before anything is judged due.
            catalog.resync(repo)?;
            refuse_unreadable_snapshots(repo, catalog)?;
            let mut fallback = Condemned::new(repo, condemned_in(&markers, &in_store));
            live.mark(repo, catalog, &mut fallback)?;
            fallback.revive(store.as_ref(), catalog)?;
            for pack in &fallback.revived {
                markers.remove(pack);
            }
            report.packs_revived += fallback.revived.len();
        }

        // Markers of packs that are gone: kept a while so that other catalogs learn the pack
        // was collected, then removed.
        if !opts.dry_run {
            for m in markers.values() {
                if !in_store.contains_key(&m.pack)
                    && now() >= m.due.saturating_add(condemn::MARKER_KEPT)
                {
                    condemn::remove(store.as_ref(), &m.pack)?;
                }
            }
        }
        let present: Vec<&Marker> = markers
            .values()
            .filter(|m| in_store.contains_key(&m.pack))
            .collect();
        // Taken back before anything is due: a snapshot made by a backup that had synced before
        // the marker may need a condemned pack.
        let reviewed = review(repo, catalog, &live, &present, &in_store)?;
        if !opts.dry_run {
            for pack in &reviewed.revived {
                condemn::remove(store.as_ref(), pack)?;
            }
        }
        report.packs_revived += reviewed.revived.len();
        let due: Vec<&Marker> = present
            .iter()
            .filter(|m| {
                !reviewed.revived.contains(&m.pack)
                    && !reviewed.kept.contains(&m.pack)
                    && m.is_due(now(), grace)
            })
            .copied()
            .collect();
        report.packs_waiting = present.len() - reviewed.revived.len() - due.len();
        if due.is_empty() || opts.dry_run {
            report.packs_deleted = due.len();
            report.bytes_freed = due.iter().map(|m| in_store[&m.pack]).sum();
            return Ok(report);
        }
        let shared = shared.expect("a gc that deletes holds a shared lease");
        let mut beside = vec![shared.key()];
        beside.extend(opts.held.as_deref());
        let exclusive = match lease::acquire_as(
            LeaseStore::Owned(store.clone()),
            lease::REPOSITORY,
            "garbage collection (deleting)",
            opts.lease_ttl,
            LeaseMode::Exclusive,
            &beside,
            Duration::ZERO,
            None,
        ) {
            Ok(l) => l,
            Err(e) if e.kind() == ErrorKind::Locked => {
                tracing::warn!(error = %e, due = due.len(), "condemned packs are due but the repository is in use; they are deleted by a later gc");
                report.packs_waiting += due.len();
                report.deferred = Some(e.to_string());
                return Ok(report);
            }
            Err(e) => return Err(e),
        };
        let done = exclusive.hold(|| {
            delete_due(
                repo,
                catalog,
                &mut live,
                (&due, &present),
                &exclusive,
                &in_store,
                &call,
            )
        })?;
        exclusive.release();
        report.packs_revived += done.revived;
        report.packs_deleted = done.deleted;
        report.bytes_freed = done.freed;
        report.packs_waiting += done.waiting;
        if let Some(why) = done.stopped {
            report.deferred = Some(why);
        }
        Ok(report)
    }
}

/// What the deleting phase did.
struct Deleted {
    deleted: usize,
    freed: u64,
    revived: usize,
    /// Due packs left for a later run (the lease was lost midway).
    waiting: usize,
    /// Why the deleting stopped early.
    stopped: Option<String>,
}

/// The condemned packs still in the store, with their sizes.
fn condemned_in(markers: &HashMap<Id, Marker>, in_store: &HashMap<Id, u64>) -> Vec<(Id, u64)> {
    markers
        .keys()
        .filter_map(|p| in_store.get(p).map(|s| (*p, *s)))
        .collect()
}

/// The backup (a live writer lease of the repository other than `held`, the caller's own) that
/// runs beside this gc, described for the report.
fn backup_beside(
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
fn refuse_unreadable_snapshots(repo: &Repository, catalog: &Catalog) -> Result<()> {
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
fn probe_delete(store: &dyn crate::store::Store) -> Result<()> {
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

/// The condemned packs in `markers` that a live blob needs: it has no copy the catalog knows
/// elsewhere (the catalog forgot condemned packs). Reads each one's index (one ranged read).
fn review(
    repo: &Repository,
    catalog: &Catalog,
    live: &Live,
    markers: &[&Marker],
    in_store: &HashMap<Id, u64>,
) -> Result<Review> {
    let mut r = Review::default();
    for m in markers {
        let entries = match repo.read_pack_index(&m.pack, in_store[&m.pack]) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => {
                // Not deleted while unknown: it may hold what a snapshot needs.
                tracing::warn!(pack = %m.pack, error = %e, "the index of a condemned pack cannot be read; keeping the pack (cairn check reports it)");
                r.kept.insert(m.pack);
                continue;
            }
        };
        for e in &entries {
            // No copy the catalog can use (none, or only a damaged one).
            if live.contains(e.kind, &e.id) && !catalog.contains(e.kind, &e.id)? {
                tracing::info!(pack = %m.pack, blob = %e.id, "a condemned pack is needed by a snapshot; taking it back");
                r.revived.insert(m.pack);
                break;
            }
        }
    }
    Ok(r)
}

/// What [`review`] found among condemned packs.
#[derive(Debug, Default)]
struct Review {
    /// Needed by a snapshot: taken back.
    revived: HashSet<Id>,
    /// Their index cannot be read: neither deleted nor taken back.
    kept: HashSet<Id>,
}

/// The deleting phase, under the exclusive lease.
fn delete_due(
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
        tracing::debug!(pack = %m.pack, "pack deleted");
        call(GcPoint::PackDeleted);
    }
    Ok(done)
}

/// Copies the needed blobs of `packs` into new packs. Returns the packs done (all their needed
/// blobs are now stored elsewhere), new packs written, their bytes, and packs skipped as damaged.
fn repack_packs(
    repo: &Repository,
    catalog: &Catalog,
    packs: &[(Id, Vec<PackEntry>)],
) -> Result<(Vec<Id>, usize, u64, usize)> {
    let leaving: HashSet<Id> = packs.iter().map(|(p, _)| *p).collect();
    let index = Staying {
        catalog,
        leaving: &leaving,
    };
    let store = repo.store().as_ref();
    let size = repo.config().pack_size as usize;
    let data = Packer::new(store, &index, BlobKind::Data, size);
    let trees = Packer::new(store, &index, BlobKind::Tree, size / 4);
    let mut done = Vec::new();
    let mut damaged = 0;
    for (pack, needed) in packs {
        let bytes = store
            .get(&pack_key(pack))
            .map_err(|e| e.context(format!("reading pack {} to repack it", pack.short())))?;
        // Every frame is checked before any is copied: a damaged pack stays, for check to
        // report and a backup to heal, and nothing of it is half moved.
        let mut frames = Vec::with_capacity(needed.len());
        let mut bad = false;
        for e in needed {
            let loc = BlobLocation::of(*pack, e);
            let frame = bytes
                .get(e.offset as usize..(e.offset as usize).saturating_add(e.length as usize))
                .ok_or_else(|| Error::new(ErrorKind::Corrupt, "frame beyond the pack"));
            match frame.and_then(|f| repo.open_frame(e.kind, &e.id, &loc, f).map(|_| f)) {
                Ok(f) => frames.push((e, f)),
                Err(err) => {
                    tracing::warn!(pack = %pack, blob = %e.id, error = %err, "not repacking a pack with a damaged blob");
                    if err.kind() == ErrorKind::Corrupt {
                        // Recorded like check's finding: the catalog stops relying on this
                        // copy and the next backup stores the blob again from the source.
                        crate::catalog::heal::record(
                            repo,
                            catalog,
                            pack,
                            &[crate::repo::damage::DamagedBlob {
                                kind: e.kind,
                                id: e.id,
                                detail: err.to_string(),
                            }],
                        )?;
                    }
                    bad = true;
                    break;
                }
            }
        }
        if bad {
            damaged += 1;
            continue;
        }
        for (e, frame) in frames {
            let packer = match e.kind {
                BlobKind::Data => &data,
                BlobKind::Tree => &trees,
            };
            packer.add(e.id, frame, e.raw_length as usize)?;
        }
        done.push(*pack);
    }
    data.finish()?;
    trees.finish()?;
    let (dp, db) = data.written();
    let (tp, tb) = trees.written();
    Ok((done, (dp + tp) as usize, db + tb, damaged))
}
