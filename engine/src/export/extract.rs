//! One file out of a day's archive without reading the archive: the manifest says where the
//! file's content starts in the tar stream, the seek table which frames hold it, and only those
//! frames are fetched (one ranged read for adjacent frames) and decoded, each against its own
//! content checksum and the table's length. A missing or damaged seek table falls back to
//! reading the archive from its start, with a warning; nothing that does not check is written.

use std::io::Write;

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
    let Ok(manifest) = read_manifest(exports, &keys) else {
        return Ok(None);
    };
    let mut picked: Vec<&ManifestEntry> = Vec::new();
    for p in paths {
        let p = p.trim_start_matches("./").trim_matches('/').as_bytes();
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
    // Overlapping paths name some entries twice; archive order is kept.
    let mut seen = std::collections::HashSet::new();
    picked.retain(|e| seen.insert(e.path.0.clone()));
    picked.sort_by_key(|e| e.offset);
    let plain = picked.iter().all(|e| {
        (e.kind == EntryKind::Dir
            || (e.kind == EntryKind::File
                && e.link.is_none()
                && (e.size == 0 || e.offset.is_some())))
            && e.path.0.split(|b| *b == b'/').all(crate::tree::valid_name)
    });
    // Only into a new or empty directory. As root, files only: their owners come from their tar
    // headers (read anyway), a folder's would need its header too, so folders stream.
    let fresh = match std::fs::read_dir(target) {
        Ok(mut d) => d.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    };
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !plain
        || !fresh
        || manifest.seek_table.is_none()
        || (root
            && picked
                .iter()
                .any(|e| e.kind == EntryKind::Dir || e.size == 0))
    {
        return Ok(None);
    }
    let mut reader = match FrameReader::open(exports, &keys, &manifest) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(archive = %keys.archive, error = %e, "no usable seek table; reading the archive from its start");
            return Ok(None);
        }
    };
    let mut report = crate::restore::RestoreReport::default();
    let mut dirs = Vec::new();
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let time_of = |e: &ManifestEntry| {
        std::time::UNIX_EPOCH
            .checked_add(std::time::Duration::new(e.mtime.max(0) as u64, e.mtime_ns))
            .unwrap_or(std::time::UNIX_EPOCH)
    };
    for e in picked {
        let dest = target.join(std::path::Path::new(std::ffi::OsStr::from_bytes(&e.path.0)));
        let io =
            |what: &str, err: std::io::Error| Error::io(format!("{what} {}", dest.display()), err);
        if e.kind == EntryKind::Dir {
            std::fs::create_dir_all(&dest).map_err(|err| io("creating", err))?;
            dirs.push((dest, e));
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
        // A file that fails its checks is removed, never left cut short under its name.
        let copied = if e.size == 0 {
            Ok(0)
        } else {
            reader.copy(e, &mut f)
        };
        if let Err(err) = copied {
            drop(f);
            let _ = std::fs::remove_file(&dest);
            return Err(err.context(format!("restoring {}", e.path.lossy())));
        }
        if root && let Some((uid, gid)) = reader.owner {
            // Before the mode: chown clears setuid and setgid.
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
                .map_err(|err| io("setting the owner of", err))?;
        }
        f.set_permissions(std::fs::Permissions::from_mode(e.mode & 0o7777))
            .map_err(|err| io("setting the mode of", err))?;
        f.set_modified(time_of(e))
            .map_err(|err| io("setting the time of", err))?;
        report.files += 1;
        report.bytes += e.size;
    }
    // Folders last, deepest first: writing into them changed their times.
    dirs.sort_by_key(|(d, _)| std::cmp::Reverse(d.components().count()));
    for (d, e) in dirs {
        let f = std::fs::File::open(&d)
            .map_err(|err| Error::io(format!("opening {}", d.display()), err))?;
        f.set_modified(time_of(e))
            .map_err(|err| Error::io(format!("setting the time of {}", d.display()), err))?;
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(e.mode & 0o7777))
            .map_err(|err| Error::io(format!("setting the mode of {}", d.display()), err))?;
        report.dirs += 1;
    }
    tracing::info!(bytes = reader.fetched, "paths restored by the seek table");
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
    let reader = FrameReader::open(exports, keys, manifest);
    match reader {
        Ok(mut r) => {
            let frames = r
                .copy(entry, out)
                .map_err(|e| e.context(format!("reading {} by the seek table", keys.archive)))?;
            Ok(Route::Seek {
                frames,
                bytes: r.fetched,
            })
        }
        // Only a table that is absent or does not check sends the read to the start; any other
        // failure (the network) is reported, not turned into a read of the whole archive.
        Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {
            tracing::warn!(archive = %keys.archive, error = %e, "no usable seek table; reading the archive from its start");
            scan(exports, &keys.archive, entry, out)?;
            Ok(Route::Scan)
        }
        Err(e) => Err(e),
    }
}

/// Reads files out of one archive by its seek table, keeping the last frame decoded: the small
/// files of a folder share their group frame, which is then fetched and decoded once.
pub struct FrameReader<'a> {
    exports: &'a dyn Store,
    key: String,
    table: SeekTable,
    cached: Option<(usize, Vec<u8>)>,
    /// Compressed bytes fetched so far (the table included).
    pub fetched: u64,
    /// The owner (uid, gid) the last copied file's tar header names.
    pub owner: Option<(u32, u32)>,
}

impl std::fmt::Debug for FrameReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// The largest frame content the table may claim: a group frame holds at most a little over
/// 2 MiB of tar bytes and a stored frame one chunk (16 MiB at most); anything larger is refused
/// before it is allocated.
const MAX_FRAME_CONTENT: u32 = 64 << 20;

impl<'a> FrameReader<'a> {
    /// The reader of the archive of `keys`, its seek table read and checked.
    pub fn open(
        exports: &'a dyn Store,
        keys: &DayKeys,
        manifest: &Manifest,
    ) -> Result<FrameReader<'a>> {
        let table = read_table(exports, &keys.archive, manifest)?;
        if let Some(f) = table
            .frames
            .iter()
            .find(|f| f.content_length > MAX_FRAME_CONTENT || f.length > MAX_FRAME_CONTENT)
        {
            return Err(Error::corrupt(format!(
                "the seek table claims a frame of {} bytes at {}",
                f.content_length, f.offset
            )));
        }
        Ok(FrameReader {
            exports,
            key: keys.archive.clone(),
            fetched: table.length,
            table,
            cached: None,
            owner: None,
        })
    }

    /// The decoded content of frames `range`, fetched by ranged reads of at most 64 MiB, each
    /// frame checked (its own content checksum, its length against the table), handed to `take`
    /// in order with its span.
    fn frames(
        &mut self,
        range: std::ops::Range<usize>,
        take: &mut dyn FnMut(&seekable::FrameSpan, &[u8]) -> Result<()>,
    ) -> Result<()> {
        const BATCH: u64 = 64 << 20;
        let mut i = range.start;
        while i < range.end {
            if let Some((idx, content)) = &self.cached
                && *idx == i
            {
                take(&self.table.frames[i], content)?;
                i += 1;
                continue;
            }
            // A batch of adjacent frames, the first always (it is at most 64 MiB).
            let mut j = i;
            let start = self.table.frames[i].offset;
            let mut end = start;
            while j < range.end
                && (j == i || end + u64::from(self.table.frames[j].length) - start <= BATCH)
            {
                end += u64::from(self.table.frames[j].length);
                j += 1;
            }
            let bytes = self.exports.get_range(&self.key, start, end - start)?;
            if bytes.len() as u64 != end - start {
                return Err(Error::corrupt(
                    "the archive is shorter than its seek table says",
                ));
            }
            self.fetched += bytes.len() as u64;
            let mut at = 0usize;
            for k in i..j {
                let f = self.table.frames[k];
                let frame = &bytes[at..at + f.length as usize];
                at += f.length as usize;
                let content = crate::codec::decode(frame, f.content_length as usize)
                    .map_err(|e| e.context(format!("the frame at {} of the archive", f.offset)))?;
                if content.len() != f.content_length as usize {
                    return Err(Error::corrupt(format!(
                        "the frame at {} holds {} bytes, the seek table says {}",
                        f.offset,
                        content.len(),
                        f.content_length
                    )));
                }
                take(&f, &content)?;
                self.cached = Some((k, content));
            }
            i = j;
        }
        Ok(())
    }

    /// Writes the content of `entry` to `out`, after checking the tar header before it: a valid
    /// ustar header of a regular file of the entry's size (a wrong offset, from a damaged table
    /// or manifest, lands on bytes that are not one). Nothing is written before that check.
    pub fn copy(&mut self, entry: &ManifestEntry, out: &mut dyn Write) -> Result<usize> {
        let (start, len) = match entry.offset {
            Some(o) if o >= 512 => (o, entry.size),
            _ => {
                return Err(Error::corrupt(
                    "the manifest gives no usable offset for the file",
                ));
            }
        };
        let from = start - 512;
        if start
            .checked_add(len)
            .is_none_or(|end| end > self.table.content_length())
        {
            return Err(Error::corrupt("the file lies beyond the archive's content"));
        }
        let range = self.table.covering(from, len + 512);
        let frames = range.len();
        let mut header = Vec::with_capacity(512);
        let mut written = 0u64;
        let mut checked = false;
        let mut owner = None;
        self.frames(range, &mut |f, content| {
            let f_end = f.content_offset + u64::from(f.content_length);
            if header.len() < 512 {
                let lo = from.saturating_sub(f.content_offset) as usize;
                let hi = ((from + 512).min(f_end) - f.content_offset) as usize;
                if lo < hi {
                    header.extend_from_slice(&content[lo..hi]);
                }
            }
            if !checked && header.len() == 512 {
                owner = Some(check_header(&header, entry)?);
                checked = true;
            }
            if checked && f_end > start {
                let lo = start.saturating_sub(f.content_offset) as usize;
                let hi = ((start + len).min(f_end) - f.content_offset) as usize;
                if lo < hi {
                    out.write_all(&content[lo..hi])
                        .map_err(|e| Error::io("writing the file".to_string(), e))?;
                    written += (hi - lo) as u64;
                }
            }
            Ok(())
        })?;
        if !checked || written != len {
            return Err(Error::corrupt(format!(
                "read {written} bytes of a {len}-byte file"
            )));
        }
        self.owner = owner;
        Ok(frames)
    }
}

/// The ustar header before a file's content must be intact and say what the manifest says.
/// Returns the owner it names (uid, gid; 0 where a pax record holds a larger id).
fn check_header(h: &[u8], entry: &ManifestEntry) -> Result<(u32, u32)> {
    let bad = |why: &str| {
        Error::corrupt(format!(
            "the archive holds no header of {} at the manifest's offset ({why})",
            entry.path.lossy()
        ))
    };
    let octal = |field: &[u8]| -> Option<u64> {
        let s = std::str::from_utf8(field).ok()?;
        let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
        if s.is_empty() {
            Some(0)
        } else {
            u64::from_str_radix(s, 8).ok()
        }
    };
    let stored = octal(&h[148..156]).ok_or_else(|| bad("no checksum"))?;
    let sum: u64 = h
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u64::from(*b)
            }
        })
        .sum();
    if stored != sum {
        return Err(bad("its checksum does not match"));
    }
    if !matches!(h[156], b'0' | 0) {
        return Err(bad("not a regular file"));
    }
    // Sizes of 8 GiB and more are in a pax record; below that the ustar field must agree.
    if entry.size < (1 << 33) && octal(&h[124..136]) != Some(entry.size) {
        return Err(bad("another size"));
    }
    let id = |field: &[u8]| {
        octal(field)
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0)
    };
    Ok((id(&h[108..116]), id(&h[116..124])))
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
        if item.path_bytes().as_ref() == entry.path.0.as_slice()
            && item.header().entry_type().is_file()
            && entry.offset.is_none_or(|o| o == item.raw_file_position())
        {
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
