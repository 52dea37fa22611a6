//! One file out of a day's archive without reading the archive: the manifest says where the
//! file's content starts in the tar stream, the seek table which frames hold it, and only those
//! frames are fetched (one ranged read for adjacent frames) and decoded, each against its own
//! content checksum and the table's length. A missing or damaged seek table falls back to
//! reading the archive from its start, with a warning; nothing that does not check is written.

use std::io::Write;

use super::manifest::{DayKeys, Manifest, ManifestEntry, read_manifest_filtered};
use crate::error::{Error, ErrorKind, Result};
use crate::format::tree::EntryKind;
use crate::store::Store;
use crate::tar::seek_table::{self as seekable, SeekTable};

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

/// The most frames a seek table may list before cairn refuses to read it: 2²² frames are a
/// 32 MiB table and about 100 MiB parsed, the table of an archive of some 4 TiB of 1 MiB
/// chunks. A table is 17 + 8 bytes a frame, all of which a reader holds.
pub const MAX_TABLE_FRAMES: u64 = 1 << 22;

/// Refuses a manifest whose `seek_table` is not a table that ends the archive: its length must
/// be 17 + 8 bytes a frame, its offset the archive's size less that length, and its frames at
/// most [`MAX_TABLE_FRAMES`]. Checked before the table is read, so that what a manifest says
/// never decides how much is read (an offset of 0 once read the whole archive into memory).
pub fn check_seek_table(keys: &DayKeys, manifest: &Manifest) -> Result<()> {
    let Some(t) = manifest.seek_table else {
        return Ok(());
    };
    let size = manifest.archive.size;
    if t.frames > MAX_TABLE_FRAMES {
        return Err(Error::corrupt(format!(
            "{}: its seek table lists {} frames, more than the {MAX_TABLE_FRAMES} cairn reads",
            keys.manifest, t.frames
        )));
    }
    let want = 17 + 8 * t.frames;
    if t.length != want || size.checked_sub(want) != Some(t.offset) {
        return Err(Error::corrupt(format!(
            "{}: its seek table (offset {}, {} bytes) is not the {want}-byte table of {} frames \
             that ends the {size}-byte archive",
            keys.manifest, t.offset, t.length, t.frames
        )));
    }
    Ok(())
}

/// The day's manifest with the first entry `pick` accepts (none when it accepts none), read as
/// a stream: memory stays bounded whatever the manifest's size.
fn first_entry(
    exports: &dyn Store,
    keys: &DayKeys,
    pick: &dyn Fn(&ManifestEntry) -> bool,
) -> Result<Manifest> {
    let mut found = false;
    read_manifest_filtered(exports, keys, &mut |e| {
        let take = !found && pick(e);
        found |= take;
        take
    })
}

/// The manifest of the day of `keys` (without its lists) and the entry of the file `path`,
/// following a hardlink to its first name.
fn find_file(
    exports: &dyn Store,
    keys: &DayKeys,
    path: &[u8],
) -> Result<(Manifest, ManifestEntry)> {
    let path = path.strip_suffix(b"/").unwrap_or(path);
    let date = &keys.date;
    let mut manifest = first_entry(exports, keys, &|e| e.path.0 == path)?;
    let e = manifest.entries.pop().ok_or_else(|| {
        Error::not_found(format!(
            "{} is not in the archive of {date}",
            String::from_utf8_lossy(path)
        ))
    })?;
    if e.kind != EntryKind::File {
        return Err(Error::usage(format!(
            "{} is a {} in the archive of {date}, not a file",
            String::from_utf8_lossy(path),
            e.kind
        )));
    }
    let Some(first) = &e.link else {
        return Ok((manifest, e));
    };
    // The first name comes earlier in the manifest; one more pass finds it.
    let mut again = first_entry(exports, keys, &|x| x.path == *first && x.link.is_none())?;
    let target = again.entries.pop().ok_or_else(|| {
        Error::corrupt(format!(
            "the manifest of {date} names a hardlink {} to a missing file",
            String::from_utf8_lossy(path)
        ))
    })?;
    // A link's content is its first name's: a folder there (whose size is 0) would print
    // nothing and pass, and no tar header of a file is there to check.
    if target.kind != EntryKind::File {
        return Err(Error::corrupt(format!(
            "the manifest of {date} names a hardlink {} to {}, a {}, not a file",
            String::from_utf8_lossy(path),
            target.path.lossy(),
            target.kind
        )));
    }
    Ok((manifest, target))
}

/// Reads the seek table of the archive at `key` (one ranged read of its tail), checked against
/// what the manifest recorded, which [`check_seek_table`] bounds.
pub fn read_table(exports: &dyn Store, keys: &DayKeys, manifest: &Manifest) -> Result<SeekTable> {
    check_seek_table(keys, manifest)?;
    let size = manifest.archive.size;
    let info = manifest.seek_table.ok_or_else(|| {
        Error::corrupt("the manifest names no seek table (an archive written before them)")
    })?;
    let tail = exports.get_range(&keys.archive, info.offset, info.length)?;
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
    let (manifest, entry) = find_file(exports, &keys, path)?;
    // A manifest that misplaces its table is refused, not worked around.
    check_seek_table(&keys, &manifest)?;
    extract_entry(exports, &keys, &manifest, &entry, out)
}

/// Restores `paths` (files, or folders and everything below them) of the archive of `date` into
/// `target`, fetching only their frames, through the descriptor-based target every restore
/// writes through (`O_NOFOLLOW` from the target down: a symlink planted in it is refused, never
/// followed, and no path is ever joined into one longer than PATH_MAX). `Ok(None)` when this way
/// does not apply (no usable manifest or seek table, an entry that is not a plain file or
/// folder, or a target that is not a new or empty directory): the caller then streams the
/// archive, whose restore handles everything.
pub fn restore_paths(
    exports: &dyn Store,
    date: &str,
    paths: &[String],
    target: &std::path::Path,
) -> Result<Option<crate::restore::RestoreReport>> {
    use crate::restore::{Meta, Overwrite, Target, components, unlink_in_way};
    let keys = DayKeys::new(date)?;
    // Read as the streaming restore reads them (one leading `./`, one trailing `/`, no `.` or
    // `..`): a path that one way restores and the other refuses would depend on the route.
    let wanted: Vec<(Vec<u8>, Vec<u8>)> = paths
        .iter()
        .map(|p| {
            let p = components(p.as_bytes())?.join(&b'/');
            let under = [&p[..], b"/"].concat();
            Ok((p, under))
        })
        .collect::<Result<_>>()?;
    let mut found = vec![false; wanted.len()];
    let manifest = read_manifest_filtered(exports, &keys, &mut |e| {
        let mut keep = false;
        for (i, (p, under)) in wanted.iter().enumerate() {
            if e.path.0 == *p || e.path.0.starts_with(under) {
                found[i] = true;
                keep = true;
            }
        }
        keep
    });
    let manifest = match manifest {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        // The manifest only speeds the restore up: the archive is streamed without it.
        Err(e) => {
            tracing::warn!(archive = %keys.archive, error = %e, "reading the archive from its start");
            return Ok(None);
        }
    };
    if let Err(e) = check_seek_table(&keys, &manifest) {
        tracing::warn!(archive = %keys.archive, error = %e, "reading the archive from its start");
        return Ok(None);
    }
    if let Some(i) = found.iter().position(|f| !f) {
        return Err(Error::not_found(format!(
            "{} is not in the archive of {date}",
            String::from_utf8_lossy(&wanted[i].0)
        )));
    }
    let mut picked = manifest.entries.iter().collect::<Vec<_>>();
    // A manifest naming one path twice would restore it twice; archive order is kept.
    let mut seen = std::collections::HashSet::new();
    picked.retain(|e| seen.insert(e.path.0.clone()));
    picked.sort_by_key(|e| e.offset);
    let plain = picked.iter().all(|e| {
        (e.kind == EntryKind::Dir
            || (e.kind == EntryKind::File
                && e.link.is_none()
                && (e.size == 0 || e.offset.is_some())))
            && components(&e.path.0).is_ok()
    });
    // Only into a new or empty directory. As root, files with an offset only: their owners
    // and modes come from their tar headers (read anyway); a folder's would need its header
    // too, and an empty file without an offset (an older manifest) has none to read, so those
    // stream.
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
                .any(|e| e.kind == EntryKind::Dir || e.offset.is_none()))
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
    let t = Target::open(target, Overwrite::Never)?;
    let mut report = crate::restore::RestoreReport::default();
    let mut dirs = Vec::new();
    for e in picked {
        let parts = components(&e.path.0)?;
        let path = e.path.lossy().into_owned();
        let mut meta = Meta {
            mode: e.mode & 0o7777,
            // No owner but as root, and then from the file's tar header.
            uid: u32::MAX,
            gid: u32::MAX,
            mtime: e.mtime,
            mtime_ns: e.mtime_ns,
        };
        if e.kind == EntryKind::Dir {
            t.dir(&parts, true)?;
            dirs.push((parts, meta));
            continue;
        }
        let (name, parent) = parts.split_last().expect("components are never empty");
        let dir = t.dir(parent, true)?;
        if e.offset.is_some() {
            // The header is checked (and its owner and mode read) before the file is created.
            let h = reader
                .check(e)
                .map_err(|err| err.context(format!("restoring {path}")))?;
            if root {
                // All from the header, which `check` found to have the manifest's mode: the
                // set-uid bits of a file owned by another user are the header's, never only
                // the manifest's.
                (meta.uid, meta.gid, meta.mode) = (h.uid, h.gid, h.mode);
            }
        }
        let mut created = false;
        let written = t.file(&dir, name, &path, e.size, &meta, &mut |w| {
            created = true;
            if e.size > 0 {
                reader.copy(e, &mut ToSparse(w))?;
            }
            Ok(())
        });
        match written {
            Ok(true) => {
                report.files += 1;
                report.bytes += e.size;
            }
            // The target was empty when looked at: a file there now appeared during the
            // restore, which then did not give it; not an "unchanged" file and exit 0.
            Ok(false) => {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "{path} appeared in {} during the restore and was left as it was",
                        target.display()
                    ),
                ));
            }
            Err(err) => {
                // A file that fails its checks is removed, never left cut short under its name.
                if created {
                    let _ = unlink_in_way(&dir, name, &path);
                }
                return Err(err.context(format!("restoring {path}")));
            }
        }
    }
    // Folders last, deepest first: writing into them changed their times.
    dirs.sort_by_key(|(d, _)| std::cmp::Reverse(d.len()));
    for (parts, meta) in &dirs {
        t.dir_meta(parts, meta)?;
        report.dirs += 1;
    }
    tracing::info!(bytes = reader.fetched, "paths restored by the seek table");
    Ok(Some(report))
}

/// The restore target's sparse writer as a `Write`.
struct ToSparse<'a>(&'a mut crate::sparse::SparseWriter);

impl Write for ToSparse<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf).map_err(std::io::Error::other)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// [`extract`] of an entry already found in `manifest`.
fn extract_entry(
    exports: &dyn Store,
    keys: &DayKeys,
    manifest: &Manifest,
    entry: &ManifestEntry,
    out: &mut dyn Write,
) -> Result<Route> {
    if entry.size == 0 && entry.offset.is_none() {
        // An empty file of a manifest written before empty files had an offset: nothing says
        // where its header is, so it is taken from the manifest as it is (documented).
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
    /// The entry whose header [`FrameReader::check`] found last: a copy right after the check
    /// does not read the header again.
    checked: Option<Checked>,
}

impl std::fmt::Debug for FrameReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// An entry whose header was checked: its offset, path and size, and what its header says.
#[derive(Debug)]
struct Checked {
    offset: u64,
    path: Vec<u8>,
    size: u64,
    header: HeaderMeta,
}

/// What a file's checked tar header says of its owner and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderMeta {
    /// The owner's uid (`u32::MAX`, which `chown` leaves alone, for one beyond 32 bits).
    pub uid: u32,
    /// The owner's gid (likewise).
    pub gid: u32,
    /// The permission bits, which are the manifest's.
    pub mode: u32,
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
        let table = read_table(exports, keys, manifest)?;
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
            checked: None,
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
                let content = crate::format::codec::decode(frame, f.content_length as usize)
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

    /// The bytes `from..from + len` of the tar stream (at most a few KiB: headers).
    fn gather(&mut self, from: u64, len: u64) -> Result<Vec<u8>> {
        let mut got = Vec::with_capacity(len as usize);
        let range = self.table.covering(from, len);
        self.frames(range, &mut |f, content| {
            let f_end = f.content_offset + u64::from(f.content_length);
            let lo = from.saturating_sub(f.content_offset) as usize;
            let hi = ((from + len).min(f_end) - f.content_offset) as usize;
            if lo < hi {
                got.extend_from_slice(&content[lo..hi]);
            }
            Ok(())
        })?;
        if got.len() as u64 != len {
            return Err(Error::corrupt(format!(
                "the archive's tar stream ends before {}",
                from + len
            )));
        }
        Ok(got)
    }

    /// Checks what precedes the content of `entry`: a valid ustar header of a regular file
    /// whose name (with the pax `path` record or GNU long name that ends right before it, which
    /// a path over 100 bytes needs and any path may have) is the entry's path, and whose size
    /// and mode are the entry's. A wrong offset, from a damaged or crafted manifest or table,
    /// lands on bytes that are not that header: two files' offsets exchanged would otherwise
    /// give each other's content. Returns the owner and mode the header names.
    pub fn check(&mut self, entry: &ManifestEntry) -> Result<HeaderMeta> {
        let start = match entry.offset {
            Some(o) if o >= 512 => o,
            _ => {
                return Err(Error::corrupt(format!(
                    "the manifest gives no usable offset for {}",
                    entry.path.lossy()
                )));
            }
        };
        if start
            .checked_add(entry.size)
            .is_none_or(|end| end > self.table.content_length())
        {
            return Err(Error::corrupt(format!(
                "{} lies beyond the archive's content",
                entry.path.lossy()
            )));
        }
        if start % 512 != 0 {
            return Err(not_the_header(entry, "its offset is not on a tar block"));
        }
        let at = start - 512;
        let header = self.gather(at, 512)?;
        let h = Ustar::parse(&header).map_err(|why| not_the_header(entry, why))?;
        let path = entry.path.0.as_slice();
        // Looked for before every header, not only where the ustar fields cannot say it all
        // (a long path, a large size or owner): GNU tar and the tar crate read a pax `path`
        // wherever it is, so a short ustar name `a` after `path=b` is `b` to them.
        let back = EXTENSION_WINDOW.min(at);
        let before = self.gather(at - back, back)?;
        let ext = Extension::nearest(&before).map_err(|why| not_the_header(entry, why))?;
        let name = match (&ext.path, path.len() > 100) {
            (Some(p), _) => p.as_slice(),
            // A long path must come whole from an extension header.
            (None, true) => return Err(not_the_header(entry, "no extension header names it")),
            (None, false) => h.name.as_slice(),
        };
        // The ustar name holds the path's first 100 bytes, unterminated when it fills the field.
        let truncated = &path[..path.len().min(100)];
        if name != path || (h.name != truncated && h.name != path) {
            return Err(not_the_header(
                entry,
                &format!("the archive has {} there", String::from_utf8_lossy(name)),
            ));
        }
        // A ustar field that is not at its largest value is the value itself: a pax record
        // only counts where the field could not hold it (as cairn writes them), so that what
        // sits before a header without one cannot change what the header says.
        let size = if h.size == USTAR_SIZE_MAX {
            ext.size.unwrap_or(h.size)
        } else {
            h.size
        };
        if size != entry.size || ext.size.is_some_and(|s| s != entry.size) {
            return Err(not_the_header(entry, "another size"));
        }
        // The manifest's mode is what a restore sets, set-uid bits included: it must be the
        // header's, which every other reader of the archive sets.
        if h.mode != u64::from(entry.mode) {
            return Err(not_the_header(
                entry,
                &format!("mode {:o} there, {:o} in the manifest", h.mode, entry.mode),
            ));
        }
        let owner = |pax: Option<u64>, field: u64| {
            let id = if field == USTAR_ID_MAX {
                pax.unwrap_or(field)
            } else {
                field
            };
            // An id beyond 32 bits keeps the restoring user's owner (`chown` leaves -1 alone).
            u32::try_from(id).unwrap_or(u32::MAX)
        };
        let header = HeaderMeta {
            uid: owner(ext.uid, h.uid),
            gid: owner(ext.gid, h.gid),
            mode: entry.mode,
        };
        self.checked = Some(Checked {
            offset: start,
            path: entry.path.0.clone(),
            size: entry.size,
            header,
        });
        Ok(header)
    }

    /// Writes the content of `entry` to `out`, after [`FrameReader::check`]: nothing is written
    /// before the header is found to be the entry's. Returns the frames read for its content.
    pub fn copy(&mut self, entry: &ManifestEntry, out: &mut dyn Write) -> Result<usize> {
        let header = match &self.checked {
            Some(c)
                if Some(c.offset) == entry.offset
                    && c.path == entry.path.0
                    && c.size == entry.size =>
            {
                c.header
            }
            _ => self.check(entry)?,
        };
        self.owner = Some((header.uid, header.gid));
        let (start, len) = (entry.offset.expect("checked"), entry.size);
        let range = self.table.covering(start, len);
        let frames = range.len();
        let mut written = 0u64;
        self.frames(range, &mut |f, content| {
            let f_end = f.content_offset + u64::from(f.content_length);
            let lo = start.saturating_sub(f.content_offset) as usize;
            let hi = ((start + len).min(f_end) - f.content_offset) as usize;
            if lo < hi {
                out.write_all(&content[lo..hi])
                    .map_err(|e| Error::io("writing the file".to_string(), e))?;
                written += (hi - lo) as u64;
            }
            Ok(())
        })?;
        if written != len {
            return Err(Error::corrupt(format!(
                "read {written} bytes of the {len}-byte file {}",
                entry.path.lossy()
            )));
        }
        Ok(frames)
    }
}

/// The largest size and owner id the ustar fields hold (11 and 7 octal digits); cairn writes
/// these and a pax record for anything larger.
const USTAR_SIZE_MAX: u64 = 0o77777777777;
const USTAR_ID_MAX: u64 = 0o7777777;

/// How far before a file's ustar header its extension header is looked for: the largest pax
/// header or GNU long name the streaming readers accept ([`MAX_META_ENTRY`] of data), with its
/// header block. A smaller window would let a larger extension header, which they read,
/// go unseen.
///
/// [`MAX_META_ENTRY`]: crate::tar::guard::MAX_META_ENTRY
const EXTENSION_WINDOW: u64 = (crate::tar::guard::MAX_META_ENTRY.div_ceil(512) + 1) * 512;

fn not_the_header(entry: &ManifestEntry, why: &str) -> Error {
    Error::corrupt(format!(
        "the archive holds no header of {} at the manifest's offset ({why})",
        entry.path.lossy()
    ))
}

/// The fields of a ustar header block that reading a file needs.
struct Ustar {
    /// The name field up to its first NUL, after the prefix field and a `/` when it has one.
    name: Vec<u8>,
    mode: u64,
    size: u64,
    uid: u64,
    gid: u64,
    kind: u8,
}

/// An octal field as tar writes it, or base-256 when its first byte's high bit is set.
fn number(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let tail = &field[field.len().saturating_sub(8)..];
        return Some(tail.iter().fold(0u64, |v, b| (v << 8) | u64::from(*b)));
    }
    let s = std::str::from_utf8(field.split(|b| *b == 0).next().unwrap_or_default()).ok()?;
    let s = s.trim_matches(' ');
    if s.is_empty() {
        Some(0)
    } else {
        u64::from_str_radix(s, 8).ok()
    }
}

/// Whether a header block's checksum field is the sum of its bytes, the field counted as spaces.
fn checksum_holds(h: &[u8]) -> bool {
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
    number(&h[148..156]) == Some(sum)
}

fn until_nul(field: &[u8]) -> &[u8] {
    field.split(|b| *b == 0).next().unwrap_or_default()
}

impl Ustar {
    /// A header block whose checksum holds; refused otherwise.
    fn parse(h: &[u8]) -> std::result::Result<Ustar, &'static str> {
        if !checksum_holds(h) {
            return Err("its checksum does not match");
        }
        let mut name = until_nul(&h[..100]).to_vec();
        let prefix = until_nul(&h[345..500]);
        if &h[257..263] == b"ustar\0" && !prefix.is_empty() {
            name = [prefix, b"/", &name].concat();
        }
        Ok(Ustar {
            name,
            mode: number(&h[100..108]).ok_or("an unreadable mode")?,
            size: number(&h[124..136]).ok_or("an unreadable size")?,
            uid: number(&h[108..116]).ok_or("an unreadable uid")?,
            gid: number(&h[116..124]).ok_or("an unreadable gid")?,
            kind: h[156],
        })
        .and_then(|u| {
            if matches!(u.kind, b'0' | 0) {
                Ok(u)
            } else {
                Err("not a regular file")
            }
        })
    }
}

/// What an extension header before a file's ustar header says.
#[derive(Debug, Default, PartialEq, Eq)]
struct Extension {
    path: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
}

impl Extension {
    /// The extension header that ends exactly where `before` ends (which is where the ustar
    /// header starts): a block that is a valid tar header of a pax header (`x`) or a GNU long
    /// name (`L`) whose data fills the blocks up to the end. Every block is looked at, not only
    /// the nearest header: a crafted pax header may hold a header-like block in its records.
    /// Two such headers (one inside the other's data, or one right before the other, which the
    /// tar crate and GNU tar combine differently) are refused, as is a long name with a NUL
    /// inside (GNU tar cuts it there, the tar crate does not).
    fn nearest(before: &[u8]) -> std::result::Result<Extension, &'static str> {
        let Some((at, size)) = extension_ending_at(before, before.len())? else {
            return Ok(Extension::default());
        };
        if extension_ending_at(before, at)?.is_some() {
            return Err("two extension headers before it");
        }
        let h = &before[at..at + 512];
        let data = &before[at + 512..at + 512 + size];
        if h[156] == b'L' {
            // The tar crate drops one final NUL, GNU tar reads up to the first: the same name
            // only when no other NUL is left.
            let name = data.strip_suffix(b"\0").unwrap_or(data);
            if name.contains(&0) {
                return Err("a GNU long name with a NUL inside");
            }
            return Ok(Extension {
                path: Some(name.to_vec()),
                ..Extension::default()
            });
        }
        pax_records(data)
    }
}

/// Where the one pax header or GNU long name whose data ends exactly at `end` of `before`
/// starts, and its data's size; `None` when there is none, refused when there are two.
fn extension_ending_at(
    before: &[u8],
    end: usize,
) -> std::result::Result<Option<(usize, usize)>, &'static str> {
    let mut found = None;
    for k in 0..end / 512 {
        let at = end - 512 * (k + 1);
        let h = &before[at..at + 512];
        let magic = &h[257..263] == b"ustar\0" || &h[257..263] == b"ustar ";
        if !magic || !matches!(h[156], b'x' | b'L') || !checksum_holds(h) {
            continue;
        }
        let size = number(&h[124..136]).ok_or("an unreadable extension header")?;
        if size.div_ceil(512) != k as u64 {
            continue;
        }
        // The data fits the blocks before `end`, so the size is below `end`.
        if found.replace((at, size as usize)).is_some() {
            return Err("two extension headers before it");
        }
    }
    Ok(found)
}

/// The records of a pax header, read by their length as POSIX defines them (a value may hold a
/// newline), which must take the data exactly. A key given twice is refused: the tar crate
/// takes the first, GNU tar the last.
fn pax_records(mut data: &[u8]) -> std::result::Result<Extension, &'static str> {
    let mut ext = Extension::default();
    let mut keys: Vec<&[u8]> = Vec::new();
    let num = |v: &[u8]| -> std::result::Result<u64, &'static str> {
        std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("an unreadable pax record")
    };
    while !data.is_empty() {
        let sp = data
            .iter()
            .position(|b| *b == b' ')
            .ok_or("a damaged pax record")?;
        let len = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > sp + 1 && *l <= data.len() && data[*l - 1] == b'\n')
            .ok_or("a damaged pax record")?;
        let kv = &data[sp + 1..len - 1];
        let eq = kv
            .iter()
            .position(|b| *b == b'=')
            .ok_or("a damaged pax record")?;
        let (key, value) = (&kv[..eq], &kv[eq + 1..]);
        if keys.contains(&key) {
            return Err("a pax record given twice");
        }
        keys.push(key);
        match key {
            b"path" => ext.path = Some(value.to_vec()),
            b"size" => ext.size = Some(num(value)?),
            b"uid" => ext.uid = Some(num(value)?),
            b"gid" => ext.gid = Some(num(value)?),
            _ => {}
        }
        data = &data[len..];
    }
    Ok(ext)
}

/// Reads the archive from its start and copies the entry's content: the fallback.
fn scan(exports: &dyn Store, key: &str, entry: &ManifestEntry, out: &mut dyn Write) -> Result<()> {
    let reader = crate::store::ObjectReader::open(exports, key)?;
    let dec = zstd::stream::read::Decoder::new(reader)
        .map_err(|e| Error::corrupt("zstd decoder").with_source(e))?;
    let (guard, names) = crate::tar::guard::TarGuard::with_names(dec);
    let mut archive = tar::Archive::new(guard);
    for item in archive
        .entries()
        .map_err(|e| Error::corrupt(format!("{key}: not a tar")).with_source(e))?
    {
        let mut item =
            item.map_err(|e| Error::corrupt(format!("{key}: damaged")).with_source(e))?;
        let path = names
            .borrow()
            .path
            .clone()
            .unwrap_or_else(|| item.path_bytes().into_owned());
        if path == entry.path.0
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
