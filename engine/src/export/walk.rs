//! The walking end: turns a snapshot's trees into tar bytes in archive order, cuts them into
//! groups, queues stored frames of large files, and joins the stages into [`write_archive`].

use std::sync::mpsc::{SyncSender, sync_channel};

use super::groups::{
    Budget, GROUP_BUDGET, GROUP_MAX, GROUP_MIN, GROUP_PICK, Group, Job, PackCache, Reuse,
    SMALL_FILE, Seg, compress_groups, stage_gone,
};
use super::manifest::{EntryLines, FrameRun, GroupFrame, LeftOut, ManifestEntry};
use super::sink::{FrameSource, Out, Sink, check_frames, hash_pieces};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Entry, EntryKind, RawBytes};
use crate::id::Id;
use crate::read::walk::{child_path, subtree};
use crate::read::{HardlinkGroups, load_tree};
use crate::repo::index::BlobLocation;
use crate::repo::{Repository, pack_key};
use crate::store::ObjectWriter;
use crate::store::fetch::{FetchOptions, Prefetch, Ticket, Want};
use crate::tar::header as tar_header;

/// What [`write_archive`] wrote.
pub(crate) struct Written {
    /// Archive size.
    pub size: u64,
    /// Archive SHA-256, hex.
    pub sha256: String,
    /// Manifest entries, in archive order, serialized as they were walked.
    pub entries: EntryLines,
    /// Snapshot entries left out.
    pub skipped: Vec<LeftOut>,
    /// The group frames.
    pub groups: Vec<GroupFrame>,
    /// How many of them were taken from the previous archive.
    pub reused_groups: u64,
    /// Why the others were not.
    pub not_reused: super::manifest::NotReused,
    /// The runs of stored frames.
    pub runs: Vec<FrameRun>,
    /// How many of them were taken from the previous archive.
    pub reused_runs: u64,
    /// Stored frames checked against their chunk ids.
    pub checked_frames: u64,
    /// The seek table written at the end.
    pub seek_table: super::manifest::SeekTableInfo,
}

/// The walking end: builds tar bytes, groups them into frames and queues the output in order.
pub(super) struct TarAssembler<'a> {
    repo: &'a Repository,
    catalog: &'a Catalog,
    /// Pack indexes for locating small files' chunks when reads are planned here.
    packs: PackCache,
    items: SyncSender<Out>,
    jobs: SyncSender<Job>,
    budget: &'a Budget,
    /// Planned reads of the frames the archive needs, when the packs are remote.
    prefetch: Option<&'a Prefetch<'a>>,
    level: i32,
    /// The previous archive's group frames, and their planned reads when it is remote.
    reuse: Option<&'a Reuse<'a>>,
    /// The previous archive, when its runs of stored frames are to be reused.
    run_reuse: Option<&'a Reuse<'a>>,
    earlier: Option<&'a Prefetch<'a>>,
    pending: Group,
    tar_len: u64,
}

impl TarAssembler<'_> {
    fn send(&self, item: Out) -> Result<()> {
        self.items.send(item).map_err(|_| stage_gone("writing"))
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<()> {
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
    fn header(
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
    fn entry_done(&mut self, path: &[u8]) -> Result<()> {
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
    fn flush_pending(&mut self) -> Result<()> {
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
    fn content(&mut self, e: &Entry, locs: &[BlobLocation]) -> Result<()> {
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
    /// run and reusing runs pays (see [`write_archive`]), otherwise read from the packs.
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

/// Items of one directory in full-path bytewise order: an entry sorts by its name, and the
/// subtree of a directory sorts by `name/`, which places `a.txt` before `a/x` and `a0` after it.
pub(super) fn ordered(entries: Vec<Entry>) -> Vec<(Vec<u8>, Entry, bool)> {
    let mut items = Vec::with_capacity(entries.len() * 2);
    for e in entries {
        if subtree(&e).is_some() {
            let mut key = e.name.0.clone();
            key.push(b'/');
            items.push((key, e.clone(), true));
        }
        items.push((e.name.0.clone(), e, false));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    items
}

/// One directory of the walk: its items in archive order, and the locations of their chunks.
struct Level {
    items: std::vec::IntoIter<(Vec<u8>, Entry, bool)>,
    locs: std::vec::IntoIter<BlobLocation>,
    /// How many items it came with (what it is charged to the read-ahead [`Budget`]).
    count: usize,
}

pub(super) struct Walk<'a, 'b> {
    w: &'a mut TarAssembler<'b>,
    /// The snapshot's trees, from [`read_levels`].
    levels: std::sync::mpsc::Receiver<Result<Level>>,
    /// Entries of the trees read ahead and not yet taken.
    ahead: &'a Budget,
    entries: EntryLines,
    skipped: Vec<LeftOut>,
    /// The first name written of each hardlink group.
    links: HardlinkGroups<Vec<u8>>,
}

impl Walk<'_, '_> {
    /// Writes the snapshot's trees at `prefix`, depth first in archive order, as [`read_levels`]
    /// delivers them in the order this walk descends into them. Walks with an explicit stack, and
    /// stops at a path longer than a snapshot may hold: a crafted chain of trees can neither
    /// overflow the stack nor make an archive no restore accepts.
    fn dir(&mut self, prefix: &[u8]) -> Result<()> {
        let first = self.next_level()?;
        let mut stack = vec![(prefix.to_vec(), first)];
        while let Some((prefix, Level { items, locs, .. })) = stack.last_mut() {
            let Some((_, e, subtree)) = items.next() else {
                stack.pop();
                continue;
            };
            let path = child_path(prefix, &e.name.0)?;
            if subtree {
                let level = self.next_level()?;
                stack.push((path, level));
            } else {
                let n = if located(&e, false) {
                    e.chunks.len()
                } else {
                    0
                };
                let mine: Vec<_> = locs.by_ref().take(n).collect();
                self.entry(path, &e, mine)?;
            }
        }
        Ok(())
    }

    fn next_level(&mut self) -> Result<Level> {
        let level = self
            .levels
            .recv()
            .map_err(|_| stage_gone("tree reading"))??;
        self.ahead.give(level.count);
        Ok(level)
    }

    fn entry(&mut self, path: Vec<u8>, e: &Entry, locs: Vec<BlobLocation>) -> Result<()> {
        let mut m = ManifestEntry {
            path: RawBytes(path.clone()),
            kind: e.kind,
            size: 0,
            mtime: e.mtime,
            mtime_ns: e.mtime_ns,
            mode: e.mode,
            link: None,
            offset: None,
        };
        match e.kind {
            EntryKind::Dir => {
                let mut p = path.clone();
                p.push(b'/');
                self.w.header(&p, e, tar::EntryType::Directory, 0, None)?;
            }
            EntryKind::Symlink => {
                let target = e
                    .target
                    .as_ref()
                    .map(|t| t.0.as_slice())
                    .unwrap_or_default();
                self.w
                    .header(&path, e, tar::EntryType::Symlink, 0, Some(target))?;
                m.link = Some(RawBytes(target.to_vec()));
            }
            EntryKind::File => {
                let folder = path.split(|b| *b == b'/').next().unwrap_or_default();
                let first = self.links.link_to(folder, e, || path.clone());
                if let Some(first) = first {
                    self.w
                        .header(&path, e, tar::EntryType::Link, 0, Some(&first))?;
                    m.link = Some(RawBytes(first));
                } else {
                    self.w
                        .header(&path, e, tar::EntryType::Regular, e.size, None)?;
                    // Empty files too: a reader then checks their header like any file's
                    // instead of taking them from the manifest unseen.
                    m.offset = Some(self.w.tar_len);
                    self.w.content(e, &locs)?;
                    m.size = e.size;
                }
            }
            kind => {
                let reason = match kind {
                    EntryKind::Socket => "socket",
                    EntryKind::Fifo => "fifo",
                    _ => "device",
                };
                self.skipped.push(LeftOut {
                    path: RawBytes(path),
                    kind,
                    reason: reason.into(),
                });
                return Ok(());
            }
        }
        self.w.entry_done(&m.path.0)?;
        self.entries.push(&m)?;
        Ok(())
    }
}

/// Copied frames waiting for their check, at most.
const CHECK_AHEAD: usize = 1 << 14;

/// Trees read ahead of the walk: at most this many wait for it.
const LEVELS_AHEAD: usize = 16;
/// Entries of the trees read ahead of the walk: at most this many wait for it (a tree of more
/// still goes, alone), so that sibling folders of a maildir's size are not all held at once.
const ITEMS_AHEAD: usize = 1 << 16;

/// Reads the snapshot's trees in the order the walk descends into them (depth first, each
/// directory's subtrees in archive order), each with its items ordered and its chunks located,
/// on a thread of its own: loading and looking up were half of a notes tree's walk.
///
/// Stops at the first error, which the walk then reports, or when the walk stops taking trees
/// (a crafted cycle of trees ends there, at the walk's path limit); at most [`LEVELS_AHEAD`]
/// trees wait, so its stack is at most that much deeper than the walk's.
fn read_levels(
    repo: &Repository,
    catalog: &Catalog,
    root: Id,
    ahead: &Budget,
    out: SyncSender<Result<Level>>,
) {
    let mut stack: Vec<std::vec::IntoIter<Id>> = vec![vec![root].into_iter()];
    while let Some(next) = stack.last_mut() {
        let Some(id) = next.next() else {
            stack.pop();
            continue;
        };
        let level = load_level(repo, catalog, &id);
        let subtrees: Vec<Id> = match &level {
            Ok(Level { items, .. }) => items
                .as_slice()
                .iter()
                .filter(|(_, _, subtree)| *subtree)
                .filter_map(|(_, e, _)| subtree(e).copied())
                .collect(),
            Err(_) => Vec::new(),
        };
        let failed = level.is_err();
        let count = level.as_ref().map_or(0, |l| l.count);
        // The walk gave up: nothing more is taken.
        if ahead.take(count).is_err() || out.send(level).is_err() || failed {
            return;
        }
        stack.push(subtrees.into_iter());
    }
}

/// Whether the tree reader looks up the chunks of item `e`: those of files whose stored frames
/// are copied. Small files' chunks are looked up only for groups that are compressed.
fn located(e: &Entry, subtree: bool) -> bool {
    !subtree && e.size > SMALL_FILE
}

/// The items of tree `id` in archive order, with the locations of their chunks looked up
/// together, in item order.
fn load_level(repo: &Repository, catalog: &Catalog, id: &Id) -> Result<Level> {
    let items = ordered(load_tree(repo, catalog, id)?.entries);
    let ids: Vec<Id> = items
        .iter()
        .filter(|(_, e, subtree)| located(e, *subtree))
        .flat_map(|(_, e, _)| e.chunks.iter().copied())
        .collect();
    let locs = catalog.locate_many(BlobKind::Data, &ids)?;
    let locs = ids
        .iter()
        .zip(locs)
        .map(|(id, loc)| {
            loc.ok_or_else(|| Error::not_found(format!("chunk {} is in no known pack", id.short())))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Level {
        count: items.len(),
        items: items.into_iter(),
        locs: locs.into_iter(),
    })
}

/// Runs its closure when dropped: on every way out of a thread, unwinding included.
struct OnExit<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnExit<F> {
    fn drop(&mut self) {
        (self.0)()
    }
}

/// Writes the archive of `snap` into `out`, taking unchanged group frames from `reuse`.
pub(crate) fn write_archive(
    repo: &Repository,
    catalog: &Catalog,
    snap: &Snapshot,
    level: i32,
    reuse: Option<&Reuse<'_>>,
    out: &mut dyn ObjectWriter,
) -> Result<Written> {
    let (hash_tx, hash_rx) = sync_channel(16);
    // Frames to check: a few bytes each when they are read back from local packs, so the copy
    // runs far ahead of the check (which decodes and hashes every frame) and the SHA-256 thread
    // never waits for it; up to 8 MiB each when the writer read them (S3), at most 32 MiB of
    // those at once.
    let (check_tx, check_rx) = sync_channel(CHECK_AHEAD);
    let check_held = Budget::new(32 << 20, "checking");
    // Stored frames are queued as locations, a few bytes each: the walk may run far ahead of
    // the writer, into the small files, while the writer copies large ones.
    let (items_tx, items_rx) = sync_channel(1 << 16);
    let (jobs_tx, jobs_rx) = sync_channel::<Job>(64);
    let budget = Budget::new(GROUP_BUDGET, "writing");
    let ahead = Budget::new(ITEMS_AHEAD, "walking");
    // Set when the writer fails: the frames still queued for their check need none.
    let writer_failed = std::sync::atomic::AtomicBool::new(false);
    let workers = rayon::current_num_threads().max(1);
    // Compression workers still running.
    let live = std::sync::atomic::AtomicUsize::new(workers);
    let jobs_rx = std::sync::Mutex::new(Some(jobs_rx));
    // Packs read by requests: every frame the archive needs is asked for by the walk, in
    // archive order, and read by pack ahead of the writer and the workers.
    let prefetch =
        (!repo.reads_locally()).then(|| Prefetch::new(repo.store().as_ref(), FetchOptions::REMOTE));
    // The previous archive's frames, read by coalesced ranges when it is remote.
    let earlier = reuse
        .filter(|r| r.store.local_file(&r.key).is_none())
        .map(|r| Prefetch::new(r.store, FetchOptions::REMOTE));
    // Where its frames can be copied from inside the server.
    let earlier_src = reuse.and_then(|r| r.store.server_object(&r.key, true));
    // Its runs of stored frames stand in for reads of the packs when those are remote, or when
    // the archive can be copied inside the server; between local files they save nothing.
    let run_reuse = reuse.filter(|_| !repo.reads_locally() || earlier_src.is_some());
    std::thread::scope(|scope| {
        for p in prefetch.iter().chain(&earlier) {
            p.start(scope);
        }
        let prefetch = prefetch.as_ref();
        let earlier = earlier.as_ref();
        let hasher = scope.spawn(move || hash_pieces(hash_rx));
        let check_held = &check_held;
        let writer_failed = &writer_failed;
        let checker = scope.spawn(move || {
            // Whatever the outcome, the writer stops waiting for room to hand it frames.
            let _exit = OnExit(|| check_held.close());
            check_frames(repo, catalog, reuse, check_rx, check_held, writer_failed)
        });
        let sink = Sink {
            out,
            hash: hash_tx,
            check: check_tx,
            check_held,
            len: 0,
            repo,
            budget: &budget,
            prefetch,
            groups: Vec::new(),
            reused: 0,
            missed: Default::default(),
            runs: Vec::new(),
            reused_runs: 0,
            open: None,
            reuse,
            earlier,
            earlier_src,
            seek: Vec::new(),
        };
        let budget_ref = &budget;
        let writer = scope.spawn(move || {
            // Whatever the outcome, a panic included, nothing more will be redeemed: waiting
            // reads and a walk blocked on a full read-ahead window end when the writer does.
            let _exit = OnExit(|| {
                budget_ref.close();
                for p in prefetch.into_iter().chain(earlier) {
                    p.stop();
                }
            });
            let sunk = sink.run(items_rx);
            if sunk.is_err() {
                writer_failed.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            sunk
        });
        let live = &live;
        for _ in 0..workers {
            let jobs = &jobs_rx;
            scope.spawn(move || {
                // The last worker to stop, a panic included, drops the queue: a walk waiting to
                // hand over a group then fails instead of waiting for ever.
                let _last = OnExit(|| {
                    if live.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
                        drop(jobs.lock().unwrap_or_else(|e| e.into_inner()).take());
                    }
                });
                compress_groups(repo, catalog, level, reuse, prefetch, earlier, jobs)
            });
        }
        let mut w = TarAssembler {
            repo,
            catalog,
            packs: PackCache::default(),
            items: items_tx,
            jobs: jobs_tx,
            budget: &budget,
            prefetch,
            level,
            reuse,
            run_reuse,
            earlier,
            pending: Group::default(),
            tar_len: 0,
        };
        let (levels_tx, levels_rx) = sync_channel(LEVELS_AHEAD);
        let root = snap.root;
        let ahead = &ahead;
        scope.spawn(move || read_levels(repo, catalog, root, ahead, levels_tx));
        // The walk owns the trees' receiver: when it stops, early or not, the reader does too.
        let walked = (|| {
            let mut walk = Walk {
                w: &mut w,
                levels: levels_rx,
                ahead,
                entries: EntryLines::default(),
                skipped: Vec::new(),
                links: HardlinkGroups::new(),
            };
            // Whatever the outcome, the reader stops waiting to send more.
            let _stop = OnExit(|| ahead.close());
            walk.dir(b"")?;
            let (entries, skipped) = (walk.entries, walk.skipped);
            w.raw(&[0u8; 1024])?; // end of archive: two zero blocks
            w.flush_pending()?;
            Ok((entries, skipped))
        })();
        drop(w); // closes the queues: the workers, the writer, then the hasher finish
        for p in prefetch.into_iter().chain(earlier) {
            p.close();
        }
        let written = writer.join().expect("the writing thread does not panic");
        let sha = hasher.join().expect("the hashing thread does not panic");
        let checked = checker.join().expect("the checking thread does not panic");
        // A stage that stopped makes the ones before it fail too; report the root cause.
        match (walked, written, sha, checked) {
            (_, _, _, Err(e)) | (_, _, Err(e), _) | (_, Err(e), _, _) | (Err(e), _, _, _) => Err(e),
            (Ok((entries, skipped)), Ok(sunk), Ok(sha256), Ok(checked_frames)) => Ok(Written {
                size: sunk.size,
                sha256,
                entries,
                skipped,
                groups: sunk.groups,
                reused_groups: sunk.reused_groups,
                not_reused: sunk.not_reused,
                runs: sunk.runs,
                reused_runs: sunk.reused_runs,
                checked_frames,
                seek_table: sunk.seek_table,
            }),
        }
    })
}
