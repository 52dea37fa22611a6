//! The one tree survey of the tests (included by path from the CLI's tests): every entry below
//! a directory with what `lstat` says of it, so that a source, a restore and an extraction can
//! be compared field by field. Iterative, so a deep tree cannot overflow the test's stack.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The type of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    Socket,
    Chardev,
    Blockdev,
}

/// One entry as found on disk.
#[derive(Debug, Clone)]
pub struct Node {
    /// Where it is.
    pub path: PathBuf,
    pub kind: Kind,
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Seconds and nanoseconds.
    pub mtime: (i64, u32),
    /// Length of a file's content; 0 for other kinds.
    pub size: u64,
    /// A symlink's target.
    pub target: Option<Vec<u8>>,
    pub ino: u64,
    pub nlink: u64,
}

impl Node {
    /// A file's content.
    pub fn content(&self) -> Vec<u8> {
        fs::read(&self.path).unwrap()
    }

    /// The last component of `rel`, the entry's name.
    pub fn name(rel: &[u8]) -> &[u8] {
        rel.rsplit(|b| *b == b'/').next().unwrap_or(rel)
    }
}

/// `rel` below `root` and everything below it, keyed by path relative to `root` (`rel`, then
/// `rel/name`, ...; an empty `rel` is `root` itself, keyed ``), in bytewise path order. A
/// directory whose name is in `skip` is left out with its contents; so is a file of that name.
pub fn survey(root: &Path, rel: &[u8], skip: &[&[u8]]) -> BTreeMap<Vec<u8>, Node> {
    let mut out = BTreeMap::new();
    let mut todo = vec![rel.to_vec()];
    while let Some(r) = todo.pop() {
        let path = root.join(OsStr::from_bytes(&r));
        let md = fs::symlink_metadata(&path).unwrap();
        let ft = md.file_type();
        let kind = if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_socket() {
            Kind::Socket
        } else if ft.is_char_device() {
            Kind::Chardev
        } else {
            Kind::Blockdev
        };
        if kind == Kind::Dir {
            for ent in fs::read_dir(&path).unwrap() {
                let name = ent.unwrap().file_name();
                if skip.contains(&name.as_bytes()) {
                    continue;
                }
                let mut child = r.clone();
                if !child.is_empty() {
                    child.push(b'/');
                }
                child.extend_from_slice(name.as_bytes());
                todo.push(child);
            }
        }
        let node = Node {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            mtime: (md.mtime(), md.mtime_nsec() as u32),
            size: if kind == Kind::File { md.size() } else { 0 },
            target: (kind == Kind::Symlink).then(|| {
                fs::read_link(&path)
                    .unwrap()
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            }),
            ino: md.ino(),
            nlink: md.nlink(),
            path,
        };
        out.insert(r, node);
    }
    out
}

/// Names that backups leave out by default.
pub const DEFAULT_SKIP: [&[u8]; 2] = [b".DS_Store", b"Thumbs.db"];

/// Hidden temporary files of interrupted writers (`.NAME.tmp-PID-N`) at any depth below `dir`
/// (none if `dir` does not exist).
pub fn temporaries(dir: &Path) -> Vec<PathBuf> {
    if !dir.exists() {
        return Vec::new();
    }
    survey(dir, b"", &[])
        .into_iter()
        .filter(|(rel, n)| {
            let name = Node::name(rel);
            n.kind == Kind::File && name.starts_with(b".") && name.windows(5).any(|w| w == b".tmp-")
        })
        .map(|(_, n)| n.path)
        .collect()
}
