//! The walking end: reads a snapshot's trees ahead of the walk, walks them in archive order into
//! the tar assembler (`assemble`), and joins the stages of an archive's build (the walk, the
//! compression workers, the writer, the hasher and the frame checker) into [`write_archive`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::ScopedJoinHandle;

use super::assemble::TarAssembler;
use super::groups::{
    Budget, GROUP_BUDGET, Group, Job, PackCache, Reuse, SMALL_FILE, compress_groups, stage_gone,
};
use super::manifest::{FrameRun, GroupFrame, LeftOut, ManifestEntry};
use super::manifest_write::EntryLines;
use super::sink::{Out, Sink, Sunk, check_frames, hash_pieces};
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::format::pack::BlobKind;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Entry, EntryKind, RawBytes};
use crate::id::Id;
use crate::read::walk::{child_path, subtree};
use crate::read::{HardlinkGroups, load_tree};
use crate::repo::Repository;
use crate::repo::index::BlobLocation;
use crate::store::fetch::{FetchOptions, Prefetch};
use crate::store::{ObjectWriter, ServerObject};

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
///
/// The stages run at once, joined by bounded queues: the tree reader, the walk (this thread),
/// the compression workers, the writer, and the threads that hash the archive and check the
/// stored frames it copied.
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
    let Reads {
        prefetch,
        earlier,
        earlier_src,
        run_reuse,
    } = plan_reads(repo, reuse);
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
            run_writer(
                sink,
                items_rx,
                budget_ref,
                (prefetch, earlier),
                writer_failed,
            )
        });
        let (queue, reads) = ((&live, &jobs_rx), (prefetch, earlier));
        spawn_compressors(scope, workers, queue, (repo, catalog, level, reuse), reads);
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
        let walked = walk_snapshot(&mut w, levels_rx, ahead);
        drop(w); // closes the queues: the workers, the writer, then the hasher finish
        for p in prefetch.into_iter().chain(earlier) {
            p.close();
        }
        joined(walked, writer, hasher, checker)
    })
}

/// The reads an archive's build plans ahead of the stages that need them, and what stands in
/// for reads.
struct Reads<'a> {
    /// Planned reads of the packs, when they are remote.
    prefetch: Option<Prefetch<'a>>,
    /// Planned reads of the previous archive, when it is remote.
    earlier: Option<Prefetch<'a>>,
    /// The previous archive, when its frames can be copied inside the server.
    earlier_src: Option<ServerObject>,
    /// The previous archive, when its runs of stored frames are to be reused.
    run_reuse: Option<&'a Reuse<'a>>,
}

/// Plans the reads of [`write_archive`] for `repo`'s packs and the previous archive `reuse`.
fn plan_reads<'a>(repo: &'a Repository, reuse: Option<&'a Reuse<'a>>) -> Reads<'a> {
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
    Reads {
        prefetch,
        earlier,
        earlier_src,
        run_reuse,
    }
}

/// The writing thread: runs the sink, and whatever the outcome, a panic included, nothing
/// more will be redeemed: waiting reads and a walk blocked on a full read-ahead window end when
/// the writer does. A failure also tells the checker that the frames still queued need no check.
fn run_writer(
    sink: Sink<'_, '_>,
    items: Receiver<Out>,
    budget: &Budget,
    (prefetch, earlier): (Option<&Prefetch<'_>>, Option<&Prefetch<'_>>),
    writer_failed: &AtomicBool,
) -> Result<Sunk> {
    let _exit = OnExit(|| {
        budget.close();
        for p in prefetch.into_iter().chain(earlier) {
            p.stop();
        }
    });
    let sunk = sink.run(items);
    if sunk.is_err() {
        writer_failed.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    sunk
}

/// Starts `workers` compression workers on the queue of groups; the last to stop, a panic
/// included, drops the queue, so that a walk waiting to hand over a group then fails instead of
/// waiting for ever.
fn spawn_compressors<'s>(
    scope: &'s std::thread::Scope<'s, '_>,
    workers: usize,
    (live, jobs): (&'s AtomicUsize, &'s Mutex<Option<Receiver<Job>>>),
    (repo, catalog, level, reuse): (&'s Repository, &'s Catalog, i32, Option<&'s Reuse<'s>>),
    (prefetch, earlier): (Option<&'s Prefetch<'s>>, Option<&'s Prefetch<'s>>),
) {
    for _ in 0..workers {
        scope.spawn(move || {
            let _last = OnExit(|| {
                if live.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
                    drop(jobs.lock().unwrap_or_else(|e| e.into_inner()).take());
                }
            });
            compress_groups(repo, catalog, level, reuse, prefetch, earlier, jobs)
        });
    }
}

/// Walks the snapshot's trees into `w` as [`read_levels`] delivers them, then ends the archive
/// and hands over its last group. The walk owns the trees' receiver: when it stops, early or
/// not, the reader does too.
fn walk_snapshot(
    w: &mut TarAssembler<'_>,
    levels: Receiver<Result<Level>>,
    ahead: &Budget,
) -> Result<(EntryLines, Vec<LeftOut>)> {
    let mut walk = Walk {
        w: &mut *w,
        levels,
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
}

/// Waits for the writer, the hasher and the checker, and returns what the stages made of the
/// archive, or the failure that stopped them: a stage that stopped makes the ones before it fail
/// too, so the root cause is reported (the checker's, the hasher's, the writer's, then the
/// walk's).
fn joined(
    walked: Result<(EntryLines, Vec<LeftOut>)>,
    writer: ScopedJoinHandle<'_, Result<Sunk>>,
    hasher: ScopedJoinHandle<'_, Result<String>>,
    checker: ScopedJoinHandle<'_, Result<u64>>,
) -> Result<Written> {
    let written = writer.join().expect("the writing thread does not panic");
    let sha = hasher.join().expect("the hashing thread does not panic");
    let checked = checker.join().expect("the checking thread does not panic");
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
}
