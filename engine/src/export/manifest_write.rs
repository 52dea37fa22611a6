//! Writing `manifest.json`: the top-level fields and each item of their lists on a line of their
//! own, every entry compact on its line, and the entries serialized as the walk yields them (a
//! large day's are never held as values: past a few MiB they wait in a temporary file).

use serde::Serialize;

use super::manifest::{Manifest, ManifestEntry};
use crate::error::{Error, Result};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::manifest::{
        ArchiveInfo, FrameRun, GroupFrame, MANIFEST_VERSION, SeekTableInfo, frame_lists_at_the_end,
    };
    use crate::format::tree::{EntryKind, RawBytes};
    use crate::id::Id;

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
