//! Reading a snapshot back: trees, walks, path look-ups and file content, each blob checked
//! against its id. The one read handle that `export`, `restore`, `check`, `query` and the CLI
//! use, so that no reader depends on the writer (`backup`).

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::format::tree::{Entry, Tree};
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::index::BlobLocation;

/// `parent/name`, as raw bytes.
pub(crate) fn join_rel(parent: &[u8], name: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(parent.len() + 1 + name.len());
    v.extend_from_slice(parent);
    v.push(b'/');
    v.extend_from_slice(name);
    v
}

/// The hardlink groups met while reading a snapshot: for each file, the earlier name it is a
/// link to. Keyed by (top-level folder, hardlink identity), and a name is linked only to one with
/// the same chunks: snapshots written before identities included the filesystem can share an
/// identity between two files of different mounts. The export and restore both plan by it, `P`
/// being how each names a path.
#[derive(Debug)]
pub(crate) struct HardlinkGroups<P> {
    first: std::collections::HashMap<(Vec<u8>, u64), (P, Vec<Id>)>,
}

impl<P: Clone> HardlinkGroups<P> {
    pub(crate) fn new() -> Self {
        HardlinkGroups {
            first: Default::default(),
        }
    }

    /// For the file `e` in the top-level folder `folder`: the first name of its group, if one
    /// was met before; otherwise `None`, and when `e` has a hardlink identity that no name had
    /// yet, `path()` becomes the group's first name.
    pub(crate) fn link_to(
        &mut self,
        folder: &[u8],
        e: &Entry,
        path: impl FnOnce() -> P,
    ) -> Option<P> {
        let h = e.hardlink?;
        match self.first.get(&(folder.to_vec(), h)) {
            Some((first, chunks)) if *chunks == e.chunks => Some(first.clone()),
            Some(_) => None,
            None => {
                self.first
                    .insert((folder.to_vec(), h), (path(), e.chunks.clone()));
                None
            }
        }
    }
}

/// Reads a file's content back from the repository into `out`, checking every chunk.
pub fn read_file_content(
    repo: &Repository,
    catalog: &Catalog,
    entry: &Entry,
    out: &mut dyn std::io::Write,
) -> Result<u64> {
    let mut n = 0;
    for id in &entry.chunks {
        let loc = catalog
            .locate(BlobKind::Data, id)?
            .ok_or_else(|| Error::not_found(format!("chunk {} is in no known pack", id.short())))?;
        let data = crate::catalog::heal::read_checked(repo, catalog, BlobKind::Data, id, &loc)?;
        out.write_all(&data)
            .map_err(|e| Error::io("writing file content", e))?;
        n += data.len() as u64;
    }
    Ok(n)
}

/// Where a tree is.
fn locate_tree(catalog: &Catalog, id: &Id) -> Result<BlobLocation> {
    catalog
        .locate(BlobKind::Tree, id)?
        .ok_or_else(|| Error::not_found(format!("tree {} is in no known pack", id.short())))
}

/// Loads a tree blob from the store itself, never from the tree-pack cache: for `check`, whose
/// subject is the store, not a copy on the state volume.
pub fn load_tree_from_store(repo: &Repository, catalog: &Catalog, id: &Id) -> Result<Tree> {
    tree_at(repo, catalog, id, &locate_tree(catalog, id)?)
}

/// The tree at `loc`, read from the store and checked.
fn tree_at(repo: &Repository, catalog: &Catalog, id: &Id, loc: &BlobLocation) -> Result<Tree> {
    Tree::decode(&crate::catalog::heal::read_checked(
        repo,
        catalog,
        BlobKind::Tree,
        id,
        loc,
    )?)
}

/// Loads a tree blob: from the tree-pack cache when the catalog has one (a remote store),
/// otherwise, or when the cache cannot serve it, with one read of its frame from the store.
pub fn load_tree(repo: &Repository, catalog: &Catalog, id: &Id) -> Result<Tree> {
    load_tree_through(repo, catalog, catalog.tree_cache(), id)
}

/// Loads a tree blob through `cache` (whole tree packs on local disk), or from the store alone
/// without one or when it cannot serve the tree.
pub fn load_tree_through(
    repo: &Repository,
    catalog: &Catalog,
    cache: Option<&crate::catalog::tree_cache::TreeCache>,
    id: &Id,
) -> Result<Tree> {
    let Some(cache) = cache else {
        return load_tree_from_store(repo, catalog, id);
    };
    let loc = locate_tree(catalog, id)?;
    match cache.frame(repo.store().as_ref(), &loc) {
        // Checked against its id like any read; a bad one is dropped from the cache and read
        // again from the store alone.
        Ok(Some(frame)) => match repo.open_frame(BlobKind::Tree, id, &loc, &frame) {
            Ok(data) => return Tree::decode(&data),
            Err(e) => {
                tracing::warn!(tree = %id, pack = %loc.pack, error = %e, "a cached tree failed its check; reading it from the store");
                cache.forget(&loc.pack);
            }
        },
        Ok(None) => {}
        Err(e) => {
            tracing::debug!(tree = %id, error = %e, "tree-pack cache unusable; reading the tree alone")
        }
    }
    tree_at(repo, catalog, id, &loc)
}

/// Every entry of a snapshot below `root`, depth first in path order, with its path relative to
/// the source root: [`crate::read::walk::walk`] over trees read by [`load_tree`].
pub fn walk_tree(
    repo: &Repository,
    catalog: &Catalog,
    root: &Id,
    visit: &mut dyn FnMut(&[u8], &Entry) -> Result<()>,
) -> Result<()> {
    crate::read::walk::walk(
        root,
        b"",
        &mut |id, _| load_tree(repo, catalog, id),
        &mut |path, e| visit(path, e).map(|()| crate::read::walk::Descend::Into),
    )
}

/// The entry at `path` (relative to the source root, `/`-separated) in the tree `root`.
pub fn find_entry(repo: &Repository, catalog: &Catalog, root: &Id, path: &[u8]) -> Result<Entry> {
    let mut tree = *root;
    let parts: Vec<&[u8]> = path
        .split(|b| *b == b'/')
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return Err(Error::usage("empty path"));
    }
    for (i, part) in parts.iter().enumerate() {
        let t = load_tree(repo, catalog, &tree)?;
        let e = t
            .entries
            .into_iter()
            .find(|e| e.name.0 == *part)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "{} is not in the snapshot",
                    String::from_utf8_lossy(path)
                ))
            })?;
        if i + 1 == parts.len() {
            return Ok(e);
        }
        tree = e.tree.ok_or_else(|| {
            Error::not_found(format!(
                "{} is not a directory in the snapshot",
                String::from_utf8_lossy(&parts[..=i].join(&b'/'))
            ))
        })?;
    }
    unreachable!("the loop returns on the last part")
}
