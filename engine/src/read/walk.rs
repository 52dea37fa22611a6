//! The one walk over a snapshot's trees, and the rules every reader shares: which entry has a
//! listing below it ([`subtree`]), how a child's path is made and bounded ([`child_path`]), and
//! the depth-first, path-ordered walk with an explicit stack ([`walk`]).
//!
//! Every command that walks (ls, find, diff, check, export, restore, gc) decides the same way on
//! a crafted snapshot because the decisions live here and in the tree format: a `tree` on an
//! entry that is not a directory, or a directory without one, is refused when the tree is
//! decoded ([`Tree::decode`]); a path longer than [`MAX_PATH_LEN`] stops the walk (so a chain of
//! trees costs neither stack nor quadratic memory); and a "cycle" of tree ids cannot be read,
//! since every tree is checked against its id when it is loaded.

use crate::error::Result;
use crate::format::tree::{Entry, EntryKind, MAX_PATH_LEN, Tree, check_path_len};
use crate::id::Id;

/// The listing below `e`: a directory's tree, nothing for any other entry. The format guarantees
/// that a decoded directory has one and nothing else does.
pub fn subtree(e: &Entry) -> Option<&Id> {
    match e.kind {
        EntryKind::Dir => e.tree.as_ref(),
        _ => None,
    }
}

/// `prefix/name` (or `name` at the top), refused (kind `Corrupt`) when it would be longer than
/// [`MAX_PATH_LEN`], with the path shortened in the message.
pub fn child_path(prefix: &[u8], name: &[u8]) -> Result<Vec<u8>> {
    let mut path = Vec::with_capacity(prefix.len() + 1 + name.len());
    path.extend_from_slice(prefix);
    if !prefix.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    check_path_len(&path)?;
    Ok(path)
}

/// What the visitor wants done below a directory it was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Descend {
    /// Load its tree and walk its entries next.
    Into,
    /// Leave it (already walked, or not wanted).
    Skip,
}

/// Walks the entries below the tree `root` (whose own path is `prefix`, empty for a snapshot's
/// root), depth first in path order: `visit` sees each entry with its path, and for a directory
/// says whether to descend; `load` reads a tree by id, given the path of the directory it lists.
/// At most one open listing per level is held, on the heap.
pub fn walk(
    root: &Id,
    prefix: &[u8],
    load: &mut dyn FnMut(&Id, &[u8]) -> Result<Tree>,
    visit: &mut dyn FnMut(&[u8], &Entry) -> Result<Descend>,
) -> Result<()> {
    debug_assert!(prefix.len() <= MAX_PATH_LEN);
    let first = load(root, prefix)?.entries.into_iter();
    let mut stack: Vec<(Vec<u8>, std::vec::IntoIter<Entry>)> = vec![(prefix.to_vec(), first)];
    while let Some((prefix, entries)) = stack.last_mut() {
        let Some(e) = entries.next() else {
            stack.pop();
            continue;
        };
        let path = child_path(prefix, &e.name.0)?;
        let descend = visit(&path, &e)?;
        if let (Descend::Into, Some(sub)) = (descend, subtree(&e)) {
            let children = load(sub, &path)?.entries.into_iter();
            stack.push((path, children));
        }
    }
    Ok(())
}
