//! Browsing snapshots and daily archives as a read-only file system: the model behind
//! `cairn mount`, with nothing of FUSE in it (the CLI adapts it to `fuser`), so that it is tested
//! without a mount.
//!
//! The tree: `snapshots/NAME/…` and `ids/ID/…` (each snapshot's tree with the stored sizes,
//! modes, owners, nanosecond times, symlinks and link counts), `latest` (a symlink to the newest
//! snapshot), and `archives/DATE/…` (the files of each complete daily archive, read by its seek
//! table from the exports location alone). Nodes are numbered stably ([`inodes`]); reads go
//! through the read handle, a bounded cache of decoded chunks and trees, and for a sequential
//! reader on a remote store the planned, parallel reads the restore uses ([`content`]). No
//! state lock is held: the catalog is opened read-only and again when it moved on
//! ([`snapshots`]), so the mount runs beside the nightly job and a gc.
//!
//! One concern a file: `inodes` (numbers and the kernel's nodes), `snapshots` (the repository
//! side: catalog, refresh, names), `content` (a snapshot file's bytes at any offset), `archive`
//! (a day's index and reads), `links` (hardlink counts), `lru` (the bounded caches), `view`
//! (attributes and listings of each kind of node).

pub mod inodes;

mod archive;
mod content;
mod links;
mod lru;
mod snapshots;
mod view;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::export::manifest::ManifestEntry;
use crate::format::tree::{EntryKind, Tree};
use crate::id::Id;
use crate::repo::Repository;
use crate::store::Store;

use archive::DayIndex;
use content::{CHUNK_CACHE_BYTES, ChunkCache, OpenFile};
use inodes::{Node, Table};
use links::LinkCounts;
use lru::Lru;
use snapshots::RepoSide;

/// Bytes of decoded trees kept (an entry weighs 128 bytes and 32 a chunk it lists, so a tree of
/// one huge file weighs what it holds): the folders being walked stay decoded, and a folder
/// larger than this is still kept alone, so `ls -l` of a folder of 200,000 names decodes its
/// tree once, not once per name.
const TREE_CACHE_BYTES: u64 = 8 << 20;
/// Entries of days' indexes kept (a few hundred bytes each); two days are always kept.
const DAY_CACHE_ENTRIES: u64 = 1 << 19;
/// Names of link-count tables kept.
const LINK_CACHE_ENTRIES: u64 = 1 << 20;
/// How long the list of days is shown before the exports location is listed again.
const DAYS_FRESH_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// What a decoded tree weighs in the cache.
fn tree_weight(t: &Tree) -> u64 {
    t.entries
        .iter()
        .map(|e| 128 + e.name.0.len() as u64 + 32 * e.chunks.len() as u64)
        .sum::<u64>()
        + 64
}

/// Link counts by (snapshot root, top-level folder).
type LinkCache = Lru<(Id, Vec<u8>), Arc<LinkCounts>>;

/// What a node looks like to `stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Its number.
    pub ino: u64,
    /// File, directory, symlink, ...
    pub kind: EntryKind,
    /// Bytes (a symlink: its target's length; a directory: 0).
    pub size: u64,
    /// Permission bits (`mode & 0o7777`).
    pub perm: u32,
    /// Names it has (a directory: 2 and one per folder in it).
    pub nlink: u32,
    /// Owner, as stored (an archive's files: the mounting user, since owners live in the tar
    /// headers, not the manifest).
    pub uid: u32,
    /// Group, likewise.
    pub gid: u32,
    /// Modification time: seconds since the epoch.
    pub mtime: i64,
    /// Modification time: nanoseconds.
    pub mtime_ns: u32,
    /// Device number, for device nodes.
    pub rdev: u64,
}

/// One name in a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirItem {
    /// Its number (what a lookup of it gives, but for a collision of derived numbers).
    pub ino: u64,
    /// The name's raw bytes.
    pub name: Vec<u8>,
    /// Its kind.
    pub kind: EntryKind,
}

/// What the mount reads from: the repository (with its state directory, whose catalog is read
/// without the lock), the exports location, or both.
#[derive(Debug, Default)]
pub struct Sources {
    /// The repository, its state directory and the catalog opened by
    /// [`Catalog::open_reader`] there.
    pub repo: Option<(Repository, PathBuf, Catalog)>,
    /// The exports location, for `archives/`.
    pub exports: Option<Arc<dyn Store>>,
}

/// What an open handle reads.
#[derive(Debug)]
enum Handle {
    Snap(Arc<OpenFile>, Arc<crate::format::tree::Entry>),
    Day(Arc<DayIndex>, Arc<ManifestEntry>),
    Dir(Arc<Vec<DirItem>>),
}

/// The browsable file system.
pub struct Browser {
    repo: Option<RepoSide>,
    exports: Option<Arc<dyn Store>>,
    table: Table,
    /// The mounting user, owner of the folders cairn makes up and of archive files.
    owner: (u32, u32),
    /// When the mount began: the time of the folders cairn makes up.
    started: (i64, u32),
    chunks: ChunkCache,
    trees: Mutex<Lru<Id, Arc<Tree>>>,
    links: Mutex<LinkCache>,
    days: Mutex<Lru<String, Arc<DayIndex>>>,
    day_list: Mutex<Option<(Instant, Arc<Vec<String>>)>>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_handle: AtomicU64,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("repo", &self.repo)
            .field("nodes", &self.table)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// A browser over `sources`; `owner` is the mounting user's (uid, gid).
    pub fn new(sources: Sources, owner: (u32, u32)) -> Result<Browser> {
        if sources.repo.is_none() && sources.exports.is_none() {
            return Err(Error::usage(
                "nothing to mount: neither the repository nor the exports location",
            ));
        }
        let repo = match sources.repo {
            Some((repo, state_dir, catalog)) => Some(RepoSide::new(repo, state_dir, catalog)?),
            None => None,
        };
        let now = jiff::Timestamp::now();
        Ok(Browser {
            repo,
            exports: sources.exports,
            table: Table::default(),
            owner,
            started: (now.as_second(), now.subsec_nanosecond() as u32),
            chunks: Mutex::new(Lru::new(CHUNK_CACHE_BYTES)),
            trees: Mutex::new(Lru::new(TREE_CACHE_BYTES)),
            links: Mutex::new(Lru::new(LINK_CACHE_ENTRIES)),
            days: Mutex::new(Lru::new(DAY_CACHE_ENTRIES).keeping(2)),
            day_list: Mutex::new(None),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
        })
    }

    /// The node `ino`, which the kernel holds.
    fn node(&self, ino: u64) -> Result<Node> {
        Ok(match ino {
            inodes::ROOT => Node::Root,
            inodes::SNAPSHOTS if self.repo.is_some() => Node::Snapshots,
            inodes::IDS if self.repo.is_some() => Node::Ids,
            inodes::LATEST if self.repo.is_some() => Node::Latest,
            inodes::ARCHIVES if self.exports.is_some() => Node::Archives,
            _ => self
                .table
                .get(ino)
                .ok_or_else(|| snapshots::gone(&format!("inode {ino}")))?,
        })
    }

    /// The repository side, for a node that only exists with one.
    fn repo(&self) -> Result<&RepoSide> {
        self.repo
            .as_ref()
            .ok_or_else(|| snapshots::gone("the repository"))
    }

    /// A decoded tree, from the cache or read (and checked) through the read handle.
    fn tree(&self, id: &Id) -> Result<Arc<Tree>> {
        if let Some(t) = self.trees.lock().expect("tree cache").get(id) {
            return Ok(t);
        }
        let t = Arc::new(
            self.repo()?
                .with_catalog(|repo, cat| crate::read::load_tree(repo, cat, id))?,
        );
        self.trees
            .lock()
            .expect("tree cache")
            .insert(*id, t.clone(), tree_weight(&t));
        Ok(t)
    }

    /// The index of the day `date`, from the cache or read from its manifest.
    fn day(&self, date: &str) -> Result<Arc<DayIndex>> {
        if let Some(d) = self.days.lock().expect("day cache").get(&date.to_string()) {
            return Ok(d);
        }
        let exports = self
            .exports
            .clone()
            .ok_or_else(|| snapshots::gone("the exports location"))?;
        let d = Arc::new(DayIndex::load(exports, date)?);
        self.days.lock().expect("day cache").insert(
            date.to_string(),
            d.clone(),
            d.len() as u64 + 1,
        );
        Ok(d)
    }

    /// The complete days of the exports location, listed again every half minute at most.
    fn day_names(&self) -> Result<Arc<Vec<String>>> {
        let mut held = self.day_list.lock().expect("day list");
        if let Some((at, list)) = held.as_ref()
            && at.elapsed() < DAYS_FRESH_FOR
        {
            return Ok(list.clone());
        }
        let exports = self
            .exports
            .as_ref()
            .ok_or_else(|| snapshots::gone("the exports location"))?;
        let days: Vec<String> = crate::export::list_days(exports.as_ref())?
            .into_iter()
            .filter(|d| d.complete)
            .map(|d| d.date)
            .collect();
        let list = Arc::new(days);
        *held = Some((Instant::now(), list.clone()));
        Ok(list)
    }

    /// The kernel forgot `n` lookups of `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        self.table.forget(ino, n);
    }

    /// What `stat` shows of `ino`.
    pub fn getattr(&self, ino: u64) -> Result<Attr> {
        let mut attr = self.attr_of(&self.node(ino)?)?;
        attr.ino = ino;
        Ok(attr)
    }

    /// A symlink's target.
    pub fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        match self.node(ino)? {
            Node::Latest => {
                let list = self.repo()?.list()?;
                let name = list
                    .latest
                    .clone()
                    .ok_or_else(|| Error::not_found("no snapshot in the repository"))?;
                Ok(format!("snapshots/{name}").into_bytes())
            }
            Node::Snap { entry, .. } if entry.kind == EntryKind::Symlink => Ok(entry
                .target
                .as_ref()
                .map(|t| t.0.clone())
                .unwrap_or_default()),
            Node::Day { entry: Some(e), .. } if e.kind == EntryKind::Symlink => {
                Ok(e.link.as_ref().map(|t| t.0.clone()).unwrap_or_default())
            }
            _ => Err(Error::usage("not a symlink")),
        }
    }

    /// Opens the folder `ino`: its listing is taken now and paged from the handle, so a
    /// folder of any size is read in one pass however many calls page through it.
    pub fn opendir(&self, ino: u64) -> Result<u64> {
        let items = self.list(&self.node(ino)?)?;
        Ok(self.keep(Handle::Dir(Arc::new(items))))
    }

    /// The names of an open folder from `offset` on (the caller pages them).
    pub fn readdir(&self, handle: u64) -> Result<Arc<Vec<DirItem>>> {
        match self.handles.lock().expect("handles").get(&handle) {
            Some(Handle::Dir(items)) => Ok(items.clone()),
            _ => Err(snapshots::gone(&format!("folder handle {handle}"))),
        }
    }

    /// Opens the file `ino` for reading.
    pub fn open(&self, ino: u64) -> Result<u64> {
        let handle = match self.node(ino)? {
            Node::Snap { entry, .. } if entry.kind == EntryKind::File => {
                let file = self
                    .repo()?
                    .with_catalog(|_, cat| OpenFile::locate(cat, &entry))?;
                Handle::Snap(Arc::new(file), entry)
            }
            Node::Day {
                date,
                entry: Some(e),
                ..
            } if e.kind == EntryKind::File => {
                let day = self.day(&date)?;
                let (first, _) = day.file_of(&e)?;
                Handle::Day(day, first)
            }
            _ => return Err(Error::usage("not a regular file")),
        };
        Ok(self.keep(handle))
    }

    /// Up to `len` bytes of the open file `handle` from `offset`.
    pub fn read(&self, handle: u64, offset: u64, len: u32) -> Result<Vec<u8>> {
        let h = match self.handles.lock().expect("handles").get(&handle) {
            Some(Handle::Snap(f, e)) => Handle::Snap(f.clone(), e.clone()),
            Some(Handle::Day(d, e)) => Handle::Day(d.clone(), e.clone()),
            _ => return Err(snapshots::gone(&format!("file handle {handle}"))),
        };
        match h {
            Handle::Snap(file, entry) => {
                let side = self.repo()?;
                match file.read(&side.repo, &side.catalog(), &self.chunks, offset, len) {
                    Err(e) if e.kind() == crate::ErrorKind::NotFound => {
                        // A gc beside the mount moved the file's chunks and deleted the pack
                        // they were in: locate them again in the catalog as it is now.
                        tracing::info!(error = %e, "a chunk's pack is gone; locating the file's chunks again");
                        side.reopen();
                        let again = Arc::new(OpenFile::locate(&side.catalog(), &entry)?);
                        let data =
                            again.read(&side.repo, &side.catalog(), &self.chunks, offset, len)?;
                        if let Some(h) = self.handles.lock().expect("handles").get_mut(&handle) {
                            *h = Handle::Snap(again, entry);
                        }
                        Ok(data)
                    }
                    other => other,
                }
            }
            Handle::Day(day, e) => day.read(&e, offset, len),
            Handle::Dir(_) => unreachable!("taken above"),
        }
    }

    /// Closes a file or folder handle.
    pub fn release(&self, handle: u64) {
        self.handles.lock().expect("handles").remove(&handle);
    }

    /// Nodes the kernel holds (for tests and the debug log).
    pub fn nodes(&self) -> usize {
        self.table.len()
    }

    fn keep(&self, h: Handle) -> u64 {
        let n = self.next_handle.fetch_add(1, Relaxed);
        self.handles.lock().expect("handles").insert(n, h);
        n
    }

    /// The repository's catalog, for callers that report on it.
    pub fn catalog(&self) -> Option<Arc<Catalog>> {
        self.repo.as_ref().map(RepoSide::catalog)
    }
}
