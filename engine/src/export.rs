//! The daily archive: `shared-DATE.tar.zst`, its `.sha256` and its `manifest.json`, built from a
//! committed snapshot without reading the source.
//!
//! The archive is a POSIX pax tar whose entries follow bytewise path order, with headers derived
//! only from the snapshot, so one snapshot always gives the same bytes. It is written as a
//! sequence of zstd frames: tar headers, padding and the contents of small files are compressed
//! into frames of their own, and the stored chunk frames of larger files are copied from the packs
//! as they are, so building the archive costs I/O rather than compression. A zstd decoder sees one
//! stream whose content is the tar.
//!
//! Publication: the archive streams into an object that appears only when complete; then the
//! `.sha256`; the manifest is written last, and its presence is what makes a day complete.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::id::{Id, hex};
use crate::index::BlobLocation;
use crate::pack::BlobKind;
use crate::read::{HardlinkGroups, load_tree};
use crate::repo::{Repository, pack_key};
use crate::snapshot::{Skipped, Snapshot, Warning};
use crate::store::{LastFile, ObjectWriter, PIECE, Store, read_pieces};
use crate::tar_format;
use crate::tree::{Entry, EntryKind, RawBytes, check_path_len};

/// Version of the manifest format.
pub const MANIFEST_VERSION: u32 = 1;
/// Files up to this size are decoded and compressed together with their headers; larger files
/// have their stored frames copied.
pub const SMALL_FILE: u64 = 64 * 1024;
/// A group of headers and small files is cut after an entry whose path hash picks it, once it
/// holds this many tar bytes; cuts that depend only on the entries since the last cut put the
/// same entries in the same groups from one day to the next, so unchanged groups are reused.
const GROUP_MIN: usize = 256 << 10;
/// One entry in this many picks a cut (about 20 KiB per entry in a notes tree: groups of ~1 MiB).
const GROUP_PICK: u32 = 32;
/// A group is cut at this size whatever its entries.
const GROUP_MAX: usize = 2 << 20;
/// Tar bytes of groups queued or being compressed at once: bounds the memory of a walk that
/// runs ahead of the writer (into the small files while large ones are copied).
const GROUP_BUDGET: usize = 64 << 20;

/// The three object names of one day, below the exports prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayKeys {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// `DATE/shared-DATE.tar.zst`.
    pub archive: String,
    /// `DATE/shared-DATE.tar.zst.sha256`.
    pub sha256: String,
    /// `DATE/shared-DATE.manifest.json`.
    pub manifest: String,
}

impl DayKeys {
    /// The keys of `date`, which must be `YYYY-MM-DD`.
    pub fn new(date: &str) -> Result<DayKeys> {
        jiff::civil::Date::strptime("%Y-%m-%d", date)
            .map_err(|_| Error::usage(format!("{date:?} is not a date (YYYY-MM-DD)")))?;
        Ok(DayKeys {
            date: date.to_string(),
            archive: format!("{date}/shared-{date}.tar.zst"),
            sha256: format!("{date}/shared-{date}.tar.zst.sha256"),
            manifest: format!("{date}/shared-{date}.manifest.json"),
        })
    }

    /// The archive's file name.
    pub fn archive_name(&self) -> String {
        format!("shared-{}.tar.zst", self.date)
    }
}

/// The archive as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveInfo {
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the archive, hex.
    pub sha256: String,
}

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Path inside the archive (no trailing `/`); raw bytes as in trees.
    pub path: RawBytes,
    /// Entry type.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Content length (0 for hardlinks after the first name, directories and symlinks).
    pub size: u64,
    /// Modification time, seconds.
    pub mtime: i64,
    /// Modification time, nanoseconds.
    pub mtime_ns: u32,
    /// Permission bits.
    pub mode: u32,
    /// Symlink target, or for a hardlink the path of the first name of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<RawBytes>,
}

/// An entry of the snapshot that the archive leaves out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftOut {
    /// Path.
    pub path: RawBytes,
    /// Entry type.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Why: `socket`, `fifo` and device nodes have no place in a portable archive.
    pub reason: String,
}

/// `shared-DATE.manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_VERSION`].
    pub format_version: u32,
    /// The day.
    pub date: String,
    /// The snapshot the archive was built from.
    pub snapshot: Id,
    /// That snapshot's root tree; the archive's bytes depend on nothing else.
    pub root: Id,
    /// When that snapshot was taken.
    pub snapshot_time: String,
    /// Source root.
    pub source: String,
    /// Folders.
    pub folders: Vec<String>,
    /// The archive.
    pub archive: ArchiveInfo,
    /// Every entry, in archive order.
    pub entries: Vec<ManifestEntry>,
    /// Snapshot entries left out of the archive.
    pub skipped: Vec<LeftOut>,
    /// What the backup excluded on purpose.
    pub excluded: Vec<Skipped>,
    /// What the backup could not read.
    pub warnings: Vec<Warning>,
    /// The archive's frames of headers and small files, for the next day's export to reuse.
    #[serde(default)]
    pub groups: Vec<GroupFrame>,
}

/// One frame of headers and small files in an archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupFrame {
    /// BLAKE3 of what determines the frame: the tar bytes, with small files' content named by
    /// chunk id, and the compression level.
    pub recipe: Id,
    /// Where the frame starts in the archive.
    pub offset: u64,
    /// Its length.
    pub length: u64,
    /// BLAKE3 of the frame's bytes, checked before the frame is reused.
    pub blake3: Id,
}

/// What [`write_archive`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    /// Archive size.
    pub size: u64,
    /// Archive SHA-256, hex.
    pub sha256: String,
    /// Manifest entries, in archive order.
    pub entries: Vec<ManifestEntry>,
    /// Snapshot entries left out.
    pub skipped: Vec<LeftOut>,
    /// The group frames.
    pub groups: Vec<GroupFrame>,
    /// How many of them were taken from the previous archive.
    pub reused_groups: u64,
    /// Stored frames checked against their chunk ids.
    pub checked_frames: u64,
}

/// What [`export`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// A new archive was written.
    Written(Manifest, Reused),
    /// A complete archive of the same tree was already there; nothing was written.
    Unchanged(Manifest),
}

/// How much of a new archive came from an earlier one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reused {
    /// The day whose archive was drawn on, if any.
    pub from: Option<String>,
    /// Frames of headers and small files in the new archive.
    pub groups: u64,
    /// How many of them were copied from the earlier archive instead of compressed.
    pub reused_groups: u64,
    /// Stored chunk frames decoded and checked against their ids as they were copied (reported
    /// by the run on its own, not as part of the reuse).
    #[serde(skip)]
    pub checked_frames: u64,
}

impl Published {
    /// The manifest of the day's archive.
    pub fn manifest(&self) -> &Manifest {
        match self {
            Published::Written(m, _) | Published::Unchanged(m) => m,
        }
    }
}

/// A piece of the archive, in archive order, for the thread that computes its SHA-256.
enum Piece {
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
fn hash_pieces(pieces: Receiver<Piece>) -> Result<String> {
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

fn werr(e: std::io::Error) -> Error {
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
enum Out {
    /// A frame of headers and small files, being assembled and compressed by a worker, and its
    /// charge against the [`Budget`].
    Group(Receiver<Result<Frame>>, usize),
    /// A stored chunk frame, to copy from its pack.
    Stored(Id, BlobLocation),
}

/// A stored frame that was copied into the archive, for the thread that checks it.
struct Copied {
    id: Id,
    loc: BlobLocation,
    /// The frame's bytes when the writer read them; otherwise they are read from `path`.
    bytes: Option<Vec<u8>>,
    path: Option<PathBuf>,
}

/// Checks every stored frame copied into the archive: it decodes to its length, matches its XXH64
/// content checksum (as `zstd -t` would) and hashes to its chunk id; on its own thread beside the
/// copy, since the copy itself never looks at the bytes, and a frame damaged in its pack (or an
/// index that points at the wrong frame) must not reach an archive that is then published as
/// complete. A damaged frame
/// is recorded in the damage register (the next backup stores the chunk again from the source)
/// and fails the export.
fn check_frames(repo: &Repository, catalog: &Catalog, frames: Receiver<Copied>) -> Result<u64> {
    let mut open = LastFile::default();
    let mut buf = Vec::new();
    let mut checked = 0;
    for c in frames {
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
        if let Err(e) = codec::verify_frame(frame, c.loc.raw_length as usize, &c.id) {
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
            crate::heal::note_failure(repo, catalog, BlobKind::Data, &c.id, &c.loc, &e);
            return Err(Error::corrupt(format!(
                "chunk {} in pack {} is damaged ({e}); nothing was published, and the next backup stores the chunk again from the source",
                c.id.short(),
                c.loc.pack.short()
            )));
        }
    }
    Ok(checked)
}

/// The writing end: puts frames into the object in order and passes them on to the hasher.
struct Sink<'a, 'o> {
    out: &'o mut dyn ObjectWriter,
    hash: SyncSender<Piece>,
    check: SyncSender<Copied>,
    len: u64,
    repo: &'a Repository,
    /// Gives a group's bytes back once its frame is written.
    budget: &'a Budget,
    /// Where each group frame went, for the next day's reuse.
    groups: Vec<GroupFrame>,
    reused: u64,
}

/// A thread of the export stopped early; its own error is the one to report.
fn stage_gone(stage: &str) -> Error {
    Error::new(
        ErrorKind::Transient,
        format!("the archive's {stage} thread stopped"),
    )
}

impl Sink<'_, '_> {
    fn run(mut self, items: Receiver<Out>) -> Result<Written> {
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
                    self.reused += u64::from(frame.reused);
                    self.write_bytes(frame.bytes)?;
                    self.budget.give(charge);
                }
                Out::Stored(id, loc) => self.stored_frame(id, &loc)?,
            }
        }
        self.out.flush().map_err(werr)?;
        Ok(Written {
            size: self.len,
            sha256: String::new(),
            groups: self.groups,
            reused_groups: self.reused,
            checked_frames: 0,
            entries: Vec::new(),
            skipped: Vec::new(),
        })
    }

    fn checked(
        &self,
        id: Id,
        loc: &BlobLocation,
        bytes: Option<Vec<u8>>,
        path: Option<PathBuf>,
    ) -> Result<()> {
        self.check
            .send(Copied {
                id,
                loc: *loc,
                bytes,
                path,
            })
            .map_err(|_| stage_gone("checking"))
    }

    fn write_bytes(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.out.write_all(&bytes).map_err(werr)?;
        self.len += bytes.len() as u64;
        self.hash
            .send(Piece::Bytes(bytes))
            .map_err(|_| stage_gone("hashing"))
    }

    /// Appends a stored frame: copied inside the kernel when both the pack and the archive are
    /// local files, otherwise read and written.
    fn stored_frame(&mut self, id: Id, loc: &BlobLocation) -> Result<()> {
        let key = pack_key(&loc.pack);
        let (offset, len) = (u64::from(loc.offset), u64::from(loc.length));
        let store = self.repo.store();
        let Some(path) = store.local_file(&key) else {
            let frame = store.get_range(&key, offset, len)?;
            self.checked(id, loc, Some(frame.clone()), None)?;
            return self.write_bytes(frame);
        };
        self.checked(id, loc, None, Some(path.clone()))?;
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

/// Part of a group's tar bytes.
enum Seg {
    /// `raw[start..end]` of the group: headers and padding.
    Raw(usize, usize),
    /// The content of a stored blob of a small file.
    Blob(Id, BlobLocation),
}

/// The recipe of one frame of headers and small files; a worker reads the blobs it names,
/// so that decoding, like compressing, happens off the walking thread.
#[derive(Default)]
struct Group {
    raw: Vec<u8>,
    segs: Vec<Seg>,
    /// Tar bytes the group stands for.
    len: usize,
}

impl Group {
    /// What determines the group's frame: its tar bytes, named by the blobs' ids rather than
    /// read, and the compression level.
    fn recipe(&self, level: i32) -> Id {
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
                Seg::Blob(id, loc) => {
                    h.update(&[1]);
                    h.update(id.as_bytes());
                    h.update(&loc.raw_length.to_le_bytes());
                }
            }
        }
        Id(*h.finalize().as_bytes())
    }

    fn assemble(&self, repo: &Repository, catalog: &Catalog) -> Result<Vec<u8>> {
        let mut tar = Vec::with_capacity(self.len);
        for seg in &self.segs {
            match seg {
                Seg::Raw(a, b) => tar.extend_from_slice(&self.raw[*a..*b]),
                Seg::Blob(id, loc) => {
                    let data = crate::heal::read_checked(repo, catalog, BlobKind::Data, id, loc)?;
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
struct Frame {
    bytes: Vec<u8>,
    recipe: Id,
    /// Taken from the previous archive rather than compressed.
    reused: bool,
}

/// A group to assemble and compress, and where its frame goes.
type Job = (Group, SyncSender<Result<Frame>>);

/// The group frames of an earlier archive, by recipe.
#[derive(Debug)]
pub(crate) struct Reuse<'a> {
    store: &'a dyn Store,
    key: String,
    date: String,
    frames: HashMap<Id, GroupFrame>,
}

impl Reuse<'_> {
    /// The frame of `recipe` in the earlier archive, if it is there and still whole.
    fn frame(&self, recipe: &Id) -> Option<Vec<u8>> {
        let f = self.frames.get(recipe)?;
        let bytes = self.store.get_range(&self.key, f.offset, f.length).ok()?;
        // A damaged earlier archive must not leak into today's: such frames are compressed anew.
        (Id::of(&bytes) == f.blake3).then_some(bytes)
    }
}

/// Assembles and compresses groups until the walk ends, taking unchanged ones from the
/// previous archive.
fn compress_groups(
    repo: &Repository,
    catalog: &Catalog,
    level: i32,
    reuse: Option<&Reuse<'_>>,
    jobs: &std::sync::Mutex<Receiver<Job>>,
) {
    loop {
        let job = jobs.lock().expect("no worker panics").recv();
        let Ok((group, frame)) = job else { return };
        let recipe = group.recipe(level);
        let made = match reuse.and_then(|r| r.frame(&recipe)) {
            Some(bytes) => Ok(Frame {
                bytes,
                recipe,
                reused: true,
            }),
            None => group
                .assemble(repo, catalog)
                .and_then(|tar| codec::encode(&tar, level))
                .map(|bytes| Frame {
                    bytes,
                    recipe,
                    reused: false,
                }),
        };
        let _ = frame.send(made);
    }
}

/// Tar bytes of the groups in flight, at most [`GROUP_BUDGET`] (one group always fits).
#[derive(Default)]
struct Budget {
    /// Bytes taken, and whether the writer has stopped.
    state: std::sync::Mutex<(usize, bool)>,
    changed: std::sync::Condvar,
}

impl Budget {
    fn take(&self, n: usize) -> Result<()> {
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

    fn give(&self, n: usize) {
        self.state.lock().expect("poisoned").0 -= n;
        self.changed.notify_all();
    }

    /// The writer stopped: nobody will give bytes back.
    fn close(&self) {
        self.state.lock().expect("poisoned").1 = true;
        self.changed.notify_all();
    }
}

/// The walking end: builds tar bytes, groups them into frames and queues the output in order.
struct ArchiveWriter<'a> {
    items: SyncSender<Out>,
    jobs: SyncSender<Job>,
    budget: &'a Budget,
    pending: Group,
    tar_len: u64,
}

impl ArchiveWriter<'_> {
    fn send(&self, item: Out) -> Result<()> {
        self.items.send(item).map_err(|_| stage_gone("writing"))
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<()> {
        let g = &mut self.pending;
        let start = g.raw.len();
        g.raw.extend_from_slice(bytes);
        match g.segs.last_mut() {
            Some(Seg::Raw(_, end)) if *end == start => *end = g.raw.len(),
            _ => g.segs.push(Seg::Raw(start, g.raw.len())),
        }
        self.added(bytes.len())
    }

    fn blob(&mut self, id: Id, loc: BlobLocation) -> Result<()> {
        self.pending.segs.push(Seg::Blob(id, loc));
        self.added(loc.raw_length as usize)
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
            let group = std::mem::take(&mut self.pending);
            let (tx, rx) = sync_channel(1);
            let charge = group.len;
            self.budget.take(charge)?;
            self.jobs
                .send((group, tx))
                .map_err(|_| stage_gone("compression"))?;
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
    /// the stored frames.
    fn content(&mut self, repo: &Repository, catalog: &Catalog, e: &Entry) -> Result<()> {
        let small = e.size <= SMALL_FILE;
        let mut written = 0u64;
        for id in &e.chunks {
            let loc = catalog.locate(BlobKind::Data, id)?.ok_or_else(|| {
                Error::not_found(format!("chunk {} is in no known pack", id.short()))
            })?;
            // Large files' frames are copied without decoding: their claimed length is checked
            // here, before the tar stream is sized by it.
            repo.check_location(BlobKind::Data, id, &loc)?;
            written += u64::from(loc.raw_length);
            if small {
                self.blob(*id, loc)?;
            } else {
                self.flush_pending()?;
                self.send(Out::Stored(*id, loc))?;
                self.tar_len += u64::from(loc.raw_length);
            }
        }
        if written != e.size {
            return Err(Error::corrupt(format!(
                "file of {} bytes has chunks of {written} bytes",
                e.size
            )));
        }
        self.pad()
    }
}

/// Items of one directory in full-path bytewise order: an entry sorts by its name, and the
/// subtree of a directory sorts by `name/`, which places `a.txt` before `a/x` and `a0` after it.
fn ordered(entries: Vec<Entry>) -> Vec<(Vec<u8>, Entry, bool)> {
    let mut items = Vec::with_capacity(entries.len() * 2);
    for e in entries {
        if e.kind == EntryKind::Dir {
            let mut key = e.name.0.clone();
            key.push(b'/');
            items.push((key, e.clone(), true));
        }
        items.push((e.name.0.clone(), e, false));
    }
    items.sort_by(|a, b| a.0.cmp(&b.0));
    items
}

struct Walk<'a, 'b> {
    w: &'a mut ArchiveWriter<'b>,
    repo: &'a Repository,
    catalog: &'a Catalog,
    entries: Vec<ManifestEntry>,
    skipped: Vec<LeftOut>,
    /// The first name written of each hardlink group.
    links: HardlinkGroups<Vec<u8>>,
}

impl Walk<'_, '_> {
    /// Writes the tree `tree` at `prefix`, depth first in archive order. Walks with an explicit
    /// stack, and stops at a path longer than a snapshot may hold: a crafted chain of trees
    /// can neither overflow the stack nor make an archive no restore accepts.
    fn dir(&mut self, tree: &Id, prefix: &[u8]) -> Result<()> {
        let first = ordered(load_tree(self.repo, self.catalog, tree)?.entries).into_iter();
        let mut stack = vec![(prefix.to_vec(), first)];
        while let Some((prefix, items)) = stack.last_mut() {
            let Some((_, e, subtree)) = items.next() else {
                stack.pop();
                continue;
            };
            let mut path = prefix.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&e.name.0);
            check_path_len(&path)?;
            if subtree {
                let sub = e
                    .tree
                    .ok_or_else(|| Error::corrupt("directory entry without a tree"))?;
                let items = ordered(load_tree(self.repo, self.catalog, &sub)?.entries).into_iter();
                stack.push((path, items));
            } else {
                self.entry(path, &e)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, path: Vec<u8>, e: &Entry) -> Result<()> {
        let mut m = ManifestEntry {
            path: RawBytes(path.clone()),
            kind: e.kind,
            size: 0,
            mtime: e.mtime,
            mtime_ns: e.mtime_ns,
            mode: e.mode,
            link: None,
        };
        match e.kind {
            EntryKind::Dir => {
                let mut p = path.clone();
                p.push(b'/');
                self.w.raw(&tar_format::header(
                    &p,
                    e,
                    tar::EntryType::Directory,
                    0,
                    None,
                ))?;
            }
            EntryKind::Symlink => {
                let target = e
                    .target
                    .as_ref()
                    .map(|t| t.0.as_slice())
                    .unwrap_or_default();
                self.w.raw(&tar_format::header(
                    &path,
                    e,
                    tar::EntryType::Symlink,
                    0,
                    Some(target),
                ))?;
                m.link = Some(RawBytes(target.to_vec()));
            }
            EntryKind::File => {
                let folder = path.split(|b| *b == b'/').next().unwrap_or_default();
                let first = self.links.link_to(folder, e, || path.clone());
                if let Some(first) = first {
                    self.w.raw(&tar_format::header(
                        &path,
                        e,
                        tar::EntryType::Link,
                        0,
                        Some(&first),
                    ))?;
                    m.link = Some(RawBytes(first));
                } else {
                    self.w.raw(&tar_format::header(
                        &path,
                        e,
                        tar::EntryType::Regular,
                        e.size,
                        None,
                    ))?;
                    self.w.content(self.repo, self.catalog, e)?;
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
        self.entries.push(m);
        Ok(())
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
    // Frames to check: up to 8 MiB each when the writer read them (S3), a few bytes otherwise.
    let (check_tx, check_rx) = sync_channel(4);
    // Stored frames are queued as locations, a few bytes each: the walk may run far ahead of
    // the writer, into the small files, while the writer copies large ones.
    let (items_tx, items_rx) = sync_channel(1 << 16);
    let (jobs_tx, jobs_rx) = sync_channel::<Job>(64);
    let budget = Budget::default();
    let jobs_rx = std::sync::Mutex::new(jobs_rx);
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || hash_pieces(hash_rx));
        let checker = scope.spawn(move || check_frames(repo, catalog, check_rx));
        let sink = Sink {
            out,
            hash: hash_tx,
            check: check_tx,
            len: 0,
            repo,
            budget: &budget,
            groups: Vec::new(),
            reused: 0,
        };
        let budget_ref = &budget;
        let writer = scope.spawn(move || {
            let written = sink.run(items_rx);
            budget_ref.close();
            written
        });
        for _ in 0..rayon::current_num_threads().max(1) {
            let jobs = &jobs_rx;
            scope.spawn(move || compress_groups(repo, catalog, level, reuse, jobs));
        }
        let mut w = ArchiveWriter {
            items: items_tx,
            jobs: jobs_tx,
            budget: &budget,
            pending: Group::default(),
            tar_len: 0,
        };
        let walked = (|| {
            let mut walk = Walk {
                w: &mut w,
                repo,
                catalog,
                entries: Vec::new(),
                skipped: Vec::new(),
                links: HardlinkGroups::new(),
            };
            walk.dir(&snap.root, b"")?;
            let (entries, skipped) = (walk.entries, walk.skipped);
            w.raw(&[0u8; 1024])?; // end of archive: two zero blocks
            w.flush_pending()?;
            Ok((entries, skipped))
        })();
        drop(w); // closes the queues: the workers, the writer, then the hasher finish
        let written = writer.join().expect("the writing thread does not panic");
        let sha = hasher.join().expect("the hashing thread does not panic");
        let checked = checker.join().expect("the checking thread does not panic");
        // A stage that stopped makes the ones before it fail too; report the root cause.
        match (walked, written, sha, checked) {
            (_, _, _, Err(e)) | (_, _, Err(e), _) | (_, Err(e), _, _) | (Err(e), _, _, _) => Err(e),
            (Ok((entries, skipped)), Ok(written), Ok(sha256), Ok(checked_frames)) => Ok(Written {
                sha256,
                entries,
                skipped,
                checked_frames,
                ..written
            }),
        }
    })
}

/// How to publish one day's archive.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The day (`YYYY-MM-DD`).
    pub date: String,
    /// zstd level for header and small-file frames.
    pub level: i32,
    /// Replace a complete archive of another snapshot.
    pub force: bool,
    /// Called at the steps of publication; lets tests interleave two writers exactly.
    pub hook: Option<ExportHook>,
}

/// Where in publishing an [`ExportHook`] is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportPoint {
    /// The writer's lease object is written and not yet checked against the others.
    LeaseWritten,
    /// The day's lease is held; nothing of the day was read or written yet.
    Leased,
    /// The archive's bytes are written and not yet published under the day's name.
    ArchiveBuilt,
    /// The archive object is complete; `.sha256` and manifest are not written yet.
    ArchiveWritten,
    /// The `.sha256` is written; the manifest is next.
    BeforeManifest,
}

/// A callback for [`ExportOptions::hook`].
#[derive(Clone)]
pub struct ExportHook(pub std::sync::Arc<dyn Fn(ExportPoint) + Send + Sync>);

impl std::fmt::Debug for ExportHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportHook")
    }
}

/// How long a day's lease lives without a refresh: a writer that died blocks the day's rerun on
/// another machine at most this long (on its own machine, not at all).
pub const DAY_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The store prefix of the leases of one day in the exports location.
pub fn day_lease_prefix(date: &str) -> String {
    format!("{LEASES}{date}/")
}

/// The store prefix of every day's leases in the exports location.
pub const LEASES: &str = "_leases/";

/// Publishes the daily archive of snapshot `snap_id` into `exports`.
///
/// If the day already has a complete archive of the same tree (a snapshot with the same root),
/// nothing is written: the bytes would be identical. If it has one of a different tree, the
/// call fails with kind `Conflict` unless `force` is set.
///
/// Two writers of one day (two pods, each with its own state volume) are kept apart by a lease
/// in the exports location (see [`crate::lease`]): the second fails with kind `Locked`, naming
/// the first, and the check above is made while the lease is held, so it holds under
/// concurrency too.
pub fn export(
    repo: &Repository,
    catalog: &Catalog,
    exports: &dyn Store,
    (snap_id, snap): (&Id, &Snapshot),
    opts: &ExportOptions,
) -> Result<Published> {
    let keys = DayKeys::new(&opts.date)?;
    let call = |p: ExportPoint| {
        if let Some(h) = &opts.hook {
            (h.0)(p);
        }
    };
    let lease_hook = |_: crate::lease::LeasePoint| call(ExportPoint::LeaseWritten);
    let lease = crate::lease::acquire(
        exports,
        &day_lease_prefix(&keys.date),
        &format!("publishing {}", keys.date),
        DAY_LEASE_TTL,
        Some(&lease_hook),
    )?;
    call(ExportPoint::Leased);
    let published =
        lease.hold(|| publish(repo, catalog, exports, (snap_id, snap), opts, &keys, &lease))?;
    lease.release();
    Ok(published)
}

/// [`export`] with the day's lease held.
fn publish(
    repo: &Repository,
    catalog: &Catalog,
    exports: &dyn Store,
    (snap_id, snap): (&Id, &Snapshot),
    opts: &ExportOptions,
    keys: &DayKeys,
    lease: &crate::lease::Lease<'_>,
) -> Result<Published> {
    let call = |p: ExportPoint| {
        if let Some(h) = &opts.hook {
            (h.0)(p);
        }
    };
    let (level, force) = (opts.level, opts.force);
    match read_manifest(exports, keys) {
        // Same trees, same bytes: a rerun of the night with nothing changed keeps the archive.
        Ok(m) if m.root == snap.root => {
            return Ok(Published::Unchanged(m));
        }
        Ok(m) if !force => {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "{} already holds a complete archive of snapshot {}, whose content differs from snapshot {}; refusing to replace it (use --force)",
                    keys.date,
                    m.snapshot.short(),
                    snap_id.short()
                ),
            ));
        }
        // Forced: the day stops looking complete before its archive is replaced.
        Ok(_) => exports.delete(&keys.manifest)?,
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let reuse = earlier_archive(exports, keys)?;
    let mut writer = exports.create(&keys.archive)?;
    let written = write_archive(repo, catalog, snap, level, reuse.as_ref(), writer.as_mut())?;
    call(ExportPoint::ArchiveBuilt);
    // Each object of the day is published only while the lease is still this writer's: one that
    // lost it (stalled longer than the lease's TTL) must not replace another writer's archive.
    lease.confirm()?;
    writer.finish()?;
    call(ExportPoint::ArchiveWritten);
    let Written {
        size,
        sha256,
        entries,
        skipped,
        groups,
        reused_groups,
        checked_frames,
    } = written;
    lease.confirm()?;
    exports.put(
        &keys.sha256,
        format!("{sha256}  {}\n", keys.archive_name()).as_bytes(),
    )?;
    call(ExportPoint::BeforeManifest);
    let reused = Reused {
        from: reuse.map(|r| r.date),
        groups: groups.len() as u64,
        reused_groups,
        checked_frames,
    };
    let manifest = Manifest {
        format_version: MANIFEST_VERSION,
        date: keys.date.clone(),
        snapshot: *snap_id,
        root: snap.root,
        snapshot_time: snap.time.clone(),
        source: snap.source.clone(),
        folders: snap.folders.clone(),
        archive: ArchiveInfo {
            name: keys.archive_name(),
            size,
            sha256,
        },
        entries,
        skipped,
        excluded: snap.skipped.clone(),
        warnings: snap.warnings.clone(),
        groups,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).expect("manifests serialize");
    // The manifest makes the day complete: only while the lease is still this writer's.
    lease.confirm()?;
    exports.put(&keys.manifest, &bytes)?;
    Ok(Published::Written(manifest, reused))
}

/// The group frames of the newest complete archive of another day, if there is one whose
/// manifest lists them. An unreadable earlier day only costs the reuse, never the export.
fn earlier_archive<'a>(exports: &'a dyn Store, today: &DayKeys) -> Result<Option<Reuse<'a>>> {
    // One ranged read per reused group (about 250 KiB each): cheap on local files, but on an
    // object store two thousand requests can cost more than compressing the groups again. Asked
    // before listing, which on an object store is itself a request per thousand objects.
    if exports.local_file(&today.archive).is_none() {
        return Ok(None);
    }
    let days = list_days(exports)?;
    let Some(day) = days
        .iter()
        .rev()
        .find(|d| d.complete && d.date != today.date)
    else {
        return Ok(None);
    };
    let keys = DayKeys::new(&day.date)?;
    let manifest = match read_manifest(exports, &keys) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!("not reusing frames of {}: {e}", day.date);
            return Ok(None);
        }
    };
    if manifest.groups.is_empty() {
        return Ok(None);
    }
    Ok(Some(Reuse {
        store: exports,
        key: keys.archive,
        date: day.date.clone(),
        frames: manifest.groups.into_iter().map(|g| (g.recipe, g)).collect(),
    }))
}

/// Reads and parses a day's manifest.
pub fn read_manifest(exports: &dyn Store, keys: &DayKeys) -> Result<Manifest> {
    let bytes = exports.get(&keys.manifest)?;
    let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
        Error::corrupt(format!("{} is not a valid manifest", keys.manifest)).with_source(e)
    })?;
    if m.format_version != MANIFEST_VERSION {
        return Err(Error::corrupt(format!(
            "{}: unknown manifest version {}",
            keys.manifest, m.format_version
        )));
    }
    Ok(m)
}

/// Reads an object sequentially through ranged reads of a few MiB, so that multi-GiB archives
/// never sit in memory.
pub struct ObjectReader<'a> {
    store: &'a dyn Store,
    key: String,
    size: u64,
    pos: u64,
    buf: Vec<u8>,
    at: usize,
}

impl std::fmt::Debug for ObjectReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectReader")
            .field("key", &self.key)
            .field("pos", &self.pos)
            .finish()
    }
}

impl<'a> ObjectReader<'a> {
    /// A reader of `key`.
    pub fn open(store: &'a dyn Store, key: &str) -> Result<ObjectReader<'a>> {
        let size = store.size(key)?;
        Ok(ObjectReader {
            store,
            key: key.to_string(),
            size,
            pos: 0,
            buf: Vec::new(),
            at: 0,
        })
    }

    /// The object's size.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for ObjectReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.buf.len() {
            if self.pos >= self.size {
                return Ok(0);
            }
            let n = (self.size - self.pos).min(8 << 20);
            self.buf = self
                .store
                .get_range(&self.key, self.pos, n)
                .map_err(std::io::Error::other)?;
            self.pos += n;
            self.at = 0;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// One day in the exports location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DayStatus {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// The manifest is present.
    pub complete: bool,
    /// Archive size, if the archive object exists.
    pub archive_size: Option<u64>,
}

/// The days found in the exports location, oldest first (report folders excluded).
pub fn list_days(exports: &dyn Store) -> Result<Vec<DayStatus>> {
    let mut days: std::collections::BTreeMap<String, DayStatus> = Default::default();
    for o in exports.list("")? {
        let Some((date, _)) = o.key.split_once('/') else {
            continue;
        };
        let Ok(keys) = DayKeys::new(date) else {
            continue;
        };
        let d = days.entry(date.to_string()).or_insert(DayStatus {
            date: date.to_string(),
            complete: false,
            archive_size: None,
        });
        if o.key == keys.manifest {
            d.complete = true;
        } else if o.key == keys.archive {
            d.archive_size = Some(o.size);
        }
    }
    Ok(days.into_values().collect())
}

/// What [`verify`] checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The day.
    pub date: String,
    /// Bytes read.
    pub size: u64,
    /// SHA-256 computed.
    pub sha256: String,
    /// tar entries read and matched against the manifest.
    pub entries: u64,
}

/// Re-reads a day's archive: its SHA-256 must match the `.sha256` object and the manifest, the
/// whole zstd stream must decode (each frame's content checksum is checked as it is decoded), and
/// the tar entries must be the manifest's.
pub fn verify(exports: &dyn Store, date: &str) -> Result<VerifyReport> {
    let keys = DayKeys::new(date)?;
    let manifest = read_manifest(exports, &keys)?;
    let sha_line = String::from_utf8(exports.get(&keys.sha256)?)
        .map_err(|_| Error::corrupt(format!("{} is not text", keys.sha256)))?;
    let expected = format!("{}  {}", manifest.archive.sha256, keys.archive_name());
    if sha_line.trim_end() != expected {
        return Err(Error::corrupt(format!(
            "{} does not match the manifest",
            keys.sha256
        )));
    }
    let reader = ObjectReader::open(exports, &keys.archive)?;
    let size = reader.size();
    let mut tee = HashingReader {
        inner: reader,
        sha: Sha256::new(),
    };
    let entries = {
        let mut dec = zstd::stream::read::Decoder::new(&mut tee)
            .map_err(|e| Error::corrupt("zstd decoder").with_source(e))?;
        let mut archive = tar::Archive::new(crate::tar_guard::TarGuard::new(&mut dec));
        let mut n = 0u64;
        let mut want = manifest.entries.iter();
        for item in archive
            .entries()
            .map_err(|e| Error::corrupt(format!("{}: not a tar", keys.archive)).with_source(e))?
        {
            let mut item = item
                .map_err(|e| Error::corrupt(format!("{}: damaged", keys.archive)).with_source(e))?;
            let path = item.path_bytes().into_owned();
            let m = want
                .next()
                .ok_or_else(|| Error::corrupt("archive has more entries than its manifest"))?;
            let mpath = if m.kind == EntryKind::Dir {
                [m.path.0.as_slice(), b"/"].concat()
            } else {
                m.path.0.clone()
            };
            if path != mpath || item.size() != m.size {
                return Err(Error::corrupt(format!(
                    "archive entry {} does not match the manifest ({})",
                    String::from_utf8_lossy(&path),
                    m.path.lossy()
                )));
            }
            std::io::copy(&mut item, &mut std::io::sink()).map_err(|e| {
                Error::corrupt(format!("{}: damaged content", keys.archive)).with_source(e)
            })?;
            n += 1;
        }
        if want.next().is_some() {
            return Err(Error::corrupt(
                "archive has fewer entries than its manifest",
            ));
        }
        // Read to the end so that every frame (and the hash) covers the whole object.
        std::io::copy(&mut dec, &mut std::io::sink())
            .map_err(|e| Error::corrupt(format!("{}: damaged", keys.archive)).with_source(e))?;
        n
    };
    let mut rest = Vec::new();
    tee.read_to_end(&mut rest)
        .map_err(|e| Error::corrupt("reading the archive").with_source(e))?;
    if !rest.is_empty() {
        return Err(Error::corrupt(format!(
            "{}: {} bytes after the last zstd frame",
            keys.archive,
            rest.len()
        )));
    }
    let sha = hex(&tee.sha.finalize());
    if sha != manifest.archive.sha256 || size != manifest.archive.size {
        return Err(Error::corrupt(format!(
            "{}: sha256 {sha} / {size} bytes, manifest says {} / {} bytes",
            keys.archive, manifest.archive.sha256, manifest.archive.size
        )));
    }
    Ok(VerifyReport {
        date: keys.date,
        size,
        sha256: sha,
        entries,
    })
}

struct HashingReader<R> {
    inner: R,
    sha: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        self.sha.update(&out[..n]);
        Ok(n)
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
