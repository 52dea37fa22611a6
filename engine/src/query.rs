//! Questions about snapshots: what changed between two (`diff`), and which snapshots hold a path
//! (`find`). Both skip whole subtrees whose tree ids are equal, so comparing two nights of a
//! mostly unchanged share reads only the trees along the changes.

use globset::GlobBuilder;
use serde::Serialize;

use crate::backup::load_tree;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::tree::{Entry, EntryKind};

/// One difference between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `+` added, `-` removed, `M` content changed, `T` type changed, `U` metadata only.
    pub change: char,
    /// Path (lossy UTF-8).
    pub path: String,
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}/{name}")
    }
}

fn all_paths(
    repo: &Repository,
    catalog: &Catalog,
    e: &Entry,
    path: &str,
    sign: char,
    out: &mut Vec<Change>,
) -> Result<()> {
    out.push(Change {
        change: sign,
        path: path.to_string(),
    });
    if let Some(t) = &e.tree {
        children(repo, catalog, t, path, sign, out)?;
    }
    Ok(())
}

/// Every path below the tree `t` at `path`, marked `sign`.
fn children(
    repo: &Repository,
    catalog: &Catalog,
    t: &Id,
    path: &str,
    sign: char,
    out: &mut Vec<Change>,
) -> Result<()> {
    for c in load_tree(repo, catalog, t)?.entries {
        all_paths(repo, catalog, &c, &join(path, &c.name.lossy()), sign, out)?;
    }
    Ok(())
}

/// The differences from tree `a` to tree `b`, in path order.
pub fn diff(repo: &Repository, catalog: &Catalog, a: &Id, b: &Id) -> Result<Vec<Change>> {
    let mut out = Vec::new();
    diff_trees(repo, catalog, a, b, "", &mut out)?;
    Ok(out)
}

fn diff_trees(
    repo: &Repository,
    catalog: &Catalog,
    a: &Id,
    b: &Id,
    prefix: &str,
    out: &mut Vec<Change>,
) -> Result<()> {
    if a == b {
        return Ok(());
    }
    let (ta, tb) = (
        load_tree(repo, catalog, a)?.entries,
        load_tree(repo, catalog, b)?.entries,
    );
    let (mut i, mut j) = (0, 0);
    while i < ta.len() || j < tb.len() {
        let order = match (ta.get(i), tb.get(j)) {
            (Some(x), Some(y)) => x.name.cmp(&y.name),
            (Some(_), None) => std::cmp::Ordering::Less,
            _ => std::cmp::Ordering::Greater,
        };
        match order {
            std::cmp::Ordering::Less => {
                all_paths(
                    repo,
                    catalog,
                    &ta[i],
                    &join(prefix, &ta[i].name.lossy()),
                    '-',
                    out,
                )?;
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                all_paths(
                    repo,
                    catalog,
                    &tb[j],
                    &join(prefix, &tb[j].name.lossy()),
                    '+',
                    out,
                )?;
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (&ta[i], &tb[j]);
                let path = join(prefix, &x.name.lossy());
                if x.kind != y.kind {
                    out.push(Change {
                        change: 'T',
                        path: path.clone(),
                    });
                } else if x.chunks != y.chunks || x.target != y.target || x.size != y.size {
                    out.push(Change {
                        change: 'M',
                        path: path.clone(),
                    });
                } else if (x.mode, x.uid, x.gid, x.mtime, x.mtime_ns)
                    != (y.mode, y.uid, y.gid, y.mtime, y.mtime_ns)
                    && x.kind != EntryKind::Dir
                {
                    out.push(Change {
                        change: 'U',
                        path: path.clone(),
                    });
                }
                match (&x.tree, &y.tree) {
                    (Some(ta), Some(tb)) => diff_trees(repo, catalog, ta, tb, &path, out)?,
                    // A directory became something else, or the reverse: its contents went or came.
                    (Some(t), None) => children(repo, catalog, t, &path, '-', out)?,
                    (None, Some(t)) => children(repo, catalog, t, &path, '+', out)?,
                    (None, None) => {}
                }
                i += 1;
                j += 1;
            }
        }
    }
    Ok(())
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
        crate::backup::walk_tree(repo, catalog, &snap.root, &mut |p, e| {
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
