//! Inode numbers, stable across remounts: a node's number is derived from what it is (its view,
//! snapshot and path, or its day and path; a hardlinked file's from its group), not from the
//! order it was met, so a path keeps its number after the kernel forgot it and after the next
//! mount, as restic's users asked of `restic mount` (tools such as `rsync` and `find -inum`
//! rely on it). The table holds only the nodes the kernel holds (looked up and not yet
//! forgotten), which bounds it by the kernel's own cache however much is walked.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::export::manifest::ManifestEntry;
use crate::format::tree::Entry;
use crate::id::Id;

/// The mount's root.
pub const ROOT: u64 = 1;
/// `snapshots/`.
pub(super) const SNAPSHOTS: u64 = 2;
/// `ids/`.
pub(super) const IDS: u64 = 3;
/// `archives/`.
pub(super) const ARCHIVES: u64 = 4;
/// `latest`, a symlink into `snapshots/`.
pub(super) const LATEST: u64 = 5;
/// Derived numbers start here; those below are the fixed nodes'.
const FIRST_DERIVED: u64 = 16;

/// Which folder a snapshot is seen through: the same snapshot under `snapshots/` and `ids/`
/// has distinct numbers, because a directory may have one parent only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum View {
    ByName,
    ById,
}

/// What a number stands for.
#[derive(Debug, Clone)]
pub(super) enum Node {
    Root,
    Snapshots,
    Ids,
    Archives,
    Latest,
    /// An entry of a snapshot (its root too, as a directory entry made up for it), at `path`
    /// below the snapshot's root (empty for the root).
    Snap {
        view: View,
        snap: Id,
        /// The snapshot's root tree.
        root: Id,
        path: Arc<[u8]>,
        entry: Arc<Entry>,
    },
    /// An entry of a day's archive (the day's folder too, with an empty path and no entry).
    Day {
        date: Arc<str>,
        path: Arc<[u8]>,
        entry: Option<Arc<ManifestEntry>>,
    },
}

/// The key a node's number is derived from.
pub(super) fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::new();
    for p in parts {
        k.extend_from_slice(&(p.len() as u64).to_le_bytes());
        k.extend_from_slice(p);
    }
    k
}

/// The number derived from `key`, before any collision is resolved.
pub(super) fn derive(key: &[u8]) -> u64 {
    let h = blake3::hash(key);
    let n = u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"));
    n.max(FIRST_DERIVED)
}

struct Slot {
    /// The key's digest: what tells two keys of one number apart, in 16 bytes, not the key.
    key: [u8; 16],
    node: Node,
    lookups: u64,
}

/// The nodes the kernel knows, by number.
#[derive(Default)]
pub(super) struct Table {
    slots: Mutex<HashMap<u64, Slot>>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table").field("nodes", &self.len()).finish()
    }
}

impl Table {
    /// The number of the node `key`, counting one more lookup of it. Two keys whose numbers
    /// collide (one in 2⁶⁴ per pair) get the next free number, so numbers stay unique.
    pub(super) fn remember(&self, key: Vec<u8>, node: Node) -> u64 {
        let mut ino = derive(&key);
        let key: [u8; 16] = blake3::hash(&key).as_bytes()[16..]
            .try_into()
            .expect("16 bytes");
        let mut slots = self.slots.lock().expect("inode table");
        loop {
            match slots.get_mut(&ino) {
                Some(s) if s.key == key => {
                    s.lookups += 1;
                    s.node = node;
                    return ino;
                }
                Some(_) => ino = ino.checked_add(1).unwrap_or(FIRST_DERIVED),
                None => {
                    slots.insert(
                        ino,
                        Slot {
                            key,
                            node,
                            lookups: 1,
                        },
                    );
                    return ino;
                }
            }
        }
    }

    /// The node numbered `ino`, while the kernel holds it.
    pub(super) fn get(&self, ino: u64) -> Option<Node> {
        let slots = self.slots.lock().expect("inode table");
        slots.get(&ino).map(|s| s.node.clone())
    }

    /// The kernel forgot `n` lookups of `ino`; at none left, the node is dropped.
    pub(super) fn forget(&self, ino: u64, n: u64) {
        let mut slots = self.slots.lock().expect("inode table");
        if let Some(s) = slots.get_mut(&ino) {
            s.lookups = s.lookups.saturating_sub(n);
            if s.lookups == 0 {
                slots.remove(&ino);
            }
        }
    }

    /// Nodes held.
    pub(super) fn len(&self) -> usize {
        self.slots.lock().expect("inode table").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_unique_and_dropped_when_forgotten() {
        let t = Table::default();
        let k = key(&[b"snap", b"a/b"]);
        let a = t.remember(k.clone(), Node::Root);
        assert_eq!(a, derive(&k), "derived from the key alone");
        assert_eq!(t.remember(k.clone(), Node::Root), a);
        assert!(a >= FIRST_DERIVED);
        t.forget(a, 1);
        assert!(t.get(a).is_some(), "one lookup left");
        t.forget(a, 1);
        assert!(t.get(a).is_none());
        assert_eq!(t.len(), 0);
        // A collision: a key whose number is taken by another gets the next one.
        let other = key(&[b"other"]);
        let first = t.remember(k.clone(), Node::Root);
        t.slots.lock().unwrap().insert(
            derive(&other),
            Slot {
                key: [7; 16],
                node: Node::Root,
                lookups: 1,
            },
        );
        let second = t.remember(other.clone(), Node::Root);
        assert_ne!(second, derive(&other));
        assert_ne!(second, first);
    }
}
