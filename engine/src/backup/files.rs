//! Backing up one regular file: reused as the files cache records it when size, times and
//! inode still match, otherwise opened without following links, read sparsely, cut into chunks
//! and stored (a large file's new chunks compressed in parallel batches, and kept together in
//! packs). A file that changed
//! while it was read is stored as read and left out of the cache, with a warning.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind as IoKind;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

use rayon::prelude::*;

use super::options::HookPoint;
use super::scan::Stat;
use super::state::RunState;
use crate::catalog::FileRecord;
use crate::error::Result;
use crate::format::chunk::Chunker;
use crate::format::codec;
use crate::format::snapshot::WarningKind;
use crate::id::Id;
use crate::repo::packer::Lane;
use crate::sparse::SparseReader;

/// Files at least this large have their new chunks compressed in parallel batches.
const BIG_FILE: u64 = 32 << 20;
/// Chunks per batch: a bound on the copies held (4 MiB each at most).
const BATCH: usize = 4;
/// Files at least this large keep their new chunks together in packs (a [`Lane`]): S3's
/// smallest copied part, so that an export to S3 can copy the file's frames inside the server.
const RUN_FILE: u64 = 5 << 20;

impl RunState<'_> {
    /// Adds a chunk through the file's lane if it has one, otherwise to the shared pack.
    fn store_chunk(
        &self,
        lane: Option<&mut Lane<'_, '_>>,
        id: Id,
        frame: &[u8],
        raw_len: usize,
    ) -> Result<()> {
        let added = match lane {
            Some(lane) => lane.add(id, frame, raw_len)?,
            None => self.data.add(id, frame, raw_len)?,
        };
        if added.new {
            crate::progress::meter().count(1, 1);
            self.progress.new_chunks.fetch_add(1, Relaxed);
            self.progress.new_bytes.fetch_add(raw_len as u64, Relaxed);
        }
        if added.stored_pack {
            self.pack_stored()?;
        }
        Ok(())
    }

    fn finish_lane(&self, lane: Option<Lane<'_, '_>>) -> Result<()> {
        match lane.map(Lane::finish).transpose()? {
            Some(true) => self.pack_stored(),
            _ => Ok(()),
        }
    }

    fn pack_stored(&self) -> Result<()> {
        self.records.pack_stored(&self.data)?;
        self.call_hook(HookPoint::PackStored, Path::new(""));
        Ok(())
    }

    /// Compresses the batched chunks in parallel and adds them in order.
    fn store_batch(
        &self,
        mut lane: Option<&mut Lane<'_, '_>>,
        batch: &mut Vec<(Id, Vec<u8>)>,
    ) -> Result<()> {
        let level = self.opts.compression;
        let frames: Vec<Result<Vec<u8>>> = batch
            .par_iter()
            .map(|(_, data)| codec::encode(data, level))
            .collect();
        for ((id, data), frame) in batch.drain(..).zip(frames) {
            self.store_chunk(lane.as_deref_mut(), id, &frame?, data.len())?;
        }
        Ok(())
    }

    fn cache_hit(&self, rel: &[u8], st: &Stat) -> Result<Option<Vec<Id>>> {
        let Some(rec) = self.catalog.file(rel)? else {
            return Ok(None);
        };
        let same = rec.size == st.size
            && rec.mtime == st.mtime
            && rec.mtime_ns == st.mtime_ns
            && (self.opts.ignore_ctime || (rec.ctime == st.ctime && rec.ctime_ns == st.ctime_ns))
            && (self.opts.ignore_inode || rec.ino == st.ino);
        // No per-chunk lookup is needed: records are written only for durable chunks, and the
        // catalog drops every record when it forgets a pack (Catalog::open_for), so a record
        // never outlives its chunks. That halves the lookups of an unchanged night.
        Ok(same.then_some(rec.chunks))
    }

    /// Backs up a regular file: from the files cache when it vouches for it, otherwise by
    /// reading it. Returns size, chunks and the metadata that describes what was read.
    pub(super) fn file(
        &self,
        path: &Path,
        rel: &[u8],
        st: &Stat,
    ) -> Result<Option<(u64, Vec<Id>, Stat)>> {
        if let Some(chunks) = self.cache_hit(rel, st)? {
            crate::progress::meter().bytes(st.size);
            return Ok(Some((st.size, chunks, *st)));
        }
        self.call_hook(HookPoint::BeforeOpen, path);
        let file = match open_file(path) {
            Ok(f) => f,
            Err(e) => {
                let kind = match e.kind() {
                    IoKind::NotFound => WarningKind::Vanished,
                    // ELOOP: replaced by a symlink after the listing.
                    _ if e.raw_os_error() == Some(libc::ELOOP) => WarningKind::Changed,
                    _ => WarningKind::Unreadable,
                };
                self.warn(rel, kind, e);
                return Ok(None);
            }
        };
        let before = match file.metadata() {
            Ok(md) => Stat::from_metadata(&md),
            Err(e) => {
                self.warn(rel, WarningKind::Unreadable, e);
                return Ok(None);
            }
        };
        self.progress.files_read.fetch_add(1, Relaxed);
        crate::progress::meter().count(0, 1);
        let allocated = file
            .metadata()
            .map(|m| m.blocks() * 512)
            .unwrap_or(u64::MAX);
        let reader = SparseReader::new(&file, allocated, before.size);
        let buf = CHUNK_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
        let mut chunker = Chunker::with_buffer(reader, self.chunker, before.size, buf);
        let mut chunks = Vec::new();
        // A large file's new chunks are compressed a few at a time on every thread, so that a
        // big file read last does not leave the other cores idle.
        let big = before.size >= BIG_FILE;
        // Finished on every way out; dropped only when the backup fails. None when as many
        // files as the lanes' memory allows are being read: this one then shares the pack.
        let mut lane = (before.size >= RUN_FILE)
            .then(|| self.data.lane())
            .flatten();
        let mut batch = Vec::new();
        loop {
            let (chunk, zeros) = match chunker.next_chunk_marked() {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    // What was stored of it is stored: another file may share those chunks.
                    self.finish_lane(lane)?;
                    self.warn(rel, WarningKind::Unreadable, format!("read failed: {e}"));
                    let _ = self.catalog.forget_file(rel);
                    return Ok(None);
                }
            };
            self.progress
                .bytes_read
                .fetch_add(chunk.len() as u64, Relaxed);
            // Chunk by chunk, so that a large file moves the progress while it is read.
            crate::progress::meter().bytes(chunk.len() as u64);
            // Holes of sparse images are gigabytes of this one chunk: its id is known.
            let id = if zeros && chunk.len() == self.zero_chunk.0 {
                self.zero_chunk.1
            } else {
                Id::of(chunk)
            };
            chunks.push(id);
            if self.data.has(&id)? || batch.iter().any(|(b, _)| *b == id) {
                continue;
            }
            if big {
                batch.push((id, chunk.to_vec()));
                if batch.len() == BATCH {
                    self.store_batch(lane.as_mut(), &mut batch)?;
                }
            } else {
                let frame = codec::encode(chunk, self.opts.compression)?;
                self.store_chunk(lane.as_mut(), id, &frame, chunk.len())?;
            }
        }
        self.store_batch(lane.as_mut(), &mut batch)?;
        self.finish_lane(lane)?;
        let size = chunker.consumed();
        CHUNK_BUF.with(|b| *b.borrow_mut() = chunker.into_buffer());
        self.call_hook(HookPoint::AfterRead, path);
        let after = file.metadata().map(|m| Stat::from_metadata(&m));
        let stable = matches!(&after, Ok(a) if a.size == before.size && a.mtime == before.mtime
            && a.mtime_ns == before.mtime_ns && a.ctime == before.ctime && a.ctime_ns == before.ctime_ns)
            && size == before.size;
        if stable {
            let record = FileRecord {
                size,
                mtime: before.mtime,
                mtime_ns: before.mtime_ns,
                ctime: before.ctime,
                ctime_ns: before.ctime_ns,
                ino: before.ino,
                chunks: chunks.clone(),
            };
            self.records.file_done(&self.data, rel.to_vec(), record)?;
        } else {
            // Stored as read, but not cached: the next run reads it again.
            self.warn(rel, WarningKind::Changed, "file changed while it was read");
            self.catalog.forget_file(rel)?;
        }
        Ok(Some((size, chunks, before)))
    }
}

thread_local! {
    /// The chunker buffer of this backup thread, handed from file to file: up to 8 MiB, which
    /// allocated per file cost a zeroing each time and fragmented the heap.
    static CHUNK_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Opens for reading without following a symlink that replaced the file, without updating
/// its access time where the kernel allows that, and without blocking on a FIFO that replaced it.
fn open_file(path: &Path) -> std::io::Result<File> {
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    match OpenOptions::new()
        .read(true)
        .custom_flags(flags | libc::O_NOATIME)
        .open(path)
    {
        // O_NOATIME is refused for files that are not ours unless we are root.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            OpenOptions::new().read(true).custom_flags(flags).open(path)
        }
        other => other,
    }
    .and_then(|f| {
        if f.metadata()?.is_file() {
            Ok(f)
        } else {
            Err(std::io::Error::other("no longer a regular file"))
        }
    })
}
