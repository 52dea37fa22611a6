//! The manifest of a day and the names of its three objects: what `manifest.json` holds,
//! how it is read back, and what an export reports.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::Id;
use crate::snapshot::{Skipped, Warning};
use crate::store::Store;
use crate::tree::{EntryKind, RawBytes};

/// Version of the manifest format.
pub const MANIFEST_VERSION: u32 = 1;
/// Files up to this size are decoded and compressed together with their headers; larger files
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
    /// Where the file's content starts in the decompressed tar stream (files with content
    /// only): with the seek table, a reader fetches just the frames that hold it.
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
    /// Every entry, in archive order.
    pub entries: Vec<ManifestEntry>,
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
/// [`RUN_CHUNKS`](super::walk::RUN_CHUNKS) of them, cut at that count from the file's start.
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
/// What [`export`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// A new archive was written.
    Written(Manifest, Reused),
    /// A complete archive of the same tree was already there; nothing was written.
    Unchanged(Manifest),
}

/// How much of a new archive came from an earlier one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reused {
    /// The day whose archive was drawn on, if any.
    pub from: Option<String>,
    /// Frames of headers and small files in the new archive.
    pub groups: u64,
    /// How many of them were copied from the earlier archive instead of compressed.
    pub reused_groups: u64,
    /// Why the other group frames were compressed (absent when there was no earlier archive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_reused: Option<NotReused>,
    /// Runs of large files' stored frames in the new archive.
    pub runs: u64,
    /// How many of them were taken from the earlier archive instead of the packs.
    pub reused_runs: u64,
    /// Stored chunk frames decoded and checked against their ids as they were copied (reported
    /// by the run on its own, not as part of the reuse).
    #[serde(skip)]
    pub checked_frames: u64,
}

/// Why group frames were compressed rather than copied from the earlier archive, by reason.
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

impl Published {
    /// The manifest of the day's archive.
    pub fn manifest(&self) -> &Manifest {
        match self {
            Published::Written(m, _) | Published::Unchanged(m) => m,
        }
    }
}

/// Reads and parses a day's manifest.
impl Manifest {
    /// The manifest's bytes: JSON with the top-level fields, and each item of its lists, on a
    /// line of their own (two-space indent), every entry compact on its line — a 200,000-file
    /// day's manifest is 26 MB so rather than 40 MB pretty-printed, and still one `grep` away
    /// from any path.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.entries.len() * 128);
        let mut ser = serde_json::Serializer::with_formatter(&mut out, Lines::default());
        self.serialize(&mut ser).expect("manifests serialize");
        out.push(b'\n');
        out
    }
}

/// serde_json's pretty printing for the first two levels of nesting, compact below: the
/// manifest's layout.
#[derive(Default)]
struct Lines {
    /// Per open array or object, whether it has a value yet.
    open: Vec<bool>,
}

impl Lines {
    /// Levels printed one value a line.
    const PRETTY: usize = 2;

    fn item<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if let Some(has) = self.open.last_mut() {
            *has = true;
        }
        if !first {
            w.write_all(b",")?;
        }
        let depth = self.open.len();
        if depth <= Self::PRETTY {
            w.write_all(b"\n")?;
            for _ in 0..depth {
                w.write_all(b"  ")?;
            }
        }
        Ok(())
    }

    fn close<W: ?Sized + std::io::Write>(&mut self, w: &mut W, end: &[u8]) -> std::io::Result<()> {
        let had = self.open.pop().unwrap_or(false);
        let depth = self.open.len();
        if had && depth < Self::PRETTY {
            w.write_all(b"\n")?;
            for _ in 0..depth {
                w.write_all(b"  ")?;
            }
        }
        w.write_all(end)
    }
}

/// The formatter's methods that open and close an array or an object.
macro_rules! brackets {
    ($($begin:ident, $end:ident, $open:literal, $close:literal;)*) => {$(
        fn $begin<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
            self.open.push(false);
            w.write_all($open)
        }
        fn $end<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
            self.close(w, $close)
        }
    )*};
}

impl serde_json::ser::Formatter for Lines {
    brackets! {
        begin_array, end_array, b"[", b"]";
        begin_object, end_object, b"{", b"}";
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(if self.open.len() <= Self::PRETTY {
            b": "
        } else {
            b":"
        })
    }
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
    let m = read_as(exports, keys, |m: &FrameLists| m.format_version)?;
    Ok((m.groups, m.runs))
}

/// The day's manifest, whole.
pub fn read_manifest(exports: &dyn Store, keys: &DayKeys) -> Result<Manifest> {
    read_as(exports, keys, |m: &Manifest| m.format_version)
}

/// The day's manifest read as `T`, refused unless its `format_version` is this cairn's.
fn read_as<T: serde::de::DeserializeOwned>(
    exports: &dyn Store,
    keys: &DayKeys,
    version: fn(&T) -> u32,
) -> Result<T> {
    let bytes = exports.get(&keys.manifest)?;
    let m: T = serde_json::from_slice(&bytes).map_err(|e| {
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
