//! The uploaders: one small trait over whatever client puts files on the remote — Proton's
//! official Drive CLI (`offsite/proton.rs`, the default for Proton Drive), rclone (any rclone
//! remote, `protondrive:` among them; `rclone.rs`), a command template (another client;
//! `command.rs`) and a plain directory (tests, a NAS mirror; `directory.rs`).
//!
//! Paths on the remote are relative to its root and are `DATE` (a day's folder) or
//! `DATE/NAME`. Secrets never pass through here: clients take them from their environment or
//! their own session files, never from arguments.

mod command;
mod directory;
mod rclone;

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};

pub use command::CommandUploader;
pub use directory::Directory;
pub use rclone::Rclone;

/// A file as the remote lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Its name in the day's folder.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// Its SHA-256, when the remote gives one (rclone where the backend has SHA-256, a command
    /// client's third column, the directory remote reading the file back).
    pub sha256: Option<String>,
}

/// A file of a day folder that a listing is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted<'a> {
    /// Its name in the day's folder.
    pub name: &'a str,
    /// The size it should have, where known.
    pub size: Option<u64>,
}

/// What to upload: a local file, or a stream of known length.
#[allow(missing_debug_implementations)]
pub enum Source<'a> {
    /// A file the client may read itself (a local exports location, or a scratch copy).
    File(&'a Path),
    /// Bytes read from the exports store.
    Stream(&'a mut dyn Read),
}

/// Puts files on a remote and lists them.
///
/// Contract: `upload` returns once `dest` holds the whole file or fails; a failed upload may
/// leave a partial file at `dest`, which the next upload replaces. `list` shows only complete
/// files (a client's temporary names are not `shared-*`), and an empty list for a missing
/// folder; it may show more than the files asked for (they are ignored), and may leave out the
/// SHA-256 of a file whose size is not the one asked for. Every call ends within its timeout or
/// fails.
pub trait Uploader: Send + Sync {
    /// Names the remote in reports and logs (no secrets).
    fn describe(&self) -> String;
    /// Uploads `src` (`size` bytes) to `dest`.
    fn upload(&self, src: Source<'_>, size: u64, dest: &str, timeout: Duration) -> Result<()>;
    /// Whether `upload` wants a file (then a stream is first copied to the scratch directory).
    fn needs_file(&self) -> bool {
        false
    }
    /// The files `want` of the day folder `dir`, as they are there.
    fn list(&self, dir: &str, want: &[Wanted<'_>], timeout: Duration) -> Result<Vec<RemoteFile>>;
    /// The day folders at the remote's root.
    fn days(&self, timeout: Duration) -> Result<Vec<String>>;
    /// Deletes a day folder and everything in it.
    fn delete_day(&self, dir: &str, timeout: Duration) -> Result<()>;
    /// The client and its version (`proton-drive cli-drive@0.8.0+…`, `rclone v1.71.2`), for
    /// statuses and a metric label, so that an outdated client shows before it fails; `None`
    /// where there is no client or it does not say.
    fn client(&self, _timeout: Duration) -> Option<String> {
        None
    }
}

/// Whether `name` is a day folder's name, exactly `YYYY-MM-DD`: the parser alone also takes a
/// sign, one-digit fields and surrounding whitespace, and such a name, listed by a remote, would
/// be handed to a delete command that means another folder by it.
pub fn is_day(name: &str) -> bool {
    name.len() == 10
        && jiff::civil::Date::strptime("%Y-%m-%d", name)
            .is_ok_and(|d| d.strftime("%Y-%m-%d").to_string() == name)
}

/// Refuses a `dir` that is not a day folder's name, before a client is asked to delete it.
fn day_to_delete(dir: &str) -> Result<()> {
    if is_day(dir) {
        Ok(())
    } else {
        Err(Error::usage(format!("{dir:?} is not a day folder")))
    }
}

/// Whether `h` is a SHA-256 in hex; lowercased.
fn sha256_hex(h: &str) -> Option<String> {
    (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())).then(|| h.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_dates_are_day_folders() {
        assert!(is_day("2026-01-01"));
        for name in [
            "+2026-01-01",
            "2026-1-1",
            "2026-01-1",
            " 2026-01-01",
            "2026-01-01 ",
            "2026-01-01\n",
            "\n2026-01-01",
            "02026-01-01",
            "2026-02-30",
            "",
        ] {
            assert!(!is_day(name), "{name:?} was taken for a day folder");
        }
    }
}
