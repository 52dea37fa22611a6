//! `cairn preflight`: what a night needs, checked before it starts, one finding per check.
//!
//! A misconfigured night should fail in seconds with the reason named, not hours later or
//! silently: the share unreadable by the pod's uid, a bucket nobody made, a key that may not
//! write (or, for the nightly key, one that may delete), a clock the server disagrees with, a
//! full state volume, a Pushgateway nobody listens on, an offsite client without a session.
//! Each check is read-only apart from one fixed probe object per role and location
//! (`_preflight/<role>`, overwritten each time, so a key without delete leaves no litter) and a
//! temporary file in the state directory. The findings are data; the CLI prints and exits.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, StoreConfig, StoreKind};
use crate::error::ErrorKind;
use crate::store::Store;

/// Directories of each source folder listed, breadth first: enough to find a share whose files
/// belong to another user, bounded whatever its size.
pub const DIRS_PER_FOLDER: usize = 1000;
/// Regular files opened in each listed directory (the first by name).
pub const FILES_PER_DIR: usize = 8;
/// Files opened in each source folder in all.
pub const OPENS_PER_FOLDER: usize = 4000;
/// Names read of one directory: a directory of millions costs no more than this.
const MAX_LISTING: usize = 100_000;

/// Below this much free space on the state volume the night fails: the catalog cannot grow.
const STATE_FAIL_BYTES: u64 = 64 << 20;
/// Below this much free space (or 5% of the volume) it is a warning.
const STATE_WARN_BYTES: u64 = 1 << 30;
/// A clock this far from the server's is a warning (leases and markers use the server's clock,
/// but the day a run files under and the logs use this one).
const SKEW_WARN_SECS: i64 = 60;
/// This far off, S3 refuses signed requests (15 minutes) or soon will: a failure.
const SKEW_FAIL_SECS: i64 = 600;

/// Which job the checks are for: each needs other things, and a key that may delete is
/// expected for one and unwelcome for another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// `cairn run`: reads the share, writes the store, the exports and the state volume; its
    /// key should not be able to delete (the plan's least privilege).
    Nightly,
    /// `cairn exports prune` and `cairn prune`: needs a key that may delete.
    Retention,
    /// `cairn offsite sync`: reads the exports, writes its status there, needs the client.
    Offsite,
}

impl Role {
    /// The metrics stages a failed preflight publishes as failed: the ones the job would.
    pub fn stages(self) -> &'static [&'static str] {
        match self {
            Role::Nightly => &["backup", "export"],
            Role::Retention => &["retention"],
            Role::Offsite => &["offsite"],
        }
    }

    /// The name used in the probe object's key and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Role::Nightly => "nightly",
            Role::Retention => "retention",
            Role::Offsite => "offsite",
        }
    }
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Ok,
    /// The night can run, but something should be looked at.
    Warn,
    /// The night would fail (or do harm): fix this first.
    Fail,
}

/// One check's finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What was checked, e.g. `source notetaking` or `store delete`.
    pub check: String,
    /// How it came out.
    pub status: Status,
    /// One line: what was found and, for a warning or failure, what to do.
    pub detail: String,
}

fn finding(check: impl Into<String>, status: Status, detail: impl Into<String>) -> Finding {
    Finding {
        check: check.into(),
        status,
        detail: detail.into(),
    }
}

/// Runs every check `role` needs against `cfg`, in a fixed order; never stops early, so that one
/// run names everything that is wrong.
pub fn run(cfg: &Config, role: Role) -> Vec<Finding> {
    let mut out = Vec::new();
    if role == Role::Nightly {
        let who = Identity::current();
        let excludes = crate::backup::scan::Excludes::new(&cfg.source.exclude);
        for folder in &cfg.source.folders {
            let optional = cfg.source.optional_folders.contains(folder);
            let absent = std::fs::symlink_metadata(cfg.source.root.join(folder))
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
            if optional && absent {
                out.push(finding(
                    format!("source {folder}"),
                    Status::Ok,
                    "absent, and source.optional_folders allows it",
                ));
                continue;
            }
            out.push(match &excludes {
                Ok(ex) => source_folder(&cfg.source.root, folder, ex, &who),
                Err(e) => finding(format!("source {folder}"), Status::Fail, e.to_string()),
            });
        }
    }
    if role != Role::Offsite {
        out.push(state_dir(&cfg.state.dir));
    }
    let mut clock_from = None;
    let locations: &[(&StoreConfig, &str)] = match role {
        Role::Offsite => &[(&cfg.exports, "exports")],
        _ => &[(&cfg.store, "store"), (&cfg.exports, "exports")],
    };
    for (loc, section) in locations {
        let store = location(&mut out, loc, section, role);
        if clock_from.is_none() {
            clock_from = store;
        }
    }
    let first = locations[0].0;
    out.push(clock(first, clock_from.as_deref()));
    if let Some(url) = &cfg.metrics.pushgateway {
        let sink = cfg.metrics.sink();
        out.push(
            match crate::nightly::metrics::probe(url, sink.auth.as_ref()) {
                Ok(()) => finding("pushgateway", Status::Ok, format!("{url} is ready")),
                // A night without metrics still backs up; the alerts on the Pushgateway's own
                // `up` say it is down, and the failed push is a warning in the run's log.
                Err(e) => finding(
                    "pushgateway",
                    Status::Warn,
                    format!("{e}: tonight's metrics will not arrive (metrics.pushgateway)"),
                ),
            },
        );
    }
    if role == Role::Offsite {
        out.extend(offsite(cfg));
    }
    out
}

/// The uid, gid and supplementary groups a check of readability is made as.
struct Identity {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
}

impl Identity {
    fn current() -> Identity {
        // SAFETY: these calls only read the process's credentials.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let mut groups = vec![0 as libc::gid_t; 256];
        // SAFETY: the buffer holds 256 entries and its length is passed.
        let n = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
        groups.truncate(n.max(0) as usize);
        Identity { uid, gid, groups }
    }

    fn describe(&self) -> String {
        let groups: Vec<String> = self.groups.iter().map(u32::to_string).collect();
        format!(
            "uid {} (gid {}, groups {})",
            self.uid,
            self.gid,
            if groups.is_empty() {
                "none".to_string()
            } else {
                groups.join(",")
            }
        )
    }
}

/// A bounded breadth-first sample of `folder`, as the backup would read it: up to
/// [`DIRS_PER_FOLDER`] directories listed (every subdirectory of a listed one is queued, so a
/// top level of thousands of photos does not hide the folders below it), in each the first
/// [`FILES_PER_DIR`] regular files opened for reading (by name), at most [`OPENS_PER_FOLDER`] in
/// all. The first that cannot be is named with its owner and mode, or, when not even its
/// metadata can be read, the directory that may not be entered.
fn source_folder(
    root: &Path,
    folder: &str,
    excludes: &crate::backup::scan::Excludes,
    who: &Identity,
) -> Finding {
    let check = format!("source {folder}");
    let top = root.join(folder);
    match std::fs::symlink_metadata(&top) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return finding(
                check,
                Status::Fail,
                format!("{} is not a directory", top.display()),
            );
        }
        Err(e) => {
            return finding(
                check,
                Status::Fail,
                format!(
                    "{} cannot be read ({e}); source.folders names it",
                    top.display()
                ),
            );
        }
    }
    let owner = |path: &Path| {
        std::fs::symlink_metadata(path).ok().map(|m| {
            format!(
                "owner uid {} gid {}, mode {:04o}",
                m.uid(),
                m.gid(),
                m.mode() & 0o7777
            )
        })
    };
    let unreadable = |path: &Path, e: &std::io::Error| {
        let rel = |p: &Path| p.strip_prefix(root).unwrap_or(p).display().to_string();
        let detail = match (owner(path), path.parent()) {
            (Some(o), _) => format!(
                "{} is not readable by {} ({}): {o}",
                rel(path),
                who.describe(),
                e.kind()
            ),
            // Not even its metadata: the directory above may be listed but not entered.
            (None, Some(dir)) => format!(
                "{} may be listed but not entered by {} ({}): {}",
                rel(dir),
                who.describe(),
                e.kind(),
                owner(dir).unwrap_or_else(|| "its owner and mode cannot be read".into())
            ),
            (None, None) => format!("{} is not readable ({})", rel(path), e.kind()),
        };
        finding(
            check.clone(),
            Status::Fail,
            format!(
                "{detail}; run the pods as a user that can read the share (runAsUser) or add \
                 its group (supplementalGroups)"
            ),
        )
    };
    let mut queue = std::collections::VecDeque::from([top]);
    let (mut dirs, mut opened, mut queued) = (0usize, 0usize, 1usize);
    while let Some(dir) = queue.pop_front() {
        dirs += 1;
        // One directory's names, bounded: a directory of millions costs no more than this.
        let mut names: Vec<std::fs::DirEntry> = match std::fs::read_dir(&dir) {
            Ok(entries) => match entries.take(MAX_LISTING).collect::<std::io::Result<_>>() {
                Ok(v) => v,
                Err(e) => return unreadable(&dir, &e),
            },
            Err(e) => return unreadable(&dir, &e),
        };
        names.sort_by_key(|e| e.file_name());
        let mut files_here = 0usize;
        for entry in names {
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap_or(&path);
            if excludes.is_excluded(
                entry.file_name().as_encoded_bytes(),
                rel.as_os_str().as_encoded_bytes(),
            ) {
                continue;
            }
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if queued < DIRS_PER_FOLDER {
                    queued += 1;
                    queue.push_back(path);
                }
            } else if kind.is_file() && files_here < FILES_PER_DIR && opened < OPENS_PER_FOLDER {
                files_here += 1;
                opened += 1;
                // Non-blocking and without following links: opening must not hang or leave.
                let result = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(&path)
                    .and_then(|mut f| f.read(&mut [0u8; 1]));
                if let Err(e) = result {
                    return unreadable(&path, &e);
                }
            }
        }
    }
    finding(
        check,
        Status::Ok,
        format!(
            "{dirs} directories listed and {opened} files opened{}, all readable by {}",
            if queued >= DIRS_PER_FOLDER || opened >= OPENS_PER_FOLDER {
                " (a sample: the first, breadth first)"
            } else {
                ""
            },
            who.describe()
        ),
    )
}

/// The state directory: writable (a temporary file made and removed) and with room to grow.
fn state_dir(dir: &Path) -> Finding {
    let check = "state";
    // The first night's directory may not exist yet: the run makes it inside its parent.
    let existing: PathBuf = if dir.exists() {
        dir.to_path_buf()
    } else {
        match dir.parent() {
            Some(p) if p.is_dir() => p.to_path_buf(),
            _ => {
                return finding(
                    check,
                    Status::Fail,
                    format!(
                        "{} does not exist, nor its parent (state.dir)",
                        dir.display()
                    ),
                );
            }
        }
    };
    if let Err(e) = tempfile::tempfile_in(&existing) {
        return finding(
            check,
            Status::Fail,
            format!("{} is not writable ({e}) (state.dir)", existing.display()),
        );
    }
    let Some((free, total)) = free_space(&existing) else {
        return finding(
            check,
            Status::Warn,
            format!("{}: free space unknown", existing.display()),
        );
    };
    let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
    let text = format!(
        "{}: {} free of {}",
        existing.display(),
        gib(free),
        gib(total)
    );
    if free < STATE_FAIL_BYTES {
        finding(
            check,
            Status::Fail,
            format!("{text}: the catalog cannot grow; enlarge the state volume"),
        )
    } else if free < STATE_WARN_BYTES || free < total / 20 {
        finding(
            check,
            Status::Warn,
            format!("{text}: nearly full; enlarge the state volume"),
        )
    } else {
        finding(check, Status::Ok, text)
    }
}

fn free_space(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a valid C string and `st` is written by the call before it is read.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let block = st.f_frsize as u64;
    Some((st.f_bavail as u64 * block, st.f_blocks as u64 * block))
}

/// One location (`[store]` or `[exports]`): its bucket, the repository (for the store), and what
/// the key may do, by a fixed probe object. Returns the opened store for the clock check.
fn location(
    out: &mut Vec<Finding>,
    loc: &StoreConfig,
    section: &str,
    role: Role,
) -> Option<std::sync::Arc<dyn Store>> {
    let place = loc.server_name();
    match crate::config::ensure_bucket(loc, section, false) {
        Ok(Some(_)) => out.push(finding(
            format!("{section} bucket"),
            Status::Ok,
            format!("{place}: exists"),
        )),
        Ok(None) => {}
        Err(e) => {
            out.push(finding(
                format!("{section} bucket"),
                Status::Fail,
                e.to_string(),
            ));
            return None;
        }
    }
    let store = match crate::config::open_store(loc, section, section == "exports") {
        Ok(s) => s,
        Err(e) => {
            out.push(finding(
                format!("{section} access"),
                Status::Fail,
                e.to_string(),
            ));
            return None;
        }
    };
    if section == "store" {
        out.push(match crate::repo::Repository::open(store.clone()) {
            Ok(r) => finding(
                "store repository",
                Status::Ok,
                format!("repository {} in {place}", &r.config().id[..8]),
            ),
            Err(e) if e.kind() == ErrorKind::NotFound && role == Role::Nightly => finding(
                "store repository",
                Status::Ok,
                format!("none yet in {place}: `cairn init --exists-ok` makes it"),
            ),
            Err(e) => finding("store repository", Status::Fail, e.to_string()),
        });
    }
    // put, get, list: one object per role, overwritten each time (no litter without delete).
    let key = format!("_preflight/{}", role.name());
    let body = format!(
        "cairn preflight {} {}\n",
        role.name(),
        jiff::Timestamp::now()
    );
    let access = store
        .put(&key, body.as_bytes())
        .map_err(|e| ("put", e))
        .and_then(|()| store.get(&key).map_err(|e| ("get", e)))
        .and_then(|got| {
            if got == body.as_bytes() {
                Ok(())
            } else {
                Err((
                    "get",
                    crate::error::Error::corrupt(format!("{key} read back other bytes")),
                ))
            }
        })
        .and_then(|()| store.list("_preflight/").map_err(|e| ("list", e)))
        .and_then(|listed| {
            if listed.iter().any(|o| o.key == key) {
                Ok(())
            } else {
                Err((
                    "list",
                    crate::error::Error::not_found(format!("{key} was written but is not listed")),
                ))
            }
        });
    match access {
        Ok(()) => out.push(finding(
            format!("{section} access"),
            Status::Ok,
            format!("{place}: put, get and list work"),
        )),
        Err((what, e)) => {
            out.push(finding(
                format!("{section} access"),
                Status::Fail,
                format!("{place}: {what} failed: {e}"),
            ));
            return Some(store);
        }
    }
    // A directory has no key to hold rights: whoever may write it may delete.
    if loc.kind == StoreKind::S3 {
        out.push(delete_rights(store.as_ref(), section, &place, &key, role));
    }
    Some(store)
}

/// Whether the key may delete, by deleting the probe object (or, for the offsite role, a key
/// that does not exist): expected of retention, unwelcome in the nightly key.
fn delete_rights(store: &dyn Store, section: &str, place: &str, key: &str, role: Role) -> Finding {
    let check = format!("{section} delete");
    // As gc probes: any refusal but an absent object or a server in trouble means "may not".
    let may = match store.delete(key) {
        Ok(()) => true,
        Err(e) if e.kind() == ErrorKind::NotFound => true,
        Err(e) if matches!(e.kind(), ErrorKind::Transient | ErrorKind::Unavailable) => {
            return finding(check, Status::Fail, format!("{place}: delete failed: {e}"));
        }
        Err(_) => false,
    };
    match (role, may) {
        (Role::Retention, true) => {
            finding(check, Status::Ok, format!("{place}: the key may delete"))
        }
        (Role::Retention, false) => finding(
            check,
            Status::Fail,
            format!(
                "{place}: this key may not delete, and retention must: give it the retention \
                 policy (docs/OPERATIONS.md, Least-privilege keys)"
            ),
        ),
        (Role::Nightly, true) => finding(
            check,
            Status::Warn,
            format!(
                "{place}: the nightly key may delete: a compromised pod could destroy history; \
                 give it the policy without s3:DeleteObject (docs/OPERATIONS.md, Least-privilege keys)"
            ),
        ),
        (_, false) => finding(
            check,
            Status::Ok,
            format!("{place}: the key may not delete, as it need not"),
        ),
        // The offsite job uses the nightly key: the same least-privilege warning.
        (Role::Offsite, true) => finding(
            check,
            Status::Warn,
            format!(
                "{place}: the offsite job's key may delete: a compromised pod could destroy \
                 history; give it the policy without s3:DeleteObject (docs/OPERATIONS.md, \
                 Least-privilege keys)"
            ),
        ),
    }
}

/// This machine's clock against the server's `Date`. For an `http://` S3 endpoint the `Date`
/// of an unsigned request is read first: a server that refuses signed requests because the
/// clocks are too far apart (MinIO: 403 `RequestTimeTooSkewed`, no body on a HEAD) still says
/// its time, so the line names the clock rather than only the key.
fn clock(loc: &StoreConfig, store: Option<&dyn Store>) -> Finding {
    let unsigned = match (&loc.kind, &loc.endpoint) {
        (StoreKind::S3, Some(ep)) => server_date(ep),
        _ => None,
    };
    let server = match unsigned {
        Some(t) => Ok(Some(t)),
        None => match store {
            Some(st) => st.clock(),
            None => {
                return finding(
                    "clock",
                    Status::Warn,
                    "the server's time is unknown: it could not be reached",
                );
            }
        },
    };
    match server {
        Ok(Some(server)) => {
            let skew = jiff::Timestamp::now().as_second() - server.as_second();
            let text = format!("this machine's clock is {skew:+} s from the store's");
            if skew.abs() >= SKEW_FAIL_SECS {
                finding(
                    "clock",
                    Status::Fail,
                    format!("{text}: signed requests fail beyond 15 minutes; fix NTP on the node"),
                )
            } else if skew.abs() >= SKEW_WARN_SECS {
                finding(
                    "clock",
                    Status::Warn,
                    format!("{text}: fix NTP on the node"),
                )
            } else {
                finding("clock", Status::Ok, text)
            }
        }
        Ok(None) => finding(
            "clock",
            Status::Ok,
            "the store is this machine's (no server clock to compare)",
        ),
        Err(e) => finding(
            "clock",
            Status::Warn,
            format!("the server's time is unknown: {e}"),
        ),
    }
}

/// The `Date` header of an unsigned `HEAD /` to an `http://host[:port]` endpoint, if it answers
/// within a few seconds with one that parses.
fn server_date(endpoint: &str) -> Option<jiff::Timestamp> {
    use std::io::Write;
    use std::net::{TcpStream, ToSocketAddrs};
    let rest = endpoint.strip_prefix("http://")?;
    let hostport = rest.split('/').next()?;
    if hostport.is_empty() || hostport.contains('@') {
        return None;
    }
    let addr = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let timeout = std::time::Duration::from_secs(5);
    let sock = addr.to_socket_addrs().ok()?.next()?;
    let mut s = TcpStream::connect_timeout(&sock, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    s.set_write_timeout(Some(timeout)).ok()?;
    s.write_all(
        format!("HEAD / HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    let mut head = Vec::new();
    let _ = s.take(16 * 1024).read_to_end(&mut head);
    let text = String::from_utf8_lossy(&head);
    let date = text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("date")
            .then(|| value.trim().to_string())
    })?;
    jiff::fmt::rfc2822::parse(&date).ok().map(|z| z.timestamp())
}

/// The offsite client: configured, runnable, and with a session that can list the remote.
fn offsite(cfg: &Config) -> Vec<Finding> {
    let o = &cfg.offsite;
    let up = match o.uploader() {
        Ok(u) => u,
        Err(e) => return vec![finding("offsite client", Status::Fail, e.to_string())],
    };
    let mut out = Vec::new();
    let scratch = o.scratch_dir.as_path();
    let probe = std::fs::create_dir_all(scratch).and_then(|()| tempfile::tempfile_in(scratch));
    out.push(match probe {
        Ok(_) => finding(
            "offsite scratch",
            Status::Ok,
            format!("{} is writable", scratch.display()),
        ),
        Err(e) => finding(
            "offsite scratch",
            Status::Fail,
            format!(
                "{} is not writable ({e}) (offsite.scratch_dir)",
                scratch.display()
            ),
        ),
    });
    let timeout = std::time::Duration::from_secs(o.timeout_secs.min(120));
    out.push(match up.days(timeout) {
        Ok(days) => finding(
            "offsite session",
            Status::Ok,
            format!("{}: listed, {} days there", up.describe(), days.len()),
        ),
        Err(e) => finding(
            "offsite session",
            Status::Fail,
            crate::offsite::process::redact(&format!(
                "{}: cannot list the remote: {e}",
                up.describe()
            )),
        ),
    });
    out
}

/// Whether the findings let the night run: no failure.
pub fn passed(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.status != Status::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let ex = crate::backup::scan::Excludes::new(&[]).unwrap();
        let f = source_folder(dir.path(), "notetaking", &ex, &Identity::current());
        assert_eq!(f.status, Status::Fail);
        assert!(f.detail.contains("notetaking"), "{}", f.detail);
    }

    /// A top level of many files does not hide the folders below it, and the work is bounded.
    #[test]
    fn the_sample_reaches_below_a_crowded_top_level_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("images");
        std::fs::create_dir(&top).unwrap();
        for i in 0..2100 {
            std::fs::write(top.join(format!("{i:05}")), b"x").unwrap();
        }
        std::fs::create_dir(top.join("zz")).unwrap();
        std::fs::write(top.join("zz/notes.md"), b"x").unwrap();
        let ex = crate::backup::scan::Excludes::new(&[]).unwrap();
        let f = source_folder(dir.path(), "images", &ex, &Identity::current());
        assert_eq!(f.status, Status::Ok, "{}", f.detail);
        assert!(
            f.detail
                .starts_with("2 directories listed and 9 files opened"),
            "{}",
            f.detail
        );
    }

    #[test]
    fn a_state_directory_that_cannot_be_made_fails() {
        let f = state_dir(Path::new("/nonexistent-cairn/state"));
        assert_eq!(f.status, Status::Fail);
    }
}
