//! Scanning the source: stat without following links, sorted directory listings, excludes and
//! the one-file-system rule. The parallel walk itself is driven by [`crate::backup`], which
//! fans out over directory entries with rayon and builds trees bottom-up.

use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use globset::{GlobSet, GlobSetBuilder};

use crate::error::{Error, Result};
use crate::format::tree::EntryKind;

/// What `lstat` said about an entry, in the fields cairn uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Entry type.
    pub kind: EntryKind,
    /// `st_mode & 0o7777`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// mtime seconds.
    pub mtime: i64,
    /// mtime nanoseconds.
    pub mtime_ns: u32,
    /// ctime seconds.
    pub ctime: i64,
    /// ctime nanoseconds.
    pub ctime_ns: u32,
    /// Inode.
    pub ino: u64,
    /// Device of the filesystem; used only to stay on one filesystem, never stored.
    pub dev: u64,
    /// Link count.
    pub nlink: u64,
    /// Device number of a device node.
    pub rdev: u64,
}

impl Stat {
    /// From metadata obtained without following symlinks.
    pub fn from_metadata(md: &Metadata) -> Stat {
        let ft = md.file_type();
        let kind = if ft.is_symlink() {
            EntryKind::Symlink
        } else if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else if ft.is_fifo() {
            EntryKind::Fifo
        } else if ft.is_socket() {
            EntryKind::Socket
        } else if ft.is_char_device() {
            EntryKind::Chardev
        } else {
            EntryKind::Blockdev
        };
        Stat {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: md.size(),
            mtime: md.mtime(),
            mtime_ns: md.mtime_nsec() as u32,
            ctime: md.ctime(),
            ctime_ns: md.ctime_nsec() as u32,
            ino: md.ino(),
            dev: md.dev(),
            nlink: md.nlink(),
            rdev: md.rdev(),
        }
    }
}

/// `lstat`.
pub fn lstat(path: &Path) -> std::io::Result<Stat> {
    std::fs::symlink_metadata(path).map(|m| Stat::from_metadata(&m))
}

/// The names in a directory, sorted bytewise (the order of trees and of the daily archive).
pub fn list_dir(path: &Path) -> std::io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for ent in std::fs::read_dir(path)? {
        names.push(ent?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Exclude patterns. A pattern without `/` matches an entry's name at any depth; a pattern with
/// `/` matches its path relative to the source root (`images/**/*.tmp`).
#[derive(Debug, Clone)]
pub struct Excludes {
    names: GlobSet,
    paths: GlobSet,
}

impl Excludes {
    /// Compiles the patterns; an invalid one is a configuration error that names it.
    pub fn new(patterns: &[String]) -> Result<Excludes> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for p in patterns {
            let glob = globset::GlobBuilder::new(p.trim_start_matches('/'))
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| {
                    Error::config(format!("invalid exclude pattern {p:?}")).with_source(e)
                })?;
            if p.contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::config("exclude patterns").with_source(e))
        };
        Ok(Excludes {
            names: build(names)?,
            paths: build(paths)?,
        })
    }

    /// Whether the entry named `name` at `rel` (relative to the source root) is excluded.
    pub fn is_excluded(&self, name: &[u8], rel: &[u8]) -> bool {
        self.names
            .is_match(Path::new(std::ffi::OsStr::from_bytes(name)))
            || self
                .paths
                .is_match(Path::new(std::ffi::OsStr::from_bytes(rel)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_match_names_and_paths() {
        let ex =
            Excludes::new(&[".DS_Store".into(), "*.tmp".into(), "images/cache/**".into()]).unwrap();
        assert!(ex.is_excluded(b".DS_Store", b"notetaking/a/.DS_Store"));
        assert!(ex.is_excluded(b"x.tmp", b"backup/x.tmp"));
        assert!(ex.is_excluded(b"f", b"images/cache/f"));
        assert!(!ex.is_excluded(b"f", b"images/other/f"));
        assert!(!ex.is_excluded(b"DS_Store", b"notetaking/DS_Store"));
        assert!(Excludes::new(&["a[".into()]).is_err());
    }
}
