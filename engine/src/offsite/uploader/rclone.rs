//! rclone as the uploader: any rclone remote (`protondrive:` among them), through the `rclone`
//! binary, which reads the exports' own file where there is one and checks a hash after the copy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;

use super::{RemoteFile, Source, Uploader, Wanted, day_to_delete, is_day, sha256_hex};
use crate::error::{Error, ErrorKind, Result};
use crate::offsite::process::{self, Finished};

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
