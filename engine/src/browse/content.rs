//! File content for the mount, read at any offset: a snapshot file's chunks located once when
//! it is opened (each chunk's start is the sum of the lengths before it), the chunks a read
//! covers taken from a bounded cache of decoded chunks or read and checked against their ids;
//! a read that continues where the last one ended (a `cat`, a `cp`) reads ahead the next chunks
//! from a remote store by one planned, parallel read, as the restore does, so a sequential read
//! of a large file from S3 is not a round trip per chunk. A day's archive file is read by its
//! seek table, through the day's [`super::archive::DayIndex`].

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::lru::Lru;
use crate::catalog::Catalog;
use crate::catalog::heal::{open_read_ahead, read_checked};
use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::format::tree::Entry;
use crate::id::Id;
use crate::repo::index::BlobLocation;
use crate::repo::{Repository, pack_key};
use crate::store::fetch::{FetchOptions, Want, fetch_all};

/// Decoded chunks kept for reads to come: two reads of a 1 MiB chunk by 128 KiB pieces decode
/// it once. Bounds the mount's memory for content whatever is read.
pub(super) const CHUNK_CACHE_BYTES: u64 = 64 << 20;

/// Bytes of frames read ahead by one planned read of a sequential reader on a remote store.
const READ_AHEAD_BYTES: u64 = 16 << 20;

/// The decoded-chunk cache.
pub(super) type ChunkCache = Mutex<Lru<Id, Arc<Vec<u8>>>>;

/// An open snapshot file: its chunks with their starts in the file, and where the last read
/// ended.
#[derive(Debug)]
pub(super) struct OpenFile {
    chunks: Vec<(u64, Id, BlobLocation)>,
    size: u64,
    next: AtomicU64,
}

impl OpenFile {
    /// Locates the chunks of `entry` in `catalog`; a chunk in no known pack is refused now,
    /// not at the read that needs it.
    pub(super) fn locate(catalog: &Catalog, entry: &Entry) -> Result<OpenFile> {
        let found = catalog.locate_many(BlobKind::Data, &entry.chunks)?;
        let mut chunks = Vec::with_capacity(found.len());
        let mut at = 0u64;
        for (id, loc) in entry.chunks.iter().zip(found) {
            let loc = loc.ok_or_else(|| {
                Error::not_found(format!("chunk {} is in no known pack", id.short()))
            })?;
            chunks.push((at, *id, loc));
            at += u64::from(loc.raw_length);
        }
        if at != entry.size {
            return Err(Error::corrupt(format!(
                "{}: its chunks hold {at} bytes, its entry says {}",
                entry.name.lossy(),
                entry.size
            )));
        }
        Ok(OpenFile {
            chunks,
            size: at,
            next: AtomicU64::new(0),
        })
    }

    /// Up to `len` bytes from `offset` (fewer at the end, none past it).
    pub(super) fn read(
        &self,
        repo: &Repository,
        catalog: &Catalog,
        cache: &ChunkCache,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>> {
        let end = offset.saturating_add(u64::from(len)).min(self.size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let sequential = self.next.load(Relaxed) == offset && !repo.reads_locally();
        let mut out = Vec::with_capacity((end - offset) as usize);
        // The chunk holding `offset`: the last one starting at or before it.
        let mut i = self
            .chunks
            .partition_point(|(start, _, _)| *start <= offset)
            - 1;
        let mut at = offset;
        while at < end {
            let (start, _, _) = self.chunks[i];
            let data = self.chunk(repo, catalog, cache, i, sequential)?;
            let lo = (at - start) as usize;
            let hi = ((end - start) as usize).min(data.len());
            if lo >= hi {
                return Err(Error::corrupt("a chunk is shorter than the index says"));
            }
            out.extend_from_slice(&data[lo..hi]);
            at += (hi - lo) as u64;
            i += 1;
        }
        self.next.store(end, Relaxed);
        Ok(out)
    }

    /// Chunk `i`, decoded: from the cache, or read (with the chunks after it, for a sequential
    /// reader of a remote store) and kept.
    fn chunk(
        &self,
        repo: &Repository,
        catalog: &Catalog,
        cache: &ChunkCache,
        i: usize,
        sequential: bool,
    ) -> Result<Arc<Vec<u8>>> {
        let (_, id, loc) = &self.chunks[i];
        if let Some(d) = cache.lock().expect("chunk cache").get(id) {
            return Ok(d);
        }
        if !sequential {
            let data = Arc::new(read_checked(repo, catalog, BlobKind::Data, id, loc)?);
            keep(cache, *id, &data);
            return Ok(data);
        }
        // This chunk and the next ones not cached, up to the read-ahead's bytes.
        let mut picked = vec![i];
        let mut bytes = u64::from(loc.length);
        {
            let mut c = cache.lock().expect("chunk cache");
            for (j, (_, nid, nloc)) in self.chunks.iter().enumerate().skip(i + 1) {
                if bytes + u64::from(nloc.length) > READ_AHEAD_BYTES {
                    break;
                }
                if c.get(nid).is_none() && !picked.iter().any(|&k| self.chunks[k].1 == *nid) {
                    picked.push(j);
                    bytes += u64::from(nloc.length);
                }
            }
        }
        let wants: Vec<Want> = picked
            .iter()
            .map(|&k| {
                let l = &self.chunks[k].2;
                Want {
                    key: pack_key(&l.pack),
                    offset: u64::from(l.offset),
                    len: u64::from(l.length),
                }
            })
            .collect();
        let frames = fetch_all(repo.store().as_ref(), &wants, &FetchOptions::REMOTE);
        let mut first = None;
        for (&k, frame) in picked.iter().zip(frames) {
            let (_, kid, kloc) = &self.chunks[k];
            match open_read_ahead(repo, catalog, BlobKind::Data, kid, kloc, frame) {
                Ok(data) => {
                    let data = Arc::new(data);
                    keep(cache, *kid, &data);
                    if k == i {
                        first = Some(data);
                    }
                }
                // A chunk read ahead that fails is read again when it is needed.
                Err(e) if k == i => return Err(e),
                Err(_) => {}
            }
        }
        Ok(first.expect("the chunk asked for is the first picked"))
    }
}

fn keep(cache: &ChunkCache, id: Id, data: &Arc<Vec<u8>>) {
    cache
        .lock()
        .expect("chunk cache")
        .insert(id, data.clone(), data.len() as u64 + 64);
}
