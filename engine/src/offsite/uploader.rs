//! The uploaders: one small trait over whatever client puts files on the remote — Proton's
//! official Drive CLI (`proton.rs`, the default for Proton Drive), rclone (any rclone remote,
//! `protondrive:` among them), a command template (another client) and a plain directory
//! (tests, a NAS mirror).
//!
//! Paths on the remote are relative to its root and are `DATE` (a day's folder) or
//! `DATE/NAME`. Secrets never pass through here: clients take them from their environment or
//! their own session files, never from arguments.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::process::{self, Finished};
use crate::error::{Error, ErrorKind, Result};
use crate::restore::Overwrite;
use crate::restore::target::{Target, components, cstr, unlink_in_way};

/// A file as the remote lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Its name in the day's folder.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// Its SHA-256, when the remote gives one (rclone where the backend has SHA-256, a command
    /// client's third column, the directory remote reading the file back).
    pub sha256: Option<String>,
}

/// A file of a day folder that a listing is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted<'a> {
    /// Its name in the day's folder.
    pub name: &'a str,
    /// The size it should have, where known.
    pub size: Option<u64>,
}

/// What to upload: a local file, or a stream of known length.
#[allow(missing_debug_implementations)]
pub enum Source<'a> {
    /// A file the client may read itself (a local exports location, or a scratch copy).
    File(&'a Path),
    /// Bytes read from the exports store.
    Stream(&'a mut dyn Read),
}

/// Puts files on a remote and lists them.
///
/// Contract: `upload` returns once `dest` holds the whole file or fails; a failed upload may
/// leave a partial file at `dest`, which the next upload replaces. `list` shows only complete
/// files (a client's temporary names are not `shared-*`), and an empty list for a missing
/// folder; it may show more than the files asked for (they are ignored), and may leave out the
/// SHA-256 of a file whose size is not the one asked for. Every call ends within its timeout or
/// fails.
pub trait Uploader: Send + Sync {
    /// Names the remote in reports and logs (no secrets).
    fn describe(&self) -> String;
    /// Uploads `src` (`size` bytes) to `dest`.
    fn upload(&self, src: Source<'_>, size: u64, dest: &str, timeout: Duration) -> Result<()>;
    /// Whether `upload` wants a file (then a stream is first copied to the scratch directory).
    fn needs_file(&self) -> bool {
        false
    }
    /// The files `want` of the day folder `dir`, as they are there.
    fn list(&self, dir: &str, want: &[Wanted<'_>], timeout: Duration) -> Result<Vec<RemoteFile>>;
    /// The day folders at the remote's root.
    fn days(&self, timeout: Duration) -> Result<Vec<String>>;
    /// Deletes a day folder and everything in it.
    fn delete_day(&self, dir: &str, timeout: Duration) -> Result<()>;
    /// The client and its version (`proton-drive cli-drive@0.8.0+…`, `rclone v1.71.2`), for
    /// statuses and a metric label, so that an outdated client shows before it fails; `None`
    /// where there is no client or it does not say.
    fn client(&self, _timeout: Duration) -> Option<String> {
        None
    }
}

/// Whether `name` is a day folder's name, exactly `YYYY-MM-DD`: the parser alone also takes a
/// sign, one-digit fields and surrounding whitespace, and such a name, listed by a remote, would
/// be handed to a delete command that means another folder by it.
pub fn is_day(name: &str) -> bool {
    name.len() == 10
        && jiff::civil::Date::strptime("%Y-%m-%d", name)
            .is_ok_and(|d| d.strftime("%Y-%m-%d").to_string() == name)
}

/// Refuses a `dir` that is not a day folder's name, before a client is asked to delete it.
fn day_to_delete(dir: &str) -> Result<()> {
    if is_day(dir) {
        Ok(())
    } else {
        Err(Error::usage(format!("{dir:?} is not a day folder")))
    }
}

/// Whether `h` is a SHA-256 in hex; lowercased.
fn sha256_hex(h: &str) -> Option<String> {
    (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())).then(|| h.to_ascii_lowercase())
}

/// Any rclone remote, through the `rclone` binary.
#[derive(Debug, Default)]
pub struct Rclone {
    /// The binary.
    pub program: PathBuf,
    /// `remote:path`, the root the days go below.
    pub remote: String,
    /// A config file to use instead of rclone's default (the session volume's).
    pub config: Option<PathBuf>,
    /// Whether the backend keeps SHA-256 hashes, asked once (`rclone backend features`).
    pub sha256_support: OnceLock<bool>,
}

impl Rclone {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.program);
        if let Some(cfg) = &self.config {
            c.arg("--config").arg(cfg);
        }
        c
    }

    fn path(&self, rel: &str) -> String {
        // `nas:` is the remote's own default folder; `nas:/` would be its root.
        if self.remote.ends_with(':') {
            format!("{}{rel}", self.remote)
        } else {
            format!("{}/{rel}", self.remote.trim_end_matches('/'))
        }
    }

    fn checked(&self, f: Finished, what: &str) -> Result<Finished> {
        match f.failure(what) {
            None => Ok(f),
            Some(why) => Err(Error::new(ErrorKind::Io, why)),
        }
    }

    /// Whether the backend has SHA-256 hashes: asked for only then, since rclone reports every
    /// file whose hash it cannot give as an error, and a local remote reads the file for each
    /// hash type asked.
    fn has_sha256(&self, timeout: Duration) -> Result<bool> {
        if let Some(h) = self.sha256_support.get() {
            return Ok(*h);
        }
        #[derive(Deserialize)]
        struct Features {
            #[serde(rename = "Hashes", default)]
            hashes: Vec<String>,
        }
        let mut c = self.cmd();
        c.arg("backend").arg("features").arg(self.path(""));
        let f = process::run(&mut c, None, timeout, "rclone backend features")
            .and_then(|f| self.checked(f, "rclone backend features"));
        // Not knowing costs only the hash comparison of this listing (the sizes are still
        // checked), never an upload; a client that cannot start is still a configuration error.
        let f = match f {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::Config => return Err(e),
            Err(e) => {
                tracing::warn!(error = %process::redact(&e.to_string()), "rclone did not say which hashes the remote keeps; checking by size");
                return Ok(false);
            }
        };
        let has = serde_json::from_slice::<Features>(&f.stdout)
            .map(|f| f.hashes.iter().any(|h| h.eq_ignore_ascii_case("sha256")))
            .unwrap_or(false);
        Ok(*self.sha256_support.get_or_init(|| has))
    }

    fn lsjson(&self, rel: &str, dirs: bool, timeout: Duration) -> Result<Vec<LsEntry>> {
        let hashes = !dirs && self.has_sha256(timeout)?;
        let mut c = self.cmd();
        c.arg("lsjson")
            .arg(if dirs { "--dirs-only" } else { "--files-only" });
        if hashes {
            c.arg("--hash-type").arg("sha256");
        }
        c.arg(self.path(rel));
        let f = process::run(&mut c, None, timeout, "rclone lsjson")?;
        if !f.status.success() && f.stderr.contains("directory not found") {
            return Ok(Vec::new());
        }
        let f = self.checked(f, "rclone lsjson")?;
        serde_json::from_slice(&f.stdout).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("rclone lsjson printed no listing: {e}"),
            )
        })
    }
}

#[derive(Deserialize)]
struct LsEntry {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Size")]
    size: i64,
    #[serde(rename = "Hashes", default)]
    hashes: BTreeMap<String, String>,
}

impl Uploader for Rclone {
    fn describe(&self) -> String {
        format!("rclone {}", self.remote)
    }

    fn upload(&self, src: Source<'_>, size: u64, dest: &str, timeout: Duration) -> Result<()> {
        let mut c = self.cmd();
        let f = match src {
            // rclone reads the file itself and checks a hash both ends support after the copy.
            // `--ignore-times`: a file of the same size and time there may still differ (it is
            // uploaded again because its check failed), so it is never skipped.
            Source::File(p) => {
                c.arg("copyto")
                    .arg("--ignore-times")
                    .arg(p)
                    .arg(self.path(dest));
                process::run(&mut c, None, timeout, "rclone copyto")?
            }
            Source::Stream(r) => {
                c.arg("rcat")
                    .arg("--size")
                    .arg(size.to_string())
                    .arg(self.path(dest));
                process::run(&mut c, Some(r), timeout, "rclone rcat")?
            }
        };
        self.checked(f, "rclone upload").map(|_| ())
    }

    fn list(&self, dir: &str, _want: &[Wanted<'_>], timeout: Duration) -> Result<Vec<RemoteFile>> {
        Ok(self
            .lsjson(dir, false, timeout)?
            .into_iter()
            .map(|e| RemoteFile {
                sha256: e
                    .hashes
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("sha256"))
                    .and_then(|(_, h)| sha256_hex(h)),
                name: e.name,
                size: e.size.max(0) as u64,
            })
            .collect())
    }

    fn days(&self, timeout: Duration) -> Result<Vec<String>> {
        Ok(self
            .lsjson("", true, timeout)?
            .into_iter()
            .map(|e| e.name)
            .filter(|n| is_day(n))
            .collect())
    }

    fn delete_day(&self, dir: &str, timeout: Duration) -> Result<()> {
        day_to_delete(dir)?;
        let mut c = self.cmd();
        c.arg("purge").arg(self.path(dir));
        let f = process::run(&mut c, None, timeout, "rclone purge")?;
        self.checked(f, "rclone purge").map(|_| ())
    }

    fn client(&self, timeout: Duration) -> Option<String> {
        let mut c = self.cmd();
        c.arg("version");
        let f = process::run(&mut c, None, timeout, "rclone version").ok()?;
        let text = String::from_utf8_lossy(&f.stdout);
        let line = text.lines().next()?.trim().to_string();
        (f.status.success() && !line.is_empty()).then_some(line)
    }
}

/// A client run from argument templates: `{file}` (the local file), `{dest}` (`DATE/NAME`) and
/// `{dir}` (`DATE`, or empty for the root) are replaced; nothing else is.
#[derive(Debug)]
pub struct CommandUploader {
    /// Uploads `{file}` to `{dest}`.
    pub upload: Vec<String>,
    /// Lists `{dir}`: one line per file, `SIZE NAME` or `SIZE NAME SHA256`; for the root, one
    /// line per day folder, `0 DATE`.
    pub list: Vec<String>,
    /// Deletes the day folder `{dir}` (needed only when remote days are pruned).
    pub delete: Vec<String>,
}

impl CommandUploader {
    fn command(template: &[String], vars: &[(&str, &str)]) -> Result<Command> {
        let Some((program, args)) = template.split_first() else {
            return Err(Error::config("offsite: a command template is empty"));
        };
        let fill = |s: &String| {
            vars.iter()
                .fold(s.clone(), |s, (k, v)| s.replace(&format!("{{{k}}}"), v))
        };
        let mut c = Command::new(fill(program));
        c.args(args.iter().map(fill));
        Ok(c)
    }

    fn run(
        &self,
        template: &[String],
        vars: &[(&str, &str)],
        timeout: Duration,
        what: &str,
    ) -> Result<Vec<u8>> {
        let mut c = Self::command(template, vars)?;
        let f = process::run(&mut c, None, timeout, what)?;
        match f.failure(what) {
            None => Ok(f.stdout),
            Some(why) => Err(Error::new(ErrorKind::Io, why)),
        }
    }

    fn lines(&self, dir: &str, timeout: Duration) -> Result<Vec<RemoteFile>> {
        let out = self.run(&self.list, &[("dir", dir)], timeout, "the list command")?;
        let mut files = Vec::new();
        for line in String::from_utf8_lossy(&out).lines() {
            let mut f = line.split_whitespace();
            let (Some(size), Some(name)) = (f.next(), f.next()) else {
                continue;
            };
            let Ok(size) = size.parse::<u64>() else {
                continue;
            };
            let sha256 = f.next().and_then(sha256_hex);
            files.push(RemoteFile {
                name: name.to_string(),
                size,
                sha256,
            });
        }
        Ok(files)
    }
}

impl Uploader for CommandUploader {
    fn describe(&self) -> String {
        format!(
            "command {}",
            self.upload.first().map(String::as_str).unwrap_or("")
        )
    }

    fn needs_file(&self) -> bool {
        true
    }

    fn upload(&self, src: Source<'_>, _size: u64, dest: &str, timeout: Duration) -> Result<()> {
        let Source::File(path) = src else {
            return Err(Error::new(
                ErrorKind::Io,
                "the command uploader takes files only",
            ));
        };
        let file = path.to_string_lossy();
        self.run(
            &self.upload,
            &[("file", &file), ("dest", dest)],
            timeout,
            "the upload command",
        )
        .map(|_| ())
    }

    fn list(&self, dir: &str, _want: &[Wanted<'_>], timeout: Duration) -> Result<Vec<RemoteFile>> {
        self.lines(dir, timeout)
    }

    fn days(&self, timeout: Duration) -> Result<Vec<String>> {
        Ok(self
            .lines("", timeout)?
            .into_iter()
            .map(|f| f.name)
            .filter(|n| is_day(n))
            .collect())
    }

    fn delete_day(&self, dir: &str, timeout: Duration) -> Result<()> {
        day_to_delete(dir)?;
        if self.delete.is_empty() {
            return Err(Error::config(
                "offsite.delete is not set: the command uploader cannot delete remote days",
            ));
        }
        self.run(&self.delete, &[("dir", dir)], timeout, "the delete command")
            .map(|_| ())
    }
}

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
    fn stat_in(dir: &OwnedFd, name: &str) -> std::io::Result<libc::stat> {
        let c_name = cstr(name.as_bytes()).map_err(std::io::Error::other)?;
        // SAFETY: a zeroed stat is a valid out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid descriptor, C string and out-pointer.
        let rc = unsafe {
            libc::fstatat(
                dir.as_raw_fd(),
                c_name.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(st)
    }

    /// `name` in the folder `dir`, opened for reading with its size, if it is a regular file.
    /// The name may have been swapped since it was looked at: a symlink is not followed
    /// (`O_NOFOLLOW`), a FIFO does not block the open (`O_NONBLOCK`, which changes nothing for a
    /// regular file), and what was opened is judged by its descriptor. `NotFound` when the name
    /// is missing or is not a regular file.
    fn open_in(dir: &OwnedFd, name: &str) -> std::io::Result<(std::fs::File, u64)> {
        let c_name = cstr(name.as_bytes()).map_err(std::io::Error::other)?;
        // SAFETY: valid descriptor and C string; the descriptor is owned below.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c_name.as_ptr(),
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        let not_a_file = || {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{name} is not a regular file"),
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            // ELOOP: a symlink; ENXIO: a socket, or a FIFO with no writer.
            return Err(match e.raw_os_error() {
                Some(libc::ELOOP | libc::ENXIO) => not_a_file(),
                _ => e,
            });
        }
        // SAFETY: a fresh descriptor we own.
        let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
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
        // SAFETY: valid descriptor and C string; the descriptor is owned below.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c_part.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd < 0 {
            return Err(Error::io(
                format!("writing {shown}"),
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: a fresh descriptor we own.
        let mut out = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
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
            // SAFETY: valid descriptor and C strings; renameat replaces a link at the name
            // itself, never its target.
            if unsafe {
                libc::renameat(
                    dir.as_raw_fd(),
                    c_part.as_ptr(),
                    dir.as_raw_fd(),
                    c_name.as_ptr(),
                )
            } != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // SAFETY: valid descriptor; the rename is durable once the folder is synced.
            unsafe {
                libc::fsync(dir.as_raw_fd());
            }
            Ok(())
        })();
        written.map_err(|e| {
            // SAFETY: valid descriptor and C string; removes our own temporary file.
            unsafe {
                libc::unlinkat(dir.as_raw_fd(), c_part.as_ptr(), 0);
            }
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
            if st.st_mode & libc::S_IFMT != libc::S_IFREG {
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

    #[test]
    fn only_canonical_dates_are_day_folders() {
        assert!(is_day("2026-01-01"));
        for name in [
            "+2026-01-01",
            "2026-1-1",
            "2026-01-1",
            " 2026-01-01",
            "2026-01-01 ",
            "2026-01-01\n",
            "\n2026-01-01",
            "02026-01-01",
            "2026-02-30",
            "",
        ] {
            assert!(!is_day(name), "{name:?} was taken for a day folder");
        }
    }

    /// A command client's listing of non-canonical names yields no day, and none reaches its
    /// delete command.
    #[test]
    fn a_command_client_never_deletes_a_name_that_is_not_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let deleted = dir.path().join("deleted");
        let up = CommandUploader {
            upload: vec!["true".into()],
            list: vec![
                "sh".into(),
                "-c".into(),
                "printf '0 2026-1-1\\n0 +2026-01-01\\n0 2026-01-01\\n'".into(),
            ],
            delete: vec![
                "sh".into(),
                "-c".into(),
                format!("echo \"$0\" >> {}", deleted.display()),
                "{dir}".into(),
            ],
        };
        let timeout = Duration::from_secs(10);
        assert_eq!(up.days(timeout).unwrap(), ["2026-01-01"]);
        for name in ["2026-1-1", "+2026-01-01", "2026-01-01 "] {
            assert!(up.delete_day(name, timeout).is_err(), "{name:?}");
        }
        assert!(!deleted.exists(), "{:?}", std::fs::read_to_string(&deleted));
    }

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
        let fifo = cstr(
            root.path()
                .join("2026-01-01/x.tar.zst")
                .as_os_str()
                .as_encoded_bytes(),
        )
        .unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
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
