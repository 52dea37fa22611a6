//! The assembling end of the walk: tar bytes in archive order gathered into groups (headers,
//! padding and small files, handed to the compression workers), and the stored frames of large
//! files queued in runs, each taken from the previous archive when it holds the same run.

use std::sync::mpsc::{SyncSender, sync_channel};

use super::groups::{
    Budget, GROUP_MAX, GROUP_MIN, GROUP_PICK, Group, Job, PackCache, Reuse, SMALL_FILE, Seg,
    stage_gone,
};
use super::sink::{FrameSource, Out};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::format::tree::Entry;
use crate::id::Id;
use crate::repo::index::BlobLocation;
use crate::repo::{Repository, pack_key};
use crate::store::fetch::{Prefetch, Ticket, Want};
use crate::tar::header as tar_header;

/// The walking end: builds tar bytes, groups them into frames and queues the output in order.
pub(super) struct TarAssembler<'a> {
    pub(super) repo: &'a Repository,
    pub(super) catalog: &'a Catalog,
    /// Pack indexes for locating small files' chunks when reads are planned here.
    pub(super) packs: PackCache,
    pub(super) items: SyncSender<Out>,
    pub(super) jobs: SyncSender<Job>,
    pub(super) budget: &'a Budget,
    /// Planned reads of the frames the archive needs, when the packs are remote.
    pub(super) prefetch: Option<&'a Prefetch<'a>>,
    pub(super) level: i32,
    /// The previous archive's group frames, and their planned reads when it is remote.
    pub(super) reuse: Option<&'a Reuse<'a>>,
    /// The previous archive, when its runs of stored frames are to be reused.
    pub(super) run_reuse: Option<&'a Reuse<'a>>,
    pub(super) earlier: Option<&'a Prefetch<'a>>,
    pub(super) pending: Group,
    pub(super) tar_len: u64,
}

impl TarAssembler<'_> {
    fn send(&self, item: Out) -> Result<()> {
        self.items.send(item).map_err(|_| stage_gone("writing"))
    }

    pub(super) fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.raw_with(|raw| raw.extend_from_slice(bytes))
    }

    /// Header or padding bytes, appended by `write` straight into the group.
    fn raw_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        let g = &mut self.pending;
        let start = g.raw.len();
        write(&mut g.raw);
        match g.segs.last_mut() {
            Some(Seg::Raw(_, end)) if *end == start => *end = g.raw.len(),
            _ => g.segs.push(Seg::Raw(start, g.raw.len())),
        }
        let n = g.raw.len() - start;
        self.added(n)
    }

    /// An entry's header blocks (see [`tar_header::header`]).
    pub(super) fn header(
        &mut self,
        path: &[u8],
        e: &Entry,
        kind: tar::EntryType,
        size: u64,
        link: Option<&[u8]>,
    ) -> Result<()> {
        self.raw_with(|raw| tar_header::header_into(raw, path, e, kind, size, link))
    }

    /// Asks for the frame at `loc` ahead of the stage that will need it, if reads are planned.
    fn plan_read(&self, loc: &BlobLocation) -> Result<Option<Ticket>> {
        self.prefetch
            .map(|p| {
                p.submit(Want {
                    key: pack_key(&loc.pack),
                    offset: u64::from(loc.offset),
                    len: u64::from(loc.length),
                })
            })
            .transpose()
    }

    fn added(&mut self, n: usize) -> Result<()> {
        self.pending.len += n;
        self.tar_len += n as u64;
        if self.pending.len >= GROUP_MAX {
            self.flush_pending()?;
        }
        Ok(())
    }

    /// Called after each entry's last byte: cuts the group where the entry's path says so.
    pub(super) fn entry_done(&mut self, path: &[u8]) -> Result<()> {
        if self.pending.len >= GROUP_MIN {
            let h = blake3::hash(path);
            let pick = u32::from_le_bytes(h.as_bytes()[..4].try_into().expect("4 bytes"));
            if pick % GROUP_PICK == 0 {
                self.flush_pending()?;
            }
        }
        Ok(())
    }

    /// Hands the gathered group to a worker and queues its frame in archive order.
    pub(super) fn flush_pending(&mut self) -> Result<()> {
        if self.pending.len > 0 {
            let mut group = std::mem::take(&mut self.pending);
            let recipe = group.recipe(self.level);
            let charge = group.len;
            self.budget.take(charge)?;
            let earlier = match self.reuse.and_then(|r| Some((r, r.frames.get(&recipe)?))) {
                Some((r, f)) => {
                    let want = || Want {
                        key: r.key.clone(),
                        offset: f.offset,
                        len: f.length,
                    };
                    let ticket = self.earlier.map(|p| p.submit(want())).transpose()?;
                    Some((f.clone(), ticket))
                }
                // Reads planned in archive order need the locations now; otherwise the worker
                // looks them up.
                None if self.prefetch.is_some() => {
                    group.locate(self.repo, self.catalog, &mut self.packs)?;
                    for seg in &mut group.segs {
                        if let Seg::Blob(_, Some(loc), ticket) = seg {
                            *ticket = self.plan_read(loc)?;
                        }
                    }
                    None
                }
                None => None,
            };
            let (tx, rx) = sync_channel(1);
            let job = Job {
                group,
                recipe,
                earlier,
                frame: tx,
            };
            self.jobs.send(job).map_err(|_| stage_gone("compression"))?;
            self.send(Out::Group(rx, charge))?;
        }
        Ok(())
    }

    fn pad(&mut self) -> Result<()> {
        let rem = (self.tar_len % 512) as usize;
        if rem != 0 {
            self.raw(&[0u8; 512][..512 - rem])?;
        }
        Ok(())
    }

    /// Appends a file's content: small files re-compressed with their neighbours, larger ones as
    /// the stored frames, in runs of at most [`RUN_CHUNKS`].
    pub(super) fn content(&mut self, e: &Entry, locs: &[BlobLocation]) -> Result<()> {
        if e.size <= SMALL_FILE {
            // One piece of the file's size: its chunks are looked up and checked by the worker
            // that reads them, and only if the group is not taken from the previous archive.
            self.pending
                .segs
                .extend(e.chunks.iter().map(|id| Seg::Blob(*id, None, None)));
            self.added(e.size as usize)?;
            return self.pad();
        }
        let repo = self.repo;
        let mut written = 0u64;
        let mut run = Vec::new();
        for (id, &loc) in e.chunks.iter().zip(locs) {
            // Large files' frames are copied without decoding: their claimed length is checked
            // here, before the tar stream is sized by it.
            repo.check_location(BlobKind::Data, id, &loc)?;
            written += u64::from(loc.raw_length);
            run.push((*id, loc));
            if run.len() == RUN_CHUNKS {
                self.frames(&mut run)?;
            }
        }
        self.frames(&mut run)?;
        if written != e.size {
            return Err(Error::corrupt(format!(
                "file of {} bytes has chunks of {written} bytes",
                e.size
            )));
        }
        self.pad()
    }

    /// Queues a run of stored frames: taken from the previous archive when it holds the same
    /// run and reusing runs pays (see [`write_archive`](super::walk::write_archive)), otherwise
    /// read from the packs.
    fn frames(&mut self, run: &mut Vec<(Id, BlobLocation)>) -> Result<()> {
        if run.is_empty() {
            return Ok(());
        }
        self.flush_pending()?;
        let recipe = run_recipe(run);
        let length: u64 = run.iter().map(|(_, loc)| u64::from(loc.length)).sum();
        // The earlier archive's copy of the run, read frame by frame like the packs would be,
        // so that the read-ahead window bounds it.
        let mut earlier = self.run_reuse.and_then(|r| {
            Some((
                r,
                r.runs.get(&recipe).filter(|f| f.length == length)?.offset,
            ))
        });
        self.send(Out::RunStart(recipe, earlier.is_some()))?;
        for (id, loc) in run.drain(..) {
            let from = match &mut earlier {
                Some((r, at)) => {
                    let want = Want {
                        key: r.key.clone(),
                        offset: *at,
                        len: u64::from(loc.length),
                    };
                    let ticket = self.earlier.map(|p| p.submit(want)).transpose()?;
                    let from = FrameSource::Earlier(*at, ticket);
                    *at += u64::from(loc.length);
                    from
                }
                None => FrameSource::Pack(self.plan_read(&loc)?),
            };
            self.send(Out::Stored(id, loc, from))?;
            self.tar_len += u64::from(loc.raw_length);
        }
        self.send(Out::RunEnd)
    }
}

/// Stored frames of a large file per run: a run is reused whole or not at all, so this bounds
/// both what the walk holds and what one damaged frame of an earlier archive costs.
pub(crate) const RUN_CHUNKS: usize = 64;

/// What determines a run of stored frames: each chunk's id, decoded length and frame length.
fn run_recipe(run: &[(Id, BlobLocation)]) -> Id {
    let mut h = blake3::Hasher::new();
    h.update(b"cairn archive run v1");
    for (id, loc) in run {
        h.update(id.as_bytes());
        h.update(&loc.raw_length.to_le_bytes());
        h.update(&loc.length.to_le_bytes());
    }
    Id(*h.finalize().as_bytes())
}
