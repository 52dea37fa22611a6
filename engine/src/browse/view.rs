//! What each kind of node shows: its attributes, its listing and the node a name in it stands
//! for, with the key its number is derived from.

use std::sync::Arc;

use super::inodes::{self, Node, View, key};
use super::links;
use super::snapshots::{Shown, SnapList};
use super::{Attr, Browser, DirItem};
use crate::error::{Error, Result};
use crate::format::tree::{Entry, EntryKind, RawBytes};
use crate::id::Id;
use crate::read::walk::child_path;

/// A node's number: one of the fixed ones, or derived from a key.
pub(super) enum Number {
    Fixed(u64),
    Derived(Vec<u8>),
}

fn view_tag(v: View) -> &'static [u8] {
    match v {
        View::ByName => b"n",
        View::ById => b"i",
    }
}

/// The key of the entry `e` at `path` of a snapshot: a hardlinked file's is its group's, so
/// that all its names are one node with one number.
fn snap_key(view: View, snap: &Id, path: &[u8], e: &Entry) -> Vec<u8> {
    let top = path.split(|b| *b == b'/').next().unwrap_or(b"");
    match links::group_of(e) {
        Some((h, digest)) => key(&[
            b"s",
            view_tag(view),
            snap.as_bytes(),
            b"h",
            top,
            &h.to_le_bytes(),
            &digest,
        ]),
        None => key(&[b"s", view_tag(view), snap.as_bytes(), b"p", path]),
    }
}

/// The made-up directory entry of a snapshot's root.
fn root_entry(sh: &Shown, owner: (u32, u32)) -> Entry {
    Entry {
        name: RawBytes(sh.id.short().into_bytes()),
        kind: EntryKind::Dir,
        mode: 0o555,
        uid: owner.0,
        gid: owner.1,
        mtime: sh.time.0,
        mtime_ns: sh.time.1,
        size: 0,
        chunks: Vec::new(),
        tree: Some(sh.root),
        target: None,
        hardlink: None,
        rdev: None,
    }
}

/// The key of a snapshot's root seen through `view`.
fn snap_root_key(view: View, id: &Id) -> Vec<u8> {
    key(&[b"s", view_tag(view), id.as_bytes()])
}

fn snap_root(view: View, sh: &Shown, owner: (u32, u32)) -> (Number, Node) {
    (
        Number::Derived(snap_root_key(view, &sh.id)),
        Node::Snap {
            view,
            snap: sh.id,
            root: sh.root,
            path: Arc::from(&b""[..]),
            entry: Arc::new(root_entry(sh, owner)),
        },
    )
}

fn day_key(date: &str, path: &[u8]) -> Vec<u8> {
    key(&[b"d", date.as_bytes(), path])
}

impl Browser {
    /// The decoded listing of the directory entry `entry`.
    fn listing(&self, entry: &Entry) -> Result<Arc<crate::format::tree::Tree>> {
        let id = entry
            .tree
            .as_ref()
            .ok_or_else(|| Error::corrupt("a directory without a tree"))?;
        self.tree(id)
    }

    /// The name `name` in the folder `parent`, counted as one more lookup of it.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Result<Attr> {
        let node = self.node(parent)?;
        let (key, child) = self.child(&node, name)?.ok_or_else(|| {
            Error::not_found(format!("{} is not there", String::from_utf8_lossy(name)))
        })?;
        let mut attr = self.attr_of(&child)?;
        attr.ino = match key {
            Number::Fixed(ino) => ino,
            Number::Derived(key) => self.table.remember(key, child),
        };
        Ok(attr)
    }

    /// The attributes of a folder cairn makes up, with `dirs` folders in it.
    fn made_up_dir(&self, dirs: usize) -> Attr {
        Attr {
            ino: 0,
            kind: EntryKind::Dir,
            size: 0,
            perm: 0o555,
            nlink: 2 + dirs as u32,
            uid: self.owner.0,
            gid: self.owner.1,
            mtime: self.started.0,
            mtime_ns: self.started.1,
            rdev: 0,
        }
    }

    /// The attributes of `node` (its number is the caller's to fill in).
    pub(super) fn attr_of(&self, node: &Node) -> Result<Attr> {
        Ok(match node {
            Node::Root => {
                let dirs =
                    if self.repo.is_some() { 2 } else { 0 } + usize::from(self.exports.is_some());
                self.made_up_dir(dirs)
            }
            Node::Snapshots => self.made_up_dir(self.repo()?.list()?.by_name.len()),
            Node::Ids => self.made_up_dir(self.repo()?.list()?.by_id.len()),
            Node::Archives => self.made_up_dir(self.day_names()?.len()),
            Node::Latest => {
                let target = self.readlink(inodes::LATEST)?;
                Attr {
                    kind: EntryKind::Symlink,
                    size: target.len() as u64,
                    perm: 0o777,
                    nlink: 1,
                    ..self.made_up_dir(0)
                }
            }
            Node::Snap {
                snap: _,
                root,
                path,
                entry,
                ..
            } => {
                let nlink = match entry.kind {
                    EntryKind::Dir => {
                        let tree = self.listing(entry)?;
                        2 + tree
                            .entries
                            .iter()
                            .filter(|e| e.kind == EntryKind::Dir)
                            .count() as u32
                    }
                    EntryKind::File => match links::group_of(entry) {
                        Some(g) => self.link_count(root, path, g)?,
                        None => 1,
                    },
                    _ => 1,
                };
                let size = match entry.kind {
                    EntryKind::File => entry.size,
                    EntryKind::Symlink => entry.target.as_ref().map_or(0, |t| t.0.len() as u64),
                    _ => 0,
                };
                Attr {
                    ino: 0,
                    kind: entry.kind,
                    size,
                    perm: entry.mode & 0o7777,
                    nlink,
                    uid: entry.uid,
                    gid: entry.gid,
                    mtime: entry.mtime,
                    mtime_ns: entry.mtime_ns,
                    rdev: entry.rdev.unwrap_or(0),
                }
            }
            // A day's folder: its listing is not read for its attributes (`ls -l archives/`
            // would read every day's manifest), so its link count says "unknown" (1).
            Node::Day { entry: None, .. } => Attr {
                nlink: 1,
                ..self.made_up_dir(0)
            },
            Node::Day {
                date,
                path,
                entry: Some(e),
            } => {
                let day = self.day(date)?;
                let (size, nlink) = match e.kind {
                    EntryKind::Dir => (0, 2 + day.subfolders(path)),
                    EntryKind::File => {
                        let (first, names) = day.file_of(e)?;
                        (first.size, names)
                    }
                    EntryKind::Symlink => (e.link.as_ref().map_or(0, |l| l.0.len() as u64), 1),
                    _ => (0, 1),
                };
                Attr {
                    ino: 0,
                    kind: e.kind,
                    size,
                    perm: e.mode & 0o7777,
                    nlink,
                    uid: self.owner.0,
                    gid: self.owner.1,
                    mtime: e.mtime,
                    mtime_ns: e.mtime_ns,
                    rdev: 0,
                }
            }
        })
    }

    /// How many names the hardlink group `g` has in the top-level folder of `path`.
    fn link_count(&self, root: &Id, path: &[u8], g: (u64, [u8; 32])) -> Result<u32> {
        let top = path.split(|b| *b == b'/').next().unwrap_or(b"").to_vec();
        let k = (*root, top.clone());
        if let Some(c) = self.links.lock().expect("link counts").get(&k) {
            return Ok(c.get(&g).copied().unwrap_or(1));
        }
        let root_tree = self.tree(root)?;
        let folder = root_tree
            .entries
            .iter()
            .find(|e| e.name.0 == top)
            .and_then(|e| crate::read::walk::subtree(e).copied())
            .ok_or_else(|| Error::corrupt("a hardlinked file outside a top-level folder"))?;
        let counts = Arc::new(links::count(&folder, &top, &mut |id| self.tree(id))?);
        let n = counts.get(&g).copied().unwrap_or(1);
        self.links
            .lock()
            .expect("link counts")
            .insert(k, counts.clone(), counts.len() as u64 + 1);
        Ok(n)
    }

    /// The names in the folder `node`, sorted by name.
    pub(super) fn list(&self, node: &Node) -> Result<Vec<DirItem>> {
        let item = |ino: u64, name: &[u8], kind: EntryKind| DirItem {
            ino,
            name: name.to_vec(),
            kind,
        };
        Ok(match node {
            Node::Root => {
                let mut v = Vec::new();
                if self.exports.is_some() {
                    v.push(item(inodes::ARCHIVES, b"archives", EntryKind::Dir));
                }
                if self.repo.is_some() {
                    v.push(item(inodes::IDS, b"ids", EntryKind::Dir));
                    if self.repo()?.list()?.latest.is_some() {
                        v.push(item(inodes::LATEST, b"latest", EntryKind::Symlink));
                    }
                    v.push(item(inodes::SNAPSHOTS, b"snapshots", EntryKind::Dir));
                }
                v
            }
            Node::Snapshots | Node::Ids => {
                let list = self.repo()?.list()?;
                let (view, names) = match node {
                    Node::Snapshots => (View::ByName, &list.by_name),
                    _ => (View::ById, &list.by_id),
                };
                names
                    .iter()
                    .map(|(name, sh)| {
                        item(
                            inodes::derive(&snap_root_key(view, &sh.id)),
                            name.as_bytes(),
                            EntryKind::Dir,
                        )
                    })
                    .collect()
            }
            Node::Archives => self
                .day_names()?
                .iter()
                .map(|d| {
                    item(
                        inodes::derive(&day_key(d, b"")),
                        d.as_bytes(),
                        EntryKind::Dir,
                    )
                })
                .collect(),
            Node::Snap {
                view,
                snap,
                path,
                entry,
                ..
            } if entry.kind == EntryKind::Dir => {
                let tree = self.listing(entry)?;
                tree.entries
                    .iter()
                    .map(|e| {
                        let p = child_path(path, &e.name.0)?;
                        Ok(item(
                            inodes::derive(&snap_key(*view, snap, &p, e)),
                            &e.name.0,
                            e.kind,
                        ))
                    })
                    .collect::<Result<_>>()?
            }
            Node::Day { date, path, entry }
                if entry.as_ref().is_none_or(|e| e.kind == EntryKind::Dir) =>
            {
                let day = self.day(date)?;
                day.list(path)
                    .iter()
                    .map(|e| {
                        // A bad hardlink fails its own lookup, not the folder's listing.
                        let key_path = day
                            .file_of(e)
                            .map_or_else(|_| e.path.0.clone(), |(f, _)| f.path.0.clone());
                        let name = e.path.0.rsplit(|b| *b == b'/').next().unwrap_or(&e.path.0);
                        Ok(item(
                            inodes::derive(&day_key(date, &key_path)),
                            name,
                            e.kind,
                        ))
                    })
                    .collect::<Result<_>>()?
            }
            _ => return Err(Error::usage("not a directory")),
        })
    }

    /// The node named `name` in the folder `node`, with its number's key.
    pub(super) fn child(&self, node: &Node, name: &[u8]) -> Result<Option<(Number, Node)>> {
        Ok(match node {
            Node::Root => match name {
                b"snapshots" if self.repo.is_some() => {
                    Some((Number::Fixed(inodes::SNAPSHOTS), Node::Snapshots))
                }
                b"ids" if self.repo.is_some() => Some((Number::Fixed(inodes::IDS), Node::Ids)),
                b"latest" if self.repo.is_some() && self.repo()?.list()?.latest.is_some() => {
                    Some((Number::Fixed(inodes::LATEST), Node::Latest))
                }
                b"archives" if self.exports.is_some() => {
                    Some((Number::Fixed(inodes::ARCHIVES), Node::Archives))
                }
                _ => None,
            },
            Node::Snapshots => {
                let list = self.repo()?.list()?;
                SnapList::find(&list.by_name, name)
                    .map(|sh| snap_root(View::ByName, sh, self.owner))
            }
            Node::Ids => {
                let list = self.repo()?.list()?;
                SnapList::find(&list.by_id, name).map(|sh| snap_root(View::ById, sh, self.owner))
            }
            Node::Archives => {
                let days = self.day_names()?;
                days.iter().find(|d| d.as_bytes() == name).map(|d| {
                    (
                        Number::Derived(day_key(d, b"")),
                        Node::Day {
                            date: Arc::from(d.as_str()),
                            path: Arc::from(&b""[..]),
                            entry: None,
                        },
                    )
                })
            }
            Node::Snap {
                view,
                snap,
                root,
                path,
                entry,
            } if entry.kind == EntryKind::Dir => {
                let tree = self.listing(entry)?;
                match tree
                    .entries
                    .binary_search_by(|e| e.name.0.as_slice().cmp(name))
                {
                    Ok(i) => {
                        let e = &tree.entries[i];
                        let p = child_path(path, &e.name.0)?;
                        Some((
                            Number::Derived(snap_key(*view, snap, &p, e)),
                            Node::Snap {
                                view: *view,
                                snap: *snap,
                                root: *root,
                                path: Arc::from(p),
                                entry: Arc::new(e.clone()),
                            },
                        ))
                    }
                    Err(_) => None,
                }
            }
            Node::Day { date, path, entry }
                if entry.as_ref().is_none_or(|e| e.kind == EntryKind::Dir) =>
            {
                let day = self.day(date)?;
                match day.child(path, name) {
                    Some(e) => {
                        let (first, _) = day.file_of(&e)?;
                        Some((
                            Number::Derived(day_key(date, &first.path.0)),
                            Node::Day {
                                date: date.clone(),
                                path: Arc::from(e.path.0.as_slice()),
                                entry: Some(e),
                            },
                        ))
                    }
                    None => None,
                }
            }
            _ => return Err(Error::usage("not a directory")),
        })
    }
}
