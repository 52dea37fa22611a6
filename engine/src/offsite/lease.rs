//! The offsite lease as the sync sees it midway: confirmed right before every status written and
//! every remote day deleted, since those are what a second sync, taking over a lease this one
//! let lapse, counts on. Acquiring and releasing it is `sync.rs`'s (through `repo::lease`).

use super::process;
use crate::error::Result;

/// The sync's hold on its lease, confirmed before each irrevocable step; once a confirmation
/// failed, the lease counts as lost for the rest of the run.
pub(super) struct LeaseCheck<'a> {
    confirm: &'a dyn Fn() -> Result<()>,
    /// The first failure to confirm it (one line, redacted).
    lost: Option<String>,
}

impl<'a> LeaseCheck<'a> {
    /// A lease held so far, confirmed by `confirm`.
    pub(super) fn new(confirm: &'a dyn Fn() -> Result<()>) -> LeaseCheck<'a> {
        LeaseCheck {
            confirm,
            lost: None,
        }
    }

    /// Whether the sync still holds its lease, confirmed right before a status is written or a
    /// remote day deleted: a sync that lost it (stalled past its TTL, taken over) must neither
    /// overwrite what the sync that took over writes nor delete what that one counts on. The
    /// first failure is kept (one line, redacted) and every later call says no.
    pub(super) fn held(&mut self) -> bool {
        if self.lost.is_some() {
            return false;
        }
        match (self.confirm)() {
            Ok(()) => true,
            Err(e) => {
                self.lost = Some(process::redact(&e.to_string()));
                false
            }
        }
    }

    /// Whether a confirmation failed.
    pub(super) fn is_lost(&self) -> bool {
        self.lost.is_some()
    }

    /// The report's line for the lease lost before `what`.
    pub(super) fn lost_line(&self, what: &str) -> String {
        let why = self.lost.as_deref().unwrap_or_default();
        format!("the offsite lease was lost ({why}): stopped before {what}")
    }
}
