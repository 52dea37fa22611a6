//! What the repository and its snapshots hold, for `cairn stats`: a module of its own because the
//! figures cross every layer below it (the catalog's blob locations and pack indexes, the walk of
//! a snapshot's trees, gc's weighing, the exports location's days) and belong to none of them;
//! none of those layers uses it back.
//!
//! Most figures come from the catalog without a request: the snapshots and their backups'
//! counters, the unique blobs with their plaintext and stored bytes, the packs. Those that need
//! more say so: a snapshot's own figures ([`snapshot_stats`]) read its trees; what a gc would
//! free ([`RepoStatsOptions::gc`]) reads every snapshot's distinct trees once, as a gc's marking
//! does, and lists the store's `condemned/` markers; the daily archives ([`exports_stats`]) list
//! the exports location once. Every figure is serializable, for `--json`.
//!
//! One concern a file: `blobs` (counts of blobs and bytes, ratios), `snapshot` (one snapshot's
//! walk), `repository` (the repository and what a gc would free), `growth` (the last days, from
//! the backups' counters) and `archives` (the daily archives).

mod archives;
mod blobs;
mod growth;
mod repository;
mod snapshot;

pub use archives::{ExportsStats, exports_stats};
pub use blobs::{BlobTotals, ratio};
pub use growth::{DayGrowth, Growth, growth};
pub use repository::{GcStats, GcWeighing, PackStats, RepoStats, RepoStatsOptions, repo_stats};
pub use snapshot::{SnapshotStats, snapshot_stats};
