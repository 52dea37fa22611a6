//! The uploaders: one small trait over whatever client puts files on the remote — rclone (any
//! rclone remote, `protondrive:` in production), a command template (`proton-drive-sync` or
//! another client) and a plain directory (tests, a NAS mirror).
//!
//! Paths on the remote are relative to its root and are `DATE` (a day's folder) or
//! `DATE/NAME`. Secrets never pass through here: clients take them from their environment or
//! their own session files, never from arguments.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

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
/// folder. Every call ends within its timeout or fails.
pub trait Uploader: Send + Sync {
    /// Names the remote in reports and logs (no secrets).
    fn describe(&self) -> String;
    /// Uploads `src` (`size` bytes) to `dest`.
    fn upload(&self, src: Source<'_>, size: u64, dest: &str, timeout: Duration) -> Result<()>;
    /// Whether `upload` wants a file (then a stream is first copied to the scratch directory).
    fn needs_file(&self) -> bool {
        false
    }
    /// The files in the day folder `dir`.
    fn list(&self, dir: &str, timeout: Duration) -> Result<Vec<RemoteFile>>;
    /// The day folders at the remote's root.
    fn days(&self, timeout: Duration) -> Result<Vec<String>>;
    /// Deletes a day folder and everything in it.
    fn delete_day(&self, dir: &str, timeout: Duration) -> Result<()>;
}

/// Whether `name` is a day folder's name (`YYYY-MM-DD`).
pub fn is_day(name: &str) -> bool {
    jiff::civil::Date::strptime("%Y-%m-%d", name).is_ok()
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

    fn list(&self, dir: &str, timeout: Duration) -> Result<Vec<RemoteFile>> {
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
        let mut c = self.cmd();
        c.arg("purge").arg(self.path(dir));
        let f = process::run(&mut c, None, timeout, "rclone purge")?;
        self.checked(f, "rclone purge").map(|_| ())
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

    fn list(&self, dir: &str, timeout: Duration) -> Result<Vec<RemoteFile>> {
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

    /// `name` in the folder `dir`, opened for reading without following a symlink: through the
    /// folder's own descriptor (`/proc/self/fd/N` is the opened folder, not a path looked up
    /// again).
    fn open_in(dir: &OwnedFd, name: &str) -> std::io::Result<std::fs::File> {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(format!("/proc/self/fd/{}/{name}", dir.as_raw_fd()))
    }
}

/// The SHA-256 of what `r` reads, in hex.
fn hash_reader(mut r: impl Read) -> std::io::Result<String> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(crate::id::hex(&h.finalize()));
        }
        h.update(&buf[..n]);
    }
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

    /// Lists the regular files of the day folder with their SHA-256, read back from the files
    /// (a same-size change on the remote is found); symlinks and hidden names are left out.
    fn list(&self, dir: &str, _timeout: Duration) -> Result<Vec<RemoteFile>> {
        let Some(fd) = self.day(dir, false)? else {
            return Ok(Vec::new());
        };
        let path = self.root.join(dir);
        let entries = std::fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            // The entry itself, not what a symlink points to.
            let meta = e
                .metadata()
                .map_err(|err| Error::io(format!("reading {}/{name}", path.display()), err))?;
            if !meta.is_file() {
                continue;
            }
            let sha256 = Self::open_in(&fd, &name)
                .and_then(hash_reader)
                .map_err(|err| Error::io(format!("reading {}/{name}", path.display()), err))?;
            out.push(RemoteFile {
                name,
                size: meta.len(),
                sha256: Some(sha256),
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
