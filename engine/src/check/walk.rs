//! Walking every snapshot for a check: each tree a snapshot reaches decoded, each chunk it names
//! located in a pack not known to be damaged, and problems collected by object with the paths
//! they affect. Trees found clean are remembered, so shared subtrees cost once; the walk keeps
//! going past damage, reporting it by path rather than stopping.

use std::collections::{BTreeMap, HashSet};

use super::plan::Damage;
use super::report::{Affected, ProblemKind};
use crate::catalog::Catalog;
use crate::error::Result;
use crate::format::pack::BlobKind;
use crate::format::tree::{check_path_len_of, shorten};
use crate::id::Id;
use crate::read::load_tree_through;
use crate::repo::Repository;

/// Problems by object: kind, detail and the paths affected.
pub(super) type Affecting = BTreeMap<String, (ProblemKind, String, Vec<Affected>)>;

pub(super) struct Walker<'a> {
    pub(super) repo: &'a Repository,
    pub(super) catalog: &'a Catalog,
    pub(super) damage: &'a Damage,
    pub(super) clean: &'a mut HashSet<Id>,
    pub(super) affected: &'a mut Affecting,
    pub(super) snap: String,
    pub(super) seen: &'a mut HashSet<Id>,
    /// Whole tree packs read from the store for this check, when it is remote.
    pub(super) trees: Option<&'a crate::catalog::tree_cache::TreeCache>,
}

impl Walker<'_> {
    fn hit(&mut self, object: String, kind: ProblemKind, detail: &str, path: &str) {
        self.affected
            .entry(object)
            .or_insert_with(|| (kind, detail.to_string(), Vec::new()))
            .2
            .push(Affected {
                snapshot: self.snap.clone(),
                path: if path.is_empty() {
                    "/".into()
                } else {
                    path.to_string()
                },
            });
    }

    /// Problems of the blob `id` of `kind`, if any: (object, kind, detail).
    fn blob_problem(
        &self,
        kind: BlobKind,
        id: &Id,
    ) -> Result<Option<(String, ProblemKind, String)>> {
        let Some(loc) = self.catalog.locate(kind, id)? else {
            return Ok(Some((
                format!("blob {id}"),
                ProblemKind::MissingBlob,
                "in no pack of the store".into(),
            )));
        };
        if let Some(detail) = self.damage.blobs.get(&(loc.pack, kind, *id)) {
            return Ok(Some((
                format!("pack {}", loc.pack),
                ProblemKind::CorruptBlob,
                format!(
                    "{detail}; recorded as damaged: the next backup stores it again if the source still has it"
                ),
            )));
        }
        if let Some((k, detail)) = self.damage.packs.get(&loc.pack) {
            return Ok(Some((format!("pack {}", loc.pack), *k, detail.clone())));
        }
        Ok(None)
    }

    /// Returns whether everything below `id` is intact. Walks with an explicit stack, one frame
    /// per open tree: a crafted chain of thousands of trees costs heap, not stack, and a path
    /// longer than [`crate::format::tree::MAX_PATH_LEN`] is reported as a damaged tree instead of followed.
    pub(super) fn tree(&mut self, id: &Id, path: &str) -> Result<bool> {
        let mut stack = match self.open(id, path, path.len())? {
            Opened::Done(ok) => return Ok(ok),
            Opened::Frame(f) => vec![f],
        };
        loop {
            let top = stack
                .last_mut()
                .expect("the loop returns when the stack empties");
            let Some(e) = top.entries.next() else {
                let done = stack.pop().expect("not empty");
                if done.ok {
                    self.clean.insert(done.id);
                }
                match stack.last_mut() {
                    Some(parent) => parent.ok &= done.ok,
                    None => return Ok(done.ok),
                }
                continue;
            };
            let name = e.name.lossy();
            let (p, len) = if top.path.is_empty() {
                (name.into_owned(), e.name.0.len())
            } else {
                (format!("{}/{name}", top.path), top.len + 1 + e.name.0.len())
            };
            if let Err(err) = check_path_len_of(p.as_bytes(), len) {
                let object = format!("tree {}", top.id);
                top.ok = false;
                self.hit(
                    object,
                    ProblemKind::CorruptTree,
                    err.message(),
                    &shorten(p.as_bytes()),
                );
                continue;
            }
            for c in &e.chunks {
                if let Some((object, kind, detail)) = self.blob_problem(BlobKind::Data, c)? {
                    self.hit(object, kind, &detail, &p);
                    top.ok = false;
                    break;
                }
            }
            if let Some(sub) = crate::read::walk::subtree(&e) {
                match self.open(sub, &p, len)? {
                    Opened::Done(ok) => top.ok &= ok,
                    Opened::Frame(f) => stack.push(f),
                }
            }
        }
    }

    /// Starts on the tree `id` at `path` (`len` raw bytes): the answer when it is known
    /// without reading its entries, else a frame to walk them.
    fn open(&mut self, id: &Id, path: &str, len: usize) -> Result<Opened> {
        self.seen.insert(*id);
        if self.clean.contains(id) {
            return Ok(Opened::Done(true));
        }
        if let Some((object, kind, detail)) = self.blob_problem(BlobKind::Tree, id)? {
            self.hit(object, kind, &detail, path);
            return Ok(Opened::Done(false));
        }
        // The store's copy: a tree cached on the state volume says nothing of the store.
        match load_tree_through(self.repo, self.catalog, self.trees, id) {
            Ok(t) => Ok(Opened::Frame(Frame {
                id: *id,
                path: path.to_string(),
                len,
                entries: t.entries.into_iter(),
                ok: true,
            })),
            Err(e) => {
                self.hit(
                    format!("tree {id}"),
                    ProblemKind::CorruptTree,
                    &e.to_string(),
                    path,
                );
                Ok(Opened::Done(false))
            }
        }
    }
}

/// A tree being checked.
struct Frame {
    id: Id,
    path: String,
    /// Length of the raw path (`path` is its lossy rendering).
    len: usize,
    entries: std::vec::IntoIter<crate::format::tree::Entry>,
    /// Whether everything seen below it so far is intact.
    ok: bool,
}

enum Opened {
    /// Intact or not, known without walking it.
    Done(bool),
    /// To walk.
    Frame(Frame),
}
