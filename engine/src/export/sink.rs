//! The writing end of the export pipeline: puts frames into the archive object in order,
//! hands every piece to the SHA-256 thread, and checks copied chunk frames against their ids on
//! another thread.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender};

use sha2::{Digest, Sha256};

use super::groups::{Budget, Frame, Missed, Reuse, stage_gone};
use super::manifest::{FrameRun, GroupFrame, NotReused};
use crate::catalog::Catalog;
use crate::error::{Error, ErrorKind, Result};
use crate::format::codec;
use crate::format::pack::BlobKind;
use crate::id::{Id, hex};
use crate::repo::index::BlobLocation;
use crate::repo::{Repository, pack_key};
use crate::store::fetch::{Prefetch, Ticket};
use crate::store::{LastFile, ObjectWriter, PIECE, ServerObject, Store, read_pieces};

/// A piece of the archive, in archive order, for the thread that computes its SHA-256.
pub(super) enum Piece {
    /// Bytes that were written.
    Bytes(Vec<u8>),
    /// A range of a local file that the writer copied without seeing it.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
}

/// Hashes the archive's pieces in order. Runs on its own thread so that SHA-256, the one step
/// of an export that cannot be split, overlaps the copying.
pub(super) fn hash_pieces(pieces: Receiver<Piece>) -> Result<String> {
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; PIECE];
    let mut open = LastFile::default();
    for piece in pieces {
        match piece {
            Piece::Bytes(bytes) => sha.update(&bytes),
            Piece::File { path, offset, len } => {
                let file = open
                    .open(&path)
                    .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
                read_pieces(file, offset, len, &mut buf, |piece| {
                    sha.update(piece);
                    Ok(())
                })
                .map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        Error::corrupt(format!(
                            "{} ended while its range was being hashed",
                            path.display()
                        ))
                    } else {
                        Error::io(format!("reading {}", path.display()), e)
                    }
                })?;
            }
        }
    }
    Ok(hex(&sha.finalize()))
}

pub(super) fn werr(e: std::io::Error) -> Error {
    if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<Error>()) {
        return Error::new(inner.kind(), inner.to_string());
    }
    // A full or read-only volume stays full: retrying only delays the report.
    let kind = match e.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT | libc::EROFS | libc::EACCES | libc::EPERM) => {
            ErrorKind::Io
        }
        _ => ErrorKind::Transient,
    };
    Error::new(kind, "writing the archive to the exports failed").with_source(e)
}

/// What the walk hands the writing thread, in archive order.
pub(super) enum Out {
    /// A frame of headers and small files, being assembled and compressed by a worker, and its
    /// charge against the [`Budget`].
    Group(Receiver<Result<Frame>>, usize),
    /// A stored chunk frame, and where to take it from.
    Stored(Id, BlobLocation, FrameSource),
    /// The stored frames up to the next `RunEnd` are a run with this recipe; whether they are
    /// taken from the earlier archive.
    RunStart(Id, bool),
    RunEnd,
}

/// Where a stored frame's bytes come from.
pub(super) enum FrameSource {
    /// Its pack, with the planned read when the packs are remote.
    Pack(Option<Ticket>),
    /// The earlier archive at this offset, with the planned read when it is remote; the pack
    /// if that fails.
    Earlier(u64, Option<Ticket>),
}

/// A stored frame that was copied into the archive, for the thread that checks it.
pub(super) struct Copied {
    id: Id,
    loc: BlobLocation,
    /// The frame's bytes when the writer read them; otherwise they are read from `path`.
    bytes: Option<Vec<u8>>,
    path: Option<PathBuf>,
    /// Taken from the earlier archive rather than from its pack.
    earlier: bool,
}

/// Checks every stored frame copied into the archive: it decodes to its length, matches its XXH64
/// content checksum (as `zstd -t` would) and hashes to its chunk id; on its own thread beside the
/// copy, since the copy itself never looks at the bytes, and a frame damaged in its pack (or an
/// index that points at the wrong frame) must not reach an archive that is then published as
/// complete. A damaged frame
/// is recorded in the damage register (the next backup stores the chunk again from the source)
/// and fails the export.
///
/// Frames the writer read itself (from an object store) are charged to `held` until checked.
pub(super) fn check_frames(
    repo: &Repository,
    catalog: &Catalog,
    reuse: Option<&Reuse<'_>>,
    frames: Receiver<Copied>,
    held: &Budget,
    writer_failed: &std::sync::atomic::AtomicBool,
) -> Result<u64> {
    let mut open = LastFile::default();
    let mut buf = Vec::new();
    let mut checked = 0;
    for c in frames {
        // Up to 16,384 frames may wait here; once the archive cannot be published, checking
        // them would only delay the writer's error.
        if writer_failed.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        checked += 1;
        let frame: &[u8] = match (&c.bytes, &c.path) {
            (Some(bytes), _) => bytes,
            (None, Some(path)) => {
                let file = open
                    .open(path)
                    .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
                buf.resize(c.loc.length as usize, 0);
                std::os::unix::fs::FileExt::read_exact_at(file, &mut buf, u64::from(c.loc.offset))
                    .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
                &buf
            }
            (None, None) => unreachable!("a copied frame has bytes or a file"),
        };
        let verified = codec::verify_frame(frame, c.loc.raw_length as usize, &c.id);
        if let Some(bytes) = &c.bytes {
            held.give(bytes.len());
        }
        if let Err(e) = verified {
            if let (true, Some(r)) = (c.earlier, reuse) {
                // The earlier archive is damaged, not the pack: the export is written again
                // without it, and the damage register is left alone.
                r.damaged.store(true, std::sync::atomic::Ordering::Relaxed);
                return Err(Error::corrupt(format!(
                    "chunk {} in the archive of {} is damaged ({e})",
                    c.id.short(),
                    r.date
                )));
            }
            // What was copied is wrong either way, so the export fails; but only a frame that
            // reads wrong a second time is recorded as damaged in the store.
            let again = repo.store().get_range(
                &pack_key(&c.loc.pack),
                u64::from(c.loc.offset),
                u64::from(c.loc.length),
            )?;
            if codec::verify_frame(&again, c.loc.raw_length as usize, &c.id).is_ok() {
                return Err(Error::new(
                    ErrorKind::Transient,
                    format!(
                        "chunk {} in pack {} read damaged once and intact the second time; nothing was published, run the export again",
                        c.id.short(),
                        c.loc.pack.short()
                    ),
                ));
            }
            crate::catalog::heal::note_failure(repo, catalog, BlobKind::Data, &c.id, &c.loc, &e);
            return Err(Error::corrupt(format!(
                "chunk {} in pack {} is damaged ({e}); nothing was published, and the next backup stores the chunk again from the source",
                c.id.short(),
                c.loc.pack.short()
            )));
        }
    }
    Ok(checked)
}

/// What the writing end wrote.
pub(super) struct Sunk {
    /// Bytes written.
    pub(super) size: u64,
    /// The group frames, in archive order.
    pub(super) groups: Vec<GroupFrame>,
    /// How many of them were taken from the previous archive.
    pub(super) reused_groups: u64,
    /// Why the others were not.
    pub(super) not_reused: NotReused,
    /// The runs of stored frames, in archive order.
    pub(super) runs: Vec<FrameRun>,
    /// How many of them were taken from the previous archive.
    pub(super) reused_runs: u64,
    /// The seek table written after the last frame.
    pub(super) seek_table: super::manifest::SeekTableInfo,
}

/// The writing end: puts frames into the object in order and passes them on to the hasher.
pub(super) struct Sink<'a, 'o> {
    pub(super) out: &'o mut dyn ObjectWriter,
    pub(super) hash: SyncSender<Piece>,
    pub(super) check: SyncSender<Copied>,
    /// Bytes of frames handed to the checking thread and not checked yet.
    pub(super) check_held: &'a Budget,
    pub(super) len: u64,
    pub(super) repo: &'a Repository,
    /// Gives a group's bytes back once its frame is written.
    pub(super) budget: &'a Budget,
    /// Planned reads, when the packs are remote.
    pub(super) prefetch: Option<&'a Prefetch<'a>>,
    /// Where each group frame went, for the next day's reuse.
    pub(super) groups: Vec<GroupFrame>,
    pub(super) reused: u64,
    /// Why the other group frames were compressed.
    pub(super) missed: NotReused,
    /// Where each run of stored frames went, for the next day's reuse.
    pub(super) runs: Vec<FrameRun>,
    pub(super) reused_runs: u64,
    /// The run being written: its recipe and where it started.
    pub(super) open: Option<(Id, u64)>,
    /// The earlier archive, and its planned reads when it is remote.
    pub(super) reuse: Option<&'a Reuse<'a>>,
    pub(super) earlier: Option<&'a Prefetch<'a>>,
    /// The previous archive, when its frames can be copied inside the server.
    pub(super) earlier_src: Option<ServerObject>,
    /// Every frame written, (compressed, decompressed) length, for the seek table.
    pub(super) seek: Vec<(u32, u32)>,
}

/// One more frame written, of `tar_bytes` of the tar stream, for [`crate::progress`].
fn frame_progress(tar_bytes: u64) {
    let meter = crate::progress::meter();
    meter.items(1);
    meter.bytes(tar_bytes);
}

impl Sink<'_, '_> {
    pub(super) fn run(mut self, items: Receiver<Out>) -> Result<Sunk> {
        for item in items {
            match item {
                Out::Group(frame, charge) => {
                    let frame = frame.recv().map_err(|_| stage_gone("compression"))??;
                    self.groups.push(GroupFrame {
                        recipe: frame.recipe,
                        offset: self.len,
                        length: frame.bytes.len() as u64,
                        blake3: Id::of(&frame.bytes),
                    });
                    self.reused += u64::from(frame.reused_at.is_some());
                    frame_progress(charge as u64);
                    crate::progress::meter().count(usize::from(frame.reused_at.is_none()), 1);
                    match frame.missed {
                        Some(Missed::Changed) => self.missed.changed += 1,
                        Some(Missed::Unreadable) => self.missed.unreadable += 1,
                        Some(Missed::Damaged) => self.missed.damaged += 1,
                        Some(Missed::NoEarlier) | None => {}
                    }
                    self.seek.push((frame.bytes.len() as u32, charge as u32));
                    match frame.reused_at {
                        Some(at) => self.write_from(self.earlier_src.clone(), at, frame.bytes)?,
                        None => self.write_bytes(frame.bytes)?,
                    }
                    self.budget.give(charge);
                }
                Out::Stored(id, loc, FrameSource::Pack(ticket)) => {
                    self.seek.push((loc.length, loc.raw_length));
                    frame_progress(loc.raw_length.into());
                    self.stored_frame(id, &loc, ticket)?
                }
                Out::Stored(id, loc, FrameSource::Earlier(at, ticket)) => {
                    self.seek.push((loc.length, loc.raw_length));
                    frame_progress(loc.raw_length.into());
                    crate::progress::meter().count(2, 1);
                    match self.earlier_bytes(at, loc.length, ticket) {
                        Some(frame) => self.earlier_frame(id, &loc, frame, at)?,
                        // Read alone from its pack: this is the rare case of an earlier
                        // archive that went missing or short while the export ran.
                        None => self.stored_frame(id, &loc, None)?,
                    }
                }
                Out::RunStart(recipe, reused) => {
                    self.reused_runs += u64::from(reused);
                    self.open = Some((recipe, self.len));
                }
                Out::RunEnd => {
                    let (recipe, start) = self.open.take().expect("a run ends after it starts");
                    self.runs.push(FrameRun {
                        recipe,
                        offset: start,
                        length: self.len - start,
                    });
                }
            }
        }
        // The seek table last: decoders skip it, seekable readers start from it.
        let table = crate::tar::seek_table::encode(&self.seek);
        let seek_table = super::manifest::SeekTableInfo {
            offset: self.len,
            length: table.len() as u64,
            frames: self.seek.len() as u64,
        };
        self.write_bytes(table)?;
        self.out.flush().map_err(werr)?;
        Ok(Sunk {
            seek_table,
            size: self.len,
            groups: self.groups,
            reused_groups: self.reused,
            not_reused: self.missed,
            runs: self.runs,
            reused_runs: self.reused_runs,
        })
    }

    /// The frame of `len` bytes at `at` in the earlier archive, if it can be read whole.
    fn earlier_bytes(&self, at: u64, len: u32, ticket: Option<Ticket>) -> Option<Vec<u8>> {
        self.reuse?
            .read(at, u64::from(len), self.earlier.zip(ticket))
    }

    /// Appends a stored frame taken from the earlier archive, where it was at `at`: checked like
    /// any copied frame, and copied inside the server when the writer can.
    fn earlier_frame(&mut self, id: Id, loc: &BlobLocation, frame: Vec<u8>, at: u64) -> Result<()> {
        self.checked(id, loc, Some(frame.clone()), None, true)?;
        self.write_from(self.earlier_src.clone(), at, frame)
    }

    /// Hands a copied frame to the checking thread; `earlier`: taken from the earlier archive.
    fn checked(
        &self,
        id: Id,
        loc: &BlobLocation,
        bytes: Option<Vec<u8>>,
        path: Option<PathBuf>,
        earlier: bool,
    ) -> Result<()> {
        if let Some(b) = &bytes {
            self.check_held.take(b.len())?;
        }
        self.check
            .send(Copied {
                id,
                loc: *loc,
                bytes,
                path,
                earlier,
            })
            .map_err(|_| stage_gone("checking"))
    }

    /// Appends bytes that are also at `offset` of `src`, copied there when there is a source
    /// the writer can copy from, written otherwise.
    fn write_from(&mut self, src: Option<ServerObject>, offset: u64, bytes: Vec<u8>) -> Result<()> {
        match src {
            Some(src) => self.write_copy(&src, offset, bytes),
            None => self.write_bytes(bytes),
        }
    }

    fn write_bytes(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.out.write_all(&bytes).map_err(werr)?;
        self.hashed(bytes)
    }

    /// Appends bytes that are also at `offset` of `src`, for a writer that can copy them there.
    fn write_copy(&mut self, src: &ServerObject, offset: u64, bytes: Vec<u8>) -> Result<()> {
        self.out.write_copy(src, offset, &bytes).map_err(werr)?;
        self.hashed(bytes)
    }

    fn hashed(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.len += bytes.len() as u64;
        self.hash
            .send(Piece::Bytes(bytes))
            .map_err(|_| stage_gone("hashing"))
    }

    /// Appends a stored frame: copied inside the kernel when both the pack and the archive are
    /// local files, otherwise read and written.
    fn stored_frame(&mut self, id: Id, loc: &BlobLocation, ticket: Option<Ticket>) -> Result<()> {
        let key = pack_key(&loc.pack);
        let (offset, len) = (u64::from(loc.offset), u64::from(loc.length));
        let store = self.repo.store();
        let Some(path) = store.local_file(&key) else {
            // A failed merged read may be a neighbour's fault: this frame is read alone then.
            let frame = match (self.prefetch, ticket) {
                (Some(p), Some(t)) => match p.redeem(t) {
                    Ok(frame) => frame,
                    Err(_) => store.get_range(&key, offset, len)?,
                },
                _ => store.get_range(&key, offset, len)?,
            };
            self.checked(id, loc, Some(frame.clone()), None, false)?;
            return self.write_from(store.server_object(&key, false), offset, frame);
        };
        self.checked(id, loc, None, Some(path.clone()), false)?;
        // Announced before the copy, which may wait for the disk: the hasher reads the range
        // from the pack itself and need not wait with it.
        self.hash
            .send(Piece::File {
                path: path.clone(),
                offset,
                len,
            })
            .map_err(|_| stage_gone("hashing"))?;
        if !self.out.copy_from_file(&path, offset, len)? {
            // This writer cannot read files: the same bytes, through a buffer.
            let frame = store.get_range(&key, offset, len)?;
            self.out.write_all(&frame).map_err(werr)?;
        }
        self.len += len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_or_read_only_volume_is_not_retried() {
        for errno in [libc::ENOSPC, libc::EDQUOT, libc::EROFS] {
            let e = werr(std::io::Error::from_raw_os_error(errno));
            assert_eq!(e.kind(), ErrorKind::Io, "{e}");
            assert!(!e.is_retryable());
        }
        let e = werr(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(e.is_retryable(), "{e}");
    }
}
