//! The walk of the configured folders: every folder and the first [`PARALLEL_DEPTH`] levels
//! below it fan out over rayon, deeper directories are walked on one thread with an explicit
//! stack. Each entry is examined once without following links: excluded, too long a path, on
//! another filesystem, a file (see `files.rs`), a symlink, a special file, or a directory whose
//! tree is built once its entries are (see `trees.rs`).

use std::ffi::OsString;
use std::io::ErrorKind as IoKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

use rayon::prelude::*;

use super::filesystem::Fs;
use super::scan::{Stat, list_dir, lstat};
use super::state::RunState;
use super::trees::entry_from;
use crate::error::Result;
use crate::format::snapshot::{SkipReason, WarningKind};
use crate::format::tree::{Entry, EntryKind, MAX_PATH_LEN, RawBytes, Tree};
use crate::id::Id;
use crate::read::join_rel;

/// Levels below a folder that are walked in parallel, one recursion (and a few rayon frames)
/// each; deeper directories are walked iteratively. Real shares fan out long before this depth.
const PARALLEL_DEPTH: usize = 32;

/// What [`RunState::entry`] made of one directory entry.
enum Step {
    /// Backed up (or left out, with a warning or a skip record).
    Done(Option<Entry>),
    /// A directory to descend into, with its metadata.
    Dir(Stat),
}

impl RunState<'_> {
    /// Walks every configured folder in parallel and stores the root tree that names those
    /// that were backed up; returns the root tree's id.
    pub(super) fn walk_folders(&self) -> Result<Id> {
        let folders: Vec<Option<Entry>> = self
            .opts
            .folders
            .par_iter()
            .map(|f| self.folder(f))
            .collect::<Result<Vec<_>>>()?;
        let mut root = Tree {
            entries: folders.into_iter().flatten().collect(),
        };
        root.sort();
        self.store_tree(&root)
    }

    fn folder(&self, name: &str) -> Result<Option<Entry>> {
        let path = self.opts.source_root.join(name);
        let rel = name.as_bytes();
        let st = match lstat(&path) {
            Ok(st) => st,
            // Allowed to be absent (checked before the walk; gone since, it is left out too).
            Err(e)
                if e.kind() == IoKind::NotFound
                    && self.opts.optional_folders.iter().any(|f| f == name) =>
            {
                return Ok(None);
            }
            // Readable when the walk began (`unreadable_folders`): it went away since.
            Err(e) => {
                self.warn(rel, WarningKind::MissingFolder, e);
                return Ok(None);
            }
        };
        if st.kind != EntryKind::Dir {
            self.warn(
                rel,
                WarningKind::NotADirectory,
                format!("{} is not a directory", path.display()),
            );
            return Ok(None);
        }
        let Some(tree) = self.dir(&path, rel, Fs::root(st.dev), 0)? else {
            return Ok(None);
        };
        self.progress.dirs.fetch_add(1, Relaxed);
        Ok(Some(entry_from(rel, &st, EntryKind::Dir, |e| {
            e.tree = Some(tree)
        })))
    }

    /// The sorted names in the directory at `path`; none, with a warning, if it cannot be listed.
    fn list(&self, path: &Path, rel: &[u8]) -> Vec<OsString> {
        list_dir(path).unwrap_or_else(|e| {
            self.warn(
                rel,
                WarningKind::Unreadable,
                format!("cannot list directory: {e}"),
            );
            Vec::new()
        })
    }

    /// Backs up the directory at `path`, `depth` levels below its folder, and returns its tree
    /// id, or `None` when it was left out (with a warning).
    ///
    /// The first [`PARALLEL_DEPTH`] levels fan out over rayon, recursing once per level; deeper
    /// directories are walked by [`RunState::dir_deep`] on this thread, with an explicit stack,
    /// because each level of rayon recursion costs kilobytes of a worker's small stack and a
    /// few hundred nested directories overflowed it.
    fn dir(&self, path: &Path, rel: &[u8], fs: Fs, depth: usize) -> Result<Option<Id>> {
        if depth >= PARALLEL_DEPTH {
            return self.dir_deep(path, rel, fs);
        }
        let names = self.list(path, rel);
        let entries: Vec<Option<Entry>> = names
            .par_iter()
            .map(|name| {
                let (path, rel) = (path.join(name), join_rel(rel, name.as_bytes()));
                match self.entry(&path, &rel, name.as_bytes(), fs)? {
                    Step::Done(e) => Ok(e),
                    Step::Dir(st) => Ok(self
                        .dir(&path, &rel, fs.enter(st.dev, &rel), depth + 1)?
                        .map(|tree| self.dir_entry(name.as_bytes(), &st, tree))),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        self.finish_dir(rel, entries.into_iter().flatten().collect())
    }

    /// [`RunState::dir`] without recursion: one frame per open directory on an explicit stack, so a
    /// source nested thousands of levels deep costs heap, not stack.
    fn dir_deep(&self, path: &Path, rel: &[u8], fs: Fs) -> Result<Option<Id>> {
        struct Frame {
            path: PathBuf,
            rel: Vec<u8>,
            fs: Fs,
            names: std::vec::IntoIter<OsString>,
            entries: Vec<Entry>,
            /// The name and metadata of this directory, for its entry in the parent frame.
            me: Option<(OsString, Stat)>,
        }
        let mut stack = vec![Frame {
            path: path.to_path_buf(),
            rel: rel.to_vec(),
            fs,
            names: self.list(path, rel).into_iter(),
            entries: Vec::new(),
            me: None,
        }];
        loop {
            let top = stack
                .last_mut()
                .expect("the loop returns when the stack empties");
            if let Some(name) = top.names.next() {
                let (path, rel) = (top.path.join(&name), join_rel(&top.rel, name.as_bytes()));
                match self.entry(&path, &rel, name.as_bytes(), top.fs)? {
                    Step::Done(e) => top.entries.extend(e),
                    Step::Dir(st) => {
                        let names = self.list(&path, &rel).into_iter();
                        let fs = top.fs.enter(st.dev, &rel);
                        stack.push(Frame {
                            path,
                            rel,
                            fs,
                            names,
                            entries: Vec::new(),
                            me: Some((name, st)),
                        });
                    }
                }
                continue;
            }
            let done = stack.pop().expect("not empty");
            let tree = self.finish_dir(&done.rel, done.entries)?;
            let Some(parent) = stack.last_mut() else {
                return Ok(tree);
            };
            let (name, st) = done.me.expect("every frame but the first has an entry");
            if let Some(tree) = tree {
                parent
                    .entries
                    .push(self.dir_entry(name.as_bytes(), &st, tree));
            }
        }
    }

    /// Backs up one entry of a directory, except a directory's content: for a directory that
    /// is to be backed up, returns its metadata and leaves the walk to the caller.
    fn entry(&self, path: &Path, rel: &[u8], name: &[u8], fs: Fs) -> Result<Step> {
        if self.excludes.is_excluded(name, rel) {
            self.skip(rel, SkipReason::Excluded);
            return Ok(Step::Done(None));
        }
        // Beyond PATH_MAX no system call takes the path, and no snapshot path may be longer
        // (docs/FORMAT.md): one warning, and nothing below it is visited.
        let full = path.as_os_str().len();
        if full >= MAX_PATH_LEN {
            self.warn(
                rel,
                WarningKind::TooLong,
                format!("the path is {full} bytes, at or beyond Linux's PATH_MAX of {MAX_PATH_LEN}; left out"),
            );
            return Ok(Step::Done(None));
        }
        let st = match lstat(path) {
            Ok(st) => st,
            Err(e) => {
                self.warn_io(rel, e);
                return Ok(Step::Done(None));
            }
        };
        let entry = match st.kind {
            EntryKind::Dir => {
                if self.opts.one_file_system && st.dev != fs.dev {
                    self.skip(rel, SkipReason::OtherFilesystem);
                    return Ok(Step::Done(None));
                }
                return Ok(Step::Dir(st));
            }
            EntryKind::File => match self.file(path, rel, &st)? {
                Some((size, chunks, st)) => {
                    self.progress.files.fetch_add(1, Relaxed);
                    self.progress.bytes.fetch_add(size, Relaxed);
                    // Its bytes were counted as they were read, or as the cache vouched for them.
                    crate::progress::meter().items(1);
                    entry_from(name, &st, EntryKind::File, |e| {
                        e.size = size;
                        e.chunks = chunks;
                        if st.nlink > 1 {
                            e.hardlink = Some(fs.enter(st.dev, rel).hardlink_id(st.ino));
                        }
                    })
                }
                None => return Ok(Step::Done(None)),
            },
            EntryKind::Symlink => match std::fs::read_link(path) {
                Ok(target) => {
                    self.progress.symlinks.fetch_add(1, Relaxed);
                    entry_from(name, &st, EntryKind::Symlink, |e| {
                        e.target = Some(RawBytes(target.as_os_str().as_bytes().to_vec()))
                    })
                }
                Err(e) => {
                    self.warn_io(rel, e);
                    return Ok(Step::Done(None));
                }
            },
            kind => {
                self.progress.specials.fetch_add(1, Relaxed);
                entry_from(name, &st, kind, |e| {
                    if matches!(kind, EntryKind::Chardev | EntryKind::Blockdev) {
                        e.rdev = Some(st.rdev);
                    }
                })
            }
        };
        self.progress.entries.fetch_add(1, Relaxed);
        Ok(Step::Done(Some(entry)))
    }
}
