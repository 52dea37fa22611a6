//! Proton's official Drive CLI (`proton-drive`, built on Proton's Drive SDK) as an uploader: the
//! default client for the Proton job, since rclone's unofficial `protondrive` backend breaks when
//! the service changes (docs/DECISIONS.md).
//!
//! What is relied on, from the CLI's public source (ProtonDriveApps/sdk, `cli/`, v0.4–v0.9):
//! `filesystem list --json PATH` prints a JSON array of nodes (`name` as `{ok, value}`, `type`
//! `file`/`folder`, `activeRevision` — wrapped as `{ok, value}` up to v0.6, bare from v0.7 —
//! with `claimedSize` and `state`); `filesystem upload --json -f replace FILE PARENT` needs the
//! parent to exist and prints a one-line summary with `failedItems` and `failures`; `filesystem
//! create-folder PARENT NAME`; `filesystem trash` then `filesystem delete /trash/NAME`, which
//! exit 0 even when an item fails (their JSON says `ok` per item); exit status 1 and one line on
//! stderr for every failure; `PROTON_DRIVE_CACHE_DIR` for all its state and
//! `PROTON_DRIVE_CREDENTIALS_STORE=unsafe_file` for a session file (0600) there instead of a
//! desktop keychain. Output that does not parse is a failure naming the command, never a day
//! counted as uploaded.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use super::process::{self, Finished};
use super::uploader::{RemoteFile, Source, Uploader, Wanted, is_day};
use crate::error::{Error, ErrorKind, Result};

/// The session file the CLI keeps in its cache directory with the `unsafe_file` store.
pub const SESSION_FILE: &str = "auth-session.json";

/// The official Proton Drive CLI.
#[derive(Debug)]
pub struct ProtonDrive {
    /// The binary.
    pub program: PathBuf,
    /// The folder the days go below, e.g. `/my-files/Backups/homelab/shared-archives`.
    pub root: String,
    /// The CLI's state directory (`PROTON_DRIVE_CACHE_DIR`): its session, caches and client id.
    pub session_dir: PathBuf,
    /// Folders known to exist (made or listed by this process).
    known: Mutex<HashSet<String>>,
}

/// A node of a listing, as far as cairn reads it.
struct Node {
    name: String,
    folder: bool,
    /// The active revision's size; `None` for a file without one that reads (not counted).
    size: Option<u64>,
}

impl ProtonDrive {
    /// The client at `program`, uploading below `root`, with its state in `session_dir`.
    pub fn new(program: PathBuf, root: String, session_dir: PathBuf) -> ProtonDrive {
        ProtonDrive {
            program,
            root: root.trim_end_matches('/').to_string(),
            session_dir,
            known: Mutex::new(HashSet::new()),
        }
    }

    /// Redacts the session's current values too, so that whatever the session holds never
    /// reaches a log, a status or a report, even if the client prints it; read again before each
    /// command, since the client refreshes its tokens as it runs.
    fn learn_secrets(&self) {
        process::also_redact(session_secrets(&self.session_dir.join(SESSION_FILE)));
    }

    /// The client's command, its environment set; the session's current values are learnt for
    /// redaction first, whatever the command.
    fn cmd(&self) -> Command {
        self.learn_secrets();
        let mut c = Command::new(&self.program);
        c.env("PROTON_DRIVE_CACHE_DIR", &self.session_dir)
            // The session as a file on the session volume (0600), not a desktop keychain:
            // `PROTON_DRIVE_CREDENTIALS_STORE` from v0.6, `PROTON_DRIVE_UNSAFE_SECRETS` before.
            .env("PROTON_DRIVE_CREDENTIALS_STORE", "unsafe_file")
            .env("PROTON_DRIVE_UNSAFE_SECRETS", "1")
            // Never a terminal's progress bars or questions on stdin.
            .env("NO_COLOR", "1");
        c
    }

    /// `root/rel`, or the root for an empty `rel`.
    fn path(&self, rel: &str) -> String {
        if rel.is_empty() {
            self.root.clone()
        } else {
            format!("{}/{rel}", self.root)
        }
    }

    /// Runs `proton-drive ARGS`; a failure is one line with the client's last words.
    fn run(&self, args: &[&str], timeout: Duration, what: &str) -> Result<Finished> {
        let mut c = self.cmd();
        c.args(args);
        let f = process::run(&mut c, None, timeout, what)?;
        match f.failure(what) {
            None => Ok(f),
            Some(why) => Err(Error::new(ErrorKind::Io, why)),
        }
    }

    /// The nodes of the folder at `path`, `None` when it does not exist.
    fn list_path(&self, path: &str, timeout: Duration) -> Result<Option<Vec<Node>>> {
        let what = "proton-drive filesystem list";
        let mut c = self.cmd();
        c.args(["filesystem", "list", "--json", path]);
        let f = process::run(&mut c, None, timeout, what)?;
        if !f.status.success() {
            if f.stderr.contains("Node not found") {
                return Ok(None);
            }
            let why = f.failure(what).unwrap_or_default();
            return Err(Error::new(ErrorKind::Io, why));
        }
        parse_listing(&f.stdout).map(Some).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("{what} {path} printed no listing cairn reads ({e}): has the client's output format changed?"),
            )
        })
    }

    /// Makes the folder `rel` below the root exist, and the root's own folders above it
    /// (the CLI's upload needs its parent to exist; `create-folder` makes one level).
    fn ensure_folder(&self, rel: &str, timeout: Duration) -> Result<()> {
        let target = self.path(rel);
        if self.known.lock().expect("poisoned").contains(&target) {
            return Ok(());
        }
        // `/my-files` (or another section root) exists; every level below it may not.
        let segments: Vec<&str> = target.trim_start_matches('/').split('/').collect();
        let mut parent = format!("/{}", segments[0]);
        for seg in &segments[1..] {
            let here = format!("{parent}/{seg}");
            if !self.known.lock().expect("poisoned").contains(&here) {
                let nodes = self.list_path(&parent, timeout)?.ok_or_else(|| {
                    Error::new(
                        ErrorKind::Io,
                        format!("{parent} is not on the remote (offsite.remote must start with an existing section such as /my-files)"),
                    )
                })?;
                match nodes.iter().find(|n| n.name == *seg) {
                    Some(n) if n.folder => {}
                    Some(_) => {
                        return Err(Error::new(
                            ErrorKind::Io,
                            format!("{here} is a file on the remote, not a folder"),
                        ));
                    }
                    None => {
                        self.run(
                            &["filesystem", "create-folder", "--json", &parent, seg],
                            timeout,
                            "proton-drive filesystem create-folder",
                        )?;
                    }
                }
                self.known.lock().expect("poisoned").insert(here.clone());
            }
            parent = here;
        }
        Ok(())
    }

    /// The client's version line (`Proton Drive CLI cli-drive@X.Y.Z+hash`), for statuses and
    /// the metric label that shows an outdated client before it fails.
    pub fn client_version(&self, timeout: Duration) -> Result<String> {
        let f = self.run(&["version"], timeout, "proton-drive version")?;
        let text = String::from_utf8_lossy(&f.stdout);
        let line = text.lines().next().unwrap_or("").trim();
        Ok(line
            .strip_prefix("Proton Drive CLI ")
            .unwrap_or(line)
            .to_string())
    }

    /// The one-time login: runs `proton-drive auth login`, prints the sign-in URL it gives (to
    /// open on any device: a pod has no browser), waits up to `timeout` for the sign-in, then
    /// makes sure only the session's owner may read it (0600, the directory 0700) and that it
    /// lists the remote. Returns the number of days already there.
    pub fn login(&self, timeout: Duration, out: &mut dyn std::io::Write) -> Result<usize> {
        use std::io::{BufRead, Read};
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&self.session_dir).map_err(|e| {
            Error::io(
                format!(
                    "creating the session directory {}",
                    self.session_dir.display()
                ),
                e,
            )
        })?;
        std::fs::set_permissions(&self.session_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("making {} private", self.session_dir.display()), e))?;
        let mut c = self.cmd();
        c.args(["auth", "login", "--json"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c
            .spawn()
            .map_err(|e| Error::config(format!("cannot start {}: {e}", self.program.display())))?;
        // Both pipes are read on threads of their own, so that neither can fill and stall the
        // client, and the deadline holds whatever it prints (or does not).
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("piped");
        let lines = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(std::result::Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut stderr = child.stderr.take().expect("piped");
        let errs = std::thread::spawn(move || {
            let mut tail = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 64 << 10 {
                    tail.drain(..tail.len() - (64 << 10));
                }
            }
            String::from_utf8_lossy(&tail).into_owned()
        });
        let deadline = std::time::Instant::now() + timeout;
        let mut shown = false;
        let status = loop {
            while let Ok(line) = rx.try_recv() {
                if let (Some(url), false) = (sign_in_url(&line), shown) {
                    shown = true;
                    let _ = writeln!(
                        out,
                        "Open this URL on any device (a laptop, a phone) and sign in to Proton; this waits up to {} minutes:\n{url}",
                        timeout.as_secs().div_ceil(60)
                    );
                    let _ = out.flush();
                }
            }
            if let Some(s) = child
                .try_wait()
                .map_err(|e| Error::io("waiting for proton-drive", e))?
            {
                break s;
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::new(
                    ErrorKind::Io,
                    format!(
                        "proton-drive auth login did not finish within {} s and was killed{}",
                        timeout.as_secs(),
                        if shown {
                            ""
                        } else {
                            " (it printed no sign-in URL)"
                        }
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let _ = lines.join();
        let err = errs.join().unwrap_or_default();
        if !status.success() {
            let last = process::last_words(&err);
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "proton-drive auth login failed ({status}): {}",
                    process::redact(last)
                ),
            ));
        }
        let session = self.session_dir.join(SESSION_FILE);
        secure_session(&session)?;
        // Listed with the new session (whose values the listing's command learns first).
        let days = self.days(Duration::from_secs(120))?;
        Ok(days.len())
    }
}

/// The sign-in URL a line of `proton-drive auth login` gives: from `{"signInUrl": …}`, or a
/// line of its own (older clients).
fn sign_in_url(line: &str) -> Option<String> {
    serde_json::from_str::<Value>(line.trim())
        .ok()
        .and_then(|v| {
            v.get("signInUrl")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .or_else(|| {
            line.split_whitespace()
                .find(|w| w.starts_with("https://"))
                .map(str::to_string)
        })
}

/// Makes the session file private to its owner (0600) and checks that it is this process's:
/// the session volume must not hand another user a Proton session.
fn secure_session(path: &Path) -> Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let m = std::fs::symlink_metadata(path).map_err(|e| {
        Error::io(
            format!(
                "the session file {} (the client wrote none: is the session stored elsewhere?)",
                path.display()
            ),
            e,
        )
    })?;
    if !m.is_file() {
        return Err(Error::new(
            ErrorKind::Io,
            format!("the session file {} is not a regular file", path.display()),
        ));
    }
    let me = rustix::process::geteuid().as_raw();
    if m.uid() != me {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "the session file {} belongs to uid {}, not to this process's uid {me}",
                path.display(),
                m.uid()
            ),
        ));
    }
    if m.mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(format!("making {} private", path.display()), e))?;
    }
    Ok(())
}

/// The string values of a session file (tokens, passphrases), for redaction; none if it does
/// not read.
fn session_secrets(path: &Path) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) if s.len() >= 8 => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            Value::Object(o) => o.values().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(bytes) = std::fs::read(path)
        && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
    {
        walk(&v, &mut out);
    }
    out
}

/// A value that may be wrapped as `{"ok": true, "value": X}` (the SDK's result type, which the
/// CLI prints for names and, up to v0.6, for the active revision): X, or `None` for `ok: false`.
fn unwrap_result(v: &Value) -> Option<&Value> {
    match v {
        Value::Object(o)
            if o.contains_key("ok") && (o.contains_key("value") || o.contains_key("error")) =>
        {
            if o.get("ok") == Some(&Value::Bool(true)) {
                o.get("value")
            } else {
                None
            }
        }
        Value::Null => None,
        other => Some(other),
    }
}

/// The nodes of `filesystem list --json` output. Nodes whose name does not decrypt, or whose
/// type is neither file nor folder, are left out (none is cairn's).
fn parse_listing(stdout: &[u8]) -> std::result::Result<Vec<Node>, String> {
    let v: Value = serde_json::from_slice(stdout).map_err(|e| e.to_string())?;
    let items = v.as_array().ok_or("not a JSON array")?;
    let mut out = Vec::new();
    for item in items {
        let Some(name) = item
            .get("name")
            .and_then(unwrap_result)
            .and_then(Value::as_str)
        else {
            continue;
        };
        let folder = match item.get("type").and_then(Value::as_str) {
            Some("folder") => true,
            Some("file") => false,
            _ => continue,
        };
        let size = if folder {
            None
        } else {
            item.get("activeRevision")
                .and_then(unwrap_result)
                .filter(|r| {
                    r.get("state")
                        .and_then(Value::as_str)
                        .is_none_or(|s| s == "active")
                })
                .and_then(|r| r.get("claimedSize"))
                .and_then(Value::as_u64)
        };
        out.push(Node {
            name: name.to_string(),
            folder,
            size,
        });
    }
    Ok(out)
}

/// The per-item results of `trash` and `delete` (`[{"uid", "ok", "error"}]`): the CLI exits 0
/// even when an item failed.
fn all_ok(f: &Finished, what: &str) -> Result<()> {
    let v: Value = serde_json::from_slice(&f.stdout).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("{what} printed no result cairn reads ({e})"),
        )
    })?;
    let items = v
        .as_array()
        .ok_or_else(|| Error::new(ErrorKind::Io, format!("{what} printed no list of results")))?;
    if items.is_empty()
        || items
            .iter()
            .any(|i| i.get("ok") != Some(&Value::Bool(true)))
    {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "{what} did not succeed for every item: {}",
                process::redact(&String::from_utf8_lossy(&f.stdout))
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
        ));
    }
    Ok(())
}

impl Uploader for ProtonDrive {
    fn describe(&self) -> String {
        format!("proton-drive {}", self.root)
    }

    fn needs_file(&self) -> bool {
        // The CLI uploads a local file under its own name.
        true
    }

    fn upload(&self, src: Source<'_>, _size: u64, dest: &str, timeout: Duration) -> Result<()> {
        let Source::File(file) = src else {
            return Err(Error::new(
                ErrorKind::Io,
                "proton-drive uploads files, not streams",
            ));
        };
        let (dir, name) = dest
            .split_once('/')
            .ok_or_else(|| Error::usage(format!("{dest:?} is not DATE/NAME")))?;
        if !is_day(dir) || file.file_name().and_then(|n| n.to_str()) != Some(name) {
            return Err(Error::usage(format!(
                "{} cannot be uploaded as {dest:?}: the client keeps the local name",
                file.display()
            )));
        }
        self.ensure_folder(dir, timeout)?;
        let what = "proton-drive filesystem upload";
        let parent = self.path(dir);
        let file_arg = file.to_string_lossy();
        // `-f replace`: a file of the name that is not whole (a failed earlier upload) or not
        // ours is replaced, never kept beside (v0.4–v0.7 and v0.8+ both know `replace`).
        let mut c = self.cmd();
        c.args([
            "filesystem",
            "upload",
            "--json",
            "--skip-thumbnails",
            "-f",
            "replace",
            &file_arg,
            &parent,
        ]);
        let f = process::run(&mut c, None, timeout, what)?;
        // The summary line says which item failed and why, where stderr says only how many.
        let summary = String::from_utf8_lossy(&f.stdout)
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Value>(l.trim()).ok());
        let failed = summary
            .as_ref()
            .and_then(|s| s.get("failedItems"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if f.status.success() && failed == 0 {
            let sent = summary
                .as_ref()
                .and_then(|s| s.get("transferredItems"))
                .and_then(Value::as_u64);
            if summary.is_none() || sent == Some(0) && failed == 0 {
                // Nothing uploaded and nothing failed: skipped, or output cairn does not read.
                // The listing after the upload decides; say it here.
                tracing::warn!(
                    dest,
                    "proton-drive reported no transfer for this file; the listing will tell"
                );
            }
            return Ok(());
        }
        let why = summary
            .as_ref()
            .and_then(|s| s.get("failures"))
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|x| x.get("error"))
            .and_then(Value::as_str)
            .map(|e| format!("{what} of {name} failed: {}", process::redact(e)))
            .or_else(|| f.failure(what))
            .unwrap_or_else(|| format!("{what} of {name} failed"));
        Err(Error::new(ErrorKind::Io, why))
    }

    fn list(&self, dir: &str, _want: &[Wanted<'_>], timeout: Duration) -> Result<Vec<RemoteFile>> {
        Ok(self
            .list_path(&self.path(dir), timeout)?
            .unwrap_or_default()
            .into_iter()
            .filter(|n| !n.folder)
            .filter_map(|n| {
                n.size.map(|size| RemoteFile {
                    name: n.name,
                    size,
                    sha256: None,
                })
            })
            .collect())
    }

    fn days(&self, timeout: Duration) -> Result<Vec<String>> {
        Ok(self
            .list_path(&self.root, timeout)?
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.folder && is_day(&n.name))
            .map(|n| n.name)
            .collect())
    }

    fn delete_day(&self, dir: &str, timeout: Duration) -> Result<()> {
        if !is_day(dir) {
            return Err(Error::usage(format!("{dir:?} is not a day folder")));
        }
        // Trash, then delete for good from the trash (the CLI deletes only trashed items).
        let f = self.run(
            &["filesystem", "trash", "--json", &self.path(dir)],
            timeout,
            "proton-drive filesystem trash",
        )?;
        all_ok(&f, "proton-drive filesystem trash")?;
        // The CLI deletes the first trashed item of the name it finds: only when cairn's day is
        // the one item of that name there does it delete, never a user's item named alike.
        let alike = self
            .list_path("/trash", timeout)?
            .unwrap_or_default()
            .iter()
            .filter(|n| n.name == dir)
            .count();
        if alike != 1 {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{dir} was moved to Proton Drive's trash, which holds {alike} items of that name: cairn deletes none of them for good (empty the trash by hand)"
                ),
            ));
        }
        let f = self.run(
            &["filesystem", "delete", "--json", &format!("/trash/{dir}")],
            timeout,
            "proton-drive filesystem delete",
        )?;
        all_ok(&f, "proton-drive filesystem delete")
    }

    fn client(&self, timeout: Duration) -> Option<String> {
        match self.client_version(timeout) {
            Ok(v) => Some(format!("proton-drive {v}")),
            Err(e) => {
                tracing::warn!(error = %e, "proton-drive did not say its version");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_listing_forms_read_and_drafts_or_odd_nodes_do_not_count() {
        let old = br#"[
{"uid":"v~1","name":{"ok":true,"value":"a.tar.zst"},"type":"file","activeRevision":{"ok":true,"value":{"state":"active","claimedSize":10}}},
{"uid":"v~2","name":{"ok":false,"error":{}},"type":"file","activeRevision":null},
{"uid":"v~3","name":{"ok":true,"value":"2026-12-07"},"type":"folder"}
]
"#;
        let new = br#"[
{"uid":"v~1","name":{"ok":true,"value":"a.tar.zst"},"type":"file","activeRevision":{"state":"active","claimedSize":10}},
{"uid":"v~4","name":{"ok":true,"value":"b"},"type":"file","activeRevision":{"state":"superseded","claimedSize":3}},
{"uid":"v~5","name":{"ok":true,"value":"x"},"type":"album"}
]
"#;
        let a = parse_listing(old).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!((a[0].name.as_str(), a[0].size), ("a.tar.zst", Some(10)));
        assert!(a[1].folder);
        let b = parse_listing(new).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].size, Some(10));
        assert_eq!(b[1].size, None, "a superseded revision is not the file");
        assert!(parse_listing(b"[\n\n]\n").unwrap().is_empty());
        assert!(parse_listing(b"Transfer summary:").is_err());
        assert!(parse_listing(b"{\"items\":[]}").is_err());
    }
}
