//! Reading a day's manifest as a stream, keeping only the entries asked for: one file of a
//! million-entry day is found holding one entry at a time. Whatever the JSON says, no value kept
//! may take more than [`MAX_VALUE`] bytes, nor may it nest deeper than [`MAX_DEPTH`] levels.

use serde::Deserialize;

use super::manifest::{DayKeys, MANIFEST_VERSION, Manifest, ManifestEntry};
use crate::error::{Error, Result};
use crate::store::Store;

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
