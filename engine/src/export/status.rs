//! The day's archive status, `_reports/DATE/archive.json`: which snapshot of which repository the
//! day's archive holds, and whether its night had warnings or folders it could not read. Written
//! by the export before the manifest (under the day's lease), read by retention (a day whose
//! night failed a folder is not counted), by `exports list` and `offsite status` (a day with
//! warnings is shown as such) and by the export itself (a day whose night had warnings may be
//! replaced by a rerun of its own repository without `--force`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::format::snapshot::{Snapshot, WarningKind};
use crate::id::Id;
use crate::store::Store;

/// `_reports/DATE/archive.json`.
pub fn status_key(date: &str) -> String {
    format!("_reports/{date}/archive.json")
}

/// What the day's archive came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveStatus {
    /// Format version, 1.
    pub version: u32,
    /// The day.
    pub date: String,
    /// The snapshot archived.
    pub snapshot: Id,
    /// The repository that holds it (its config's `id`).
    pub repository: String,
    /// How many warnings the snapshot's backup had (unreadable, vanished, changed files…).
    pub warnings: u64,
    /// Configured folders the snapshot holds no tree for because they could not be read (only
    /// snapshots of cairn before 2026-12-07 have any: a newer night fails instead).
    pub failed_folders: Vec<String>,
}

impl ArchiveStatus {
    /// The status of an archive of `snap` (`id`) from the repository `repository`.
    pub fn of(date: &str, id: &Id, snap: &Snapshot, repository: &str) -> ArchiveStatus {
        let failed_folders = snap
            .warnings
            .iter()
            .filter(|w| {
                matches!(
                    w.kind,
                    WarningKind::MissingFolder | WarningKind::NotADirectory
                ) && snap.folders.contains(&w.path)
            })
            .map(|w| w.path.clone())
            .collect();
        ArchiveStatus {
            version: 1,
            date: date.to_string(),
            snapshot: *id,
            repository: repository.to_string(),
            warnings: snap.warnings.len() as u64,
            failed_folders,
        }
    }
}

/// The most bytes of an `archive.json` read: it holds a handful of short fields.
const MAX_STATUS: u64 = 64 << 10;

/// The day's status, `None` when it has none (a day exported by a cairn before 2026-12-07, or
/// one whose export was killed before it).
pub fn read_status(exports: &dyn Store, date: &str) -> Result<Option<ArchiveStatus>> {
    let key = status_key(date);
    let bytes = match get_small(exports, &key, MAX_STATUS)? {
        Small::Bytes(b) => b,
        Small::Absent => return Ok(None),
        Small::TooLarge(size) => {
            return Err(Error::corrupt(format!(
                "{key} is {size} bytes, more than an archive status can be"
            )));
        }
    };
    let status: ArchiveStatus = serde_json::from_slice(&bytes)
        .map_err(|e| Error::corrupt(format!("{key} is not an archive status")).with_source(e))?;
    if status.date != date {
        return Err(Error::corrupt(format!(
            "{key} describes {}, not {date}",
            status.date
        )));
    }
    Ok(Some(status))
}

/// A small object of the exports location, read only when it is no larger than a bound.
pub(super) enum Small {
    /// Its bytes.
    Bytes(Vec<u8>),
    /// There is no such object (or it went between the size and the read).
    Absent,
    /// It is this many bytes, more than the bound: not read.
    TooLarge(u64),
}

/// Reads `key` if it is at most `max` bytes (its size asked first: a crafted object of
/// gigabytes must not be loaded to find out).
pub(super) fn get_small(store: &dyn Store, key: &str, max: u64) -> Result<Small> {
    match store.size(key) {
        Ok(size) if size > max => return Ok(Small::TooLarge(size)),
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Small::Absent),
        Err(e) => return Err(e),
    }
    match store.get(key) {
        Ok(b) => Ok(Small::Bytes(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Small::Absent),
        Err(e) => Err(e),
    }
}

/// Writes the day's status (before its manifest).
pub fn write_status(exports: &dyn Store, status: &ArchiveStatus) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(status).expect("statuses serialize");
    exports.put(&status_key(&status.date), &bytes)
}
