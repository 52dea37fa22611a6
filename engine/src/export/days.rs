//! The days of the exports location: which are there and complete, and the verification of a
//! day's archive against its `.sha256` and manifest.

use std::io::Read;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::manifest::{DayKeys, Manifest, read_manifest};
use crate::error::{Error, Result};
use crate::format::tree::EntryKind;
use crate::id::hex;
use crate::store::{ObjectInfo, Store};

/// One day in the exports location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayStatus {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// The manifest is present.
    pub complete: bool,
    /// Archive size, if the archive object exists.
    pub archive_size: Option<u64>,
    /// From the day's `archive.json` (filled by [`list_days_with_status`] for complete days
    /// that have one): how many warnings its night had.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warnings: Option<u64>,
    /// From the day's `archive.json`: configured folders its snapshot could not read (a day of
    /// an older cairn); such a day is not counted by retention.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_folders: Vec<String>,
}

impl DayStatus {
    /// Complete, and its night read every configured folder: what retention counts.
    pub fn counts(&self) -> bool {
        self.complete && self.failed_folders.is_empty()
    }

    /// `complete`, `warnings` (complete, its night had warnings), `failed folders` (complete,
    /// but a configured folder is missing from it) or `partial`.
    pub fn state(&self) -> &'static str {
        match (self.complete, self.failed_folders.is_empty(), self.warnings) {
            (false, _, _) => "partial",
            (true, false, _) => "failed folders",
            (true, true, Some(w)) if w > 0 => "warnings",
            (true, true, _) => "complete",
        }
    }
}

/// The days found in the exports location, oldest first (report folders excluded).
pub fn list_days(exports: &dyn Store) -> Result<Vec<DayStatus>> {
    Ok(days_of(&exports.list("")?))
}

/// The days among a listing of the exports location's root.
fn days_of(listed: &[ObjectInfo]) -> Vec<DayStatus> {
    let mut days: std::collections::BTreeMap<String, DayStatus> = Default::default();
    for o in listed {
        let Some((date, _)) = o.key.split_once('/') else {
            continue;
        };
        let Ok(keys) = DayKeys::new(date) else {
            continue;
        };
        let d = days.entry(date.to_string()).or_insert(DayStatus {
            date: date.to_string(),
            complete: false,
            archive_size: None,
            warnings: None,
            failed_folders: Vec::new(),
        });
        if o.key == keys.manifest {
            d.complete = true;
        } else if o.key == keys.archive {
            d.archive_size = Some(o.size);
        }
    }
    days.into_values().collect()
}

/// [`list_days`], with each complete day's `archive.json` read (one small request a day): its
/// warnings and failed folders. A status that does not read is a warning and leaves the day as
/// it is (counted, as a day of an older cairn is).
pub fn list_days_with_status(exports: &dyn Store) -> Result<Vec<DayStatus>> {
    let mut days = list_days(exports)?;
    add_statuses(exports, &mut days);
    Ok(days)
}

/// [`list_days_with_status`] and [`total_bytes`] from one listing: what a nightly run reports.
pub fn survey(exports: &dyn Store) -> Result<(Vec<DayStatus>, u64)> {
    let listed = exports.list("")?;
    let mut days = days_of(&listed);
    add_statuses(exports, &mut days);
    Ok((days, own_bytes(&listed)))
}

fn add_statuses(exports: &dyn Store, days: &mut [DayStatus]) {
    for d in days.iter_mut().filter(|d| d.complete) {
        match super::status::read_status(exports, &d.date) {
            Ok(Some(st)) => {
                d.warnings = Some(st.warnings);
                d.failed_folders = st.failed_folders;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(day = %d.date, error = %e, "the day's archive status does not read")
            }
        }
    }
}

/// Bytes of the exports' own objects: the day folders (archives, checksums, manifests), the
/// reports, the offsite status, the leases and the preflight probe. What the exports cost the
/// server, for the run report and the space alert. Other keys are left out: with the plan's
/// layout the store lives in the same bucket (`store/`, below the exports' empty prefix), and
/// its packs are the store's figure.
pub fn total_bytes(exports: &dyn Store) -> Result<u64> {
    Ok(own_bytes(&exports.list("")?))
}

fn own_bytes(listed: &[ObjectInfo]) -> u64 {
    const OWN: [&str; 4] = ["_reports", "_offsite", "_leases", "_preflight"];
    listed
        .iter()
        .filter(|o| {
            let first = o.key.split('/').next().unwrap_or("");
            OWN.contains(&first) || DayKeys::new(first).is_ok()
        })
        .map(|o| o.size)
        .sum()
}

/// What [`verify`] checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The day.
    pub date: String,
    /// Bytes read.
    pub size: u64,
    /// SHA-256 computed.
    pub sha256: String,
    /// tar entries read and matched against the manifest.
    pub entries: u64,
}

/// Re-reads a day's archive: its SHA-256 must match the `.sha256` object and the manifest, the
/// whole zstd stream must decode (each frame's content checksum is checked as it is decoded), and
/// the tar entries must be the manifest's.
pub fn verify(exports: &dyn Store, date: &str) -> Result<VerifyReport> {
    let keys = DayKeys::new(date)?;
    let manifest = read_manifest(exports, &keys)?;
    check_sha256_object(exports, &keys, &manifest)?;
    // The seek table, when the archive has one: its frames' boundaries are checked as the
    // archive streams past (a zstd frame starts at each, declaring the table's content size).
    let table = match manifest.seek_table {
        Some(_) => Some(super::frames::read_table(exports, &keys, &manifest)?),
        None => None,
    };
    let reader = crate::store::ObjectReader::open(exports, &keys.archive)?;
    let size = reader.size();
    crate::progress::meter().begin(
        format!("verify {}", keys.date),
        "entries",
        Some(manifest.entries.len() as u64),
        Some(size),
        &[],
    );
    let mut tee = HashingReader {
        inner: reader,
        sha: Sha256::new(),
        pos: 0,
        frames: table.map(|t| t.frames).unwrap_or_default(),
        next: 0,
        head: Vec::new(),
        bad: None,
    };
    let entries = match_entries(&mut tee, &keys, &manifest)?;
    let sha = check_read_through(tee, &keys, &manifest, size)?;
    Ok(VerifyReport {
        date: keys.date,
        size,
        sha256: sha,
        entries,
    })
}

/// The day's `.sha256` object must name the manifest's SHA-256 and the archive's file name.
fn check_sha256_object(exports: &dyn Store, keys: &DayKeys, manifest: &Manifest) -> Result<()> {
    let sha_line = String::from_utf8(exports.get(&keys.sha256)?)
        .map_err(|_| Error::corrupt(format!("{} is not text", keys.sha256)))?;
    let expected = format!("{}  {}", manifest.archive.sha256, keys.archive_name());
    if sha_line.trim_end() != expected {
        return Err(Error::corrupt(format!(
            "{} does not match the manifest",
            keys.sha256
        )));
    }
    Ok(())
}

/// Decodes the archive through `tee` and matches its tar entries against the manifest's, in
/// order (path, size, and where its content starts); returns how many there were. The zstd
/// stream is read to its end, so that every frame, and the hash, cover the whole object.
fn match_entries<R: Read>(
    tee: &mut HashingReader<R>,
    keys: &DayKeys,
    manifest: &Manifest,
) -> Result<u64> {
    let mut dec = zstd::stream::read::Decoder::new(&mut *tee)
        .map_err(|e| Error::corrupt("zstd decoder").with_source(e))?;
    // Names with a newline are read from the guard: the tar crate would misread them.
    let (guard, names) = crate::tar::guard::TarGuard::with_names(&mut dec);
    let mut archive = tar::Archive::new(guard);
    let mut n = 0u64;
    let mut want = manifest.entries.iter();
    for item in archive
        .entries()
        .map_err(|e| Error::corrupt(format!("{}: not a tar", keys.archive)).with_source(e))?
    {
        let mut item =
            item.map_err(|e| Error::corrupt(format!("{}: damaged", keys.archive)).with_source(e))?;
        crate::progress::meter().items(1);
        let path = names
            .borrow()
            .path
            .clone()
            .unwrap_or_else(|| item.path_bytes().into_owned());
        let m = want
            .next()
            .ok_or_else(|| Error::corrupt("archive has more entries than its manifest"))?;
        let mpath = if m.kind == EntryKind::Dir {
            [m.path.0.as_slice(), b"/"].concat()
        } else {
            m.path.0.clone()
        };
        if m.offset.is_some_and(|o| o != item.raw_file_position()) {
            return Err(Error::corrupt(format!(
                "archive entry {} starts at {} of the tar stream, the manifest says {}",
                String::from_utf8_lossy(&path),
                item.raw_file_position(),
                m.offset
                    .map_or_else(|| "nothing".to_string(), |o| o.to_string())
            )));
        }
        if path != mpath || item.size() != m.size {
            return Err(Error::corrupt(format!(
                "archive entry {} does not match the manifest ({})",
                String::from_utf8_lossy(&path),
                m.path.lossy()
            )));
        }
        std::io::copy(&mut item, &mut std::io::sink()).map_err(|e| {
            Error::corrupt(format!("{}: damaged content", keys.archive)).with_source(e)
        })?;
        n += 1;
    }
    if want.next().is_some() {
        return Err(Error::corrupt(
            "archive has fewer entries than its manifest",
        ));
    }
    // Read to the end so that every frame (and the hash) covers the whole object.
    std::io::copy(&mut dec, &mut std::io::sink())
        .map_err(|e| Error::corrupt(format!("{}: damaged", keys.archive)).with_source(e))?;
    Ok(n)
}

/// After the last zstd frame: nothing may follow, every frame of the seek table must have been
/// found where it says, and the SHA-256 and size must be the manifest's. Returns the SHA-256.
fn check_read_through<R: Read>(
    mut tee: HashingReader<R>,
    keys: &DayKeys,
    manifest: &Manifest,
    size: u64,
) -> Result<String> {
    let mut rest = Vec::new();
    tee.read_to_end(&mut rest)
        .map_err(|e| Error::corrupt("reading the archive").with_source(e))?;
    if !rest.is_empty() {
        return Err(Error::corrupt(format!(
            "{}: {} bytes after the last zstd frame",
            keys.archive,
            rest.len()
        )));
    }
    if let Some(why) = tee.bad.take() {
        return Err(Error::corrupt(format!("{}: {why}", keys.archive)));
    }
    if tee.next < tee.frames.len() {
        return Err(Error::corrupt(format!(
            "{}: the seek table lists {} frames, the archive ended after {}",
            keys.archive,
            tee.frames.len(),
            tee.next
        )));
    }
    let sha = hex(&tee.sha.finalize());
    if sha != manifest.archive.sha256 || size != manifest.archive.size {
        return Err(Error::corrupt(format!(
            "{}: sha256 {sha} / {size} bytes, manifest says {} / {} bytes",
            keys.archive, manifest.archive.sha256, manifest.archive.size
        )));
    }
    Ok(sha)
}

/// Reads the archive through, hashing it and checking each seek-table frame's header as it
/// passes: a zstd frame must start at each listed offset and declare the listed content size.
pub(super) struct HashingReader<R> {
    inner: R,
    sha: Sha256,
    pos: u64,
    frames: Vec<crate::tar::seek_table::FrameSpan>,
    /// The next frame whose header is awaited.
    next: usize,
    /// The bytes of that header gathered so far.
    head: Vec<u8>,
    /// The first mismatch found.
    bad: Option<String>,
}

impl<R> HashingReader<R> {
    fn observe(&mut self, chunk: &[u8]) {
        let mut at = 0usize;
        while self.bad.is_none() && self.next < self.frames.len() {
            let f = self.frames[self.next];
            let want = (f.length as usize).min(18);
            let here = self.pos + at as u64;
            if here + (chunk.len() - at) as u64 <= f.offset {
                break;
            }
            let skip = f.offset.saturating_sub(here) as usize;
            at += skip;
            let take = (want - self.head.len()).min(chunk.len() - at);
            self.head.extend_from_slice(&chunk[at..at + take]);
            at += take;
            if self.head.len() < want {
                break;
            }
            match zstd::zstd_safe::get_frame_content_size(&self.head) {
                Ok(Some(n)) if n == u64::from(f.content_length) => {}
                other => {
                    let there = match other {
                        Ok(Some(n)) => format!("a frame of {n} bytes"),
                        Ok(None) => "a frame that does not say its size".to_string(),
                        Err(_) => "no zstd frame".to_string(),
                    };
                    self.bad = Some(format!(
                        "the seek table's frame {} at {} says {} bytes, and the archive has {there} there",
                        self.next, f.offset, f.content_length
                    ));
                }
            }
            self.head.clear();
            self.next += 1;
            // Continue after this frame's header; later frames start further on.
            at = at.min(chunk.len());
        }
        self.pos += chunk.len() as u64;
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.sha.update(&out[..n]);
        crate::progress::meter().bytes(n as u64);
        if !self.frames.is_empty() {
            self.observe(&out[..n]);
        }
        Ok(n)
    }
}
