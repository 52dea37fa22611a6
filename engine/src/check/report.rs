//! What a check reports: each problem with its kind, the object it is about, and the snapshot
//! paths it affects (at most [`MAX_LISTED`] listed), and the totals.

use serde::Serialize;

/// A snapshot path that a problem affects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Affected {
    /// Snapshot id (short).
    pub snapshot: String,
    /// Path inside it.
    pub path: String,
}

/// What kind of thing is wrong; serialized as the snake_case name (`corrupt_pack`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A pack is damaged as a whole: its index does not read, its size changed, or it does not
    /// hash to its name with no damaged blob to explain it.
    CorruptPack,
    /// A pack the catalog knew is gone from the store.
    MissingPack,
    /// A blob does not decode to its id (recorded in the damage register).
    CorruptBlob,
    /// A blob a snapshot needs is in no known pack.
    MissingBlob,
    /// A tree does not decode, or holds a path longer than a snapshot path may be.
    CorruptTree,
    /// A snapshot object does not decode to its id (`--repair` puts it back or moves it aside).
    UnreadableSnapshot,
    /// A snapshot object of a format version this cairn does not read (written by a newer one).
    UnsupportedSnapshot,
}

impl ProblemKind {
    /// Every kind.
    pub const ALL: [ProblemKind; 7] = [
        ProblemKind::CorruptPack,
        ProblemKind::MissingPack,
        ProblemKind::CorruptBlob,
        ProblemKind::MissingBlob,
        ProblemKind::CorruptTree,
        ProblemKind::UnreadableSnapshot,
        ProblemKind::UnsupportedSnapshot,
    ];

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::CorruptPack => "corrupt_pack",
            ProblemKind::MissingPack => "missing_pack",
            ProblemKind::CorruptBlob => "corrupt_blob",
            ProblemKind::MissingBlob => "missing_blob",
            ProblemKind::CorruptTree => "corrupt_tree",
            ProblemKind::UnreadableSnapshot => "unreadable_snapshot",
            ProblemKind::UnsupportedSnapshot => "unsupported_snapshot",
        }
    }
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind of thing.
    pub kind: ProblemKind,
    /// The pack, blob or snapshot concerned.
    pub object: String,
    /// What was found.
    pub detail: String,
    /// Snapshot paths that cannot be restored because of it (at most 50 listed).
    pub affected: Vec<Affected>,
    /// How many paths are affected in all.
    pub affected_count: usize,
}

/// What `check` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Damaged blobs in the damage register that have a good copy in another pack.
    pub healed: usize,
    /// What `--repair` did, one line each.
    pub repaired: Vec<String>,
    /// Snapshots checked.
    pub snapshots: usize,
    /// Packs in the store.
    pub packs: usize,
    /// Packs downloaded and verified.
    pub packs_read: usize,
    /// Distinct trees checked.
    pub trees: usize,
    /// Problems; empty means healthy.
    pub problems: Vec<Problem>,
}

pub(super) const MAX_LISTED: usize = 50;

#[cfg(test)]
mod tests {
    use super::ProblemKind;

    /// The names in reports are the serialized names, for every kind.
    #[test]
    fn problem_kinds_serialize_as_their_names() {
        for k in ProblemKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }
}
