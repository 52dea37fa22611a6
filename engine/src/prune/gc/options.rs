//! What a caller asks of a gc and what it gets back: the options, the commit points a test can
//! stop it at, the report, and the plan (what a gc decided, before or without carrying it out).

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use crate::id::Id;

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

/// What a gc decided: the packs it condemns (no live blob the catalog relies on), the packs it
/// repacks (their live blobs copied into new packs, then condemned), and the condemned packs it
/// deletes (due, and needed by nothing). A dry run returns exactly this; a run carries it out,
/// unless a backup beside it or a lost lease stops it (its report says so).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcPlan {
    /// Packs condemned as unreferenced, sorted.
    pub condemn: Vec<Id>,
    /// Packs repacked, then condemned, sorted.
    pub repack: Vec<Id>,
    /// Condemned packs deleted (with a grace of 0, this run's own included), sorted.
    pub delete: Vec<Id>,
    /// Bytes of the packs deleted.
    pub bytes_freed: u64,
}
