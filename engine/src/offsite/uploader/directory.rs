//! A directory as the remote (tests; a NAS mounted in the pod), reached through directory
//! descriptors like a restore's target, so that nothing planted in it is written through or read.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use super::{RemoteFile, Source, Uploader, Wanted, is_day};
use crate::error::{Error, ErrorKind, Result};
use crate::restore::Overwrite;
use crate::restore::target::{Target, components, cstr, unlink_in_way};

/// A directory as the remote (tests; a NAS mounted in the pod), reached like a restore's target:
/// through directory descriptors with `O_NOFOLLOW`, so that a symlink planted in it (a day folder,
/// a temporary name) is never written through. Day folders are created 0700, files 0600.
#[derive(Debug)]
pub struct Directory {
    /// The root the days go below.
    pub root: PathBuf,
}

impl Directory {
    /// The day folder `day` below the root, opened without following a symlink; `None` when it
    /// does not exist and `create` is false.
    fn day(&self, day: &str, create: bool) -> Result<Option<OwnedFd>> {
        let target = Target::open(&self.root, Overwrite::Never)?;
        let parts = components(day.as_bytes())?;
        match target.dir(&parts, create) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if e.kind() == ErrorKind::NotFound && !create => Ok(None),
            Err(e) => Err(Error::new(
                e.kind(),
                format!("the directory remote {}: {e}", self.root.display()),
            )),
        }
    }

    /// `name` in the folder `dir`, as the entry itself (a symlink is not followed).
    fn stat_in(dir: &OwnedFd, name: &str) -> std::io::Result<rustix::fs::Stat> {
        let c_name = cstr(name.as_bytes()).map_err(std::io::Error::other)?;
        Ok(rustix::fs::statat(dir, &c_name, AtFlags::SYMLINK_NOFOLLOW)?)
    }

    /// `name` in the folder `dir`, opened for reading with its size, if it is a regular file.
    /// The name may have been swapped since it was looked at: a symlink is not followed
    /// (`O_NOFOLLOW`), a FIFO does not block the open (`O_NONBLOCK`, which changes nothing for a
    /// regular file), and what was opened is judged by its descriptor. `NotFound` when the name
    /// is missing or is not a regular file.
    fn open_in(dir: &OwnedFd, name: &str) -> std::io::Result<(std::fs::File, u64)> {
        let c_name = cstr(name.as_bytes()).map_err(std::io::Error::other)?;
        let opened = rustix::fs::openat(
            dir,
            &c_name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        );
        let not_a_file = || {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{name} is not a regular file"),
            )
        };
        let file = match opened {
            Ok(fd) => std::fs::File::from(fd),
            // ELOOP: a symlink; ENXIO: a socket, or a FIFO with no writer.
            Err(Errno::LOOP | Errno::NXIO) => return Err(not_a_file()),
            Err(e) => return Err(e.into()),
        };
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(not_a_file());
        }
        Ok((file, meta.len()))
    }
}

/// The SHA-256 of what `r` reads, at most `limit` bytes, in hex, with the count read; fails
/// once `deadline` is past.
fn hash_reader(mut r: impl Read, limit: u64, deadline: Instant) -> std::io::Result<(u64, String)> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0u64;
    while read < limit {
        if Instant::now() >= deadline {
            return Err(std::io::Error::from(std::io::ErrorKind::TimedOut));
        }
        let want = (limit - read).min(buf.len() as u64) as usize;
        let n = match r.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        read += n as u64;
    }
    Ok((read, crate::id::hex(&h.finalize())))
}

impl Uploader for Directory {
    fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }

    fn upload(&self, src: Source<'_>, _size: u64, dest: &str, _timeout: Duration) -> Result<()> {
        let Some((day, name)) = dest.split_once('/') else {
            return Err(Error::usage(format!("{dest:?} is not DATE/NAME")));
        };
        let dir = self.day(day, true)?.expect("created");
        let shown = format!("{}/{dest}", self.root.display());
        // Written beside and renamed: the name only ever holds a whole file. Whatever is at the
        // temporary name goes first (a symlink itself, never what it points to), and the file is
        // created anew, refusing to follow a link put there meanwhile.
        let part = format!(".{name}.part");
        let c_part = cstr(part.as_bytes())?;
        let c_name = cstr(name.as_bytes())?;
        if let Err(e) = unlink_in_way(&dir, part.as_bytes(), &shown)
            && e.kind() != ErrorKind::NotFound
        {
            return Err(e);
        }
        let fd = rustix::fs::openat(
            &dir,
            &c_part,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )
        .map_err(|e| Error::io(format!("writing {shown}"), e.into()))?;
        let mut out = std::fs::File::from(fd);
        let written = (|| -> std::io::Result<()> {
            match src {
                Source::File(p) => {
                    std::io::copy(&mut std::fs::File::open(p)?, &mut out)?;
                }
                Source::Stream(r) => {
                    std::io::copy(r, &mut out)?;
                }
            }
            out.flush()?;
            out.sync_all()?;
            // renameat replaces a link at the name itself, never its target.
            rustix::fs::renameat(&dir, &c_part, &dir, &c_name)?;
            // The rename is durable once the folder is synced (a failure is not reported).
            let _ = rustix::fs::fsync(&dir);
            Ok(())
        })();
        written.map_err(|e| {
            // Removes our own temporary file.
            let _ = rustix::fs::unlinkat(&dir, &c_part, AtFlags::empty());
            Error::io(format!("writing {shown}"), e)
        })
    }

    /// The files asked for that are regular files in the day folder (symlinks and anything
    /// else are left out), each with its SHA-256 read back from it (a same-size change on the
    /// remote is found) — only when it has the size asked for, and reading no further than that:
    /// any other name in the folder, or a file of another size (a huge sparse one planted
    /// there), is never read.
    fn list(&self, dir: &str, want: &[Wanted<'_>], timeout: Duration) -> Result<Vec<RemoteFile>> {
        let deadline = Instant::now() + timeout;
        let Some(fd) = self.day(dir, false)? else {
            return Ok(Vec::new());
        };
        let path = self.root.join(dir);
        let mut out = Vec::new();
        for w in want {
            let shown = format!("{}/{}", path.display(), w.name);
            let failed = |e: std::io::Error| {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    Error::new(
                        ErrorKind::Transient,
                        format!(
                            "reading {shown} did not finish within {} s",
                            timeout.as_secs()
                        ),
                    )
                } else {
                    Error::io(format!("reading {shown}"), e)
                }
            };
            let st = match Self::stat_in(&fd, w.name) {
                Ok(st) => st,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(failed(e)),
            };
            if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
                continue;
            }
            let listed = |size: u64| RemoteFile {
                name: w.name.to_string(),
                size,
                sha256: None,
            };
            let Some(size) = w.size.filter(|s| *s == st.st_size as u64) else {
                out.push(listed(st.st_size as u64));
                continue;
            };
            let (file, now) = match Self::open_in(&fd, w.name) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(failed(e)),
            };
            // Swapped since the stat: its own size, unread.
            if now != size {
                out.push(listed(now));
                continue;
            }
            // One byte more than asked for shows a file that grew while it was read.
            let (read, sha256) =
                hash_reader(file, size.saturating_add(1), deadline).map_err(failed)?;
            out.push(RemoteFile {
                sha256: (read == size).then_some(sha256),
                ..listed(read)
            });
        }
        Ok(out)
    }

    /// The day folders at the root; anything else named like a day (a file, a symlink) is left
    /// alone with a warning, never followed or counted.
    fn days(&self, _timeout: Duration) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("listing {}", self.root.display()), e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(|e| Error::io(format!("listing {}", self.root.display()), e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !is_day(&name) {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => out.push(name),
                _ => tracing::warn!(
                    remote = %self.root.display(),
                    entry = %name,
                    "ignoring {name} on the remote: named like a day but not a folder"
                ),
            }
        }
        Ok(out)
    }

    fn delete_day(&self, dir: &str, _timeout: Duration) -> Result<()> {
        if !is_day(dir) {
            return Err(Error::usage(format!("{dir:?} is not a day folder")));
        }
        // remove_dir_all never follows a symlink: one in the folder goes, not what it names.
        let path = self.root.join(dir);
        std::fs::remove_dir_all(&path)
            .map_err(|e| Error::io(format!("deleting {}", path.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The directory remote reads only the files asked for, only at the size asked for, and
    /// not past its timeout.
    #[test]
    fn the_directory_remote_reads_only_wanted_files_of_the_wanted_size() {
        let root = tempfile::tempdir().unwrap();
        let remote = Directory {
            root: root.path().to_path_buf(),
        };
        let day = root.path().join("2026-01-01");
        std::fs::create_dir(&day).unwrap();
        std::fs::write(day.join("a"), b"abc").unwrap();
        std::fs::write(day.join("b"), b"abcd").unwrap();
        std::fs::write(day.join("other"), b"x").unwrap();
        std::os::unix::fs::symlink(day.join("a"), day.join("link")).unwrap();
        let want = [
            Wanted {
                name: "a",
                size: Some(3),
            },
            Wanted {
                name: "b",
                size: Some(3),
            },
            Wanted {
                name: "link",
                size: Some(3),
            },
            Wanted {
                name: "missing",
                size: None,
            },
        ];
        let listed = remote
            .list("2026-01-01", &want, Duration::from_secs(10))
            .unwrap();
        let sha_abc = crate::id::hex(&Sha256::digest(b"abc"));
        assert_eq!(
            listed,
            [
                RemoteFile {
                    name: "a".into(),
                    size: 3,
                    sha256: Some(sha_abc),
                },
                RemoteFile {
                    name: "b".into(),
                    size: 4,
                    sha256: None,
                },
            ]
        );
        let err = remote
            .list("2026-01-01", &want, Duration::ZERO)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
        assert!(err.to_string().contains("did not finish"), "{err}");
    }

    /// A name swapped for a FIFO between the stat and the open is opened without blocking and
    /// refused as not a regular file.
    #[test]
    fn a_fifo_in_a_day_folder_is_refused_without_blocking() {
        let root = tempfile::tempdir().unwrap();
        let remote = Directory {
            root: root.path().to_path_buf(),
        };
        let fd = remote.day("2026-01-01", true).unwrap().unwrap();
        // mkfifo(3) is mknod with S_IFIFO.
        let fifo = root.path().join("2026-01-01/x.tar.zst");
        let mode = Mode::RUSR | Mode::WUSR;
        rustix::fs::mknodat(rustix::fs::CWD, &fifo, FileType::Fifo, mode, 0).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(Directory::open_in(&fd, "x.tar.zst").map(|_| ()));
        });
        let opened = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("opening a FIFO blocked");
        assert!(opened.is_err(), "a FIFO was opened as a remote file");
    }
}
