//! The offsite stage: the daily archives, copied best-effort to a second place (Proton Drive in
//! production) through whichever client the image carries.
//!
//! It reads only the exports location and writes there only its status objects, its report and
//! its lease; the first copy is never touched. For each complete day, newest first, whose copy is
//! not on the remote as it should be, it uploads the archive, then the `.sha256`, then the
//! manifest (last, as in the exports), then lists the day on the remote and checks names, sizes
//! and any hash the remote gives; only then is the day `uploaded`. A per-archive timeout kills a
//! hung client, a per-run budget stops starting new days, and failures are retried with a wait.
//! A client that cannot be started is a configuration error that stops the sync.
//!
//! The lease is confirmed before every status written and every remote day deleted: a sync that
//! lost it stops there (exit 4).
//!
//! Nothing is deleted on the remote unless `keep_daily` asks for it, and then only from what the
//! remote itself holds: a remote day goes once `keep_daily` newer days are complete and checked
//! there, never on a night a day failed. The exports may have lost days (pruned, a replaced
//! volume) on exactly the night the second copy is needed.
//!
//! Where things are: [`plan()`] decides, from what it reads (the exports, the statuses, the
//! remote's listings), what the sync does with each day — a [`SyncPlan`], which writes nothing
//! and which tests assert on; `sync.rs` carries it out (uploads with their attempts in
//! `upload.rs`, status writes, the report); `prune.rs` plans and carries out `keep_daily` on the
//! remote. `parts.rs` is a day's three files and their check against a listing, `lease.rs` the
//! lease confirmed midway, `status.rs` the per-day status objects, `overview.rs` what `cairn
//! offsite status` shows. The clients: `uploader/` (the trait, rclone, a command template, a
//! directory), `proton.rs` (Proton's Drive CLI), `process.rs` (running one, killed at its
//! timeout, its output scrubbed of secrets), `failure.rs` (what its words mean, and the fix).

pub mod failure;
mod lease;
mod overview;
mod parts;
mod plan;
pub mod process;
pub mod proton;
mod prune;
pub mod status;
mod sync;
mod upload;
pub mod uploader;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use failure::Failure;

pub use overview::{DayView, overview};
pub use plan::{DayAction, DayPlan, SyncPlan, plan};
pub use prune::PrunePlan;
pub use status::remote_bytes;
pub use sync::sync;

/// How a sync runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The run's day: its report goes to `_reports/DATE/offsite.json`.
    pub date: String,
    /// The longest one upload (or listing) may take before its client is killed.
    pub timeout: Duration,
    /// No new day is started after this long.
    pub budget: Duration,
    /// Attempts per day, the first included.
    pub attempts: u32,
    /// The first wait before another attempt, doubled each time (with jitter: the shared
    /// backoff of [`crate::backoff`]).
    pub retry_wait: Duration,
    /// Keep this many newest complete, checked days on the remote and delete older ones; 0
    /// deletes nothing.
    pub keep_daily: usize,
    /// Where a stream is copied for a client that needs a file (removed after each upload).
    pub scratch: std::path::PathBuf,
}

/// What one sync did: `_reports/DATE/offsite.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    /// 1.
    pub version: u32,
    /// The run's day.
    pub date: String,
    /// The remote.
    pub remote: String,
    /// Start and end (RFC 3339).
    pub started: String,
    pub finished: String,
    /// Days uploaded and checked by this run.
    pub uploaded: Vec<String>,
    /// Days already on the remote as they should be.
    pub up_to_date: Vec<String>,
    /// Days that failed, with the reason.
    pub failed: Vec<DayFailure>,
    /// Days not tried: the run's budget was spent, the day was being written, or the lease was
    /// lost.
    pub pending: Vec<String>,
    /// Remote days deleted by `keep_daily`.
    pub deleted_remote: Vec<String>,
    /// What the sync passed over without failing a day (one line each, secrets redacted): a
    /// remote day it could not check or delete, a day whose `.sha256` could not be read for its
    /// check, retention skipped after a failure, the lease lost.
    pub warnings: Vec<String>,
    /// Bytes uploaded.
    pub bytes: u64,
    /// The client and its version, as it says them (absent where it does not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Bytes of the days the remote holds as uploaded and checked (their three files, as the
    /// statuses record them): what the copy costs the remote's quota.
    pub remote_bytes: u64,
    /// How many days failed for each kind of failure (only kinds that occurred).
    pub failures: BTreeMap<String, u64>,
    /// The process's exit code: 0; 5 when some day failed or is left pending; 4 when the lease
    /// was lost midway.
    pub exit_code: u8,
}

/// A day that did not reach the remote.
#[derive(Debug, Clone, Serialize)]
pub struct DayFailure {
    /// The day.
    pub date: String,
    /// Why (one line, secrets redacted).
    pub reason: String,
    /// What kind of failure the reason shows.
    pub kind: Failure,
    /// What to do about it.
    pub fix: String,
}

#[cfg(test)]
mod tests;
