//! The manifest of a day and the names of its three objects: what `manifest.json` holds, and how
//! it is read back whole (by `exports verify`, the rerun check, and the next day's export for its
//! frame lists). Writing it is `manifest_write`'s, reading the entries of a few files as a stream
//! `manifest_stream`'s, and what an export reports `report`'s.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::snapshot::{Skipped, Warning};
use crate::format::tree::{EntryKind, RawBytes};
use crate::id::Id;
use crate::store::Store;

/// Version of the manifest format.
pub const MANIFEST_VERSION: u32 = 1;

/// The three object names of one day, below the exports prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayKeys {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// `DATE/shared-DATE.tar.zst`.
    pub archive: String,
    /// `DATE/shared-DATE.tar.zst.sha256`.
    pub sha256: String,
    /// `DATE/shared-DATE.manifest.json`.
    pub manifest: String,
}

impl DayKeys {
    /// The keys of `date`, which must be `YYYY-MM-DD`.
    pub fn new(date: &str) -> Result<DayKeys> {
        jiff::civil::Date::strptime("%Y-%m-%d", date)
            .map_err(|_| Error::usage(format!("{date:?} is not a date (YYYY-MM-DD)")))?;
        Ok(DayKeys {
            date: date.to_string(),
            archive: format!("{date}/shared-{date}.tar.zst"),
            sha256: format!("{date}/shared-{date}.tar.zst.sha256"),
            manifest: format!("{date}/shared-{date}.manifest.json"),
        })
    }

    /// The archive's file name.
    pub fn archive_name(&self) -> String {
        format!("shared-{}.tar.zst", self.date)
    }
}

/// The archive as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the archive, hex.
    pub sha256: String,
}

/// Where the archive's seek table is (see `seekable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeekTableInfo {
    /// Its offset in the archive: the bytes before it are the frames.
    pub offset: u64,
    /// Its length (the whole skippable frame).
    pub length: u64,
    /// Frames it lists.
    pub frames: u64,
}

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path inside the archive (no trailing `/`); raw bytes as in trees.
    pub path: RawBytes,
    /// Entry type.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Content length (0 for hardlinks after the first name, directories and symlinks).
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_ns: u32,
    /// Permission bits.
    pub mode: u32,
    /// Symlink target, or for a hardlink the path of the first name of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<RawBytes>,
    /// Where the file's content starts in the decompressed tar stream (regular files; empty
    /// ones too since 2026-12-07, absent for them in older manifests): with the seek table, a
    /// reader fetches just the frames that hold it, and checks the header before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// An entry of the snapshot that the archive leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    /// Path.
    pub path: RawBytes,
    /// Entry type.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Why: `socket`, `fifo` and device nodes have no place in a portable archive.
    pub reason: String,
}

/// `shared-DATE.manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub format_version: u32,
    /// The day.
    pub date: String,
    /// The snapshot the archive was built from.
    pub snapshot: Id,
    /// That snapshot's root tree; the archive's bytes depend on nothing else.
    pub root: Id,
    /// When that snapshot was taken.
    pub snapshot_time: String,
    /// Source root.
    pub source: String,
    /// Folders.
    pub folders: Vec<String>,
    /// The archive.
    pub archive: ArchiveInfo,
    /// Every entry, in archive order (empty in the manifest an export returns: its entries went
    /// to the store as they were walked; [`Manifest::entry_count`] counts them).
    pub entries: Vec<ManifestEntry>,
    /// How many entries the manifest lists.
    #[serde(skip)]
    pub entry_count: u64,
    /// Snapshot entries left out of the archive.
    pub skipped: Vec<LeftOut>,
    /// What the backup excluded on purpose.
    pub excluded: Vec<Skipped>,
    /// What the backup could not read.
    pub warnings: Vec<Warning>,
    /// The archive's frames of headers and small files, for the next day's export to reuse.
    #[serde(default)]
    pub groups: Vec<GroupFrame>,
    /// The archive's runs of stored frames, for the next day's export to reuse.
    #[serde(default)]
    pub runs: Vec<FrameRun>,
    /// The seek table at the end of the archive (absent in archives written before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seek_table: Option<SeekTableInfo>,
}

/// Consecutive stored frames of one large file in an archive: up to
/// [`RUN_CHUNKS`](super::assemble::RUN_CHUNKS) of them, cut at that count from the file's start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameRun {
    /// BLAKE3 of what determines the run: each chunk's id, decoded length and frame length.
    pub recipe: Id,
    /// Where the run starts in the archive.
    pub offset: u64,
    /// Its length: the sum of its frames' lengths.
    pub length: u64,
}

/// One frame of headers and small files in an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupFrame {
    /// BLAKE3 of what determines the frame: the tar bytes, with small files' content named by
    /// chunk id, and the compression level.
    pub recipe: Id,
    /// Where the frame starts in the archive.
    pub offset: u64,
    /// Its length.
    pub length: u64,
    /// BLAKE3 of the frame's bytes, checked before the frame is reused.
    pub blake3: Id,
}

/// Why group frames were compressed rather than copied from the earlier archive, by reason:
/// counted by the writing end as it writes, and reported in [`Reused`](super::Reused).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotReused {
    /// The earlier archive has no group of the same recipe: an entry of the group changed, came
    /// or went, or the group's bounds moved with such an entry.
    pub changed: u64,
    /// The earlier frame could not be read whole (the earlier archive is cut short or its reads
    /// failed).
    pub unreadable: u64,
    /// The earlier frame failed its BLAKE3 check.
    pub damaged: u64,
}

/// The frame lists of a day's manifest, which are all the next day's export draws on: the
/// entries are skipped rather than built (half of a notes tree's next-day export was reading
/// them).
pub(super) fn read_frame_lists(
    exports: &dyn Store,
    keys: &DayKeys,
) -> Result<(Vec<GroupFrame>, Vec<FrameRun>)> {
    #[derive(Deserialize)]
    struct FrameLists {
        format_version: u32,
        #[serde(default)]
        groups: Vec<GroupFrame>,
        #[serde(default)]
        runs: Vec<FrameRun>,
    }
    let bytes = read_whole(exports, keys)?;
    if let Some(lists) = frame_lists_at_the_end(&bytes) {
        return Ok(lists);
    }
    let m = parse_as(&bytes, keys, |m: &FrameLists| m.format_version)?;
    Ok((m.groups, m.runs))
}

/// The largest manifest read whole (`exports verify`, the rerun check, the frame lists of the
/// day an export draws on): 1 GiB of JSON is some 7,000,000 entries and parses into about
/// 2 GiB; a larger object (a planted one: the nightly key may write the exports) is refused by
/// its size before a byte of it is read.
pub const MAX_MANIFEST: u64 = 1 << 30;

/// The day's manifest, whole; refused unread beyond [`MAX_MANIFEST`] bytes.
pub fn read_manifest(exports: &dyn Store, keys: &DayKeys) -> Result<Manifest> {
    let mut m = read_as(exports, keys, |m: &Manifest| m.format_version)?;
    m.entry_count = m.entries.len() as u64;
    Ok(m)
}

/// The frame lists of a manifest laid out as cairn writes them (and as serde_json pretty-prints):
/// the top-level keys after the entries, each on a line of its own with a two-space indent, are
/// parsed without reading the entries at all (a JSON string holds no raw newline, so the key's
/// line cannot be inside one). `None` when the manifest is not laid out so: it is then parsed
/// whole.
pub(super) fn frame_lists_at_the_end(bytes: &[u8]) -> Option<(Vec<GroupFrame>, Vec<FrameRun>)> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Tail {
        groups: Vec<GroupFrame>,
        #[serde(default)]
        runs: Vec<FrameRun>,
        #[serde(default, rename = "seek_table")]
        _seek_table: Option<SeekTableInfo>,
    }
    const GROUPS: &[u8] = b"\n  \"groups\": [";
    let version = format!("{{\n  \"format_version\": {MANIFEST_VERSION},\n");
    if !bytes.starts_with(version.as_bytes()) {
        return None;
    }
    let at = bytes.windows(GROUPS.len()).rposition(|w| w == GROUPS)?;
    let mut tail = Vec::with_capacity(bytes.len() - at + 1);
    tail.push(b'{');
    tail.extend_from_slice(&bytes[at..]);
    let t: Tail = serde_json::from_slice(&tail).ok()?;
    Some((t.groups, t.runs))
}

/// The day's manifest read as `T`, refused unless its `format_version` is this cairn's.
fn read_as<T: serde::de::DeserializeOwned>(
    exports: &dyn Store,
    keys: &DayKeys,
    version: fn(&T) -> u32,
) -> Result<T> {
    parse_as(&read_whole(exports, keys)?, keys, version)
}

/// The bytes of the day's manifest, refused by its size beyond [`MAX_MANIFEST`] before any is
/// read. The object is read by ranged reads up to the size found first, so one replaced in
/// between cannot make the read larger either.
fn read_whole(exports: &dyn Store, keys: &DayKeys) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut reader = crate::store::ObjectReader::open(exports, &keys.manifest)?;
    let size = reader.size();
    if size > MAX_MANIFEST {
        return Err(Error::corrupt(format!(
            "{} is {size} bytes, more than the {MAX_MANIFEST} bytes a manifest may take",
            keys.manifest
        )));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    reader.read_to_end(&mut bytes).map_err(|e| {
        let message = format!("reading {}: {e}", keys.manifest);
        // The store's own error, kind and all (a transient failure stays one).
        match e.into_inner().and_then(|i| i.downcast::<Error>().ok()) {
            Some(err) => err.context(format!("reading {}", keys.manifest)),
            None => Error::new(crate::ErrorKind::Io, message),
        }
    })?;
    Ok(bytes)
}

/// [`read_as`] of bytes already read.
fn parse_as<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    keys: &DayKeys,
    version: fn(&T) -> u32,
) -> Result<T> {
    let m: T = serde_json::from_slice(bytes).map_err(|e| {
        Error::corrupt(format!("{} is not a valid manifest", keys.manifest)).with_source(e)
    })?;
    if version(&m) != MANIFEST_VERSION {
        return Err(Error::corrupt(format!(
            "{}: unknown manifest version {}",
            keys.manifest,
            version(&m)
        )));
    }
    Ok(m)
}
