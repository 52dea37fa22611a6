//! Questions about snapshots: what changed between two (`diff`), and which snapshots hold a path
//! (`find`). Both skip whole subtrees whose tree ids are equal, so comparing two nights of a
//! mostly unchanged share reads only the trees along the changes.

use globset::GlobBuilder;
use serde::Serialize;

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::format::tree::{Entry, EntryKind};
use crate::id::Id;
use crate::read::load_tree;
use crate::read::walk::subtree;
use crate::repo::Repository;

/// One difference between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `+` added, `-` removed, `M` content changed, `T` type changed, `U` metadata only.
    pub change: char,
    /// Path (lossy UTF-8).
    pub path: String,
}

/// One step of a diff. The walk keeps these on an explicit stack instead of recursing, so a
/// crafted chain of thousands of trees costs heap, not stack.
enum Task {
    /// Output one change.
    Emit(char, String),
    /// This entry and everything below it, marked with the sign.
    All(Entry, TreePath, char),
    /// Everything below the tree, marked with the sign.
    Children(Id, TreePath, char),
    /// The differences between two trees.
    Diff(Id, Id, TreePath),
}

/// A path for output (lossy UTF-8) and the length of its raw bytes, which is what is bounded.
#[derive(Clone)]
struct TreePath {
    shown: String,
    len: usize,
}

impl TreePath {
    const ROOT: TreePath = TreePath {
        shown: String::new(),
        len: 0,
    };

    /// The path of `name` inside this one; refuses one longer than a snapshot path may be.
    fn child(&self, name: &crate::format::tree::RawBytes) -> Result<TreePath> {
        let (shown, len) = if self.len == 0 {
            (name.lossy().into_owned(), name.0.len())
        } else {
            (
                format!("{}/{}", self.shown, name.lossy()),
                self.len + 1 + name.0.len(),
            )
        };
        crate::format::tree::check_path_len_of(shown.as_bytes(), len)?;
        Ok(TreePath { shown, len })
    }
}

/// The differences from tree `a` to tree `b`, in path order.
pub fn diff(repo: &Repository, catalog: &Catalog, a: &Id, b: &Id) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    let mut stack = vec![Task::Diff(*a, *b, TreePath::ROOT)];
    while let Some(task) = stack.pop() {
        // The steps of this task, in output order; pushed reversed below.
        let mut next = Vec::new();
        match task {
            Task::Emit(change, path) => out.push(Change { change, path }),
            Task::All(e, path, sign) => {
                next.push(Task::Emit(sign, path.shown.clone()));
                if let Some(t) = subtree(&e) {
                    next.push(Task::Children(*t, path, sign));
                }
            }
            Task::Children(t, path, sign) => {
                for c in load_tree(repo, catalog, &t)?.entries {
                    let p = path.child(&c.name)?;
                    next.push(Task::All(c, p, sign));
                }
            }
            Task::Diff(a, b, prefix) => {
                if a != b {
                    diff_step(repo, catalog, &a, &b, &prefix, &mut next)?;
                }
            }
        }
        stack.extend(next.into_iter().rev());
    }
    Ok(out)
}

/// The steps that compare the entries of trees `a` and `b` at `prefix`.
fn diff_step(
    repo: &Repository,
    catalog: &Catalog,
    a: &Id,
    b: &Id,
    prefix: &TreePath,
    next: &mut Vec<Task>,
) -> Result<()> {
    let (ta, tb) = (
        load_tree(repo, catalog, a)?.entries,
        load_tree(repo, catalog, b)?.entries,
    );
    let (mut ta, mut tb) = (ta.into_iter().peekable(), tb.into_iter().peekable());
    loop {
        let order = match (ta.peek(), tb.peek()) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => return Ok(()),
        };
        match order {
            std::cmp::Ordering::Less => {
                let x = ta.next().expect("peeked");
                let path = prefix.child(&x.name)?;
                next.push(Task::All(x, path, '-'));
            }
            std::cmp::Ordering::Greater => {
                let y = tb.next().expect("peeked");
                let path = prefix.child(&y.name)?;
                next.push(Task::All(y, path, '+'));
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (ta.next().expect("peeked"), tb.next().expect("peeked"));
                let path = prefix.child(&x.name)?;
                if x.kind != y.kind {
                    next.push(Task::Emit('T', path.shown.clone()));
                } else if x.chunks != y.chunks || x.target != y.target || x.size != y.size {
                    next.push(Task::Emit('M', path.shown.clone()));
                } else if (x.mode, x.uid, x.gid, x.mtime, x.mtime_ns)
                    != (y.mode, y.uid, y.gid, y.mtime, y.mtime_ns)
                    && x.kind != EntryKind::Dir
                {
                    next.push(Task::Emit('U', path.shown.clone()));
                }
                match (subtree(&x), subtree(&y)) {
                    (Some(ta), Some(tb)) => next.push(Task::Diff(*ta, *tb, path)),
                    // A directory became something else, or the reverse: its contents went or came.
                    (Some(t), None) => next.push(Task::Children(*t, path, '-')),
                    (None, Some(t)) => next.push(Task::Children(*t, path, '+')),
                    (None, None) => {}
                }
            }
        }
    }
}

/// A path found in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    /// Snapshot id.
    pub snapshot: Id,
    /// Snapshot day.
    pub date: String,
    /// Path.
    pub path: String,
    /// Type.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Size.
    pub size: u64,
    /// mtime seconds.
    pub mtime: i64,
}

/// Every entry in every snapshot whose path matches `pattern` (a glob; without `/` it matches
/// the name at any depth, with `/` the whole path), oldest snapshot first.
pub fn find(repo: &Repository, catalog: &Catalog, pattern: &str) -> Result<Vec<Found>> {
    let glob = GlobBuilder::new(pattern)
        .literal_separator(pattern.contains('/'))
        .build()
        .map_err(|e| Error::usage(format!("invalid pattern {pattern:?}")).with_source(e))?
        .compile_matcher();
    let by_name = !pattern.contains('/');
    let mut out = Vec::new();
    for (id, snap) in catalog.snapshots()? {
        crate::read::walk_tree(repo, catalog, &snap.root, &mut |p, e| {
            let path = String::from_utf8_lossy(p);
            let subject = if by_name {
                e.name.lossy()
            } else {
                path.clone()
            };
            if glob.is_match(subject.as_ref()) {
                out.push(Found {
                    snapshot: id,
                    date: snap.date.clone(),
                    path: path.into_owned(),
                    kind: e.kind,
                    size: e.size,
                    mtime: e.mtime,
                });
            }
            Ok(())
        })?;
    }
    Ok(out)
}
