//! Link counts of hardlinked files in a snapshot. Trees store, per name, the identity of the
//! inode it was (within one top-level folder of one snapshot) but not how many names it had,
//! so the mount counts them: at the first stat of a hardlinked name, one walk of its top-level
//! folder's trees counts every identity there, kept (bounded) for the names to come. A name is
//! grouped with others of its identity only when their chunks are the same, as the export and
//! restore group them.

use std::collections::HashMap;

use crate::error::Result;
use crate::format::tree::{Entry, EntryKind, Tree};
use crate::id::Id;
use crate::read::walk::{Descend, walk};

/// How many names each (identity, chunks) has in one top-level folder.
pub(super) type LinkCounts = HashMap<(u64, [u8; 32]), u32>;

/// The group a hardlinked file belongs to: its identity and a digest of its chunk list.
pub(super) fn group_of(e: &Entry) -> Option<(u64, [u8; 32])> {
    let h = e.hardlink?;
    if e.kind != EntryKind::File {
        return None;
    }
    let mut hasher = blake3::Hasher::new();
    for c in &e.chunks {
        hasher.update(c.as_bytes());
    }
    Some((h, *hasher.finalize().as_bytes()))
}

/// Counts the names of every hardlink group below the folder tree `folder`.
pub(super) fn count(
    folder: &Id,
    prefix: &[u8],
    load: &mut dyn FnMut(&Id) -> Result<std::sync::Arc<Tree>>,
) -> Result<LinkCounts> {
    let mut counts = LinkCounts::new();
    walk(
        folder,
        prefix,
        &mut |id, _| load(id).map(|t| (*t).clone()),
        &mut |_, e| {
            if let Some(g) = group_of(e) {
                *counts.entry(g).or_default() += 1;
            }
            Ok(Descend::Into)
        },
    )?;
    Ok(counts)
}
