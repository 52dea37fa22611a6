//! What an export reports: whether it wrote the day's archive or found it already there, and how
//! much of a new archive came from an earlier day's.

use serde::Serialize;

use super::manifest::{Manifest, NotReused};

/// What [`export`](super::export) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// A new archive was written.
    Written(Manifest, Reused),
    /// A complete archive of the same tree was already there; nothing was written.
    Unchanged(Manifest),
}

/// How much of a new archive came from an earlier one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reused {
    /// The day whose archive was drawn on, if any.
    pub from: Option<String>,
    /// Frames of headers and small files in the new archive.
    pub groups: u64,
    /// How many of them were copied from the earlier archive instead of compressed.
    pub reused_groups: u64,
    /// Why the other group frames were compressed (absent when there was no earlier archive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_reused: Option<NotReused>,
    /// Runs of large files' stored frames in the new archive.
    pub runs: u64,
    /// How many of them were taken from the earlier archive instead of the packs.
    pub reused_runs: u64,
    /// Stored chunk frames decoded and checked against their ids as they were copied (reported
    /// by the run on its own, not as part of the reuse).
    #[serde(skip)]
    pub checked_frames: u64,
}

impl Published {
    /// The manifest of the day's archive.
    pub fn manifest(&self) -> &Manifest {
        match self {
            Published::Written(m, _) | Published::Unchanged(m) => m,
        }
    }
}
