//! The offsite status of each day, kept beside the archives: `_offsite/DATE.json` in the exports
//! location. The stage needs no catalog, no store key and no state of its own but the client's
//! session: what reached the remote is written here, after it was checked there.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, Result};
use crate::store::Store;

/// Prefix of the status objects.
pub const OFFSITE: &str = "_offsite/";
/// Prefix of the offsite stage's lease (one sync at a time).
pub const LEASES: &str = "_offsite/leases/";

/// Where a day's copy stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Not (yet) on the remote.
    Pending,
    /// On the remote, whole, checked after the upload.
    Uploaded,
    /// The last attempts failed; `reason` says why.
    Failed,
}

impl State {
    /// Every state, for the docs test.
    pub const ALL: [State; 3] = [State::Pending, State::Uploaded, State::Failed];

    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Uploaded => "uploaded",
            State::Failed => "failed",
        }
    }
}

/// How a day's copy on the remote was last checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    /// Every file's SHA-256, as the remote gave it, against the exports'.
    Sha256,
    /// Names and sizes only: the remote gives no SHA-256, so a same-size change there is not
    /// seen.
    Size,
}

impl Check {
    /// The check's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Sha256 => "sha256",
            Check::Size => "size",
        }
    }
}

/// `_offsite/DATE.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayOffsite {
    /// 1.
    pub version: u32,
    /// The day.
    pub date: String,
    /// Where it stands.
    pub state: State,
    /// The remote, as the uploader names it.
    pub remote: String,
    /// The archive's size.
    pub archive_size: u64,
    /// The archive's SHA-256 (from its `.sha256`).
    pub archive_sha256: String,
    /// The `.sha256`'s size as uploaded (absent in statuses written before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256_file_size: Option<u64>,
    /// The manifest's size as uploaded (absent likewise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_size: Option<u64>,
    /// Failed attempts since the last success.
    pub attempts: u32,
    /// When the copy was checked on the remote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uploaded: Option<String>,
    /// How it was last checked there (absent in statuses written before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked: Option<Check>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What kind of failure that was (its fix is [`super::failure::Failure::fix`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<super::failure::Failure>,
    /// The client and its version that wrote this status, where it says them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// When this object was written.
    pub updated: String,
}

/// The key of a day's status.
pub fn key(date: &str) -> String {
    format!("{OFFSITE}{date}.json")
}

/// Every day's status in the exports location, by date. An object that does not parse is left
/// out with a warning: the day then counts as pending, which costs an upload, never a loss.
pub fn load_all(exports: &dyn Store) -> Result<std::collections::BTreeMap<String, DayOffsite>> {
    let mut out = std::collections::BTreeMap::new();
    for o in exports.list(OFFSITE)? {
        let Some(date) = o
            .key
            .strip_prefix(OFFSITE)
            .and_then(|k| k.strip_suffix(".json"))
        else {
            continue;
        };
        if !super::uploader::is_day(date) || o.size > 64 * 1024 {
            continue;
        }
        match exports.get(&o.key) {
            Ok(bytes) => match serde_json::from_slice::<DayOffsite>(&bytes) {
                Ok(s) if s.date == date => {
                    out.insert(date.to_string(), s);
                }
                _ => tracing::warn!(key = %o.key, "ignoring an offsite status that cannot be read"),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Bytes of the days `statuses` record as uploaded and checked: the archive and its two
/// companions each.
pub fn remote_bytes(statuses: &std::collections::BTreeMap<String, DayOffsite>) -> u64 {
    statuses
        .values()
        .filter(|s| s.state == State::Uploaded)
        .map(|s| s.archive_size + s.sha256_file_size.unwrap_or(0) + s.manifest_size.unwrap_or(0))
        .sum()
}

/// Writes a day's status.
pub fn save(exports: &dyn Store, s: &DayOffsite) -> Result<()> {
    exports.put(
        &key(&s.date),
        &serde_json::to_vec_pretty(s).expect("serializes"),
    )
}
