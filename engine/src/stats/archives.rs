//! The daily archives in the exports location, from one listing of it (and, as `cairn exports
//! list` does, one small read of each complete day's `archive.json`): the days, which are
//! complete, and their bytes.

use serde::Serialize;

use crate::error::Result;
use crate::export::DayStatus;
use crate::store::Store;

/// What the exports location holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportsStats {
    /// The days found, oldest first, each with its state and archive size.
    pub days: Vec<DayStatus>,
    /// Days whose manifest is there (the archive was finished).
    pub complete: u64,
    /// Complete days whose night read every configured folder: the ones retention counts.
    pub counted: u64,
    /// Bytes of the days' archives.
    pub archive_bytes: u64,
    /// Bytes of all the exports' own objects: archives, checksums, manifests, reports, the
    /// offsite status and leases.
    pub total_bytes: u64,
}

/// The daily archives in `exports`, from one listing of it.
pub fn exports_stats(exports: &dyn Store) -> Result<ExportsStats> {
    let (days, total_bytes) = crate::export::survey(exports)?;
    Ok(ExportsStats {
        complete: days.iter().filter(|d| d.complete).count() as u64,
        counted: days.iter().filter(|d| d.counts()).count() as u64,
        archive_bytes: days.iter().filter_map(|d| d.archive_size).sum(),
        total_bytes,
        days,
    })
}
