//! One file out of a day's archive without reading the archive: the manifest says where the
//! file's content starts in the tar stream, the seek table which frames hold it, and only those
//! frames are fetched (one ranged read for adjacent frames) and decoded, each against its own
//! content checksum and the table's length. A missing or damaged seek table falls back to
//! reading the archive from its start, with a warning; nothing that does not check is written.

use std::io::{Read, Write};

use super::manifest::{DayKeys, Manifest, ManifestEntry, read_manifest};
use super::seekable::{self, SeekTable};
use crate::error::{Error, ErrorKind, Result};
use crate::store::Store;
use crate::tree::EntryKind;

/// How a file was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Through the seek table: only the frames holding the file.
    Seek {
        /// Frames fetched.
        frames: usize,
        /// Compressed bytes fetched (the table and the frames).
        bytes: u64,
    },
    /// From the archive's start (no usable seek table).
    Scan,
}

/// The manifest entry of `path` in `manifest`, following a hardlink to its first name.
pub fn find<'m>(manifest: &'m Manifest, path: &[u8], date: &str) -> Result<&'m ManifestEntry> {
    let path = path.strip_suffix(b"/").unwrap_or(path);
    let e = manifest
        .entries
        .iter()
        .find(|e| e.path.0 == path)
        .ok_or_else(|| {
            Error::not_found(format!(
                "{} is not in the archive of {date}",
                String::from_utf8_lossy(path)
            ))
        })?;
    if e.kind != EntryKind::File {
        return Err(Error::usage(format!(
            "{} is a {:?} in the archive of {date}, not a file",
            String::from_utf8_lossy(path),
            e.kind
        )));
    }
    match &e.link {
        Some(first) => manifest
            .entries
            .iter()
            .find(|x| x.path == *first && x.link.is_none())
            .ok_or_else(|| {
                Error::corrupt(format!(
                    "the manifest of {date} names a hardlink to a missing file"
                ))
            }),
        None => Ok(e),
    }
}

/// Reads the seek table of the archive at `key` (two ranged reads of its tail), checked against
/// what the manifest recorded.
pub fn read_table(exports: &dyn Store, key: &str, manifest: &Manifest) -> Result<SeekTable> {
    let size = manifest.archive.size;
    let info = manifest.seek_table.ok_or_else(|| {
        Error::corrupt("the manifest names no seek table (an archive written before them)")
    })?;
    if info.offset.checked_add(info.length) != Some(size) || info.length > size {
        return Err(Error::corrupt(
            "the manifest's seek table does not end the archive",
        ));
    }
    let tail = exports.get_range(key, info.offset, info.length)?;
    let table = seekable::parse(&tail, size)?;
    if table.frames.len() as u64 != info.frames {
        return Err(Error::corrupt(
            "the seek table lists another number of frames than the manifest",
        ));
    }
    Ok(table)
}

/// Writes the content of `path` in the archive of `date` to `out`, reading only what it needs.
/// The path must be a file in the day's manifest. Returns how it was read.
pub fn extract(exports: &dyn Store, date: &str, path: &[u8], out: &mut dyn Write) -> Result<Route> {
    let keys = DayKeys::new(date)?;
    let manifest = read_manifest(exports, &keys)?;
    let entry = find(&manifest, path, date)?.clone();
    extract_entry(exports, &keys, &manifest, &entry, out)
}

/// Restores `paths` (files, or folders and everything below them) of the archive of `date` into
/// `target`, fetching only their frames. `Ok(None)` when this way does not apply (an entry that
/// is not a plain file or folder, or a target that is not a new or empty directory): the caller
/// then streams the archive, whose restore handles everything.
pub fn restore_paths(
    exports: &dyn Store,
    date: &str,
    paths: &[String],
    target: &std::path::Path,
) -> Result<Option<crate::restore::RestoreReport>> {
    let keys = DayKeys::new(date)?;
    let manifest = read_manifest(exports, &keys)?;
    let mut picked: Vec<&ManifestEntry> = Vec::new();
    for p in paths {
        let p = p.trim_matches('/').as_bytes();
        let under = [p, b"/"].concat();
        let before = picked.len();
        picked.extend(
            manifest
                .entries
                .iter()
                .filter(|e| e.path.0 == p || e.path.0.starts_with(&under)),
        );
        if picked.len() == before {
            return Err(Error::not_found(format!(
                "{} is not in the archive of {date}",
                String::from_utf8_lossy(p)
            )));
        }
    }
    let plain = picked.iter().all(|e| {
        (e.kind == EntryKind::Dir || (e.kind == EntryKind::File && e.link.is_none()))
            && e.path.0.split(|b| *b == b'/').all(crate::tree::valid_name)
    });
    let fresh = match std::fs::read_dir(target) {
        Ok(mut d) => d.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    };
    if !plain || !fresh {
        return Ok(None);
    }
    let mut report = crate::restore::RestoreReport::default();
    for e in picked {
        use std::os::unix::ffi::OsStrExt;
        let rel = std::path::Path::new(std::ffi::OsStr::from_bytes(&e.path.0));
        let dest = target.join(rel);
        let io =
            |what: &str, err: std::io::Error| Error::io(format!("{what} {}", dest.display()), err);
        if e.kind == EntryKind::Dir {
            std::fs::create_dir_all(&dest).map_err(|err| io("creating", err))?;
            report.dirs += 1;
            continue;
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|err| io("creating the folder of", err))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&dest)
            .map_err(|err| io("creating", err))?;
        extract_entry(exports, &keys, &manifest, e, &mut f)?;
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(e.mode & 0o7777))
            .map_err(|err| io("setting the mode of", err))?;
        let mtime = std::time::UNIX_EPOCH
            .checked_add(std::time::Duration::new(e.mtime.max(0) as u64, e.mtime_ns))
            .unwrap_or(std::time::UNIX_EPOCH);
        f.set_modified(mtime)
            .map_err(|err| io("setting the time of", err))?;
        report.files += 1;
        report.bytes += e.size;
    }
    Ok(Some(report))
}

/// [`extract`] of an entry already found in `manifest`.
fn extract_entry(
    exports: &dyn Store,
    keys: &DayKeys,
    manifest: &Manifest,
    entry: &ManifestEntry,
    out: &mut dyn Write,
) -> Result<Route> {
    if entry.size == 0 {
        return Ok(Route::Seek {
            frames: 0,
            bytes: 0,
        });
    }
    let seek = entry
        .offset
        .ok_or_else(|| Error::corrupt("the manifest gives no offset for the file"))
        .and_then(|start| {
            let table = read_table(exports, &keys.archive, manifest)?;
            Ok((start, table))
        });
    match seek {
        Ok((start, table)) => {
            // Written to a buffer of at most the file first only when small; a large file goes
            // out frame by frame, and a frame that fails its check stops it with an error.
            match by_frames(exports, &keys.archive, &table, start, entry.size, out) {
                Ok((frames, bytes)) => Ok(Route::Seek {
                    frames,
                    bytes: bytes + table.length,
                }),
                Err(e) => Err(e.context(format!("reading {} by the seek table", keys.archive))),
            }
        }
        Err(e) => {
            tracing::warn!(archive = %keys.archive, error = %e, "no usable seek table; reading the archive from its start");
            scan(exports, &keys.archive, entry, out)?;
            Ok(Route::Scan)
        }
    }
}

/// The frames holding `start..start + len`, fetched in one ranged read (they are adjacent),
/// decoded one by one, each checked (its content checksum, its length against the table).
fn by_frames(
    exports: &dyn Store,
    key: &str,
    table: &SeekTable,
    start: u64,
    len: u64,
    out: &mut dyn Write,
) -> Result<(usize, u64)> {
    if start
        .checked_add(len)
        .is_none_or(|end| end > table.content_length())
    {
        return Err(Error::corrupt("the file lies beyond the archive's content"));
    }
    let range = table.covering(start, len);
    let frames = &table.frames[range.clone()];
    let (first, last) = (frames[0], frames[frames.len() - 1]);
    let from = first.offset;
    let to = last.offset + u64::from(last.length);
    // At most 64 MiB of compressed frames per request: a 50 MB file is a few requests, and the
    // memory held stays bounded whatever the file's size.
    const BATCH: u64 = 64 << 20;
    let mut fetched = 0u64;
    let mut batch_start = from;
    let mut i = 0;
    let mut written = 0u64;
    while batch_start < to {
        let mut batch_end = batch_start;
        let mut j = i;
        while j < frames.len()
            && (batch_end == batch_start
                || batch_end + u64::from(frames[j].length) - batch_start <= BATCH)
        {
            batch_end += u64::from(frames[j].length);
            j += 1;
        }
        let bytes = exports.get_range(key, batch_start, batch_end - batch_start)?;
        if bytes.len() as u64 != batch_end - batch_start {
            return Err(Error::corrupt(
                "the archive is shorter than its seek table says",
            ));
        }
        fetched += bytes.len() as u64;
        let mut at = 0usize;
        for f in &frames[i..j] {
            let frame = &bytes[at..at + f.length as usize];
            at += f.length as usize;
            let content =
                zstd::bulk::decompress(frame, f.content_length as usize).map_err(|e| {
                    Error::corrupt(format!("a frame at {} does not decode", f.offset))
                        .with_source(e)
                })?;
            if content.len() != f.content_length as usize {
                return Err(Error::corrupt(format!(
                    "the frame at {} holds {} bytes, the seek table says {}",
                    f.offset,
                    content.len(),
                    f.content_length
                )));
            }
            let lo = start.saturating_sub(f.content_offset) as usize;
            let hi = ((start + len).min(f.content_offset + u64::from(f.content_length))
                - f.content_offset) as usize;
            out.write_all(&content[lo..hi])
                .map_err(|e| Error::io("writing the file".to_string(), e))?;
            written += (hi - lo) as u64;
        }
        i = j;
        batch_start = batch_end;
    }
    if written != len {
        return Err(Error::corrupt(format!(
            "read {written} bytes of a {len}-byte file"
        )));
    }
    Ok((frames.len(), fetched))
}

/// Reads the archive from its start and copies the entry's content: the fallback.
fn scan(exports: &dyn Store, key: &str, entry: &ManifestEntry, out: &mut dyn Write) -> Result<()> {
    let reader = crate::store::ObjectReader::open(exports, key)?;
    let dec = zstd::stream::read::Decoder::new(reader)
        .map_err(|e| Error::corrupt("zstd decoder").with_source(e))?;
    let mut archive = tar::Archive::new(crate::tar_guard::TarGuard::new(dec));
    for item in archive
        .entries()
        .map_err(|e| Error::corrupt(format!("{key}: not a tar")).with_source(e))?
    {
        let mut item =
            item.map_err(|e| Error::corrupt(format!("{key}: damaged")).with_source(e))?;
        if item.path_bytes().as_ref() == entry.path.0.as_slice() {
            if item.size() != entry.size {
                return Err(Error::corrupt(format!(
                    "{} is {} bytes in the archive, {} in its manifest",
                    entry.path.lossy(),
                    item.size(),
                    entry.size
                )));
            }
            let n = std::io::copy(&mut item, &mut WriteAll(out)).map_err(|e| {
                Error::new(ErrorKind::Corrupt, format!("{key}: damaged content: {e}"))
            })?;
            if n != entry.size {
                return Err(Error::corrupt(format!("{}: cut short", entry.path.lossy())));
            }
            return Ok(());
        }
        let _ = std::io::copy(&mut item.by_ref().take(u64::MAX), &mut std::io::sink());
    }
    Err(Error::corrupt(format!(
        "{} is in the manifest but not in the archive",
        entry.path.lossy()
    )))
}

/// A `Write` over a `&mut dyn Write`.
struct WriteAll<'a>(&'a mut dyn Write);

impl Write for WriteAll<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
