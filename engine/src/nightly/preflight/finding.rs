//! What a preflight reports: the [`Role`] it checks for, and one [`Finding`] per check with its
//! [`Status`].

use serde::Serialize;

/// Which job the checks are for: each needs other things, and a key that may delete is
/// expected for one and unwelcome for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `cairn run`: reads the share, writes the store, the exports and the state volume; its
    /// key should not be able to delete (the plan's least privilege).
    Nightly,
    /// `cairn exports prune` and `cairn prune`: needs a key that may delete.
    Retention,
    /// `cairn offsite sync`: reads the exports, writes its status there, needs the client.
    Offsite,
}

impl Role {
    /// The metrics stages a failed preflight publishes as failed: the ones the job would.
    pub fn stages(self) -> &'static [&'static str] {
        match self {
            Role::Nightly => &["backup", "export"],
            Role::Retention => &["retention"],
            Role::Offsite => &["offsite"],
        }
    }

    /// The name used in the probe object's key and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Role::Nightly => "nightly",
            Role::Retention => "retention",
            Role::Offsite => "offsite",
        }
    }
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Ok,
    /// The night can run, but something should be looked at.
    Warn,
    /// The night would fail (or do harm): fix this first.
    Fail,
}

/// One check's finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What was checked, e.g. `source notetaking` or `store delete`.
    pub check: String,
    /// How it came out.
    pub status: Status,
    /// One line: what was found and, for a warning or failure, what to do.
    pub detail: String,
}

/// The finding of `check`: how it came out, and the line that says so.
pub(super) fn finding(
    check: impl Into<String>,
    status: Status,
    detail: impl Into<String>,
) -> Finding {
    Finding {
        check: check.into(),
        status,
        detail: detail.into(),
    }
}
