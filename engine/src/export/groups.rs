//! Groups: tar headers, padding and small files cut into groups by a rule that depends only on
//! the entries since the last cut, so that unchanged groups are the same from one day to the
//! next; their compression on worker threads under a memory budget, and their reuse from the
//! previous day's archive.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, SyncSender};

use super::manifest::{FrameRun, GroupFrame};
use crate::catalog::Catalog;
use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::fetch::{Prefetch, Ticket};
use crate::id::Id;
use crate::index::BlobLocation;
use crate::pack::BlobKind;
use crate::repo::Repository;
use crate::store::Store;

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
    /// The content of a stored blob of a small file, with its planned read when the packs are
    /// remote.
    Blob(Id, BlobLocation, Option<Ticket>),
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
    /// read, and the compression level.
    pub(super) fn recipe(&self, level: i32) -> Id {
        let mut h = blake3::Hasher::new();
        h.update(b"cairn archive group v1");
        h.update(&level.to_le_bytes());
        for seg in &self.segs {
            match seg {
                Seg::Raw(a, b) => {
                    h.update(&[0]);
                    h.update(&((b - a) as u64).to_le_bytes());
                    h.update(&self.raw[*a..*b]);
                }
                Seg::Blob(id, loc, _) => {
                    h.update(&[1]);
                    h.update(id.as_bytes());
                    h.update(&loc.raw_length.to_le_bytes());
                }
            }
        }
        Id(*h.finalize().as_bytes())
    }

    fn assemble(
        self,
        repo: &Repository,
        catalog: &Catalog,
        prefetch: Option<&Prefetch<'_>>,
    ) -> Result<Vec<u8>> {
        let mut tar = Vec::with_capacity(self.len);
        for seg in self.segs {
            match seg {
                Seg::Raw(a, b) => tar.extend_from_slice(&self.raw[a..b]),
                Seg::Blob(id, loc, ticket) => {
                    let data = match (prefetch, ticket) {
                        (Some(p), Some(t)) => {
                            let got = p.redeem(t);
                            // The writer stopped: reading every blob alone would only delay
                            // the error.
                            if got.is_err() && p.is_stopped() {
                                return Err(stage_gone("writing"));
                            }
                            crate::heal::open_read_ahead(
                                repo,
                                catalog,
                                BlobKind::Data,
                                &id,
                                &loc,
                                got,
                            )?
                        }
                        _ => crate::heal::read_checked(repo, catalog, BlobKind::Data, &id, &loc)?,
                    };
                    if data.len() != loc.raw_length as usize {
                        return Err(Error::corrupt(format!(
                            "chunk {} decoded to {} bytes, the catalog says {}",
                            id.short(),
                            data.len(),
                            loc.raw_length
                        )));
                    }
                    tar.extend_from_slice(&data);
                }
            }
        }
        Ok(tar)
    }
}

/// A finished group frame.
pub(super) struct Frame {
    pub(super) bytes: Vec<u8>,
    pub(super) recipe: Id,
    /// Where the frame was in the previous archive, when it was taken from there rather than
    /// compressed.
    pub(super) reused_at: Option<u64>,
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

    /// The group frame `f` of the earlier archive, if it is still whole.
    fn frame(&self, f: &GroupFrame, planned: Option<(&Prefetch<'_>, Ticket)>) -> Option<Vec<u8>> {
        let bytes = self.read(f.offset, f.length, planned)?;
        // A damaged earlier archive must not leak into today's: such frames are compressed anew.
        (Id::of(&bytes) == f.blake3).then_some(bytes)
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
    jobs: &std::sync::Mutex<Receiver<Job>>,
) {
    loop {
        let job = jobs.lock().expect("no worker panics").recv();
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
            _ => None,
        };
        let made = match old {
            Some((bytes, at)) => Ok(Frame {
                bytes,
                recipe,
                reused_at: Some(at),
            }),
            // The writer stopped: reading the group's blobs one by one would only delay the
            // error (or the pass that writes the archive again).
            None if earlier.is_some_and(|p| p.is_stopped()) => Err(stage_gone("writing")),
            // A group whose earlier frame was damaged reads its blobs one by one: they were not
            // planned, and asking for them now could wait behind reads planned after them.
            None => group
                .assemble(repo, catalog, prefetch)
                .and_then(|tar| codec::encode(&tar, level))
                .map(|bytes| Frame {
                    bytes,
                    recipe,
                    reused_at: None,
                }),
        };
        let _ = frame.send(made);
    }
}

/// Tar bytes of the groups in flight, at most [`GROUP_BUDGET`] (one group always fits).
#[derive(Default)]
pub(super) struct Budget {
    /// Bytes taken, and whether the writer has stopped.
    state: std::sync::Mutex<(usize, bool)>,
    changed: std::sync::Condvar,
}

impl Budget {
    pub(super) fn take(&self, n: usize) -> Result<()> {
        let mut st = self.state.lock().expect("poisoned");
        while st.0 > 0 && st.0 + n > GROUP_BUDGET && !st.1 {
            st = self.changed.wait(st).expect("poisoned");
        }
        if st.1 {
            return Err(stage_gone("writing"));
        }
        st.0 += n;
        Ok(())
    }

    pub(super) fn give(&self, n: usize) {
        self.state.lock().expect("poisoned").0 -= n;
        self.changed.notify_all();
    }

    /// The writer stopped: nobody will give bytes back.
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
