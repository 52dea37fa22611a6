//! Trees, built bottom-up: a directory's tree is stored once all its entries are, so a tree
//! never names a subtree that is not stored. Trees go to their own packer; a listing longer
//! than a tree may hold leaves its directory out with a warning (the root tree must fit).

use std::sync::atomic::Ordering::Relaxed;

use super::scan::Stat;
use super::state::RunState;
use crate::error::{Error, Result};
use crate::format::codec;
use crate::format::snapshot::WarningKind;
use crate::format::tree::{Entry, EntryKind, MAX_TREE_LEN, RawBytes, Tree};
use crate::id::Id;

impl RunState<'_> {
    /// The entry of a directory that was backed up as `tree`.
    pub(super) fn dir_entry(&self, name: &[u8], st: &Stat, tree: Id) -> Entry {
        self.progress.dirs.fetch_add(1, Relaxed);
        self.progress.entries.fetch_add(1, Relaxed);
        entry_from(name, st, EntryKind::Dir, |e| e.tree = Some(tree))
    }

    /// Stores the tree of a directory's entries; leaves the directory out, with a warning, when
    /// its listing is longer than a tree may be (readers would refuse it).
    pub(super) fn finish_dir(&self, rel: &[u8], entries: Vec<Entry>) -> Result<Option<Id>> {
        let count = entries.len();
        let (id, bytes) = Tree { entries }.encode();
        if bytes.len() > MAX_TREE_LEN {
            self.warn(
                rel,
                WarningKind::TooLarge,
                format!(
                    "the listing of its {count} entries takes {} bytes, more than the {MAX_TREE_LEN} a tree may hold; directory left out",
                    bytes.len()
                ),
            );
            return Ok(None);
        }
        self.store_encoded_tree(id, &bytes)?;
        Ok(Some(id))
    }

    /// Stores the root tree, which must fit: a root too large fails the backup.
    pub(super) fn store_tree(&self, tree: &Tree) -> Result<Id> {
        let (id, bytes) = tree.encode();
        if bytes.len() > MAX_TREE_LEN {
            return Err(Error::corrupt(format!(
                "the root tree takes {} bytes, more than the {MAX_TREE_LEN} a tree may hold",
                bytes.len()
            )));
        }
        self.store_encoded_tree(id, &bytes)?;
        Ok(id)
    }

    fn store_encoded_tree(&self, id: Id, bytes: &[u8]) -> Result<()> {
        if !self.trees.has(&id)? {
            let frame = codec::encode(bytes, self.opts.compression)?;
            if self.trees.add(id, &frame, bytes.len())?.new {
                self.progress.new_trees.fetch_add(1, Relaxed);
            }
        }
        Ok(())
    }
}

/// The entry named `name` with the metadata of `st`, completed by `fill`.
pub(super) fn entry_from(
    name: &[u8],
    st: &Stat,
    kind: EntryKind,
    fill: impl FnOnce(&mut Entry),
) -> Entry {
    let mut e = Entry {
        name: RawBytes(name.to_vec()),
        kind,
        mode: st.mode,
        uid: st.uid,
        gid: st.gid,
        mtime: st.mtime,
        mtime_ns: st.mtime_ns,
        size: 0,
        chunks: Vec::new(),
        tree: None,
        target: None,
        hardlink: None,
        rdev: None,
    };
    fill(&mut e);
    e
}
