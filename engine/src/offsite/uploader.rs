//! The uploaders: one small trait over whatever client puts files on the remote — rclone (any
//! rclone remote, `protondrive:` in production), a command template (`proton-drive-sync` or
//! another client) and a plain directory (tests, a NAS mirror).
//!
//! Paths on the remote are relative to its root and are `DATE` (a day's folder) or
//! `DATE/NAME`. Secrets never pass through here: clients take them from their environment or
//! their own session files, never from arguments.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

use super::process::{self, Finished};
use crate::error::{Error, ErrorKind, Result};

/// A file as the remote lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// Its name in the day's folder.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// Its SHA-256, when the remote gives one without reading the file back.
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

/// Any rclone remote, through the `rclone` binary.
#[derive(Debug)]
pub struct Rclone {
    /// The binary.
    pub program: PathBuf,
    /// `remote:path`, the root the days go below.
    pub remote: String,
    /// A config file to use instead of rclone's default (the session volume's).
    pub config: Option<PathBuf>,
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

    fn lsjson(&self, rel: &str, dirs: bool, timeout: Duration) -> Result<Vec<LsEntry>> {
        let mut c = self.cmd();
        c.arg("lsjson")
            .arg(if dirs { "--dirs-only" } else { "--files-only" });
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
}

impl Uploader for Rclone {
    fn describe(&self) -> String {
        format!("rclone {}", self.remote)
    }

    fn upload(&self, src: Source<'_>, size: u64, dest: &str, timeout: Duration) -> Result<()> {
        let mut c = self.cmd();
        let f = match src {
            // rclone reads the file itself and checks a hash both ends support after the copy.
            Source::File(p) => {
                c.arg("copyto").arg(p).arg(self.path(dest));
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
                name: e.name,
                size: e.size.max(0) as u64,
                sha256: None,
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
            let sha256 = f
                .next()
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(|h| h.to_ascii_lowercase());
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

/// A directory as the remote (tests; a NAS mounted in the pod).
#[derive(Debug)]
pub struct Directory {
    /// The root the days go below.
    pub root: PathBuf,
}

impl Uploader for Directory {
    fn describe(&self) -> String {
        format!("directory {}", self.root.display())
    }

    fn upload(&self, src: Source<'_>, _size: u64, dest: &str, _timeout: Duration) -> Result<()> {
        let target = self.root.join(dest);
        let parent = target.parent().expect("DATE/NAME");
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        // Written beside and renamed: the name only ever holds a whole file.
        let tmp = parent.join(format!(
            ".{}.part",
            target.file_name().expect("a name").to_string_lossy()
        ));
        let written = (|| -> std::io::Result<()> {
            let mut out = std::fs::File::create(&tmp)?;
            match src {
                Source::File(p) => {
                    std::io::copy(&mut std::fs::File::open(p)?, &mut out)?;
                }
                Source::Stream(r) => {
                    std::io::copy(r, &mut out)?;
                }
            }
            out.sync_all()?;
            std::fs::rename(&tmp, &target)
        })();
        written.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::io(format!("writing {}", target.display()), e)
        })
    }

    fn list(&self, dir: &str, _timeout: Duration) -> Result<Vec<RemoteFile>> {
        let path = self.root.join(dir);
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("listing {}", path.display()), e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let meta = e
                .metadata()
                .map_err(|err| Error::io(format!("reading {name}"), err))?;
            if meta.is_file() && !name.starts_with('.') {
                out.push(RemoteFile {
                    name,
                    size: meta.len(),
                    sha256: None,
                });
            }
        }
        Ok(out)
    }

    fn days(&self, _timeout: Duration) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("listing {}", self.root.display()), e)),
        };
        Ok(entries
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_day(n))
            .collect())
    }

    fn delete_day(&self, dir: &str, _timeout: Duration) -> Result<()> {
        let path = self.root.join(dir);
        std::fs::remove_dir_all(&path)
            .map_err(|e| Error::io(format!("deleting {}", path.display()), e))
    }
}
