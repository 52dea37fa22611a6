//! A day's archive as a folder of the mount: its manifest read once (streamed, within the
//! manifest reader's bounds) into an index of paths and folder listings, and its files read by
//! the seek table, only the frames a read covers fetched, each file's tar header checked at its
//! first read (a manifest whose offsets shifted cannot hand out another file's bytes). Nothing
//! is downloaded whole and no local index is built, unlike mounting the tar with a generic tool;
//! the repository is not needed, so a day on S3 is readable from the exports location alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::export::frames::{FrameReader, check_seek_table};
use crate::export::manifest::{DayKeys, Manifest, ManifestEntry};
use crate::export::manifest_stream::read_manifest_filtered;
use crate::format::tree::{EntryKind, RawBytes};
use crate::store::Store;

/// The index of one day's archive.
pub(super) struct DayIndex {
    keys: DayKeys,
    /// The manifest without its entries (the archive's size and seek table).
    head: Manifest,
    entries: Vec<Arc<ManifestEntry>>,
    by_path: HashMap<Vec<u8>, u32>,
    /// Each folder's entries, sorted by name (the day's folder is the empty path).
    children: HashMap<Vec<u8>, Vec<u32>>,
    /// Names of each hardlinked file, by its first name's path.
    links: HashMap<Vec<u8>, u32>,
    exports: Arc<dyn Store>,
    /// Opened at the first read (one ranged read of the table); keeps the last frame decoded.
    reader: Mutex<Option<FrameReader<'static>>>,
}

impl std::fmt::Debug for DayIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DayIndex")
            .field("date", &self.keys.date)
            .field("entries", &self.entries.len())
            .finish()
    }
}

/// The folder holding `path`, and its last component.
fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

impl DayIndex {
    /// Reads the manifest of `date` and indexes it.
    pub(super) fn load(exports: Arc<dyn Store>, date: &str) -> Result<DayIndex> {
        let keys = DayKeys::new(date)?;
        let mut head = read_manifest_filtered(exports.as_ref(), &keys, &mut |_| true)?;
        check_seek_table(&keys, &head)?;
        let listed = std::mem::take(&mut head.entries);
        let mut idx = DayIndex {
            keys,
            head,
            entries: Vec::with_capacity(listed.len()),
            by_path: HashMap::with_capacity(listed.len()),
            children: HashMap::new(),
            links: HashMap::new(),
            exports,
            reader: Mutex::new(None),
        };
        for e in listed {
            idx.add(e)?;
        }
        let entries = &idx.entries;
        for list in idx.children.values_mut() {
            list.sort_by(|a, b| {
                split(&entries[*a as usize].path.0)
                    .1
                    .cmp(split(&entries[*b as usize].path.0).1)
            });
        }
        Ok(idx)
    }

    /// Adds one manifest entry, and first the folders above it that the manifest does not
    /// list (shallowest first, by a loop: the depth is the path's, bounded by PATH_MAX).
    fn add(&mut self, e: ManifestEntry) -> Result<()> {
        let path = e.path.0.clone();
        let clean = crate::restore::components(&path)
            .is_ok_and(|c| c.len() == path.split(|b| *b == b'/').count());
        if !clean || e.mtime_ns > 999_999_999 {
            return Err(Error::corrupt(format!(
                "{}: the entry {:?} has an unclean path or a time beyond its second",
                self.keys.manifest,
                e.path.lossy()
            )));
        }
        if self.by_path.contains_key(&path) {
            // Listed twice: the first stands, as the archive's first header does for readers
            // that stop at the first match.
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut up = split(&path).0;
        while !up.is_empty() && !self.by_path.contains_key(up) {
            missing.push(up.to_vec());
            up = split(up).0;
        }
        for folder in missing.into_iter().rev() {
            self.push(ManifestEntry {
                path: RawBytes(folder),
                kind: EntryKind::Dir,
                size: 0,
                mtime: e.mtime,
                mtime_ns: 0,
                mode: 0o755,
                link: None,
                offset: None,
            })?;
        }
        if e.kind == EntryKind::File
            && let Some(first) = &e.link
        {
            *self.links.entry(first.0.clone()).or_insert(1) += 1;
        }
        self.push(e)
    }

    /// Indexes one entry whose folder is indexed.
    fn push(&mut self, e: ManifestEntry) -> Result<()> {
        let i = u32::try_from(self.entries.len())
            .map_err(|_| Error::corrupt("a manifest of more than 2³² entries"))?;
        let parent = split(&e.path.0).0.to_vec();
        self.children.entry(parent).or_default().push(i);
        self.by_path.insert(e.path.0.clone(), i);
        self.entries.push(Arc::new(e));
        Ok(())
    }

    /// Entries held (for the cache's weight).
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry at `path`.
    pub(super) fn entry(&self, path: &[u8]) -> Option<Arc<ManifestEntry>> {
        self.by_path
            .get(path)
            .map(|i| self.entries[*i as usize].clone())
    }

    /// The entries of the folder `path` (empty for the day's folder), sorted by name.
    pub(super) fn list(&self, path: &[u8]) -> Vec<Arc<ManifestEntry>> {
        self.children
            .get(path)
            .map(|l| {
                l.iter()
                    .map(|i| self.entries[*i as usize].clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The entry named `name` in the folder `path`.
    pub(super) fn child(&self, path: &[u8], name: &[u8]) -> Option<Arc<ManifestEntry>> {
        let list = self.children.get(path)?;
        let i = list
            .binary_search_by(|i| split(&self.entries[*i as usize].path.0).1.cmp(name))
            .ok()?;
        Some(self.entries[list[i] as usize].clone())
    }

    /// Folders directly in the folder `path`.
    pub(super) fn subfolders(&self, path: &[u8]) -> u32 {
        self.children.get(path).map_or(0, |l| {
            l.iter()
                .filter(|i| self.entries[**i as usize].kind == EntryKind::Dir)
                .count() as u32
        })
    }

    /// The file a name stands for: itself, or for a hardlink its first name; and how many
    /// names it has.
    pub(super) fn file_of(&self, e: &Arc<ManifestEntry>) -> Result<(Arc<ManifestEntry>, u32)> {
        let first = match (&e.kind, &e.link) {
            (EntryKind::File, Some(first)) => {
                let target = self.entry(&first.0);
                // Only a plain file, named before and not itself a link: a link to a folder, to
                // itself or along a chain would make two kinds of node share one number.
                match target {
                    Some(t)
                        if t.kind == EntryKind::File && t.link.is_none() && t.path != e.path =>
                    {
                        t
                    }
                    _ => {
                        return Err(Error::corrupt(format!(
                            "{}: {} is a hardlink to {}, which is not a file it lists",
                            self.keys.manifest,
                            e.path.lossy(),
                            first.lossy()
                        )));
                    }
                }
            }
            _ => e.clone(),
        };
        let names = self.links.get(&first.path.0).copied().unwrap_or(1);
        Ok((first, names))
    }

    /// Up to `len` bytes of the file `e` (a first name) from `offset`.
    pub(super) fn read(&self, e: &ManifestEntry, offset: u64, len: u32) -> Result<Vec<u8>> {
        if offset >= e.size {
            return Ok(Vec::new());
        }
        let mut reader = self.reader.lock().expect("archive reader");
        if reader.is_none() {
            *reader = Some(FrameReader::open_shared(
                self.exports.clone(),
                &self.keys,
                &self.head,
            )?);
        }
        let r = reader.as_mut().expect("opened");
        r.read_range(e, offset, u64::from(len))
            .map_err(|err| err.context(format!("{} of {}", e.path.lossy(), self.keys.archive)))
    }
}
