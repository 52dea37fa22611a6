//! The manifest of a day and the names of its three objects: what `manifest.json` holds,
//! how it is read back, and what an export reports.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::snapshot::{Skipped, Warning};
use crate::format::tree::{EntryKind, RawBytes};
use crate::id::Id;
use crate::store::Store;

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
    /// Writes the manifest with `lines` as its `entries` to `out`: JSON with the top-level fields,
    /// and each item of their lists, on a line of their own (two-space indent), every entry
    /// compact on its line — a 200,000-file day's manifest is 26 MB so rather than 40 MB
    /// pretty-printed, and still one `grep` away from any path. `self.entries` is not written.
    pub(super) fn write_with(&self, lines: EntryLines, out: &mut dyn std::io::Write) -> Result<()> {
        let mut head = Vec::new();
        let mut ser = serde_json::Serializer::with_formatter(&mut head, Lines::default());
        Manifest {
            entries: Vec::new(),
            ..self.clone()
        }
        .serialize(&mut ser)
        .expect("manifests serialize");
        // A JSON string holds no raw newline, so the top-level key's line is the only match.
        const EMPTY: &[u8] = b"\n  \"entries\": []";
        let at = head
            .windows(EMPTY.len())
            .position(|w| w == EMPTY)
            .expect("the manifest has an entries list")
            + EMPTY.len()
            - 1;
        let io = |e| Error::io("writing the manifest", e);
        out.write_all(&head[..at]).map_err(io)?;
        if lines.count > 0 {
            lines.copy_to(out)?;
            out.write_all(b"\n  ").map_err(io)?;
        }
        out.write_all(&head[at..]).map_err(io)?;
        out.write_all(b"\n").map_err(io)
    }
}

/// The manifest's entries as they are walked, each serialized on its line at once: they are
/// the manifest's bulk (a 1,000,000-file day's is 140 MB), so they are never held as values,
/// and past [`EntryLines::SPILL`] bytes they go to an unnamed temporary file.
#[derive(Default)]
pub(super) struct EntryLines {
    buf: Vec<u8>,
    spill: Option<std::fs::File>,
    count: u64,
}

impl EntryLines {
    /// Bytes of lines held in memory before they are written out to the temporary file.
    const SPILL: usize = 8 << 20;

    pub(super) fn push(&mut self, e: &ManifestEntry) -> Result<()> {
        self.buf.extend_from_slice(if self.count == 0 {
            b"\n    "
        } else {
            b",\n    "
        });
        serde_json::to_writer(&mut self.buf, e).expect("entries serialize");
        self.count += 1;
        if self.buf.len() >= Self::SPILL {
            use std::io::Write;
            let io = |e| Error::io("spilling manifest entries to a temporary file", e);
            if self.spill.is_none() {
                self.spill = Some(tempfile::tempfile().map_err(io)?);
            }
            let f = self.spill.as_mut().expect("made above");
            f.write_all(&self.buf).map_err(io)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// How many entries were pushed.
    pub(super) fn count(&self) -> u64 {
        self.count
    }

    fn copy_to(self, out: &mut dyn std::io::Write) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        let io = |e| Error::io("reading back the manifest's entries", e);
        if let Some(mut f) = self.spill {
            f.seek(SeekFrom::Start(0)).map_err(io)?;
            std::io::copy(&mut f, out).map_err(io)?;
        }
        out.write_all(&self.buf).map_err(io)
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

/// The most bytes of JSON one value kept by [`read_manifest_filtered`] may take (an entry, a
/// key, a top-level field other than the lists): an entry's path and link are at most 4096
/// bytes each, 24 KiB each even with every byte escaped as `\u00XX`.
const MAX_VALUE: u64 = 64 << 10;

/// The day's manifest with only the entries `keep` accepts (`entry_count` counts them all),
/// read as a stream: one file of a 1,000,000-entry day (a 140 MB manifest) is found holding one
/// entry at a time and the read buffer, not the 275 MB the whole manifest parses into. The
/// lists other than `entries` (`skipped`, `excluded`, `warnings`, `groups`, `runs`) are passed
/// over unread and come back empty. It does not depend on the layout: any JSON is read, and
/// whatever it says, no value kept may take more than [`MAX_VALUE`] bytes.
pub fn read_manifest_filtered(
    exports: &dyn Store,
    keys: &DayKeys,
    keep: &mut dyn FnMut(&ManifestEntry) -> bool,
) -> Result<Manifest> {
    use serde::de::DeserializeSeed;
    let reader = crate::store::ObjectReader::open(exports, &keys.manifest)?;
    let budget = Budget::default();
    budget.reset(MAX_VALUE);
    let limited = Limited {
        inner: std::io::BufReader::with_capacity(64 << 10, reader),
        budget: &budget,
    };
    let mut de = serde_json::Deserializer::from_reader(limited);
    let bad = |e: serde_json::Error| {
        if budget.over.get() {
            Error::corrupt(format!(
                "{} holds a value longer than {MAX_VALUE} bytes",
                keys.manifest
            ))
        } else if budget.too_deep.get() {
            Error::corrupt(format!(
                "{} nests deeper than {MAX_DEPTH} levels",
                keys.manifest
            ))
        } else if e.is_io() {
            // The store's read failed: its error, not a verdict on the manifest.
            Error::new(
                crate::ErrorKind::Io,
                format!("reading {}: {e}", keys.manifest),
            )
        } else {
            Error::corrupt(format!("{} is not a valid manifest: {e}", keys.manifest))
        }
    };
    let m = Streamed {
        budget: &budget,
        keep,
    }
    .deserialize(&mut de)
    .map_err(bad)?;
    budget.left.set(u64::MAX);
    de.end().map_err(bad)?;
    Ok(m)
}

/// What the value being read may still take, and whether a value went over; and where the
/// bytes handed to serde_json stand in the JSON (inside a string or not, how deeply nested).
#[derive(Default)]
struct Budget {
    left: std::cell::Cell<u64>,
    over: std::cell::Cell<bool>,
    depth: std::cell::Cell<u32>,
    in_string: std::cell::Cell<bool>,
    escaped: std::cell::Cell<bool>,
    too_deep: std::cell::Cell<bool>,
}

/// The deepest nesting a manifest may have (cairn's is 4: the manifest, `entries`, an entry,
/// a `{"b64": …}` path). serde_json passes over a value it does not keep without buffering its
/// strings, but with a byte per level of nesting: this bounds those bytes.
const MAX_DEPTH: u32 = 32;

impl Budget {
    fn reset(&self, to: u64) {
        self.left.set(to);
    }

    /// Follows `bytes` through strings and brackets; false once nested deeper than allowed.
    fn follow(&self, bytes: &[u8]) -> bool {
        let (mut depth, mut in_string, mut escaped) =
            (self.depth.get(), self.in_string.get(), self.escaped.get());
        for b in bytes {
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'[' | b'{' => depth += 1,
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
            if depth > MAX_DEPTH {
                self.too_deep.set(true);
                return false;
            }
        }
        self.depth.set(depth);
        self.in_string.set(in_string);
        self.escaped.set(escaped);
        true
    }
}

/// A reader that fails once the budget is spent (serde_json copies a string it keeps into a
/// buffer of the string's size, so an unbounded string would cost unbounded memory) or the
/// JSON nests deeper than [`MAX_DEPTH`].
struct Limited<'b, R> {
    inner: R,
    budget: &'b Budget,
}

impl<R: std::io::Read> std::io::Read for Limited<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.budget.left.get();
        if left == 0 && !buf.is_empty() {
            self.budget.over.set(true);
            return Err(std::io::Error::other("a manifest value is too long"));
        }
        let room = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..room])?;
        self.budget.left.set(left - n as u64);
        if !self.budget.follow(&buf[..n]) {
            return Err(std::io::Error::other("a manifest nests too deeply"));
        }
        Ok(n)
    }
}

/// The top-level object of a manifest, read field by field.
struct Streamed<'a> {
    budget: &'a Budget,
    keep: &'a mut dyn FnMut(&ManifestEntry) -> bool,
}

/// The manifest's top-level keys; the lists a streamed read does not need are passed over, and
/// keys cairn does not know are `Other`.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(field_identifier, rename_all = "snake_case")]
enum Field {
    FormatVersion,
    Date,
    Snapshot,
    Root,
    SnapshotTime,
    Source,
    Folders,
    Archive,
    Entries,
    Skipped,
    Excluded,
    Warnings,
    Groups,
    Runs,
    SeekTable,
    #[serde(other)]
    Other,
}

impl Field {
    /// The key as the manifest spells it (`Other` has none: unknown keys are not checked).
    fn key(self) -> &'static str {
        match self {
            Field::FormatVersion => "format_version",
            Field::Date => "date",
            Field::Snapshot => "snapshot",
            Field::Root => "root",
            Field::SnapshotTime => "snapshot_time",
            Field::Source => "source",
            Field::Folders => "folders",
            Field::Archive => "archive",
            Field::Entries => "entries",
            Field::Skipped => "skipped",
            Field::Excluded => "excluded",
            Field::Warnings => "warnings",
            Field::Groups => "groups",
            Field::Runs => "runs",
            Field::SeekTable => "seek_table",
            Field::Other => "",
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Streamed<'_> {
    type Value = Manifest;
    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        d: D,
    ) -> std::result::Result<Manifest, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Streamed<'_> {
    type Value = Manifest;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a manifest object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<Manifest, A::Error> {
        use serde::de::Error as _;
        let Streamed { budget, keep } = self;
        let (mut version, mut date, mut snapshot, mut root, mut snapshot_time) =
            (None, None, None, None, None);
        let (mut source, mut folders, mut archive, mut seek_table) = (None, None, None, None);
        let mut entries = Vec::new();
        let mut count = 0u64;
        let mut seen = Vec::new();
        loop {
            budget.reset(MAX_VALUE);
            let Some(field) = map.next_key::<Field>()? else {
                break;
            };
            // As `read_manifest` (serde's derive) does: a key given twice would let the last
            // win here and count the entries twice, where the whole read refuses it.
            if field != Field::Other {
                if seen.contains(&field) {
                    return Err(A::Error::duplicate_field(field.key()));
                }
                seen.push(field);
            }
            budget.reset(MAX_VALUE);
            match field {
                Field::FormatVersion => {
                    let v: u32 = map.next_value()?;
                    // Checked before the entries, which another version may lay out otherwise.
                    if v != MANIFEST_VERSION {
                        return Err(A::Error::custom(format!("unknown manifest version {v}")));
                    }
                    version = Some(v);
                }
                Field::Date => date = Some(map.next_value()?),
                Field::Snapshot => snapshot = Some(map.next_value()?),
                Field::Root => root = Some(map.next_value()?),
                Field::SnapshotTime => snapshot_time = Some(map.next_value()?),
                Field::Source => source = Some(map.next_value()?),
                Field::Folders => folders = Some(map.next_value()?),
                Field::Archive => archive = Some(map.next_value()?),
                Field::SeekTable => seek_table = map.next_value()?,
                Field::Entries => map.next_value_seed(EntriesSeed {
                    budget,
                    keep: &mut *keep,
                    kept: &mut entries,
                    count: &mut count,
                })?,
                Field::Skipped
                | Field::Excluded
                | Field::Warnings
                | Field::Groups
                | Field::Runs
                | Field::Other => {
                    // Passed over without keeping anything: serde_json skips strings unbuffered.
                    budget.reset(u64::MAX);
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(Manifest {
            format_version: version.ok_or_else(|| A::Error::missing_field("format_version"))?,
            date: date.ok_or_else(|| A::Error::missing_field("date"))?,
            snapshot: snapshot.ok_or_else(|| A::Error::missing_field("snapshot"))?,
            root: root.ok_or_else(|| A::Error::missing_field("root"))?,
            snapshot_time: snapshot_time.ok_or_else(|| A::Error::missing_field("snapshot_time"))?,
            source: source.ok_or_else(|| A::Error::missing_field("source"))?,
            folders: folders.ok_or_else(|| A::Error::missing_field("folders"))?,
            archive: archive.ok_or_else(|| A::Error::missing_field("archive"))?,
            entries,
            entry_count: count,
            skipped: Vec::new(),
            excluded: Vec::new(),
            warnings: Vec::new(),
            groups: Vec::new(),
            runs: Vec::new(),
            seek_table,
        })
    }
}

/// The `entries` list, read one entry at a time; only those `keep` accepts are held.
struct EntriesSeed<'a> {
    budget: &'a Budget,
    keep: &'a mut dyn FnMut(&ManifestEntry) -> bool,
    kept: &'a mut Vec<ManifestEntry>,
    count: &'a mut u64,
}

impl<'de> serde::de::DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for EntriesSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of entries")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<(), A::Error> {
        loop {
            self.budget.reset(MAX_VALUE);
            let Some(e) = seq.next_element::<ManifestEntry>()? else {
                return Ok(());
            };
            *self.count += 1;
            if (self.keep)(&e) {
                self.kept.push(e);
            }
        }
    }
}

/// The frame lists of a manifest laid out as cairn writes them (and as serde_json pretty-prints):
/// the top-level keys after the entries, each on a line of its own with a two-space indent, are
/// parsed without reading the entries at all (a JSON string holds no raw newline, so the key's
/// line cannot be inside one). `None` when the manifest is not laid out so: it is then parsed
/// whole.
fn frame_lists_at_the_end(bytes: &[u8]) -> Option<(Vec<GroupFrame>, Vec<FrameRun>)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> ManifestEntry {
        ManifestEntry {
            path: RawBytes(format!("notetaking/folder-{:04}/n{i:07}.md", i / 500).into_bytes()),
            kind: EntryKind::File,
            size: i % 400,
            mtime: 1_764_000_000 + i as i64,
            mtime_ns: (i * 7919 % 1_000_000_000) as u32,
            mode: 0o644,
            link: None,
            offset: Some(i * 1024),
        }
    }

    fn manifest() -> Manifest {
        Manifest {
            format_version: MANIFEST_VERSION,
            date: "2026-11-30".into(),
            snapshot: Id::of(b"snapshot"),
            root: Id::of(b"root"),
            snapshot_time: "2026-11-30T02:00:00Z".into(),
            source: "/shared".into(),
            folders: vec!["notetaking".into(), "images".into()],
            archive: ArchiveInfo {
                name: "shared-2026-11-30.tar.zst".into(),
                size: 1,
                sha256: "00".repeat(32),
            },
            entries: Vec::new(),
            entry_count: 0,
            skipped: Vec::new(),
            excluded: Vec::new(),
            warnings: Vec::new(),
            groups: Vec::new(),
            runs: Vec::new(),
            seek_table: None,
        }
    }

    /// Entries beyond what is held in memory go through the temporary file and come back in
    /// order; the bytes are the manifest's JSON with one entry a line.
    #[test]
    fn entries_spilled_to_a_file_come_back_in_order_one_a_line() {
        let n = 120_000u64; // ~100 bytes a line: past `EntryLines::SPILL` once
        let mut lines = EntryLines::default();
        for i in 0..n {
            lines.push(&entry(i)).unwrap();
        }
        assert!(
            lines.spill.is_some(),
            "the test must cross the spill threshold"
        );
        assert_eq!(lines.count(), n);
        let mut out = Vec::new();
        manifest().write_with(lines, &mut out).unwrap();
        let back: Manifest = serde_json::from_slice(&out).unwrap();
        assert_eq!(back.entries.len() as u64, n);
        assert!(
            back.entries
                .iter()
                .enumerate()
                .all(|(i, e)| *e == entry(i as u64))
        );
        let text = String::from_utf8(out).unwrap();
        let first = serde_json::to_string(&entry(0)).unwrap();
        assert!(text.contains(&format!("\n  \"entries\": [\n    {first},\n")));
        assert!(
            text.ends_with("  \"runs\": []\n}\n"),
            "{}",
            &text[text.len() - 200..]
        );
    }

    /// The frame lists are read from the end of the manifest, without its entries, whether it
    /// is laid out one entry a line or pretty-printed (as cairn wrote it before); any other
    /// layout is parsed whole.
    #[test]
    fn frame_lists_are_read_from_the_end_in_either_layout() {
        let mut m = manifest();
        m.groups = (0..3)
            .map(|i| GroupFrame {
                recipe: Id::of(&[i]),
                offset: u64::from(i) * 100,
                length: 100,
                blake3: Id::of(&[i, i]),
            })
            .collect();
        m.runs = vec![FrameRun {
            recipe: Id::of(b"run"),
            offset: 300,
            length: 5,
        }];
        m.seek_table = Some(SeekTableInfo {
            offset: 305,
            length: 41,
            frames: 4,
        });
        let mut lines = EntryLines::default();
        // A path that looks like the key, escaped as JSON escapes it.
        let mut tricky = entry(1);
        tricky.path = RawBytes(b"x\n  \"groups\": [".to_vec());
        for e in [entry(0), tricky] {
            lines.push(&e).unwrap();
        }
        let mut ours = Vec::new();
        m.write_with(lines, &mut ours).unwrap();
        let want = (m.groups.clone(), m.runs.clone());
        assert_eq!(frame_lists_at_the_end(&ours), Some(want.clone()));
        let pretty = serde_json::to_vec_pretty(&m).unwrap();
        assert_eq!(frame_lists_at_the_end(&pretty), Some(want));
        assert_eq!(
            frame_lists_at_the_end(&serde_json::to_vec(&m).unwrap()),
            None
        );
    }

    /// No entries: an empty list, and the same JSON as any serializer gives.
    #[test]
    fn a_manifest_without_entries_is_the_same_json() {
        let mut out = Vec::new();
        manifest()
            .write_with(EntryLines::default(), &mut out)
            .unwrap();
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, serde_json::to_value(manifest()).unwrap());
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains("\n  \"entries\": [],\n")
        );
    }
}
