//! Reading an archive by its seek table: the table read from the archive's tail and checked
//! against the manifest, the frames that hold a file fetched (adjacent ones in one ranged read)
//! and decoded, each against its own checksum and the table's length, and the file's tar header
//! checked (`header_check`) before a byte of its content is written.

use std::io::Write;

use super::header_check::{EXTENSION_WINDOW, Extension, USTAR_ID_MAX, USTAR_SIZE_MAX, Ustar};
use super::manifest::{DayKeys, Manifest, ManifestEntry};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::tar::seek_table::{self as seekable, SeekTable};

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

/// Reads the seek table of the archive of `keys` (one ranged read of its tail), checked against
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

/// Reads files out of one archive by its seek table, keeping the last frame decoded: the small
/// files of a folder share their group frame, which is then fetched and decoded once.
pub struct FrameReader<'a> {
    exports: Exports<'a>,
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

/// The exports location a reader reads: borrowed for one command, or shared by a long-lived
/// reader (a mount keeps one per day, beside other users of the same store).
enum Exports<'a> {
    Borrowed(&'a dyn Store),
    Shared(std::sync::Arc<dyn Store>),
}

impl Exports<'_> {
    fn get(&self) -> &dyn Store {
        match self {
            Exports::Borrowed(s) => *s,
            Exports::Shared(s) => s.as_ref(),
        }
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
        Self::over(Exports::Borrowed(exports), keys, manifest)
    }

    /// [`FrameReader::open`] over a shared handle of the exports location, for a reader that
    /// outlives the call that made it.
    pub fn open_shared(
        exports: std::sync::Arc<dyn Store>,
        keys: &DayKeys,
        manifest: &Manifest,
    ) -> Result<FrameReader<'static>> {
        FrameReader::over(Exports::Shared(exports), keys, manifest)
    }

    fn over(exports: Exports<'a>, keys: &DayKeys, manifest: &Manifest) -> Result<FrameReader<'a>> {
        let table = read_table(exports.get(), keys, manifest)?;
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
            let bytes = self
                .exports
                .get()
                .get_range(&self.key, start, end - start)?;
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

    /// What the header of `entry` says: from the last [`FrameReader::check`] when that was of
    /// this entry, otherwise checked now.
    fn checked_header(&mut self, entry: &ManifestEntry) -> Result<HeaderMeta> {
        match &self.checked {
            Some(c)
                if Some(c.offset) == entry.offset
                    && c.path == entry.path.0
                    && c.size == entry.size =>
            {
                Ok(c.header)
            }
            _ => self.check(entry),
        }
    }

    /// Writes the content of `entry` to `out`, after [`FrameReader::check`]: nothing is written
    /// before the header is found to be the entry's. Returns the frames read for its content.
    pub fn copy(&mut self, entry: &ManifestEntry, out: &mut dyn Write) -> Result<usize> {
        let header = self.checked_header(entry)?;
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

impl FrameReader<'_> {
    /// Up to `len` bytes of the content of `entry` from `offset` within it (fewer at its end,
    /// none past it), after [`FrameReader::check`] found its header (once per entry: a reader
    /// reading one file piece by piece checks it at the first piece).
    pub fn read_range(&mut self, entry: &ManifestEntry, offset: u64, len: u64) -> Result<Vec<u8>> {
        self.checked_header(entry)?;
        let len = len.min(entry.size.saturating_sub(offset));
        if len == 0 {
            return Ok(Vec::new());
        }
        let start = entry.offset.expect("checked") + offset;
        self.gather(start, len)
    }
}

fn not_the_header(entry: &ManifestEntry, why: &str) -> Error {
    Error::corrupt(format!(
        "the archive holds no header of {} at the manifest's offset ({why})",
        entry.path.lossy()
    ))
}
