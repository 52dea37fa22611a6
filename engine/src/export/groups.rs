//! Groups: tar headers, padding and small files cut into groups by a rule that depends only on
//! the entries since the last cut, so that unchanged groups are the same from one day to the
//! next; their compression on worker threads under a memory budget, and their reuse from the
//! previous day's archive.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender};

use super::manifest::{FrameRun, GroupFrame};
use crate::catalog::Catalog;
use crate::error::{Error, ErrorKind, Result};
use crate::format::codec;
use crate::format::pack::BlobKind;
use crate::id::Id;
use crate::repo::Repository;
use crate::repo::index::BlobLocation;
use crate::store::Store;
use crate::store::fetch::{Prefetch, Ticket};

/// have their stored frames copied.
pub const SMALL_FILE: u64 = 64 * 1024;
/// A group of headers and small files is cut after an entry whose path hash picks it, once it
/// holds this many tar bytes; cuts that depend only on the entries since the last cut put the
/// same entries in the same groups from one day to the next, so unchanged groups are reused.
pub(super) const GROUP_MIN: usize = 256 << 10;
/// One entry in this many picks a cut (about 20 KiB per entry in a notes tree: groups of ~1 MiB).
pub(super) const GROUP_PICK: u32 = 32;
/// A group is cut at this size whatever its entries.
pub(super) const GROUP_MAX: usize = 2 << 20;
/// Tar bytes of groups queued or being compressed at once: bounds the memory of a walk that
/// runs ahead of the writer (into the small files while large ones are copied).
pub(super) const GROUP_BUDGET: usize = 64 << 20;

/// Part of a group's tar bytes.
pub(super) enum Seg {
    /// `raw[start..end]` of the group: headers and padding.
    Raw(usize, usize),
    /// A chunk of a small file, named by the walk and located where its bytes are needed (by
    /// the worker, or when the group is cut if reads are planned: a group taken from the
    /// previous archive looks nothing up), with its planned read when the packs are remote.
    Blob(Id, Option<BlobLocation>, Option<Ticket>),
}

/// The recipe of one frame of headers and small files; a worker reads the blobs it names,
/// so that decoding, like compressing, happens off the walking thread.
#[derive(Default)]
pub(super) struct Group {
    pub(super) raw: Vec<u8>,
    pub(super) segs: Vec<Seg>,
    /// Tar bytes the group stands for.
    pub(super) len: usize,
}

impl Group {
    /// What determines the group's frame: its tar bytes, named by the blobs' ids rather than
    /// read, and the compression level. The pieces' layout is hashed first and the header and
    /// padding bytes last in one piece: fed entry by entry, the hash of a notes tree's headers
    /// (a third of the walk) ran one 64-byte block at a time; in one piece it runs on all lanes.
    pub(super) fn recipe(&self, level: i32) -> Id {
        let mut layout = Vec::with_capacity(self.segs.len() * 24);
        for seg in &self.segs {
            match seg {
                Seg::Raw(a, b) => {
                    layout.push(0);
                    layout.extend_from_slice(&((b - a) as u64).to_le_bytes());
                }
                // The id names the chunk's bytes and so their length too.
                Seg::Blob(id, _, _) => {
                    layout.push(1);
                    layout.extend_from_slice(id.as_bytes());
                }
            }
        }
        let mut h = blake3::Hasher::new();
        h.update(b"cairn archive group v2");
        h.update(&level.to_le_bytes());
        h.update(&(layout.len() as u64).to_le_bytes());
        h.update(&layout);
        h.update(&self.raw);
        Id(*h.finalize().as_bytes())
    }

    /// Locates the chunks not located yet — from the indexes of packs that held the chunks
    /// before them, or by the catalog — and checks what is claimed of each before anything is
    /// read by it.
    pub(super) fn locate(
        &mut self,
        repo: &Repository,
        catalog: &Catalog,
        packs: &mut PackCache,
    ) -> Result<()> {
        for seg in &mut self.segs {
            if let Seg::Blob(id, slot @ None, _) = seg {
                let loc = match packs.find(id) {
                    Some(loc) => loc,
                    None => {
                        let loc = catalog.locate(BlobKind::Data, id)?.ok_or_else(|| {
                            Error::not_found(format!("chunk {} is in no known pack", id.short()))
                        })?;
                        packs.looked_up(catalog, &loc.pack)?;
                        loc
                    }
                };
                repo.check_location(BlobKind::Data, id, &loc)?;
                *slot = Some(loc);
            }
        }
        // The walk sized the group by the files' sizes: chunks that claim more (a crafted tree
        // naming one large chunk many times for a small file) are refused before any is read.
        let claimed = self.raw.len() as u64
            + self
                .segs
                .iter()
                .map(|seg| match seg {
                    Seg::Blob(_, Some(loc), _) => u64::from(loc.raw_length),
                    _ => 0,
                })
                .sum::<u64>();
        if claimed != self.len as u64 {
            return Err(Error::corrupt(format!(
                "small files' chunks come to {claimed} bytes where the snapshot's sizes say {}",
                self.len
            )));
        }
        Ok(())
    }

    fn assemble(
        mut self,
        repo: &Repository,
        catalog: &Catalog,
        prefetch: Option<&Prefetch<'_>>,
        packs: &mut PackCache,
    ) -> Result<Vec<u8>> {
        self.locate(repo, catalog, packs)?;
        let spans = read_spans(repo, &self.segs);
        let mut tar = Vec::with_capacity(self.len);
        for (i, seg) in self.segs.into_iter().enumerate() {
            match seg {
                Seg::Raw(a, b) => tar.extend_from_slice(&self.raw[a..b]),
                Seg::Blob(id, loc, ticket) => {
                    let loc = loc.expect("located above");
                    let frame = match (prefetch, ticket) {
                        (Some(p), Some(t)) => {
                            let got = p.redeem(t);
                            // The writer stopped: reading every blob alone would only delay
                            // the error.
                            if got.is_err() && p.is_stopped() {
                                return Err(stage_gone("writing"));
                            }
                            Some(got)
                        }
                        // Read with its neighbours.
                        _ => spans.frame(i, &loc),
                    };
                    // Checked against its id (so its length too) by the read.
                    let frame = frame
                        .unwrap_or_else(|| Err(Error::not_found("not read with its neighbours")));
                    let data = crate::catalog::heal::open_read_ahead(
                        repo,
                        catalog,
                        BlobKind::Data,
                        &id,
                        &loc,
                        frame,
                    )?;
                    tar.extend_from_slice(&data);
                }
            }
        }
        // Every chunk was checked against its id, so its length too, and the lengths were
        // checked against the sizes above; a group of another length must still never be written.
        if tar.len() != self.len {
            return Err(Error::corrupt(format!(
                "small files' chunks came to {} bytes where the snapshot's sizes say {}",
                tar.len(),
                self.len
            )));
        }
        Ok(tar)
    }
}

/// The data blobs of one indexed pack: in pack order (id, offset, frame length, plaintext
/// length), and by the first 8 bytes of their id (with their place in pack order), sorted.
struct PackSlots {
    pack: Id,
    blobs: Vec<(Id, u32, u32, u32)>,
    by_id: Vec<(u64, u32)>,
}

impl PackSlots {
    fn location(&self, i: usize) -> BlobLocation {
        let (_, offset, length, raw_length) = self.blobs[i];
        BlobLocation {
            pack: self.pack,
            offset,
            length,
            raw_length,
        }
    }

    /// The place in pack order of blob `id`, found by its prefix and checked whole.
    fn position(&self, id: &Id) -> Option<usize> {
        let key = prefix(id);
        let first = self.by_id.partition_point(|e| e.0 < key);
        self.by_id[first..]
            .iter()
            .take_while(|e| e.0 == key)
            .map(|e| e.1 as usize)
            .find(|&i| self.blobs[i].0 == *id)
    }
}

fn prefix(id: &Id) -> u64 {
    u64::from_be_bytes(id.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// The index entries of the packs a thread found its recent chunks in: a folder's notes are
/// stored side by side, so the next group's chunks are found there without a catalog lookup
/// each (a lookup was a fifth of a notes share's export) — most often right after the chunk
/// found before them, without a search.
#[derive(Default)]
pub(super) struct PackCache {
    /// Packs indexed, most recently loaded last (56 bytes a blob: 7 MB for a 16 MiB pack of
    /// tiny notes).
    packs: Vec<PackSlots>,
    /// Where the last chunk was found: a pack of `packs` and its place there.
    last: Option<(usize, usize)>,
    /// Chunks looked up in the catalog per pack not indexed here yet; `u32::MAX` for a pack
    /// not to index (too large, or gone from the catalog).
    misses: HashMap<Id, u32>,
}

impl PackCache {
    /// Packs whose indexes one thread holds.
    const PACKS: usize = 3;
    /// A pack is indexed once this many chunks were looked up in it.
    const LOAD_AFTER: u32 = 16;
    /// Packs with more entries are never indexed (a 16 MiB pack, the default, of 64-byte
    /// frames has this many): at most 15 MB a pack, 45 MB a thread.
    const ENTRIES_MAX: usize = 1 << 18;

    /// Where `id` is in one of the packs indexed here: first right after the chunk found last,
    /// then by its id in each pack.
    pub(super) fn find(&mut self, id: &Id) -> Option<BlobLocation> {
        if let Some((p, i)) = self.last
            && self.packs[p].blobs.get(i + 1).is_some_and(|b| b.0 == *id)
        {
            self.last = Some((p, i + 1));
            return Some(self.packs[p].location(i + 1));
        }
        let (p, i) = (0..self.packs.len())
            .rev()
            .find_map(|p| Some((p, self.packs[p].position(id)?)))?;
        self.last = Some((p, i));
        Some(self.packs[p].location(i))
    }

    /// Notes a chunk the catalog found in `pack`; the pack's index is loaded once enough were.
    pub(super) fn looked_up(&mut self, catalog: &Catalog, pack: &Id) -> Result<()> {
        let n = self.misses.entry(*pack).or_default();
        *n = n.saturating_add(1);
        if *n != Self::LOAD_AFTER {
            return Ok(());
        }
        *n = u32::MAX;
        let Some(entries) = catalog.pack_entries(pack, Self::ENTRIES_MAX)? else {
            return Ok(());
        };
        self.misses.remove(pack);
        let mut blobs: Vec<(Id, u32, u32, u32)> = entries
            .iter()
            .filter(|e| e.kind == BlobKind::Data)
            .map(|e| (e.id, e.offset, e.length, e.raw_length))
            .collect();
        blobs.sort_unstable_by_key(|b| b.1);
        let mut by_id: Vec<(u64, u32)> = blobs
            .iter()
            .enumerate()
            .map(|(i, b)| (prefix(&b.0), i as u32))
            .collect();
        by_id.sort_unstable();
        if self.packs.len() == Self::PACKS {
            self.packs.remove(0);
        }
        self.last = None;
        self.packs.push(PackSlots {
            pack: *pack,
            blobs,
            by_id,
        });
        Ok(())
    }
}

/// Frames of a pack closer than this to each other are read in one range: a folder's small
/// files are stored next to each other, and one read of them costs less than a read each. Small,
/// so that what a group reads beyond its frames stays at most this much per blob (a group of
/// 2 MiB of tar holds at most 4,096 files, each with its 512-byte header: 16 MiB at worst).
const SPAN_GAP: u64 = 4 << 10;
/// The longest range read for a group's blobs (a group's blobs come to at most [`GROUP_MAX`]).
const SPAN_MAX: u64 = 8 << 20;

/// The frames of a group's unplanned blobs, read by coalesced ranges of their packs.
struct Spans {
    /// Each range read: its bytes, or the error that failed it (its blobs are read alone).
    reads: Vec<Result<Vec<u8>>>,
    /// Per piece of the group: the range holding its frame and the frame's offset in it.
    at: Vec<Option<(usize, u64)>>,
}

impl Spans {
    /// The frame of piece `i` at `loc`, if its range was planned; the range's error if it failed.
    fn frame(&self, i: usize, loc: &BlobLocation) -> Option<Result<Vec<u8>>> {
        let (read, off) = (*self.at.get(i)?)?;
        Some(match &self.reads[read] {
            Ok(bytes) => {
                let (a, n) = (off as usize, loc.length as usize);
                bytes
                    .get(a..a + n)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| Error::corrupt("a range read came back short"))
            }
            Err(e) => Err(Error::new(e.kind(), e.to_string())),
        })
    }
}

/// Plans and makes the range reads of the blobs in `segs` that have no planned read: sorted by
/// pack and offset, neighbours within [`SPAN_GAP`] joined, up to [`SPAN_MAX`] a range.
fn read_spans(repo: &Repository, segs: &[Seg]) -> Spans {
    let mut want: Vec<(Id, u64, u64, usize)> = segs
        .iter()
        .enumerate()
        .filter_map(|(i, seg)| match seg {
            Seg::Blob(_, Some(loc), None) => {
                Some((loc.pack, u64::from(loc.offset), u64::from(loc.length), i))
            }
            _ => None,
        })
        .collect();
    want.sort_unstable_by_key(|w| (w.0, w.1));
    let mut plan: Vec<(Id, u64, u64)> = Vec::new();
    let mut at = vec![None; segs.len()];
    for (pack, off, len, i) in want {
        let last = plan.len().saturating_sub(1);
        match plan.last_mut() {
            Some((p, start, n))
                if *p == pack
                    && off >= *start
                    && off <= *start + *n + SPAN_GAP
                    && (off + len).saturating_sub(*start) <= SPAN_MAX =>
            {
                *n = (*n).max(off + len - *start);
                at[i] = Some((last, off - *start));
            }
            _ => {
                at[i] = Some((plan.len(), 0));
                plan.push((pack, off, len));
            }
        }
    }
    let reads = plan
        .iter()
        .map(|(pack, off, n)| {
            repo.store()
                .get_range(&crate::repo::pack_key(pack), *off, *n)
        })
        .collect();
    Spans { reads, at }
}

/// A finished group frame.
pub(super) struct Frame {
    pub(super) bytes: Vec<u8>,
    pub(super) recipe: Id,
    /// Where the frame was in the previous archive, when it was taken from there rather than
    /// compressed.
    pub(super) reused_at: Option<u64>,
    /// Why it was compressed rather than taken from the previous archive.
    pub(super) missed: Option<Missed>,
}

/// Why a group frame was compressed instead of copied from the previous archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Missed {
    /// There is no previous archive to draw on.
    NoEarlier,
    /// The previous archive has no group of the same recipe: one of the group's entries
    /// changed (or came or went), or the group's bounds moved with one.
    Changed,
    /// The previous archive's frame could not be read whole.
    Unreadable,
    /// The previous archive's frame failed its BLAKE3 check.
    Damaged,
}

/// A group to assemble and compress, and where its frame goes.
pub(super) struct Job {
    pub(super) group: Group,
    pub(super) recipe: Id,
    /// The same frame in the previous archive, with its planned read when that archive is
    /// remote; the group's blobs were then not asked for.
    pub(super) earlier: Option<(GroupFrame, Option<Ticket>)>,
    pub(super) frame: SyncSender<Result<Frame>>,
}

/// The group frames of an earlier archive, by recipe.
#[derive(Debug)]
pub(crate) struct Reuse<'a> {
    pub(super) store: &'a dyn Store,
    pub(super) key: String,
    pub(super) date: String,
    pub(super) frames: HashMap<Id, GroupFrame>,
    /// Its runs of stored frames, by recipe.
    pub(super) runs: HashMap<Id, FrameRun>,
    /// Set when a frame taken from it failed its check: the export is then written again
    /// without it.
    pub(super) damaged: std::sync::atomic::AtomicBool,
}

impl Reuse<'_> {
    /// Whether a frame taken from the earlier archive failed its check.
    pub(super) fn was_damaged(&self) -> bool {
        self.damaged.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `len` bytes at `at` of the earlier archive, if they can be read whole: taken from their
    /// planned read, or read alone.
    pub(super) fn read(
        &self,
        at: u64,
        len: u64,
        planned: Option<(&Prefetch<'_>, Ticket)>,
    ) -> Option<Vec<u8>> {
        let bytes = match planned {
            Some((p, t)) => p.redeem(t),
            None => self.store.get_range(&self.key, at, len),
        };
        let bytes = bytes
            .inspect_err(|e| {
                tracing::debug!(
                    "bytes at {at} of the archive of {} not reused: {e}",
                    self.date
                )
            })
            .ok()?;
        (bytes.len() as u64 == len).then_some(bytes)
    }

    /// The group frame `f` of the earlier archive, if it is still whole; otherwise why not.
    fn frame(
        &self,
        f: &GroupFrame,
        planned: Option<(&Prefetch<'_>, Ticket)>,
    ) -> std::result::Result<Vec<u8>, Missed> {
        let bytes = self
            .read(f.offset, f.length, planned)
            .ok_or(Missed::Unreadable)?;
        // A damaged earlier archive must not leak into today's: such frames are compressed anew.
        if Id::of(&bytes) == f.blake3 {
            Ok(bytes)
        } else {
            tracing::warn!(
                "a group frame at {} of the archive of {} is damaged; compressing it anew",
                f.offset,
                self.date
            );
            Err(Missed::Damaged)
        }
    }
}

/// Assembles and compresses groups until the walk ends, taking unchanged ones from the
/// previous archive (read through `earlier` when that archive is remote).
pub(super) fn compress_groups(
    repo: &Repository,
    catalog: &Catalog,
    level: i32,
    reuse: Option<&Reuse<'_>>,
    prefetch: Option<&Prefetch<'_>>,
    earlier: Option<&Prefetch<'_>>,
    jobs: &std::sync::Mutex<Option<Receiver<Job>>>,
) {
    let mut packs = PackCache::default();
    loop {
        // A worker that panicked poisons the lock; the others still take jobs.
        let job = match jobs.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            Some(jobs) => jobs.recv(),
            None => return,
        };
        let Ok(Job {
            group,
            recipe,
            earlier: then,
            frame,
        }) = job
        else {
            return;
        };
        let old = match (reuse, then) {
            (Some(r), Some((f, ticket))) => r
                .frame(&f, earlier.zip(ticket))
                .map(|bytes| (bytes, f.offset)),
            (Some(_), None) => Err(Missed::Changed),
            (None, _) => Err(Missed::NoEarlier),
        };
        let made = match old {
            Ok((bytes, at)) => Ok(Frame {
                bytes,
                recipe,
                reused_at: Some(at),
                missed: None,
            }),
            // The writer stopped: reading the group's blobs one by one would only delay the
            // error (or the pass that writes the archive again).
            Err(_) if earlier.is_some_and(|p| p.is_stopped()) => Err(stage_gone("writing")),
            // A group whose earlier frame was damaged reads its blobs by their own ranges: they
            // were not planned, and asking for them now could wait behind reads planned after
            // them.
            Err(missed) => group
                .assemble(repo, catalog, prefetch, &mut packs)
                .and_then(|tar| codec::encode(&tar, level))
                .map(|bytes| Frame {
                    bytes,
                    recipe,
                    reused_at: None,
                    missed: Some(missed),
                }),
        };
        let _ = frame.send(made);
    }
}

/// A quantity in flight between two stages, at most a limit (one item always fits): the tar
/// bytes of groups being compressed ([`GROUP_BUDGET`]), the entries of trees read ahead of the
/// walk.
pub(super) struct Budget {
    limit: usize,
    /// The stage that gives back, named when it stopped.
    giver: &'static str,
    /// Taken, and whether the consumer has stopped.
    state: std::sync::Mutex<(usize, bool)>,
    changed: std::sync::Condvar,
}

impl Budget {
    pub(super) fn new(limit: usize, giver: &'static str) -> Budget {
        Budget {
            limit,
            giver,
            state: Default::default(),
            changed: Default::default(),
        }
    }

    pub(super) fn take(&self, n: usize) -> Result<()> {
        let mut st = self.state.lock().expect("poisoned");
        while st.0 > 0 && st.0 + n > self.limit && !st.1 {
            st = self.changed.wait(st).expect("poisoned");
        }
        if st.1 {
            return Err(stage_gone(self.giver));
        }
        st.0 += n;
        Ok(())
    }

    pub(super) fn give(&self, n: usize) {
        self.state.lock().expect("poisoned").0 -= n;
        self.changed.notify_all();
    }

    /// The consumer stopped: nobody will give back.
    pub(super) fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.changed.notify_all();
    }
}

/// A thread of the export stopped early; its own error is the one to report.
pub(super) fn stage_gone(stage: &str) -> Error {
    Error::new(
        ErrorKind::Transient,
        format!("the archive's {stage} thread stopped"),
    )
}
