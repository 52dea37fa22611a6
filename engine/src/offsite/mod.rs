//! The offsite stage: the daily archives, copied best-effort to a second place (Proton Drive in
//! production) through whichever client the image carries.
//!
//! It reads only the exports location and writes there only its status objects, its report and
//! its lease; the first copy is never touched. For each complete day, newest first, whose copy is
//! not on the remote as it should be, it uploads the archive, then the `.sha256`, then the
//! manifest (last, as in the exports), then lists the day on the remote and checks names, sizes
//! and any hash the remote gives; only then is the day `uploaded`. A per-archive timeout kills a
//! hung client, a per-run budget stops starting new days, and failures are retried with a wait.
//! A client that cannot be started is a configuration error that stops the sync.
//!
//! The lease is confirmed before every status written and every remote day deleted: a sync that
//! lost it stops there (exit 4).
//!
//! Nothing is deleted on the remote unless `keep_daily` asks for it, and then only from what the
//! remote itself holds: a remote day goes once `keep_daily` newer days are complete and checked
//! there, never on a night a day failed. The exports may have lost days (pruned, a replaced
//! volume) on exactly the night the second copy is needed.

pub mod failure;
pub mod process;
pub mod proton;
pub mod status;
pub mod uploader;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::{Duration, Instant};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, ErrorKind, Result};
use crate::export::{DayKeys, list_days};
use crate::store::{ObjectReader, Store};
use failure::Failure;
use status::{Check, DayOffsite, State};
use uploader::{Source, Uploader, Wanted};

/// How a sync runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// The run's day: its report goes to `_reports/DATE/offsite.json`.
    pub date: String,
    /// The longest one upload (or listing) may take before its client is killed.
    pub timeout: Duration,
    /// No new day is started after this long.
    pub budget: Duration,
    /// Attempts per day, the first included.
    pub attempts: u32,
    /// The first wait before another attempt, doubled each time.
    pub retry_wait: Duration,
    /// Keep this many newest complete, checked days on the remote and delete older ones; 0
    /// deletes nothing.
    pub keep_daily: usize,
    /// Where a stream is copied for a client that needs a file (removed after each upload).
    pub scratch: std::path::PathBuf,
}

/// What one sync did: `_reports/DATE/offsite.json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncReport {
    /// 1.
    pub version: u32,
    /// The run's day.
    pub date: String,
    /// The remote.
    pub remote: String,
    /// Start and end (RFC 3339).
    pub started: String,
    pub finished: String,
    /// Days uploaded and checked by this run.
    pub uploaded: Vec<String>,
    /// Days already on the remote as they should be.
    pub up_to_date: Vec<String>,
    /// Days that failed, with the reason.
    pub failed: Vec<DayFailure>,
    /// Days not tried: the run's budget was spent, the day was being written, or the lease was
    /// lost.
    pub pending: Vec<String>,
    /// Remote days deleted by `keep_daily`.
    pub deleted_remote: Vec<String>,
    /// What the sync passed over without failing a day (one line each, secrets redacted): a
    /// remote day it could not check or delete, a day whose `.sha256` could not be read for its
    /// check, retention skipped after a failure, the lease lost.
    pub warnings: Vec<String>,
    /// Bytes uploaded.
    pub bytes: u64,
    /// The client and its version, as it says them (absent where it does not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Bytes of the days the remote holds as uploaded and checked (their three files, as the
    /// statuses record them): what the copy costs the remote's quota.
    pub remote_bytes: u64,
    /// How many days failed for each kind of failure (only kinds that occurred).
    pub failures: BTreeMap<String, u64>,
    /// The process's exit code: 0; 5 when some day failed or is left pending; 4 when the lease
    /// was lost midway.
    pub exit_code: u8,
}

/// A day that did not reach the remote.
#[derive(Debug, Clone, Serialize)]
pub struct DayFailure {
    /// The day.
    pub date: String,
    /// Why (one line, secrets redacted).
    pub reason: String,
    /// What kind of failure the reason shows.
    pub kind: Failure,
    /// What to do about it.
    pub fix: String,
}

/// The SHA-256 a day's `.sha256` object names, checked to be 64 hex digits.
fn expected_sha256(exports: &dyn Store, keys: &DayKeys) -> Result<(String, Vec<u8>)> {
    let bytes = exports.get(&keys.sha256)?;
    let hex = String::from_utf8_lossy(&bytes)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::corrupt(format!("{} holds no SHA-256", keys.sha256)));
    }
    Ok((hex, bytes))
}

/// Reads through, hashing what passes.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    len: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

fn sha256_hex(data: &[u8]) -> String {
    crate::id::hex(&Sha256::digest(data))
}

/// One file of a day to put on the remote.
struct Part<'a> {
    name: String,
    /// The key in the exports location.
    key: &'a str,
    size: u64,
    /// Known ahead for the archive (its `.sha256`) and the `.sha256` itself; the manifest,
    /// which grows with the number of files, is streamed and hashed only if the remote lists a
    /// hash to compare with.
    sha256: Option<String>,
    /// The `.sha256` object, held in memory (under 1 KiB).
    bytes: Option<Vec<u8>>,
}

/// The three files of a day as they should be on the remote: name, key, size.
fn parts_of<'a>(exports: &dyn Store, keys: &'a DayKeys) -> Result<Vec<Part<'a>>> {
    let (sha, sha_bytes) = expected_sha256(exports, keys)?;
    let listed = exports.list(&format!("{}/", keys.date))?;
    let size_of = |k: &str| {
        listed
            .iter()
            .find(|o| o.key == k)
            .map(|o| o.size)
            .ok_or_else(|| Error::not_found(format!("{k} is not in the exports")))
    };
    let name_of = |k: &str| k.rsplit('/').next().expect("DATE/NAME").to_string();
    Ok(vec![
        Part {
            name: name_of(&keys.archive),
            key: &keys.archive,
            size: size_of(&keys.archive)?,
            sha256: Some(sha),
            bytes: None,
        },
        Part {
            name: name_of(&keys.sha256),
            key: &keys.sha256,
            size: sha_bytes.len() as u64,
            sha256: Some(sha256_hex(&sha_bytes)),
            bytes: Some(sha_bytes),
        },
        Part {
            name: name_of(&keys.manifest),
            key: &keys.manifest,
            size: size_of(&keys.manifest)?,
            sha256: None,
            bytes: None,
        },
    ])
}

/// Whether the remote's listing of a day holds each part under its exact name and size (other
/// names, a client's temporary files among them, do not count), and the same SHA-256 where the
/// remote gives one; `Ok` says whether every file's hash was compared or sizes only. `Err` says
/// what differs.
fn check_listed(
    exports: &dyn Store,
    date: &str,
    parts: &[Part<'_>],
    listed: &[uploader::RemoteFile],
) -> Result<Check> {
    let mut check = Check::Sha256;
    for p in parts {
        let Some(r) = listed.iter().find(|r| r.name == p.name) else {
            return Err(Error::new(
                ErrorKind::Io,
                format!("{date}/{} is not on the remote", p.name),
            ));
        };
        if r.size != p.size {
            return Err(Error::new(
                ErrorKind::Io,
                format!(
                    "{date}/{} is {} bytes on the remote, {} in the exports",
                    p.name, r.size, p.size
                ),
            ));
        }
        if r.sha256.is_none() {
            check = Check::Size;
        }
        if let Some(h) = &r.sha256 {
            let ours = match &p.sha256 {
                Some(s) => s.clone(),
                None => {
                    let mut h = Hashing {
                        inner: ObjectReader::open(exports, p.key)?,
                        hash: Sha256::new(),
                        len: 0,
                    };
                    std::io::copy(&mut h, &mut std::io::sink())
                        .map_err(|e| Error::io(format!("reading {}", p.key), e))?;
                    crate::id::hex(&h.hash.finalize())
                }
            };
            if *h != ours {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("{date}/{} has another SHA-256 on the remote", p.name),
                ));
            }
        }
    }
    Ok(check)
}

/// Copies the archive of `keys` and its two companions to the remote, then checks them there.
fn upload_day(
    exports: &dyn Store,
    up: &dyn Uploader,
    date: &str,
    parts: &[Part<'_>],
    opts: &SyncOptions,
    scratch: &std::path::Path,
) -> Result<(u64, Check)> {
    let mut sent = 0;
    for p in parts {
        let dest = format!("{date}/{}", p.name);
        put(exports, up, p, &dest, opts, scratch)?;
        sent += p.size;
    }
    let listed = up.list(date, &wanted(parts), opts.timeout)?;
    let check = check_listed(exports, date, parts, &listed)?;
    Ok((sent, check))
}

/// The same failure again, for a second use of one result (its message and kind).
fn again(e: &Error) -> Error {
    Error::new(e.kind(), e.to_string())
}

/// Puts one file. rclone gets the exports' own file when there is one (it reads it and checks a
/// hash after the copy); otherwise the bytes are streamed from the exports — through a scratch
/// copy for a client that needs a file, so that no client ever gets a path into the first copy —
/// with their SHA-256 checked on the way where it is known.
fn put(
    exports: &dyn Store,
    up: &dyn Uploader,
    p: &Part<'_>,
    dest: &str,
    opts: &SyncOptions,
    scratch: &std::path::Path,
) -> Result<()> {
    if !up.needs_file() {
        if let Some(bytes) = &p.bytes {
            let mut r: &[u8] = bytes;
            return up.upload(Source::Stream(&mut r), p.size, dest, opts.timeout);
        }
        if let Some(path) = exports.local_file(p.key) {
            return up.upload(Source::File(&path), p.size, dest, opts.timeout);
        }
    }
    let reader: Box<dyn Read + '_> = match &p.bytes {
        Some(b) => Box::new(&b[..]),
        None => Box::new(ObjectReader::open(exports, p.key)?),
    };
    let mut hashing = Hashing {
        inner: reader,
        hash: Sha256::new(),
        len: 0,
    };
    if !up.needs_file() {
        up.upload(Source::Stream(&mut hashing), p.size, dest, opts.timeout)?;
        return check_stream(&hashing, p);
    }
    let tmp = scratch.join(&p.name);
    let copied = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| std::io::copy(&mut hashing, &mut f).and_then(|_| f.sync_all()))
        .map_err(|e| Error::io(format!("copying {} to {}", p.key, tmp.display()), e));
    let result = copied.and_then(|()| {
        check_stream(&hashing, p)?;
        up.upload(Source::File(&tmp), p.size, dest, opts.timeout)
    });
    let _ = std::fs::remove_file(&tmp);
    result
}

/// The bytes read from the exports were the file its `.sha256` names.
fn check_stream<R>(h: &Hashing<R>, p: &Part<'_>) -> Result<()> {
    let got = crate::id::hex(&h.hash.clone().finalize());
    if h.len != p.size || p.sha256.as_ref().is_some_and(|s| *s != got) {
        return Err(Error::corrupt(format!(
            "{} in the exports does not match its SHA-256 (cairn exports verify names the damage)",
            p.key
        )));
    }
    Ok(())
}

/// A private scratch directory for this run (0700, under `offsite.scratch_dir`), removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(base: &std::path::Path) -> Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::create_dir_all(base)
            .map_err(|e| Error::io(format!("creating {}", base.display()), e))?;
        let dir = base.join(format!(
            "run-{}-{}",
            std::process::id(),
            crate::id::random_hex(6)?
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Copies every complete day not yet on the remote, newest first. Holds the offsite lease in
/// the exports location (a second sync exits 4). Writes each day's status and the run's report.
pub fn sync(exports: &dyn Store, up: &dyn Uploader, opts: &SyncOptions) -> Result<SyncReport> {
    let lease = crate::repo::lease::acquire(
        exports,
        status::LEASES,
        "offsite sync",
        crate::export::DAY_LEASE_TTL,
        None,
    )?;
    let report = lease.hold(|| -> Result<SyncReport> {
        let report = sync_leased(exports, up, opts, &|| lease.confirm())?;
        let key = format!("_reports/{}/offsite.json", opts.date);
        exports.put(
            &key,
            &serde_json::to_vec_pretty(&report).expect("serializes"),
        )?;
        Ok(report)
    })?;
    lease.release();
    Ok(report)
}

/// Whether the sync still holds its lease, confirmed right before a status is written or a
/// remote day deleted: a sync that lost it (stalled past its TTL, taken over) must neither
/// overwrite what the sync that took over writes nor delete what that one counts on. The first
/// failure is kept in `lost` (one line, redacted) and every later call says no.
fn held(confirm: &dyn Fn() -> Result<()>, lost: &mut Option<String>) -> bool {
    if lost.is_some() {
        return false;
    }
    match confirm() {
        Ok(()) => true,
        Err(e) => {
            *lost = Some(process::redact(&e.to_string()));
            false
        }
    }
}

/// The report's line for a lease lost before `what`.
fn lost_line(why: &str, what: &str) -> String {
    format!("the offsite lease was lost ({why}): stopped before {what}")
}

/// The files of a day as a listing asks for them.
fn wanted<'p>(parts: &'p [Part<'_>]) -> Vec<Wanted<'p>> {
    parts
        .iter()
        .map(|p| Wanted {
            name: &p.name,
            size: Some(p.size),
        })
        .collect()
}

fn sync_leased(
    exports: &dyn Store,
    up: &dyn Uploader,
    opts: &SyncOptions,
    confirm: &dyn Fn() -> Result<()>,
) -> Result<SyncReport> {
    let began = Instant::now();
    let mut report = SyncReport {
        version: 1,
        date: opts.date.clone(),
        remote: up.describe(),
        started: jiff::Timestamp::now().to_string(),
        client: up.client(opts.timeout.min(Duration::from_secs(60))),
        ..SyncReport::default()
    };
    let mut statuses = status::load_all(exports)?;
    let mut days: Vec<_> = list_days(exports)?
        .into_iter()
        .filter(|d| d.complete && d.archive_size.is_some())
        .collect();
    days.reverse();
    // With `keep_daily`, only the newest days are copied (older ones would be deleted again).
    if opts.keep_daily > 0 {
        days.truncate(opts.keep_daily);
    }
    // A day being written or pruned right now (its day lease is live) is left for the next run.
    let busy = crate::export::retention::days_in_use(exports)?;
    let scratch = Scratch::new(&opts.scratch)?;
    let mut lost: Option<String> = None;
    // Writes a day's status if the lease still holds; `Ok(false)`: it does not, nothing written.
    let mut save = |st: DayOffsite,
                    statuses: &mut BTreeMap<String, DayOffsite>,
                    report: &mut SyncReport|
     -> Result<bool> {
        if !held(confirm, &mut lost) {
            let why = lost.as_deref().unwrap_or_default();
            let line = lost_line(why, &format!("writing the status of {}", st.date));
            tracing::warn!("{line}");
            report.warnings.push(line);
            return Ok(false);
        }
        status::save(exports, &st)?;
        statuses.insert(st.date.clone(), st);
        Ok(true)
    };
    for (i, day) in days.iter().enumerate() {
        // Once the lease is lost nothing more is written: the days not done are left.
        let stop = |report: &mut SyncReport| {
            for d in &days[i..] {
                if !report.uploaded.contains(&d.date) && !report.up_to_date.contains(&d.date) {
                    report.pending.push(d.date.clone());
                }
            }
        };
        if busy.contains(&day.date) {
            report.pending.push(day.date.clone());
            continue;
        }
        let keys = DayKeys::new(&day.date)?;
        let size = day.archive_size.expect("filtered");
        let prior = statuses.get(&day.date).cloned();
        // The day's three files as the exports hold them (one read of its `.sha256`, one
        // listing), for the check of an uploaded day and for every attempt of an upload.
        let mut parts = parts_of(exports, &keys);
        // A day marked uploaded is checked against the remote's listing (one call): each file
        // under its name with the exports' size, and the archive the same as when it went.
        if let Some(s) = &prior
            && s.state == State::Uploaded
        {
            let checked = match &parts {
                // The exports could not be read just now: that says nothing about the day or its
                // copy, so the day stays as it is and is checked again next run.
                Err(e) if matches!(e.kind(), ErrorKind::Transient | ErrorKind::Io) => {
                    let line = process::redact(&format!(
                        "could not check {} (it is checked again next run): {e}",
                        day.date
                    ));
                    tracing::warn!(date = %day.date, warning = %line, "offsite");
                    report.warnings.push(line);
                    continue;
                }
                Err(e) => Err(again(e)),
                Ok(p)
                    if p[0].sha256.as_ref() != Some(&s.archive_sha256)
                        || s.archive_size != size =>
                {
                    Err(Error::new(
                        ErrorKind::Io,
                        "the day was exported again since its upload",
                    ))
                }
                Ok(p) => match up.list(&day.date, &wanted(p), opts.timeout) {
                    Ok(listed) => check_listed(exports, &day.date, p, &listed),
                    // The client could not list (no session, the service refusing it): that says
                    // nothing about the copy there, so the day stays as it is and is checked
                    // again next run; a client that cannot start still stops the sync.
                    Err(e) if e.kind() != ErrorKind::Config => {
                        let line = process::redact(&format!(
                            "could not check {} on the remote (it stays {}, checked again next run): {e}",
                            day.date,
                            s.state.as_str()
                        ));
                        tracing::warn!(date = %day.date, warning = %line, "offsite");
                        let kind = Failure::of(&process::redact(&e.to_string()));
                        report.warnings.push(line);
                        // No session, a client the service refuses: the sync fails (exit 5, the
                        // kind counted for the alert) and starts no further day.
                        if kind.needs_person() {
                            *report
                                .failures
                                .entry(kind.as_str().to_string())
                                .or_default() += 1;
                            let rest = days[i + 1..].iter().map(|d| d.date.clone()).collect();
                            stop_after(&mut report, kind, rest);
                            break;
                        }
                        continue;
                    }
                    Err(e) => Err(e),
                },
            };
            match checked {
                Ok(check) => {
                    report.up_to_date.push(day.date.clone());
                    let p = parts.as_ref().expect("checked");
                    let sizes = (Some(p[1].size), Some(p[2].size));
                    // Sizes of statuses written before they were recorded are filled in.
                    if s.checked != Some(check) || (s.sha256_file_size, s.manifest_size) != sizes {
                        let mut st = s.clone();
                        st.checked = Some(check);
                        (st.sha256_file_size, st.manifest_size) = sizes;
                        st.updated = jiff::Timestamp::now().to_string();
                        if !save(st, &mut statuses, &mut report)? {
                            stop(&mut report);
                            break;
                        }
                    }
                    continue;
                }
                // A client that cannot be started stops the sync (exit 2), marking nothing.
                Err(e) if e.kind() == ErrorKind::Config => return Err(e),
                Err(e) => {
                    let reason = process::redact(&e.to_string());
                    tracing::warn!(date = %day.date, %reason, "the remote copy is not as uploaded; uploading it again");
                    let mut st = s.clone();
                    st.state = State::Pending;
                    st.failure = Some(Failure::of(&reason));
                    st.reason = Some(reason);
                    st.updated = jiff::Timestamp::now().to_string();
                    if !save(st, &mut statuses, &mut report)? {
                        stop(&mut report);
                        break;
                    }
                }
            }
        }
        if began.elapsed() >= opts.budget {
            report.pending.push(day.date.clone());
            continue;
        }
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            // The exports are read again only after reading them failed.
            if parts.is_err() {
                parts = parts_of(exports, &keys);
            }
            let tried = match &parts {
                Ok(p) => upload_day(exports, up, &day.date, p, opts, &scratch.0),
                Err(e) => Err(again(e)),
            };
            match tried {
                Ok(done) => break Ok(done),
                Err(e) if e.kind() == ErrorKind::Config => return Err(e),
                // Only what may pass is tried again: damaged exports are not.
                Err(e)
                    if matches!(e.kind(), ErrorKind::Transient | ErrorKind::Io)
                        && attempt < opts.attempts
                        && began.elapsed() < opts.budget =>
                {
                    let wait = opts
                        .retry_wait
                        .saturating_mul(1 << (attempt - 1).min(10))
                        .min(opts.budget.saturating_sub(began.elapsed()));
                    let error = process::redact(&e.to_string());
                    tracing::warn!(date = %day.date, attempt, %error, wait_secs = wait.as_secs(), "offsite upload failed; trying again");
                    std::thread::sleep(wait);
                }
                Err(e) => break Err(e),
            }
        };
        // As read by the attempt that ended the loop (an upload needs them read).
        let sha = parts
            .as_ref()
            .ok()
            .and_then(|p| p[0].sha256.clone())
            .unwrap_or_default();
        let sizes = parts
            .as_ref()
            .map_or((None, None), |p| (Some(p[1].size), Some(p[2].size)));
        let now = jiff::Timestamp::now().to_string();
        let st = match outcome {
            Ok((sent, check)) => {
                report.bytes += sent;
                report.uploaded.push(day.date.clone());
                tracing::info!(date = %day.date, bytes = sent, "archive copied offsite and checked");
                DayOffsite {
                    version: 1,
                    date: day.date.clone(),
                    state: State::Uploaded,
                    remote: up.describe(),
                    archive_size: size,
                    archive_sha256: sha,
                    sha256_file_size: sizes.0,
                    manifest_size: sizes.1,
                    attempts: 0,
                    uploaded: Some(now.clone()),
                    checked: Some(check),
                    reason: None,
                    failure: None,
                    client: report.client.clone(),
                    updated: now,
                }
            }
            Err(e) => {
                let reason = process::redact(&e.to_string());
                let kind = Failure::of(&reason);
                tracing::error!(date = %day.date, error = %reason, kind = kind.as_str(), fix = kind.fix(), "offsite copy failed");
                report.failed.push(DayFailure {
                    date: day.date.clone(),
                    reason: reason.clone(),
                    kind,
                    fix: kind.fix().to_string(),
                });
                *report
                    .failures
                    .entry(kind.as_str().to_string())
                    .or_default() += 1;
                DayOffsite {
                    version: 1,
                    date: day.date.clone(),
                    state: State::Failed,
                    remote: up.describe(),
                    archive_size: size,
                    archive_sha256: sha,
                    sha256_file_size: None,
                    manifest_size: None,
                    attempts: prior.map_or(0, |p| p.attempts) + attempt,
                    uploaded: None,
                    checked: None,
                    reason: Some(reason),
                    failure: Some(kind),
                    client: report.client.clone(),
                    updated: now,
                }
            }
        };
        let failed_for = if st.state == State::Failed {
            st.failure
        } else {
            None
        };
        if !save(st, &mut statuses, &mut report)? {
            stop(&mut report);
            break;
        }
        // A failure of the client or the account, not of this day: every further day would
        // meet it too, so they wait for the next run instead of spending the budget.
        if let Some(kind) = failed_for.filter(|k| k.needs_person()) {
            let rest = days[i + 1..]
                .iter()
                .map(|d| d.date.clone())
                .filter(|d| !report.uploaded.contains(d) && !report.up_to_date.contains(d))
                .collect();
            stop_after(&mut report, kind, rest);
            break;
        }
    }
    if opts.keep_daily > 0 && lost.is_none() {
        prune_remote(
            exports,
            up,
            opts,
            &mut report,
            &mut statuses,
            confirm,
            &mut lost,
        )?;
    }
    report.remote_bytes = remote_bytes(&statuses);
    report.finished = jiff::Timestamp::now().to_string();
    report.exit_code = if lost.is_some() {
        crate::error::exit::LOCKED
    } else if report.failed.is_empty() && report.pending.is_empty() && report.failures.is_empty() {
        crate::error::exit::OK
    } else {
        crate::error::exit::OFFSITE_INCOMPLETE
    };
    Ok(report)
}

/// A failure only a person can fix (no session, a client too old, no space): the days not done
/// are left `pending` for the next run, with one warning line saying why.
fn stop_after(report: &mut SyncReport, kind: Failure, rest: Vec<String>) {
    if !rest.is_empty() {
        report.warnings.push(format!(
            "stopped after a {} failure: {} left for the next run ({})",
            kind.as_str(),
            rest.len(),
            kind.fix()
        ));
        report.pending.extend(rest);
    }
}

/// Bytes of the days `statuses` record as uploaded and checked: the archive and its two
/// companions each.
pub fn remote_bytes(statuses: &BTreeMap<String, DayOffsite>) -> u64 {
    statuses
        .values()
        .filter(|s| s.state == State::Uploaded)
        .map(|s| s.archive_size + s.sha256_file_size.unwrap_or(0) + s.manifest_size.unwrap_or(0))
        .sum()
}

/// Whether the remote's copy of `date` is complete and checked, from the remote alone: its three
/// files there with the sizes the day's status recorded when it was uploaded and checked (and the
/// archive's SHA-256, where the remote gives one). A status written before the companions' sizes
/// were recorded has only the archive's: the other two must then merely not be empty. A day
/// without such a status (a replaced exports volume lost them) is not counted: it cannot be told
/// from a partial copy.
fn complete_on_remote(
    up: &dyn Uploader,
    date: &str,
    status: Option<&DayOffsite>,
    timeout: Duration,
) -> Result<bool> {
    let Some(st) = status.filter(|s| s.state == State::Uploaded) else {
        return Ok(false);
    };
    let keys = DayKeys::new(date)?;
    let name = |key: &str| key.rsplit('/').next().expect("DATE/NAME").to_string();
    let files = [
        (name(&keys.archive), Some(st.archive_size)),
        (name(&keys.sha256), st.sha256_file_size),
        (name(&keys.manifest), st.manifest_size),
    ];
    let want: Vec<Wanted<'_>> = files
        .iter()
        .map(|(name, size)| Wanted { name, size: *size })
        .collect();
    let listed = up.list(date, &want, timeout)?;
    let find = |name: &str| listed.iter().find(|f| f.name == name);
    let archive_ok = find(&files[0].0).is_some_and(|f| {
        f.size == st.archive_size && f.sha256.as_ref().is_none_or(|h| *h == st.archive_sha256)
    });
    let others_ok = files[1..]
        .iter()
        .all(|(name, size)| find(name).is_some_and(|f| size.map_or(f.size > 0, |s| f.size == s)));
    Ok(archive_ok && others_ok)
}

/// `offsite.keep_daily` on the remote: finds, newest first, the `keep_daily` newest days that
/// are complete and checked there (checked by this sync, or by [`complete_on_remote`]), and
/// deletes the remote days older than the last of them. Fewer such days, or a day failed
/// tonight: nothing is deleted. A remote day that cannot be listed or deleted is a warning; a
/// client that cannot be started stops the sync. The lease is confirmed before each deletion
/// and each status written after one: once it is lost (kept in `lost`), nothing more is done.
fn prune_remote(
    exports: &dyn Store,
    up: &dyn Uploader,
    opts: &SyncOptions,
    report: &mut SyncReport,
    statuses: &mut BTreeMap<String, DayOffsite>,
    confirm: &dyn Fn() -> Result<()>,
    lost: &mut Option<String>,
) -> Result<()> {
    fn warn(report: &mut SyncReport, e: &Error, what: String) -> Result<()> {
        if e.kind() == ErrorKind::Config {
            return Err(again(e));
        }
        let line = process::redact(&format!("{what}: {e}"));
        tracing::warn!(warning = %line, "offsite.keep_daily");
        report.warnings.push(line);
        Ok(())
    }
    fn stopped(report: &mut SyncReport, lost: &Option<String>, what: String) {
        let line = lost_line(lost.as_deref().unwrap_or_default(), &what);
        tracing::warn!(warning = %line, "offsite.keep_daily");
        report.warnings.push(line);
    }
    if !report.failed.is_empty() {
        let line =
            "a day failed to reach the remote: nothing deleted there tonight (offsite.keep_daily)";
        tracing::warn!("{line}");
        report.warnings.push(line.into());
        return Ok(());
    }
    let mut remote = match up.days(opts.timeout) {
        Ok(d) => d,
        Err(e) => return warn(report, &e, "listing the remote's days".into()),
    };
    remote.sort();
    remote.dedup();
    if remote.len() <= opts.keep_daily {
        return Ok(());
    }
    let checked_now: BTreeSet<String> = report
        .uploaded
        .iter()
        .chain(&report.up_to_date)
        .cloned()
        .collect();
    let mut complete = Vec::new();
    for d in remote.iter().rev() {
        if complete.len() == opts.keep_daily {
            break;
        }
        let ok = checked_now.contains(d)
            || match complete_on_remote(up, d, statuses.get(d), opts.timeout) {
                Ok(ok) => ok,
                Err(e) => {
                    warn(report, &e, format!("checking {d} on the remote"))?;
                    false
                }
            };
        if ok {
            complete.push(d.clone());
        }
    }
    let Some(oldest_kept) = complete
        .last()
        .filter(|_| complete.len() == opts.keep_daily)
    else {
        tracing::info!(
            complete = complete.len(),
            keep_daily = opts.keep_daily,
            "fewer complete days on the remote than offsite.keep_daily: nothing deleted there"
        );
        return Ok(());
    };
    // Only days cairn put there: those with a status, and those whose folder holds the day's
    // archive under its name (a day whose status a replaced exports volume lost). A folder of
    // the user's that is merely named like a date is left alone.
    let mut ours: Vec<String> = Vec::new();
    let mut strangers: Vec<&str> = Vec::new();
    for d in remote.iter().filter(|d| *d < oldest_kept) {
        if statuses.contains_key(d) {
            ours.push(d.clone());
            continue;
        }
        let archive = DayKeys::new(d)?.archive_name();
        let want = [Wanted {
            name: &archive,
            size: None,
        }];
        match up.list(d, &want, opts.timeout) {
            Ok(files) if files.iter().any(|f| f.name == archive) => ours.push(d.clone()),
            Ok(_) => strangers.push(d),
            Err(e) => warn(report, &e, format!("checking {d} on the remote"))?,
        }
    }
    if !strangers.is_empty() {
        report.warnings.push(format!(
            "left on the remote, holding no archive of cairn's: {}",
            strangers.join(", ")
        ));
    }
    for old in &ours {
        // Irrevocable: only while the lease is still this sync's.
        if !held(confirm, lost) {
            stopped(report, lost, format!("deleting {old} on the remote"));
            return Ok(());
        }
        if let Err(e) = up.delete_day(old, opts.timeout) {
            warn(report, &e, format!("deleting {old} on the remote"))?;
            continue;
        }
        tracing::info!(date = %old, "remote day deleted (offsite.keep_daily)");
        report.deleted_remote.push(old.clone());
        if let Some(mut st) = statuses.get(old).cloned() {
            if !held(confirm, lost) {
                stopped(
                    report,
                    lost,
                    format!("writing the status of {old}, deleted on the remote"),
                );
                return Ok(());
            }
            st.state = State::Pending;
            st.checked = None;
            st.failure = None;
            st.reason = Some("deleted on the remote by offsite.keep_daily".into());
            st.updated = jiff::Timestamp::now().to_string();
            status::save(exports, &st)?;
            statuses.insert(old.clone(), st);
        }
    }
    Ok(())
}

/// One day as `cairn offsite status` shows it: in the exports, and on the remote as last checked.
#[derive(Debug, Clone, Serialize)]
pub struct DayView {
    /// The day.
    pub date: String,
    /// Complete in the exports location (manifest present).
    pub in_exports: bool,
    /// Archive size in the exports.
    pub archive_size: Option<u64>,
    /// The day in the exports: `complete`, `warnings`, `failed folders`, `partial`, or `gone`
    /// (only the offsite status is left).
    pub exports_state: String,
    /// The offsite status, if any was written.
    pub offsite: Option<DayOffsite>,
}

/// Every day found in the exports or in the offsite statuses, oldest first.
pub fn overview(exports: &dyn Store) -> Result<Vec<DayView>> {
    let mut statuses = status::load_all(exports)?;
    let mut out: Vec<DayView> = crate::export::list_days_with_status(exports)?
        .into_iter()
        .map(|d| DayView {
            offsite: statuses.remove(&d.date),
            in_exports: d.complete,
            archive_size: d.archive_size,
            exports_state: d.state().to_string(),
            date: d.date,
        })
        .collect();
    out.extend(statuses.into_values().map(|s| DayView {
        date: s.date.clone(),
        in_exports: false,
        archive_size: None,
        exports_state: "gone".to_string(),
        offsite: Some(s),
    }));
    out.sort_by(|a, b| a.date.cmp(&b.date));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Fault, FaultStore, MemoryStore, Op};

    /// A complete day in `exports`, as an export leaves it.
    fn day(exports: &dyn Store, date: &str, archive: &[u8]) {
        let keys = DayKeys::new(date).unwrap();
        exports.put(&keys.archive, archive).unwrap();
        let line = format!("{}  {}\n", sha256_hex(archive), keys.archive_name());
        exports.put(&keys.sha256, line.as_bytes()).unwrap();
        exports.put(&keys.manifest, b"{\"version\": 1}\n").unwrap();
    }

    fn options(scratch: &std::path::Path) -> SyncOptions {
        SyncOptions {
            date: "2026-11-04".into(),
            timeout: Duration::from_secs(30),
            budget: Duration::from_secs(300),
            attempts: 1,
            retry_wait: Duration::ZERO,
            keep_daily: 0,
            scratch: scratch.to_path_buf(),
        }
    }

    /// A `.sha256` that cannot be read for a moment says nothing about the day: it stays
    /// `uploaded`, with a warning, and is not uploaded again.
    #[test]
    fn a_transient_failure_reading_the_sha256_is_no_change() {
        let dir = tempfile::tempdir().unwrap();
        let exports = FaultStore::new(MemoryStore::new());
        day(&exports, "2026-11-03", b"the archive of the day");
        let up = uploader::Directory {
            root: dir.path().join("remote"),
        };
        let opts = options(&dir.path().join("scratch"));
        let r = sync(&exports, &up, &opts).unwrap();
        assert_eq!(r.uploaded, ["2026-11-03"], "{r:?}");

        exports.inject(Some(Op::Get), ".sha256", Fault::FailOncePerKey);
        let r = sync(&exports, &up, &opts).unwrap();
        assert!(r.uploaded.is_empty(), "uploaded again: {r:?}");
        assert!(r.failed.is_empty(), "{r:?}");
        assert!(
            r.warnings.iter().any(|w| w.contains("2026-11-03")),
            "no warning: {r:?}"
        );
        let st = status::load_all(&exports).unwrap()["2026-11-03"].clone();
        assert_eq!(st.state, State::Uploaded, "{st:?}");
        assert_eq!(st.reason, None, "{st:?}");
        // The next night checks it as before.
        let r = sync(&exports, &up, &opts).unwrap();
        assert_eq!(r.up_to_date, ["2026-11-03"], "{r:?}");
    }

    /// A lease that cannot be confirmed before a status is written stops the sync there: no
    /// status written, the days not done left pending, exit 4.
    #[test]
    fn a_lost_lease_stops_the_sync_before_its_first_status() {
        let dir = tempfile::tempdir().unwrap();
        let exports = MemoryStore::new();
        day(&exports, "2026-11-02", b"the second day");
        day(&exports, "2026-11-03", b"the third day");
        let up = uploader::Directory {
            root: dir.path().join("remote"),
        };
        let lost = || Err(Error::new(ErrorKind::Locked, "offsite sync: taken away"));
        let r = sync_leased(&exports, &up, &options(&dir.path().join("scratch")), &lost).unwrap();
        assert_eq!(r.exit_code, crate::error::exit::LOCKED, "{r:?}");
        assert_eq!(r.uploaded, ["2026-11-03"], "{r:?}");
        assert_eq!(r.pending, ["2026-11-02"], "{r:?}");
        assert!(r.warnings.iter().any(|w| w.contains("taken away")), "{r:?}");
        assert!(status::load_all(&exports).unwrap().is_empty());
    }
}
