//! Restore: write a snapshot (or part of it), or a daily archive, into a target directory.
//!
//! Safety first: every file system operation below the target goes through directory file
//! descriptors with `O_NOFOLLOW` (`openat`, `mkdirat`, `symlinkat`, ...), so an existing symlink
//! in the target is never followed and nothing is ever written outside it. Names come from trees,
//! which reject `/`, `..` and NUL, or from archive paths, which are checked the same way here.
//! Symlinks are created last, so none can redirect a later write of the same restore; directory
//! modes and times are applied after their contents, so read-only folders and mtimes survive.
//!
//! Files are written in parallel, contents first and times last, so that an interrupted restore
//! leaves files whose size or mtime differ from the snapshot, which `--overwrite if-changed`
//! then rewrites.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rayon::prelude::*;
use serde::Serialize;

use crate::catalog::Catalog;
use crate::error::{Error, ErrorKind, Result};
use crate::pack::BlobKind;
use crate::read::{HardlinkGroups, find_entry, load_tree};
use crate::repo::Repository;
use crate::snapshot::Snapshot;
use crate::tree::{Entry, EntryKind, MAX_PATH_LEN, check_path_len_of, shorten, valid_name};

/// What to do with an entry that already exists in the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Leave it alone.
    #[default]
    Never,
    /// Replace a file whose size or mtime differs from the snapshot (finishes an interrupted restore).
    IfChanged,
    /// Replace every file.
    Always,
}

impl std::str::FromStr for Overwrite {
    type Err = Error;
    fn from_str(s: &str) -> Result<Overwrite> {
        match s {
            "never" => Ok(Overwrite::Never),
            "if-changed" => Ok(Overwrite::IfChanged),
            "always" => Ok(Overwrite::Always),
            _ => Err(Error::usage(format!(
                "--overwrite {s:?}: use never, if-changed or always"
            ))),
        }
    }
}

/// How to restore.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The directory to restore into; created if missing.
    pub target: PathBuf,
    /// Paths inside the snapshot or archive to restore (`notetaking/projects`); empty: all.
    pub paths: Vec<String>,
    /// Existing entries.
    pub overwrite: Overwrite,
    /// Re-read every written file and check it against the chunk ids.
    pub verify: bool,
}

/// What a restore did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    /// Regular files written.
    pub files: u64,
    /// Bytes of file content restored.
    pub bytes: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hardlinks created.
    pub hardlinks: u64,
    /// FIFOs created.
    pub fifos: u64,
    /// Entries left as they were (already present).
    pub unchanged: u64,
    /// Files re-read and found equal to their chunks.
    pub verified: u64,
    /// Device nodes created (as root only).
    pub devices: u64,
    /// Entries that cannot be restored here (sockets; device nodes when not root).
    pub skipped: Vec<String>,
    /// Entries restored with a change, and why (an owner id that does not fit 32 bits).
    pub warnings: Vec<String>,
}

#[derive(Default)]
struct Counters {
    files: AtomicU64,
    bytes: AtomicU64,
    unchanged: AtomicU64,
    verified: AtomicU64,
    /// Length and id of the chunk that holes of sparse files are cut into: such chunks become
    /// holes again without being read.
    zeros: (u32, crate::Id),
}

impl Counters {
    fn new(repo: &Repository) -> Counters {
        let (len, id) = repo.config().chunker.zero_run_chunk();
        Counters {
            zeros: (len as u32, id),
            ..Default::default()
        }
    }

    fn is_zeros(&self, id: &crate::Id, len: u32) -> bool {
        (len, *id) == self.zeros
    }
}

fn cstr(name: &[u8]) -> Result<CString> {
    CString::new(name).map_err(|_| Error::usage("a name contains NUL"))
}

fn os_err(what: impl std::fmt::Display) -> Error {
    Error::io(what, std::io::Error::last_os_error())
}

/// Removes the entry `name` in `dir` to make way for a restored one; `unlinkat` removes a link
/// or file itself and never follows it.
fn unlink_in_way(dir: &OwnedFd, name: &[u8], path: &str) -> Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid descriptor and C string.
    if unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) } != 0 {
        return Err(os_err(format!("replacing {path}")));
    }
    Ok(())
}

/// Splits a relative path into checked components; refuses `..`, empty, absolute and NUL, and
/// a path longer than PATH_MAX ([`MAX_PATH_LEN`] bytes), before splitting it: an archive entry
/// of a few bytes compressed can name millions of nested directories.
pub fn components(path: &[u8]) -> Result<Vec<Vec<u8>>> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    let trimmed = trimmed.strip_prefix(b"./").unwrap_or(trimmed);
    if trimmed.len() > MAX_PATH_LEN {
        return Err(Error::usage(format!(
            "path {} ({} bytes) is longer than PATH_MAX ({MAX_PATH_LEN} bytes)",
            shorten(trimmed),
            trimmed.len()
        )));
    }
    if trimmed.starts_with(b"/") {
        return Err(Error::usage(format!(
            "{:?} is an absolute path",
            shorten(path)
        )));
    }
    let parts: Vec<Vec<u8>> = trimmed.split(|b| *b == b'/').map(<[u8]>::to_vec).collect();
    if parts.iter().any(|p| !valid_name(p)) {
        return Err(Error::usage(format!(
            "unsafe path {:?}: empty, `.`, `..` or NUL components are refused",
            shorten(path)
        )));
    }
    Ok(parts)
}

/// Metadata to apply to a restored entry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub mtime_ns: u32,
}

impl Meta {
    fn of(e: &Entry) -> Meta {
        Meta {
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
            mtime_ns: e.mtime_ns,
        }
    }
    fn times(&self) -> [libc::timespec; 2] {
        let omit = libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        };
        [
            omit,
            libc::timespec {
                tv_sec: self.mtime,
                tv_nsec: i64::from(self.mtime_ns),
            },
        ]
    }
}

/// The target directory, reached only through descriptors.
pub(crate) struct Target {
    root: OwnedFd,
    as_root: bool,
    overwrite: Overwrite,
}

enum Existing {
    Missing,
    Dir,
    File {
        size: u64,
        mtime: i64,
        mtime_ns: u32,
    },
    Other,
}

impl Target {
    pub(crate) fn open(path: &Path, overwrite: Overwrite) -> Result<Target> {
        std::fs::create_dir_all(path)
            .map_err(|e| Error::io(format!("creating target {}", path.display()), e))?;
        let c = cstr(path.as_os_str().as_encoded_bytes())?;
        // SAFETY: valid C string; the descriptor is owned below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(os_err(format!("opening target {}", path.display())));
        }
        // SAFETY: geteuid has no preconditions.
        let as_root = unsafe { libc::geteuid() } == 0;
        // SAFETY: fd is a fresh descriptor we own.
        Ok(Target {
            root: unsafe { OwnedFd::from_raw_fd(fd) },
            as_root,
            overwrite,
        })
    }

    fn existing(&self, dir: &OwnedFd, name: &[u8]) -> Result<Existing> {
        let c = cstr(name)?;
        // SAFETY: zeroed stat is a valid out-parameter for fstatat.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor, C string and out-pointer.
        let rc = unsafe {
            libc::fstatat(
                dir.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::NotFound {
                Ok(Existing::Missing)
            } else {
                Err(Error::io(
                    format!("stat of {:?} in the target", String::from_utf8_lossy(name)),
                    e,
                ))
            };
        }
        Ok(match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => Existing::Dir,
            libc::S_IFREG => Existing::File {
                size: st.st_size as u64,
                mtime: st.st_mtime,
                mtime_ns: st.st_mtime_nsec as u32,
            },
            _ => Existing::Other,
        })
    }

    /// Opens (creating when asked) the directory at `parts` below the root, never following a
    /// symlink: a symlink where a directory should be is an error, not a detour.
    pub(crate) fn dir(&self, parts: &[Vec<u8>], create: bool) -> Result<OwnedFd> {
        let mut cur = self
            .root
            .try_clone()
            .map_err(|e| Error::io("duplicating the target descriptor", e))?;
        for (i, p) in parts.iter().enumerate() {
            let c = cstr(p)?;
            if create {
                // SAFETY: valid descriptor and C string.
                let rc = unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o700) };
                if rc != 0
                    && std::io::Error::last_os_error().kind() != std::io::ErrorKind::AlreadyExists
                {
                    return Err(os_err(format!("creating {}", show(&parts[..=i]))));
                }
            }
            // SAFETY: valid descriptor and C string.
            let fd = unsafe {
                libc::openat(
                    cur.as_raw_fd(),
                    c.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            };
            if fd < 0 {
                let e = std::io::Error::last_os_error();
                let why = if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) {
                    " (a symlink or file is in the way; cairn never writes through it)"
                } else {
                    ""
                };
                return Err(Error::new(
                    if e.kind() == std::io::ErrorKind::NotFound {
                        ErrorKind::NotFound
                    } else {
                        ErrorKind::Io
                    },
                    format!("cannot enter {} in the target{why}", show(&parts[..=i])),
                )
                .with_source(e));
            }
            // SAFETY: fresh descriptor we own.
            cur = unsafe { OwnedFd::from_raw_fd(fd) };
        }
        Ok(cur)
    }

    /// Whether a file at `name` needs (re)writing, removing what is in the way when it does.
    fn prepare(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        size: u64,
        meta: &Meta,
        path: &str,
    ) -> Result<bool> {
        let replace = match self.existing(dir, name)? {
            Existing::Missing => return Ok(true),
            Existing::Dir => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("{path}: a directory is in the way of a file"),
                ));
            }
            Existing::File {
                size: s,
                mtime,
                mtime_ns,
            } => match self.overwrite {
                Overwrite::Never => false,
                Overwrite::IfChanged => {
                    s != size || mtime != meta.mtime || mtime_ns != meta.mtime_ns
                }
                Overwrite::Always => true,
            },
            Existing::Other => self.overwrite != Overwrite::Never,
        };
        if replace {
            unlink_in_way(dir, name, path)?;
        }
        Ok(replace)
    }

    fn set_meta_fd(&self, fd: &OwnedFd, meta: &Meta, path: &str) -> Result<()> {
        // Owner first: chown clears setuid/setgid bits, which the chmod below then restores.
        // SAFETY: valid descriptors and pointers throughout.
        unsafe {
            if self.as_root && libc::fchown(fd.as_raw_fd(), meta.uid, meta.gid) != 0 {
                return Err(os_err(format!("setting the owner of {path}")));
            }
            if libc::fchmod(fd.as_raw_fd(), meta.mode & 0o7777) != 0 {
                return Err(os_err(format!("setting the mode of {path}")));
            }
            if libc::futimens(fd.as_raw_fd(), meta.times().as_ptr()) != 0 {
                return Err(os_err(format!("setting the mtime of {path}")));
            }
        }
        Ok(())
    }

    /// Writes a regular file. `fill` writes the content; zero runs become holes.
    pub(crate) fn file(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        path: &str,
        size: u64,
        meta: &Meta,
        fill: &mut dyn FnMut(&mut SparseWriter) -> Result<()>,
    ) -> Result<bool> {
        if !self.prepare(dir, name, size, meta, path)? {
            return Ok(false);
        }
        let c = cstr(name)?;
        // SAFETY: valid descriptor and C string; O_EXCL|O_NOFOLLOW: we create the file ourselves.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd < 0 {
            return Err(os_err(format!("creating {path}")));
        }
        // SAFETY: fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut w = SparseWriter {
            file: std::fs::File::from(fd),
            pos: 0,
        };
        fill(&mut w)?;
        if w.pos != size {
            return Err(Error::corrupt(format!(
                "{path}: restored {} bytes, the snapshot says {size}",
                w.pos
            )));
        }
        w.file
            .set_len(size)
            .map_err(|e| Error::io(format!("sizing {path}"), e))?;
        let fd = OwnedFd::from(w.file);
        self.set_meta_fd(&fd, meta, path)?;
        Ok(true)
    }

    pub(crate) fn mkdir(&self, parent: &OwnedFd, name: &[u8], path: &str) -> Result<()> {
        let c = cstr(name)?;
        // SAFETY: valid descriptor and C string.
        if unsafe { libc::mkdirat(parent.as_raw_fd(), c.as_ptr(), 0o700) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(Error::io(format!("creating {path}"), e));
            }
        }
        Ok(())
    }

    pub(crate) fn dir_meta(&self, parts: &[Vec<u8>], meta: &Meta) -> Result<()> {
        let fd = self.dir(parts, false)?;
        self.set_meta_fd(&fd, meta, &show(parts))
    }

    pub(crate) fn symlink(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        target: &[u8],
        meta: &Meta,
        path: &str,
    ) -> Result<bool> {
        match self.existing(parent, name)? {
            Existing::Missing => {}
            Existing::Dir => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("{path}: a directory is in the way"),
                ));
            }
            _ if self.overwrite == Overwrite::Never => return Ok(false),
            _ => unlink_in_way(parent, name, path)?,
        }
        let (c, t) = (cstr(name)?, cstr(target)?);
        // SAFETY: valid descriptor and C strings.
        unsafe {
            if libc::symlinkat(t.as_ptr(), parent.as_raw_fd(), c.as_ptr()) != 0 {
                return Err(os_err(format!("creating symlink {path}")));
            }
        }
        self.meta_at(parent, &c, meta);
        Ok(true)
    }

    /// Owner (when root) and mtime of an entry that cannot be opened for writing (a symlink,
    /// a FIFO), applied to the entry itself. Best effort, as tar does for these.
    fn meta_at(&self, parent: &OwnedFd, c: &CString, meta: &Meta) {
        // SAFETY: valid descriptor and C string; AT_SYMLINK_NOFOLLOW acts on the link itself.
        unsafe {
            if self.as_root {
                libc::fchownat(
                    parent.as_raw_fd(),
                    c.as_ptr(),
                    meta.uid,
                    meta.gid,
                    libc::AT_SYMLINK_NOFOLLOW,
                );
            }
            libc::utimensat(
                parent.as_raw_fd(),
                c.as_ptr(),
                meta.times().as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            );
        }
    }

    pub(crate) fn hardlink(
        &self,
        from: &[Vec<u8>],
        parent: &OwnedFd,
        name: &[u8],
        path: &str,
    ) -> Result<bool> {
        let (fdir, fname) = from
            .split_last()
            .map(|(n, d)| (d, n))
            .ok_or_else(|| Error::usage("empty link"))?;
        let src_dir = self.dir(fdir, false)?;
        if !matches!(self.existing(parent, name)?, Existing::Missing) {
            if self.overwrite == Overwrite::Never {
                return Ok(false);
            }
            unlink_in_way(parent, name, path)?;
        }
        let (a, b) = (cstr(fname)?, cstr(name)?);
        // SAFETY: valid descriptors and C strings; flags 0: never follow a symlink source.
        if unsafe {
            libc::linkat(
                src_dir.as_raw_fd(),
                a.as_ptr(),
                parent.as_raw_fd(),
                b.as_ptr(),
                0,
            )
        } != 0
        {
            return Err(os_err(format!("linking {path} to {}", show(from))));
        }
        Ok(true)
    }

    pub(crate) fn fifo(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        meta: &Meta,
        path: &str,
    ) -> Result<bool> {
        if !matches!(self.existing(parent, name)?, Existing::Missing) {
            return Ok(false);
        }
        self.node(parent, name, libc::S_IFIFO, 0, meta, || {
            format!("creating FIFO {path}")
        })?;
        Ok(true)
    }

    /// Makes a FIFO or device node `name` of type `fmt` with the entry's mode, owner and times.
    fn node(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        fmt: libc::mode_t,
        rdev: u64,
        meta: &Meta,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        let c = cstr(name)?;
        // SAFETY: valid descriptor and C string.
        unsafe {
            if libc::mknodat(
                parent.as_raw_fd(),
                c.as_ptr(),
                fmt | (meta.mode & 0o7777),
                rdev as libc::dev_t,
            ) != 0
            {
                return Err(os_err(what()));
            }
            // The umask applied to mknod; the snapshot's mode is what was asked for.
            libc::fchmodat(parent.as_raw_fd(), c.as_ptr(), meta.mode & 0o7777, 0);
        }
        self.meta_at(parent, &c, meta);
        Ok(())
    }
}

impl Target {
    /// Creates a character or block device node (root only; the caller checks).
    pub(crate) fn device(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        kind: EntryKind,
        rdev: u64,
        meta: &Meta,
        path: &str,
    ) -> Result<bool> {
        if !matches!(self.existing(parent, name)?, Existing::Missing) {
            if self.overwrite == Overwrite::Never {
                return Ok(false);
            }
            unlink_in_way(parent, name, path)?;
        }
        let fmt = if kind == EntryKind::Blockdev {
            libc::S_IFBLK
        } else {
            libc::S_IFCHR
        };
        self.node(parent, name, fmt, rdev, meta, || {
            format!("creating device node {path}")
        })?;
        Ok(true)
    }

    /// Restores a device node when running as root; otherwise says why it is left out.
    fn special_device(
        &self,
        parent: &[Vec<u8>],
        name: &[u8],
        (kind, rdev): (EntryKind, Option<u64>),
        meta: &Meta,
        path: &str,
        report: &mut RestoreReport,
    ) -> Result<()> {
        match rdev {
            Some(rdev) if self.as_root => {
                let fd = self.dir(parent, false)?;
                if self.device(&fd, name, kind, rdev, meta, path)? {
                    report.devices += 1;
                } else {
                    report.unchanged += 1;
                }
            }
            _ => {
                let why = if self.as_root {
                    "no device number recorded"
                } else {
                    "creating device nodes needs root"
                };
                tracing::warn!(path, "device node not restored: {why}");
                report.skipped.push(path.to_string());
            }
        }
        Ok(())
    }
}

/// An owner id from an archive as a `uid_t`: ids that do not fit 32 bits (a crafted pax record
/// of 99999999999 would otherwise become 1215752191, someone else's id) become `u32::MAX`,
/// which `chown` takes as "leave unchanged", so the entry keeps the restoring user's owner.
fn archive_owner(
    id: std::io::Result<u64>,
    which: &str,
    path: &str,
    warnings: &mut Vec<String>,
) -> u32 {
    match id {
        Ok(v) if v < u64::from(u32::MAX) => v as u32,
        Ok(v) => {
            let w = format!("{path}: {which} {v} does not fit 32 bits; the owner was left as is");
            tracing::warn!("{w}");
            warnings.push(w);
            u32::MAX
        }
        Err(_) => {
            let w = format!("{path}: unreadable {which}; the owner was left as is");
            tracing::warn!("{w}");
            warnings.push(w);
            u32::MAX
        }
    }
}

/// Writes file content, turning 4 KiB blocks of zeros into holes.
pub(crate) struct SparseWriter {
    file: std::fs::File,
    pos: u64,
}

impl SparseWriter {
    /// Leaves a hole of `len` bytes.
    pub(crate) fn skip(&mut self, len: u64) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        self.file
            .seek(SeekFrom::Current(len as i64))
            .map_err(|e| Error::io("seeking", e))?;
        self.pos += len;
        Ok(())
    }

    /// Writes `data`, one syscall per run: runs of all-zero 4 KiB blocks are skipped with one
    /// seek (leaving a hole), runs of other blocks are written with one write.
    pub(crate) fn write(&mut self, data: &[u8]) -> Result<()> {
        use std::io::Write;
        let zero = crate::chunk::all_zero;
        let mut at = 0;
        while at < data.len() {
            let first_zero = zero(&data[at..(at + 4096).min(data.len())]);
            let mut end = at;
            while end < data.len() {
                let block = &data[end..(end + 4096).min(data.len())];
                if zero(block) != first_zero {
                    break;
                }
                end += block.len();
            }
            let run = &data[at..end];
            if first_zero {
                self.skip(run.len() as u64)?;
            } else {
                self.file
                    .write_all(run)
                    .map_err(|e| Error::io("writing restored content", e))?;
                self.pos += run.len() as u64;
            }
            at = end;
        }
        Ok(())
    }
}

fn show(parts: &[Vec<u8>]) -> String {
    String::from_utf8_lossy(&parts.join(&b'/')).into_owned()
}

struct FileJob {
    parent: Vec<Vec<u8>>,
    entry: Entry,
}

/// A path as checked components.
type Parts = Vec<Vec<u8>>;

struct Plan {
    dirs: Vec<(Vec<Vec<u8>>, Meta)>,
    files: Vec<FileJob>,
    links: Vec<(Parts, Entry, Parts)>,
    symlinks: Vec<(Vec<Vec<u8>>, Entry)>,
    specials: Vec<(Vec<Vec<u8>>, Entry)>,
    /// The first name planned of each hardlink group.
    first_of: HardlinkGroups<Parts>,
}

impl Plan {
    /// Plans `e` at `parent` and everything below it, depth first in tree order. Walks with an
    /// explicit stack, and refuses (kind `Corrupt`) a path longer than a snapshot may hold, so
    /// a crafted chain of trees neither overflows the stack nor nests directories without end.
    fn add(
        &mut self,
        repo: &Repository,
        catalog: &Catalog,
        target: &Target,
        parent: &[Vec<u8>],
        e: Entry,
    ) -> Result<()> {
        let mut todo = vec![(parent.to_vec(), e)];
        while let Some((parent, e)) = todo.pop() {
            let mut path = parent.clone();
            path.push(e.name.0.clone());
            let len = path.iter().map(Vec::len).sum::<usize>() + path.len() - 1;
            check_path_len_of(&path.join(&b'/'), len)?;
            match e.kind {
                EntryKind::Dir => {
                    let fd = target.dir(&parent, true)?;
                    target.mkdir(&fd, &e.name.0, &show(&path))?;
                    let tree = e.tree.ok_or_else(|| {
                        Error::corrupt(format!("{}: directory without a tree", show(&path)))
                    })?;
                    // Reversed onto the stack, so that they come off it in tree order.
                    for child in load_tree(repo, catalog, &tree)?.entries.into_iter().rev() {
                        todo.push((path.clone(), child));
                    }
                    self.dirs.push((path, Meta::of(&e)));
                }
                EntryKind::File => {
                    if let Some(first) = self.first_of.link_to(&path[0], &e, || path.clone()) {
                        self.links.push((parent, e, first));
                        continue;
                    }
                    self.files.push(FileJob { parent, entry: e });
                }
                EntryKind::Symlink => self.symlinks.push((parent, e)),
                _ => self.specials.push((parent, e)),
            }
        }
        Ok(())
    }
}

/// Restores `snap` (or `opts.paths` inside it) into `opts.target`.
pub fn restore(
    repo: &Repository,
    catalog: &Catalog,
    snap: &Snapshot,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    let target = Target::open(&opts.target, opts.overwrite)?;
    let mut plan = Plan {
        dirs: Vec::new(),
        files: Vec::new(),
        links: Vec::new(),
        symlinks: Vec::new(),
        specials: Vec::new(),
        first_of: HardlinkGroups::new(),
    };
    if opts.paths.is_empty() {
        for e in load_tree(repo, catalog, &snap.root)?.entries {
            plan.add(repo, catalog, &target, &[], e)?;
        }
    } else {
        for p in &opts.paths {
            let parts = components(p.as_bytes())?;
            let e = find_entry(repo, catalog, &snap.root, p.as_bytes())?;
            let parent = &parts[..parts.len() - 1];
            target.dir(parent, true)?;
            plan.add(repo, catalog, &target, parent, e)?;
        }
    }
    let counters = Counters::new(repo);
    // A damaged or missing chunk fails its file, not the restore: the rest is written, and the
    // failures are named together at the end.
    let failed = std::sync::Mutex::new(Vec::new());
    plan.files.par_iter().for_each(|job| {
        if let Err(e) = restore_file(repo, catalog, &target, job, opts.verify, &counters) {
            let path = job_path(job);
            tracing::error!(path, error = %e, "file not restored");
            failed.lock().expect("poisoned").push((path, e));
        }
    });
    let mut failed: Vec<(String, Error)> = failed.into_inner().expect("poisoned");
    let total = plan.files.len() + plan.links.len();
    let mut report = RestoreReport {
        files: counters.files.load(Relaxed),
        bytes: counters.bytes.load(Relaxed),
        unchanged: counters.unchanged.load(Relaxed),
        verified: counters.verified.load(Relaxed),
        ..Default::default()
    };
    for (parent, e, first) in &plan.links {
        let fd = target.dir(parent, false)?;
        let path = format!("{}/{}", show(parent), e.name.lossy());
        // A second name of a file that failed: nothing sound to link to.
        let first_path = show(first);
        if let Some(kind) = failed
            .iter()
            .find(|(p, _)| *p == first_path)
            .map(|(_, e)| e.kind())
        {
            failed.push((
                path,
                Error::new(kind, format!("hardlink to {first_path}, which failed")),
            ));
            continue;
        }
        if target.hardlink(first, &fd, &e.name.0, &path)? {
            report.hardlinks += 1;
        } else {
            report.unchanged += 1;
        }
    }
    for (parent, e) in &plan.specials {
        let path = format!("{}/{}", show(parent), e.name.lossy());
        match e.kind {
            EntryKind::Fifo => {
                let fd = target.dir(parent, false)?;
                if target.fifo(&fd, &e.name.0, &Meta::of(e), &path)? {
                    report.fifos += 1;
                }
            }
            EntryKind::Chardev | EntryKind::Blockdev => target.special_device(
                parent,
                &e.name.0,
                (e.kind, e.rdev),
                &Meta::of(e),
                &path,
                &mut report,
            )?,
            _ => report.skipped.push(path),
        }
    }
    // Last: nothing written after this point could be redirected through a new symlink.
    for (parent, e) in &plan.symlinks {
        let fd = target.dir(parent, false)?;
        let path = format!("{}/{}", show(parent), e.name.lossy());
        let t = e
            .target
            .as_ref()
            .map(|t| t.0.as_slice())
            .unwrap_or_default();
        if target.symlink(&fd, &e.name.0, t, &Meta::of(e), &path)? {
            report.symlinks += 1;
        } else {
            report.unchanged += 1;
        }
    }
    // Deepest first, so that setting a parent's mtime is the last change inside it.
    plan.dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    for (parts, meta) in &plan.dirs {
        target.dir_meta(parts, meta)?;
        report.dirs += 1;
    }
    if let Some((_, first)) = failed.first() {
        const SHOWN: usize = 10;
        let mut named: Vec<String> = failed
            .iter()
            .take(SHOWN)
            .map(|(path, e)| {
                let e = e.to_string();
                if e.contains(path.as_str()) {
                    e
                } else {
                    format!("{path}: {e}")
                }
            })
            .collect();
        if failed.len() > SHOWN {
            named.push(format!("and {} more", failed.len() - SHOWN));
        }
        return Err(Error::new(
            first.kind(),
            format!(
                "{} of {} files could not be restored (everything else was): {}",
                failed.len(),
                total,
                named.join("; ")
            ),
        ));
    }
    Ok(report)
}

fn job_path(job: &FileJob) -> String {
    if job.parent.is_empty() {
        job.entry.name.lossy().into_owned()
    } else {
        format!("{}/{}", show(&job.parent), job.entry.name.lossy())
    }
}

fn restore_file(
    repo: &Repository,
    catalog: &Catalog,
    target: &Target,
    job: &FileJob,
    verify: bool,
    counters: &Counters,
) -> Result<()> {
    let e = &job.entry;
    let path = job_path(job);
    let dir = target.dir(&job.parent, false)?;
    let mut locations = Vec::with_capacity(e.chunks.len());
    for id in &e.chunks {
        let loc = catalog.locate(BlobKind::Data, id)?.ok_or_else(|| {
            Error::not_found(format!("{path}: chunk {} is in no known pack", id.short()))
        })?;
        locations.push((id, loc));
    }
    let written = target.file(&dir, &e.name.0, &path, e.size, &Meta::of(e), &mut |w| {
        for (id, loc) in &locations {
            // Holes of sparse images are long runs of one zero chunk: no need to read it.
            if counters.is_zeros(id, loc.raw_length) {
                w.skip(u64::from(loc.raw_length))?;
            } else {
                w.write(&crate::heal::read_checked(
                    repo,
                    catalog,
                    BlobKind::Data,
                    id,
                    loc,
                )?)?;
            }
        }
        Ok(())
    })?;
    if !written {
        counters.unchanged.fetch_add(1, Relaxed);
        return Ok(());
    }
    counters.files.fetch_add(1, Relaxed);
    counters.bytes.fetch_add(e.size, Relaxed);
    if verify {
        let c = cstr(&e.name.0)?;
        // SAFETY: valid descriptor and C string.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(os_err(format!("re-reading {path}")));
        }
        // SAFETY: fresh descriptor we own.
        let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut buf = Vec::new();
        for (id, loc) in &locations {
            buf.resize(loc.raw_length as usize, 0);
            f.read_exact(&mut buf)
                .map_err(|err| Error::io(format!("re-reading {path}"), err))?;
            if crate::Id::of(&buf) != **id {
                return Err(Error::corrupt(format!(
                    "{path}: restored content does not match chunk {}",
                    id.short()
                )));
            }
        }
        let mut extra = [0u8; 1];
        if f.read(&mut extra)
            .map_err(|err| Error::io(format!("re-reading {path}"), err))?
            != 0
        {
            return Err(Error::corrupt(format!(
                "{path}: restored file is longer than the snapshot says"
            )));
        }
        counters.verified.fetch_add(1, Relaxed);
    }
    Ok(())
}

fn wanted(parts: &[Vec<u8>], filters: &[Vec<Vec<u8>>]) -> bool {
    filters.is_empty() || filters.iter().any(|f| parts.starts_with(f))
}

/// Restores from a daily archive alone (no catalog, no store index): a `.tar.zst` stream.
/// Every path, symlink and hardlink name in it is checked as for snapshots; an unsafe one fails
/// the restore with a message naming it, before anything is written for that entry.
pub fn restore_archive(reader: impl Read, opts: &RestoreOptions) -> Result<RestoreReport> {
    let target = Target::open(&opts.target, opts.overwrite)?;
    let filters: Vec<Vec<Vec<u8>>> = opts
        .paths
        .iter()
        .map(|p| components(p.as_bytes()))
        .collect::<Result<_>>()?;
    let dec = zstd::stream::read::Decoder::new(reader)
        .map_err(|e| Error::corrupt("zstd decoder").with_source(e))?;
    // Guarded: the tar crate reads long names and pax headers whole before we see them.
    let mut archive = tar::Archive::new(crate::tar_guard::TarGuard::new(dec));
    let mut report = RestoreReport::default();
    let mut dirs: Vec<(Vec<Vec<u8>>, Meta)> = Vec::new();
    let mut symlinks: Vec<(Vec<Vec<u8>>, Vec<u8>, Meta)> = Vec::new();
    let mut files: std::collections::HashSet<Vec<Vec<u8>>> = Default::default();
    let bad = |e: std::io::Error| Error::corrupt("the archive is damaged").with_source(e);
    for item in archive.entries().map_err(bad)? {
        let mut item = item.map_err(bad)?;
        let raw = item.path_bytes().into_owned();
        if raw == b"." || raw == b"./" {
            continue; // the archive root of `tar -C dir .`
        }
        let parts = components(&raw).map_err(|e| e.context("archive entry"))?;
        if !wanted(&parts, &filters) {
            continue;
        }
        let h = item.header();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let (mode, uid, gid) = (
            h.mode().unwrap_or(0o600),
            archive_owner(h.uid(), "uid", &shown, &mut report.warnings),
            archive_owner(h.gid(), "gid", &shown, &mut report.warnings),
        );
        let device = match (h.device_major(), h.device_minor()) {
            (Ok(Some(major)), Ok(Some(minor))) => Some(libc::makedev(major, minor)),
            _ => None,
        };
        let kind = h.entry_type();
        let link = item.link_name_bytes().map(|l| l.into_owned());
        let (mtime, mtime_ns) = crate::tar_format::archive_mtime(&mut item)?;
        let meta = Meta {
            mode,
            uid,
            gid,
            mtime,
            mtime_ns,
        };
        let path = show(&parts);
        let (name, parent) = parts.split_last().expect("components are never empty");
        match kind {
            tar::EntryType::Directory => {
                target.dir(&parts, true)?;
                dirs.push((parts.clone(), meta));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let dir = target.dir(parent, true)?;
                let size = item.size();
                let written = target.file(&dir, name, &path, size, &meta, &mut |w| {
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let n = item.read(&mut buf).map_err(bad)?;
                        if n == 0 {
                            return Ok(());
                        }
                        w.write(&buf[..n])?;
                    }
                })?;
                if written {
                    report.files += 1;
                    report.bytes += size;
                } else {
                    report.unchanged += 1;
                }
                files.insert(parts.clone());
            }
            tar::EntryType::Link => {
                let from = components(&link.unwrap_or_default())
                    .map_err(|e| e.context(format!("hardlink {path}")))?;
                if !files.contains(&from) {
                    return Err(Error::usage(format!(
                        "hardlink {path} points to {}, which is not a file restored before it",
                        show(&from)
                    )));
                }
                let dir = target.dir(parent, true)?;
                if target.hardlink(&from, &dir, name, &path)? {
                    report.hardlinks += 1;
                }
                files.insert(parts.clone());
            }
            tar::EntryType::Symlink => {
                target.dir(parent, true)?;
                symlinks.push((parts.clone(), link.unwrap_or_default(), meta));
            }
            tar::EntryType::Fifo => {
                let dir = target.dir(parent, true)?;
                if target.fifo(&dir, name, &meta, &path)? {
                    report.fifos += 1;
                }
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                target.dir(parent, true)?;
                let kind = if kind == tar::EntryType::Block {
                    EntryKind::Blockdev
                } else {
                    EntryKind::Chardev
                };
                target.special_device(parent, name, (kind, device), &meta, &path, &mut report)?;
            }
            tar::EntryType::XGlobalHeader
            | tar::EntryType::XHeader
            | tar::EntryType::GNULongName => {}
            _ => report.skipped.push(path),
        }
    }
    for (parts, t, meta) in &symlinks {
        let (name, parent) = parts.split_last().expect("non-empty");
        let dir = target.dir(parent, false)?;
        if target.symlink(&dir, name, t, meta, &show(parts))? {
            report.symlinks += 1;
        }
    }
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    for (parts, meta) in &dirs {
        target.dir_meta(parts, meta)?;
        report.dirs += 1;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_refused() {
        for bad in [
            &b"../x"[..],
            b"/etc/passwd",
            b"a/../../b",
            b"a//b",
            b"",
            b"a/\0",
        ] {
            assert!(components(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            components(b"./a/b/").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
    }
}
