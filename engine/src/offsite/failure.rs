//! Why an offsite copy failed, as a kind with its fix: read from the client's own words (its
//! exit status and last lines, already redacted), so that the day's status, the run's report,
//! the pushed metrics and the alert's runbook all say what to do — log in again, update the
//! image, free space — instead of only what a third-party client printed.
//!
//! The words are those of Proton's official Drive CLI (`proton-drive`, from its public source:
//! docs/DECISIONS.md lists what was relied on) and of rclone's `protondrive` backend (its public
//! issues). A message none of the patterns knows is `other`: the day still fails, with the
//! client's line as the reason.

use serde::{Deserialize, Serialize};

/// What kind of failure a day's copy met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// No session, or one the service refused: someone must log in again.
    SessionExpired,
    /// The service no longer accepts this client version.
    ClientTooOld,
    /// The service kept answering 429 beyond the retries.
    RateLimited,
    /// The account's storage is full.
    QuotaExceeded,
    /// An interrupted upload left a draft of the name that blocks the next one.
    StaleDraft,
    /// A file of the name with other content is there and was not replaced.
    NameConflict,
    /// The upload said it succeeded, but the remote does not list the file whole.
    NotAsUploaded,
    /// The client did not finish within `offsite.timeout_secs`.
    Timeout,
    /// Anything else (the reason has the client's words).
    Other,
}

impl Failure {
    /// Every kind, for the metrics (each is published, 0 or its count) and the docs test.
    pub const ALL: [Failure; 9] = [
        Failure::SessionExpired,
        Failure::ClientTooOld,
        Failure::RateLimited,
        Failure::QuotaExceeded,
        Failure::StaleDraft,
        Failure::NameConflict,
        Failure::NotAsUploaded,
        Failure::Timeout,
        Failure::Other,
    ];

    /// The kind a failure's one-line message shows. cairn's own findings (a file missing or of
    /// another size on the remote, a client killed at its timeout) are read from cairn's words;
    /// everything else only from the client's own line — what follows the last `): ` of
    /// "`what` failed (exit status): LINE" — so that a remote path or a size in cairn's part of
    /// the message (a folder named `quota-and-drafts`, 4290208 bytes) never picks the kind.
    pub fn of(message: &str) -> Failure {
        let m = message.to_ascii_lowercase();
        if [
            "is not on the remote",
            "bytes on the remote",
            "another sha-256 on the remote",
        ]
        .iter()
        .any(|w| m.contains(w))
        {
            return Failure::NotAsUploaded;
        }
        if m.contains("did not finish within") {
            return Failure::Timeout;
        }
        let client = m.rsplit_once("): ").map_or(m.as_str(), |(_, line)| line);
        let any = |words: &[&str]| words.iter().any(|w| client.contains(w));
        // Order matters: a session refused for a too-old client is the client's fault.
        if any(&[
            "update required",
            "no longer supported",
            "code=2028",
            "code 2028",
            "code=5003",
            "code 5003",
        ]) {
            Failure::ClientTooOld
        } else if any(&[
            "you need to login first",
            "failed to load session",
            "not logged in",
            "session expired",
            "invalid refresh token",
            "couldn't find section in config file",
            "401 unauthorized",
        ]) {
            Failure::SessionExpired
        } else if any(&[
            "storage quota",
            "quota exceeded",
            "quota is exceeded",
            "run out of storage",
            "storage is full",
            "insufficient storage",
            "code=200001",
            "code=200002",
        ]) {
            Failure::QuotaExceeded
        } else if any(&["a draft exist", "draft for", "draft already exists"]) {
            Failure::StaleDraft
        } else if any(&[
            "too many server requests",
            "too many requests",
            "http 429",
            "status 429",
            "429 too many",
            "rate limit",
        ]) {
            Failure::RateLimited
        } else if any(&["name conflict", "already exists"]) {
            Failure::NameConflict
        } else if any(&["timed out", "timeout"]) {
            Failure::Timeout
        } else {
            Failure::Other
        }
    }

    /// A failure of the account or the client, not of one day: every further day would meet
    /// it, and nothing uploads until a person acts (log in, update the image, free space).
    pub fn needs_person(self) -> bool {
        matches!(
            self,
            Failure::SessionExpired | Failure::ClientTooOld | Failure::QuotaExceeded
        )
    }

    /// The snake_case name, as in statuses, reports and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::SessionExpired => "session_expired",
            Failure::ClientTooOld => "client_too_old",
            Failure::RateLimited => "rate_limited",
            Failure::QuotaExceeded => "quota_exceeded",
            Failure::StaleDraft => "stale_draft",
            Failure::NameConflict => "name_conflict",
            Failure::NotAsUploaded => "not_as_uploaded",
            Failure::Timeout => "timeout",
            Failure::Other => "other",
        }
    }

    /// What to do, in one line.
    pub fn fix(self) -> &'static str {
        match self {
            Failure::SessionExpired => {
                "the client's session is missing or expired: log in again with the Proton login \
                 Job (docs/OPERATIONS.md, \"The Proton login\"); the next sync uploads what is missing"
            }
            Failure::ClientTooOld => {
                "the service no longer accepts this client version: rebuild the image with a newer \
                 proton-drive (k8s/Dockerfile) and roll it out"
            }
            Failure::RateLimited => {
                "the service rate-limited the uploads (HTTP 429) beyond offsite.budget_secs of \
                 retries: the next sync goes on where this one stopped"
            }
            Failure::QuotaExceeded => {
                "the Proton account's storage is full: free space there or enlarge the plan \
                 (offsite.quota_bytes makes an alert warn before it is full)"
            }
            Failure::StaleDraft => {
                "an interrupted upload left a draft of this file on the remote: remove it in \
                 Proton Drive (web app), or with rclone set replace_existing_draft = true"
            }
            Failure::NameConflict => {
                "a file of this name with other content is in the day's folder on the remote and \
                 was not replaced: remove it there"
            }
            Failure::NotAsUploaded => {
                "the remote does not list the file whole after its upload: it is uploaded again by \
                 the next sync"
            }
            Failure::Timeout => {
                "the client did not finish within offsite.timeout_secs: check the network to the \
                 service, or raise the timeout for large archives"
            }
            Failure::Other => "see the reason; docs/OPERATIONS.md, \"The offsite copy\"",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_words_give_their_kinds() {
        for (msg, kind) in [
            (
                "proton-drive filesystem upload failed (exit status: 1): You need to login first",
                Failure::SessionExpired,
            ),
            (
                "Update required: required SDK version 0.30.0 or newer (currently using 0.21.0)",
                Failure::ClientTooOld,
            ),
            (
                "rclone: Code=2028, Message=\"This version of the app is no longer supported\"",
                Failure::ClientTooOld,
            ),
            (
                "Too many server requests, please try again later",
                Failure::RateLimited,
            ),
            (
                "ValidationError: Your storage quota is exceeded",
                Failure::QuotaExceeded,
            ),
            (
                "a draft exist - usually this means a file is being uploaded at another client",
                Failure::StaleDraft,
            ),
            (
                "Name conflict on \"shared-2026-12-07.tar.zst\" (file) already exists",
                Failure::NameConflict,
            ),
            ("something else entirely", Failure::Other),
            // cairn's own words, with paths and sizes that name other kinds.
            (
                "proton-drive filesystem list /my-files/Backups/quota-and-drafts/2026-12-07 printed no listing cairn reads (EOF): has the client's output format changed?",
                Failure::Other,
            ),
            (
                "2026-12-07/shared-2026-12-07.tar.zst is 4290208 bytes on the remote, 4290209 in the exports",
                Failure::NotAsUploaded,
            ),
            (
                "proton-drive filesystem upload failed (exit status: 1): Too many server requests, please try again later",
                Failure::RateLimited,
            ),
        ] {
            assert_eq!(Failure::of(msg), kind, "{msg}");
        }
    }
}
