//! The target directory, reached only through descriptors: checked path components, creating
//! and entering directories with `O_NOFOLLOW`, making way for an entry, and applying modes,
//! owners and times after contents.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, UTIME_OMIT, Uid};
use rustix::io::Errno;

use super::{Overwrite, RestoreReport};
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::{Entry, EntryKind, MAX_PATH_LEN, shorten, valid_name};
use crate::sparse::SparseWriter;

pub(crate) fn cstr(name: &[u8]) -> Result<CString> {
    CString::new(name).map_err(|_| Error::usage("a name contains NUL"))
}

/// A failed call as an I/O error: `what (os error N)`, as `last_os_error` read it before.
pub(super) fn os_err(what: impl std::fmt::Display, errno: Errno) -> Error {
    Error::io(what, std::io::Error::from(errno))
}

/// Removes the entry `name` in `dir` to make way for a restored one; `unlinkat` removes a link
/// or file itself and never follows it.
pub(crate) fn unlink_in_way(dir: &OwnedFd, name: &[u8], path: &str) -> Result<()> {
    let c = cstr(name)?;
    rustix::fs::unlinkat(dir, &c, AtFlags::empty())
        .map_err(|e| os_err(format!("replacing {path}"), e))
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
    pub(super) fn of(e: &Entry) -> Meta {
        Meta {
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
            mtime_ns: e.mtime_ns,
        }
    }
    /// Access time left as it is, modification time the entry's.
    fn times(&self) -> Timestamps {
        Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_OMIT,
            },
            last_modification: Timespec {
                tv_sec: self.mtime,
                tv_nsec: i64::from(self.mtime_ns),
            },
        }
    }

    /// Owner and group for `chown`: `u32::MAX` is -1, which leaves that one unchanged (`None`;
    /// rustix's `Uid`/`Gid` do not take -1).
    fn owner(&self) -> (Option<Uid>, Option<Gid>) {
        (
            (self.uid != u32::MAX).then(|| Uid::from_raw(self.uid)),
            (self.gid != u32::MAX).then(|| Gid::from_raw(self.gid)),
        )
    }
}

/// The target directory, reached only through descriptors.
pub(crate) struct Target {
    root: OwnedFd,
    as_root: bool,
    overwrite: Overwrite,
}

pub(super) enum Existing {
    Missing,
    Dir,
    File {
        size: u64,
        mtime: i64,
        mtime_ns: u32,
    },
    Other,
}

/// What to do with the file a restore is about to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Nothing is there.
    Create,
    /// Something is there and goes.
    Replace,
    /// It stays (not overwritten, or unchanged).
    Keep,
}

impl Target {
    pub(crate) fn open(path: &Path, overwrite: Overwrite) -> Result<Target> {
        std::fs::create_dir_all(path)
            .map_err(|e| Error::io(format!("creating target {}", path.display()), e))?;
        let c = cstr(path.as_os_str().as_encoded_bytes())?;
        let root = rustix::fs::open(
            &c,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| os_err(format!("opening target {}", path.display()), e))?;
        Ok(Target {
            root,
            as_root: rustix::process::geteuid().is_root(),
            overwrite,
        })
    }

    fn existing(&self, dir: &OwnedFd, name: &[u8]) -> Result<Existing> {
        let c = cstr(name)?;
        let st = match rustix::fs::statat(dir, &c, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(errno) => {
                let e = std::io::Error::from(errno);
                return if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(Existing::Missing)
                } else {
                    Err(Error::io(
                        format!("stat of {:?} in the target", String::from_utf8_lossy(name)),
                        e,
                    ))
                };
            }
        };
        Ok(match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => Existing::Dir,
            FileType::RegularFile => Existing::File {
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
                match rustix::fs::mkdirat(&cur, &c, Mode::RWXU) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(os_err(format!("creating {}", show(&parts[..=i])), e)),
                }
            }
            let opened = rustix::fs::openat(
                &cur,
                &c,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            );
            cur = match opened {
                Ok(fd) => fd,
                Err(errno) => {
                    let why = if matches!(errno, Errno::LOOP | Errno::NOTDIR) {
                        " (a symlink or file is in the way; cairn never writes through it)"
                    } else {
                        ""
                    };
                    let e = std::io::Error::from(errno);
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
            };
        }
        Ok(cur)
    }

    /// Whether the file `e` in the directory `parent` would be (re)written, changing nothing:
    /// a restore from a remote store asks before it reads the file's chunks, so that a resumed
    /// restore does not download what it keeps.
    pub(crate) fn would_write(&self, parent: &[Vec<u8>], e: &Entry, path: &str) -> Result<bool> {
        let dir = self.dir(parent, false)?;
        let decision = self.decide(&dir, &e.name.0, e.size, &Meta::of(e), path)?;
        Ok(decision != Decision::Keep)
    }

    /// Whether a file at `name` needs (re)writing, and whether something is in the way.
    fn decide(
        &self,
        dir: &OwnedFd,
        name: &[u8],
        size: u64,
        meta: &Meta,
        path: &str,
    ) -> Result<Decision> {
        let replace = match self.existing(dir, name)? {
            Existing::Missing => return Ok(Decision::Create),
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
        Ok(if replace {
            Decision::Replace
        } else {
            Decision::Keep
        })
    }

    fn set_meta_fd(&self, fd: &OwnedFd, meta: &Meta, path: &str) -> Result<()> {
        // Owner first: chown clears setuid/setgid bits, which the chmod below then restores.
        if self.as_root {
            let (uid, gid) = meta.owner();
            rustix::fs::fchown(fd, uid, gid)
                .map_err(|e| os_err(format!("setting the owner of {path}"), e))?;
        }
        rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode & 0o7777))
            .map_err(|e| os_err(format!("setting the mode of {path}"), e))?;
        rustix::fs::futimens(fd, &meta.times())
            .map_err(|e| os_err(format!("setting the mtime of {path}"), e))?;
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
        match self.decide(dir, name, size, meta, path)? {
            Decision::Create => {}
            Decision::Replace => unlink_in_way(dir, name, path)?,
            Decision::Keep => return Ok(false),
        }
        let c = cstr(name)?;
        // O_EXCL|O_NOFOLLOW: we create the file ourselves.
        let fd = rustix::fs::openat(
            dir,
            &c,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )
        .map_err(|e| os_err(format!("creating {path}"), e))?;
        let mut w = SparseWriter::new(std::fs::File::from(fd));
        fill(&mut w)?;
        if w.position() != size {
            return Err(Error::corrupt(format!(
                "{path}: restored {} bytes, the snapshot says {size}",
                w.position()
            )));
        }
        let file = w.into_file();
        file.set_len(size)
            .map_err(|e| Error::io(format!("sizing {path}"), e))?;
        let fd = OwnedFd::from(file);
        self.set_meta_fd(&fd, meta, path)?;
        Ok(true)
    }

    pub(crate) fn mkdir(&self, parent: &OwnedFd, name: &[u8], path: &str) -> Result<()> {
        let c = cstr(name)?;
        match rustix::fs::mkdirat(parent, &c, Mode::RWXU) {
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(os_err(format!("creating {path}"), e)),
        }
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
        rustix::fs::symlinkat(&t, parent, &c)
            .map_err(|e| os_err(format!("creating symlink {path}"), e))?;
        self.meta_at(parent, &c, meta);
        Ok(true)
    }

    /// Owner (when root) and mtime of an entry that cannot be opened for writing (a symlink,
    /// a FIFO), applied to the entry itself. Best effort, as tar does for these.
    fn meta_at(&self, parent: &OwnedFd, c: &CString, meta: &Meta) {
        // AT_SYMLINK_NOFOLLOW acts on the link itself; failures are ignored (best effort).
        if self.as_root {
            let (uid, gid) = meta.owner();
            let _ = rustix::fs::chownat(parent, c, uid, gid, AtFlags::SYMLINK_NOFOLLOW);
        }
        let _ = rustix::fs::utimensat(parent, c, &meta.times(), AtFlags::SYMLINK_NOFOLLOW);
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
        // No flags: never follow a symlink source.
        rustix::fs::linkat(&src_dir, &a, parent, &b, AtFlags::empty())
            .map_err(|e| os_err(format!("linking {path} to {}", show(from)), e))?;
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
        self.node(parent, name, FileType::Fifo, 0, meta, || {
            format!("creating FIFO {path}")
        })?;
        Ok(true)
    }

    /// Makes a FIFO or device node `name` of type `fmt` with the entry's mode, owner and times.
    fn node(
        &self,
        parent: &OwnedFd,
        name: &[u8],
        fmt: FileType,
        rdev: u64,
        meta: &Meta,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        let c = cstr(name)?;
        let mode = Mode::from_raw_mode(meta.mode & 0o7777);
        rustix::fs::mknodat(parent, &c, fmt, mode, rdev).map_err(|e| os_err(what(), e))?;
        // The umask applied to mknod; the snapshot's mode is what was asked for.
        let _ = rustix::fs::chmodat(parent, &c, mode, AtFlags::empty());
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
            FileType::BlockDevice
        } else {
            FileType::CharacterDevice
        };
        self.node(parent, name, fmt, rdev, meta, || {
            format!("creating device node {path}")
        })?;
        Ok(true)
    }

    /// Restores a device node when running as root; otherwise says why it is left out.
    pub(super) fn special_device(
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

/// A path of components, for messages.
pub(super) fn show(parts: &[Vec<u8>]) -> String {
    String::from_utf8_lossy(&parts.join(&b'/')).into_owned()
}

/// Whether `parts` is one of `filters` or below one (no filters: everything).
pub(super) fn wanted(parts: &[Vec<u8>], filters: &[Vec<Vec<u8>>]) -> bool {
    filters.is_empty() || filters.iter().any(|f| parts.starts_with(f))
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
