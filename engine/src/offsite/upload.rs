//! Putting one day on the remote: its three files, each from the exports' own file where the
//! client can read one and streamed (through a private scratch copy for a client that needs a
//! file) otherwise, then the day listed there and checked. [`upload_with_attempts`] is the one
//! place an upload is tried again.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::Digest;

use super::SyncOptions;
use super::parts::{Hashing, Part, again, check_listed, parts_of, wanted};
use super::process;
use super::status::Check;
use super::uploader::{Source, Uploader};
use crate::error::{Error, ErrorKind, Result};
use crate::export::DayKeys;
use crate::store::{ObjectReader, Store};

/// A private scratch directory for this run (0700, under `offsite.scratch_dir`), removed on drop.
#[derive(Debug)]
pub(super) struct Scratch(pub(super) PathBuf);

impl Scratch {
    pub(super) fn new(base: &Path) -> Result<Scratch> {
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

/// Where and how a sync's days are uploaded: the same for each of them.
pub(super) struct Uploading<'a> {
    pub(super) exports: &'a dyn Store,
    pub(super) up: &'a dyn Uploader,
    pub(super) opts: &'a SyncOptions,
    /// The run's scratch directory.
    pub(super) scratch: &'a Path,
    /// When the sync began: its budget runs from there.
    pub(super) began: Instant,
}

/// What the attempts at one day came to: the bytes sent and how the copy was checked, or the
/// last failure; with the number of attempts made.
pub(super) type Attempted = (Result<(u64, Check)>, u32);

/// Uploads the day of `keys` until it is on the remote and checked, or `opts.attempts` attempts
/// were made, or the budget is spent; only what may pass is tried again (a transient or I/O
/// failure, never damaged exports), after a wait that doubles each time (`opts.retry_wait`,
/// capped by what is left of the budget). `parts` are the day's files as read by the plan: they
/// are read again only after reading them failed. `Err`: a client that cannot be started, which
/// stops the sync.
pub(super) fn upload_with_attempts(
    ctx: &Uploading<'_>,
    keys: &DayKeys,
    parts: &mut Result<Vec<Part>>,
) -> Result<Attempted> {
    let opts = ctx.opts;
    let date = &keys.date;
    // The shared backoff: waits from `retry_wait`, doubling (with jitter) up to 2^10 times it,
    // within the sync's budget.
    // A retry starts while the budget lasts, its wait cut to what is left of it.
    let policy = crate::backoff::RetryPolicy::attempts(
        opts.attempts,
        opts.retry_wait,
        opts.retry_wait.saturating_mul(1 << 10),
    );
    let mut attempt = 0;
    let outcome = loop {
        attempt += 1;
        // The exports are read again only after reading them failed.
        if parts.is_err() {
            *parts = parts_of(ctx.exports, keys);
        }
        let tried = match &*parts {
            Ok(p) => upload_day(ctx.exports, ctx.up, date, p, opts, ctx.scratch),
            Err(e) => Err(again(e)),
        };
        match tried {
            Ok(done) => break Ok(done),
            Err(e) if e.kind() == ErrorKind::Config => return Err(e),
            // Only what may pass is tried again: damaged exports are not.
            Err(e) if matches!(e.kind(), ErrorKind::Transient | ErrorKind::Io) => {
                let left = opts.budget.saturating_sub(ctx.began.elapsed());
                let Some(wait) = policy
                    .next_wait(attempt - 1, Duration::ZERO)
                    .filter(|_| !left.is_zero())
                else {
                    break Err(e);
                };
                let wait = wait.min(left);
                let error = process::redact(&e.to_string());
                tracing::warn!(date = %date, attempt, %error, wait_secs = wait.as_secs(), "offsite upload failed; trying again");
                std::thread::sleep(wait);
            }
            Err(e) => break Err(e),
        }
    };
    Ok((outcome, attempt))
}

/// Copies the archive of `keys` and its two companions to the remote, then checks them there.
fn upload_day(
    exports: &dyn Store,
    up: &dyn Uploader,
    date: &str,
    parts: &[Part],
    opts: &SyncOptions,
    scratch: &Path,
) -> Result<(u64, Check)> {
    let mut sent = 0;
    let meter = crate::progress::meter();
    meter.begin(
        format!("offsite {date}"),
        "files",
        Some(parts.len() as u64),
        Some(parts.iter().map(|p| p.size).sum()),
        &[],
    );
    for p in parts {
        let dest = format!("{date}/{}", p.name);
        put(exports, up, p, &dest, opts, scratch)?;
        sent += p.size;
        meter.items(1);
        meter.bytes(p.size);
    }
    let listed = up.list(date, &wanted(parts), opts.timeout)?;
    let check = check_listed(exports, date, parts, &listed)?;
    Ok((sent, check))
}

/// Puts one file. rclone gets the exports' own file when there is one (it reads it and checks a
/// hash after the copy); otherwise the bytes are streamed from the exports — through a scratch
/// copy for a client that needs a file, so that no client ever gets a path into the first copy —
/// with their SHA-256 checked on the way where it is known.
fn put(
    exports: &dyn Store,
    up: &dyn Uploader,
    p: &Part,
    dest: &str,
    opts: &SyncOptions,
    scratch: &Path,
) -> Result<()> {
    if !up.needs_file() {
        if let Some(bytes) = &p.bytes {
            let mut r: &[u8] = bytes;
            return up.upload(Source::Stream(&mut r), p.size, dest, opts.timeout);
        }
        if let Some(path) = exports.local_file(&p.key) {
            return up.upload(Source::File(&path), p.size, dest, opts.timeout);
        }
    }
    let reader: Box<dyn Read + '_> = match &p.bytes {
        Some(b) => Box::new(&b[..]),
        None => Box::new(ObjectReader::open(exports, &p.key)?),
    };
    let mut hashing = Hashing::new(reader);
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
fn check_stream<R>(h: &Hashing<R>, p: &Part) -> Result<()> {
    let got = crate::id::hex(&h.hash.clone().finalize());
    if h.len != p.size || p.sha256.as_ref().is_some_and(|s| *s != got) {
        return Err(Error::corrupt(format!(
            "{} in the exports does not match its SHA-256 (cairn exports verify names the damage)",
            p.key
        )));
    }
    Ok(())
}
