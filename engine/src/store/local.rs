//! A store in a local directory (or any mounted filesystem).
//!
//! `put` writes a hidden temporary file next to the target, fsyncs it, renames it into place and
//! fsyncs the directory, so an object is either absent or complete and durable, even across a
//! power cut. Temporary files left by a crash start with a dot and are never listed; they name
//! the process that wrote them (`.NAME.tmp-PID-N`), so that [`Store::clean_temporaries`] can
//! tell a dead writer's file from a live one's.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoKind, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use super::{Cleaned, ObjectInfo, ObjectWriter, Store, check_key, check_prefix};
use crate::error::{Error, Result};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Objects as files under a root directory; a key's `/` are subdirectories.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// A store rooted at `root`, created if missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if let Err(e) = fs::create_dir_all(&root) {
            // A file on the path is a mistake in the configuration, not an I/O failure.
            return Err(match fs::metadata(&root) {
                Ok(md) if !md.is_dir() => not_a_dir(&root),
                _ if e.raw_os_error() == Some(libc::ENOTDIR) => not_a_dir(&root),
                _ => Error::io(format!("creating store directory {}", root.display()), e),
            });
        }
        Self::open_existing(root)
    }

    /// A store rooted at `root`, which must be an existing directory: a missing one is a
    /// configuration error (kind `Config`) rather than an empty store, so that a typo in a path
    /// is not mistaken for a lost repository and nothing is created by commands that only read.
    pub fn open_existing(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        match fs::metadata(&root) {
            Ok(md) if md.is_dir() => Ok(LocalStore { root }),
            Ok(_) => Err(not_a_dir(&root)),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                Err(Error::config(format!(
                    "store directory {} does not exist (`cairn init` creates it)",
                    root.display()
                )))
            }
            Err(e) => Err(Error::io(
                format!("opening store directory {}", root.display()),
                e,
            )),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }

    /// Creates `dir` and any missing parents, fsyncing each parent that gained an entry so the
    /// new directories survive a crash along with the files put into them.
    fn ensure_dir(&self, dir: &Path) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.ensure_dir(parent)?;
        }
        match fs::create_dir(dir) {
            Ok(()) => sync_dir(dir.parent().unwrap_or(dir)),
            Err(e) if e.kind() == IoKind::AlreadyExists => Ok(()),
            Err(e) => Err(Error::io(format!("creating {}", dir.display()), e)),
        }
    }
}

fn not_a_dir(root: &Path) -> Error {
    Error::config(format!(
        "store directory {} is not a directory",
        root.display()
    ))
}

/// The writer's PID in a temporary file name `.NAME.tmp-PID-N`, if it is one.
fn temp_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (_, tail) = rest.rsplit_once(".tmp-")?;
    let (pid, n) = tail.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Whether process `pid` of this host may be the one that last wrote a file at `mtime`: it
/// exists and started no later than that. A PID reused by a later process (a new pod's cairn
/// often gets the PID the killed one had) is not the writer.
fn may_be_writer(pid: u32, mtime: SystemTime) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    match process_start(pid) {
        Some(start) => start <= mtime + Duration::from_secs(1),
        None => true, // cannot tell: keep the file
    }
}

/// When process `pid` started, from `/proc` (field 22 of its stat, in clock ticks since boot).
fn process_start(pid: u32) -> Option<SystemTime> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may hold spaces: count fields after the last `)`.
    let after = &stat[stat.rfind(')')? + 1..];
    let ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())?;
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|&h| h > 0)?;
    Some(
        SystemTime::UNIX_EPOCH
            + Duration::from_secs(boot)
            + Duration::from_millis(ticks * 1000 / hz),
    )
}

/// Removes dead writers' temporary files below `dir` that were last written before `cutoff`,
/// then `dir` itself if it is empty (never the root). Returns whether `dir` is gone.
fn clean_dir(dir: &Path, root: &Path, cutoff: SystemTime, out: &mut Cleaned) -> Result<bool> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    let mut removed = false;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let ft = ent
            .file_type()
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = ent.file_name();
        let name = name.to_string_lossy();
        if ft.is_dir() && !name.starts_with('.') {
            removed |= clean_dir(&ent.path(), root, cutoff, out)?;
            continue;
        }
        let Some(pid) = temp_pid(&name).filter(|_| ft.is_file()) else {
            continue;
        };
        let Ok(md) = ent.metadata() else { continue };
        let Ok(mtime) = md.modified() else { continue };
        if mtime > cutoff || may_be_writer(pid, mtime) {
            continue;
        }
        match fs::remove_file(ent.path()) {
            Ok(()) => {
                removed = true;
                out.objects += 1;
                out.bytes += md.len();
                tracing::info!(file = %ent.path().display(), bytes = md.len(), "removed a dead writer's temporary file");
            }
            Err(e) if e.kind() == IoKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", ent.path().display()), e)),
        }
    }
    // An empty folder goes whatever its age: a kill between removing a folder's last object
    // and the folder itself leaves one that no listing shows. It holds no data, and writers
    // recreate a folder that vanishes under them.
    if dir != root && fs::remove_dir(dir).is_ok() {
        sync_dir(dir.parent().expect("below root"))?;
        return Ok(true);
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(false)
}

/// A hidden name next to `path`, unique within this machine's processes.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .expect("keys have a last segment")
        .to_string_lossy();
    path.with_file_name(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Counts written bytes and starts writeback of each full step (without waiting for it).
#[derive(Default)]
struct Writeback {
    written: u64,
    flushed: u64,
}

impl Writeback {
    fn advance(&mut self, file: &File, n: u64) {
        self.written += n;
        if self.written - self.flushed >= WRITEBACK_STEP {
            // SAFETY: plain syscall on an open descriptor. Failure only loses the head start:
            // `finish` still fsyncs everything.
            unsafe {
                libc::sync_file_range(
                    file.as_raw_fd(),
                    self.flushed as i64,
                    (self.written - self.flushed) as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.flushed = self.written;
        }
    }
}

/// Alignment of direct I/O: buffer address, file offset and length (4096 covers 512-byte and
/// 4 KiB logical blocks).
const ALIGN: usize = 4096;
/// Bytes staged before a direct write.
const DIRECT_BUF: usize = 8 << 20;

/// Streams into a file opened with `O_DIRECT`, through one aligned buffer.
///
/// A multi-GiB archive written through the page cache fills gigabytes of fresh pages that nobody
/// reads soon; on the VMs measured, touching freshly freed pages cost up to 4 s per GB, more than
/// the copy itself. Direct writes go from this buffer to the device (1.3-1.8 GB/s there), leave
/// the page cache to the data that is read, and make the final fsync cheap.
struct Direct {
    mem: Vec<u8>,
    /// Where the aligned part of `mem` starts.
    at: usize,
    /// Bytes staged.
    len: usize,
    /// Bytes already in the file.
    flushed: u64,
    /// The filesystem refused an aligned direct write: continue through the page cache.
    buffered: bool,
}

impl Direct {
    fn new() -> Direct {
        let mem = vec![0u8; DIRECT_BUF + ALIGN];
        let at = mem.as_ptr().align_offset(ALIGN);
        Direct {
            mem,
            at,
            len: 0,
            flushed: 0,
            buffered: false,
        }
    }

    fn space(&mut self) -> &mut [u8] {
        &mut self.mem[self.at + self.len..self.at + DIRECT_BUF]
    }

    fn stage(&mut self, file: &File, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let space = self.space();
            let n = space.len().min(data.len());
            space[..n].copy_from_slice(&data[..n]);
            self.len += n;
            data = &data[n..];
            if self.len == DIRECT_BUF {
                self.flush(file, DIRECT_BUF)?;
            }
        }
        Ok(())
    }

    /// Reads `len` bytes of `src` at `offset` straight into the buffer.
    fn fill_from(
        &mut self,
        file: &File,
        src: &File,
        mut offset: u64,
        mut len: u64,
    ) -> std::io::Result<()> {
        while len > 0 {
            let space = self.space();
            let want = space.len().min(usize::try_from(len).unwrap_or(usize::MAX));
            let n = src.read_at(&mut space[..want], offset)?;
            if n == 0 {
                return Err(std::io::Error::new(
                    IoKind::UnexpectedEof,
                    "range beyond the end of the file",
                ));
            }
            self.len += n;
            offset += n as u64;
            len -= n as u64;
            if self.len == DIRECT_BUF {
                self.flush(file, DIRECT_BUF)?;
            }
        }
        Ok(())
    }

    /// Writes the first `n` staged bytes (a multiple of [`ALIGN`] unless at the end).
    fn flush(&mut self, file: &File, n: usize) -> std::io::Result<()> {
        let bytes = &self.mem[self.at..self.at + n];
        match file.write_all_at(bytes, self.flushed) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && !self.buffered => {
                clear_direct(file)?;
                self.buffered = true;
                file.write_all_at(bytes, self.flushed)?;
            }
            other => other?,
        }
        self.flushed += n as u64;
        self.mem
            .copy_within(self.at + n..self.at + self.len, self.at);
        self.len -= n;
        Ok(())
    }

    /// Writes what is staged; the last block is padded for the direct write and the file then
    /// cut to its length.
    fn finish(&mut self, file: &File) -> std::io::Result<()> {
        let total = self.flushed + self.len as u64;
        let padded = self.len.div_ceil(ALIGN) * ALIGN;
        self.mem[self.at + self.len..self.at + padded].fill(0);
        self.len = padded;
        if padded > 0 {
            self.flush(file, padded)?;
        }
        file.set_len(total)
    }
}

/// Turns `O_DIRECT` off on an open file.
fn clear_direct(file: &File) -> std::io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we hold.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Streams into a temporary file; `finish` fsyncs and renames it into place.
struct LocalWriter {
    file: Option<File>,
    tmp: PathBuf,
    path: PathBuf,
    key: String,
    /// The last file copied from: consecutive ranges usually come from one pack.
    src: LastFile,
    writeback: Writeback,
    /// Set when the file was opened with `O_DIRECT`.
    direct: Option<Direct>,
    /// Set once the temporary file has its visible name: a retried `finish` only syncs the
    /// directory again.
    renamed: bool,
}

/// Written bytes are handed to the kernel's writeback in steps of this size, so that `finish`'s
/// fsync of a multi-GiB archive waits for the last step rather than doing all of it at the end.
const WRITEBACK_STEP: u64 = 64 << 20;

/// Piece size of reads of file ranges through user space: small enough to stay in a core's L2
/// cache, which on the machines measured made a 1.9 GB copy twice as fast as 1 MiB pieces.
pub(crate) const PIECE: usize = 256 * 1024;

/// The file last opened by path, kept open: consecutive ranges usually come from one pack.
#[derive(Debug, Default)]
pub(crate) struct LastFile(Option<(PathBuf, File)>);

impl LastFile {
    /// `path`, opened for reading unless it is the one already open.
    pub(crate) fn open(&mut self, path: &Path) -> std::io::Result<&File> {
        if self.0.as_ref().is_none_or(|(p, _)| p != path) {
            self.0 = Some((path.to_path_buf(), File::open(path)?));
        }
        Ok(&self.0.as_ref().expect("just opened").1)
    }
}

/// Reads `len` bytes of `file` from `offset` in pieces of at most `buf.len()` bytes and hands
/// each to `f`. A range beyond the end of the file is an `UnexpectedEof` error.
pub(crate) fn read_pieces(
    file: &File,
    offset: u64,
    len: u64,
    buf: &mut [u8],
    mut f: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let (mut at, end) = (offset, offset + len);
    while at < end {
        let want = buf
            .len()
            .min(usize::try_from(end - at).unwrap_or(usize::MAX));
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Err(std::io::Error::new(
                IoKind::UnexpectedEof,
                "range beyond the end of the file",
            ));
        }
        f(&buf[..n])?;
        at += n as u64;
    }
    Ok(())
}

impl LocalWriter {
    fn copy_range(&mut self, src: &Path, offset: u64, len: u64) -> std::io::Result<()> {
        let input = self.src.open(src)?;
        let out = self.file.as_mut().expect("open until finish");
        if let Some(direct) = &mut self.direct {
            return direct.fill_from(out, input, offset, len);
        }
        let beyond =
            || std::io::Error::new(IoKind::UnexpectedEof, "range beyond the end of the file");
        let mut off = i64::try_from(offset).map_err(|_| beyond())?;
        let mut left = len;
        // In-kernel copy: one pass over the bytes instead of a read into and a write out of a
        // buffer.
        while left > 0 {
            let want = usize::try_from(left.min(1 << 30)).expect("fits");
            // SAFETY: both descriptors are open for the duration of the call, `off` is a valid
            // i64 the kernel updates, and a null output offset means "use the file position".
            let n = unsafe {
                libc::copy_file_range(
                    input.as_raw_fd(),
                    &mut off,
                    out.as_raw_fd(),
                    std::ptr::null_mut(),
                    want,
                    0,
                )
            };
            if n > 0 {
                left -= n as u64;
                self.writeback.advance(out, n as u64);
                continue;
            }
            if n == 0 {
                return Err(beyond());
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                // Another filesystem or an old kernel: copy through a buffer instead.
                Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL) => break,
                _ => return Err(e),
            }
        }
        let mut buf = vec![0u8; PIECE.min(left as usize)];
        let writeback = &mut self.writeback;
        read_pieces(input, off as u64, left, &mut buf, |piece| {
            out.write_all(piece)?;
            writeback.advance(out, piece.len() as u64);
            Ok(())
        })
    }
}

impl Write for LocalWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let file = self.file.as_mut().expect("open until finish");
        if let Some(direct) = &mut self.direct {
            direct.stage(file, data)?;
            return Ok(data.len());
        }
        let n = file.write(data)?;
        self.writeback.advance(file, n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().expect("open until finish").flush()
    }
}

impl ObjectWriter for LocalWriter {
    fn finish(&mut self) -> Result<()> {
        if !self.renamed {
            let Some(file) = self.file.take() else {
                // An earlier attempt failed after the bytes left our hands (a failed fsync
                // may have dropped dirty pages): publishing now could publish a hole.
                return Err(Error::new(
                    crate::error::ErrorKind::Io,
                    format!(
                        "writing object {}: an earlier attempt to publish it failed; write it again",
                        self.key
                    ),
                ));
            };
            let direct = self.direct.take();
            let publish = || -> std::io::Result<()> {
                if let Some(mut direct) = direct {
                    direct.finish(&file)?;
                }
                file.sync_all()?;
                drop(file);
                fs::rename(&self.tmp, &self.path)
            };
            if let Err(e) = publish() {
                let _ = fs::remove_file(&self.tmp);
                return Err(Error::io(format!("writing object {}", self.key), e));
            }
            self.renamed = true;
        }
        sync_dir(self.path.parent().expect("below root"))
    }

    fn copy_from_file(&mut self, src: &Path, offset: u64, len: u64) -> Result<bool> {
        self.copy_range(src, offset, len).map_err(|e| {
            let what = format!(
                "copying {len} bytes at {offset} of {} into object {}",
                src.display(),
                self.key
            );
            if e.kind() == IoKind::UnexpectedEof {
                Error::corrupt(format!("{what}: the range is beyond the end of the file"))
            } else {
                Error::io(what, e)
            }
        })?;
        Ok(true)
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        // Not finished: the partial object must not survive under any visible name.
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

fn open_existing(path: &Path, key: &str) -> Result<File> {
    File::open(path).map_err(|e| {
        if e.kind() == IoKind::NotFound {
            Error::not_found(format!("object {key} not found"))
        } else {
            Error::io(format!("opening object {key}"), e)
        }
    })
}

impl Store for LocalStore {
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        let dir = path.parent().expect("keys are below the root");
        self.ensure_dir(dir)?;
        let tmp = temp_path(&path);
        let write = || -> std::io::Result<()> {
            let mut f = match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                // A concurrent delete removed the directory it emptied: make it again.
                Err(e) if e.kind() == IoKind::NotFound => {
                    fs::create_dir_all(dir)?;
                    OpenOptions::new().write(true).create_new(true).open(&tmp)?
                }
                other => other?,
            };
            f.write_all(data)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(format!("writing object {key}"), e));
        }
        sync_dir(dir)
    }

    /// The file system's time: a temporary file is written in the root and its modification
    /// time read back (on a network file system shared by several machines, the server's or
    /// the writing client's clock, as that file system keeps times).
    fn clock(&self) -> Result<Option<jiff::Timestamp>> {
        // A random name: two machines sharing the directory may run cairn under one pid.
        let tmp = temp_path(
            &self
                .root
                .join(format!("clock-{}", crate::id::random_hex(8)?)),
        );
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io("reading the local store's clock", e))?;
        let t = f.metadata().and_then(|m| m.modified());
        let _ = fs::remove_file(&tmp);
        let t = t.map_err(|e| Error::io("reading the local store's clock", e))?;
        jiff::Timestamp::try_from(t).map(Some).map_err(|e| {
            Error::new(
                crate::error::ErrorKind::Io,
                format!("the local store's clock: {e}"),
            )
        })
    }

    fn size(&self, key: &str) -> Result<u64> {
        let f = open_existing(&self.path(key)?, key)?;
        Ok(f.metadata()
            .map_err(|e| Error::io(format!("stat of object {key}"), e))?
            .len())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let mut f = open_existing(&self.path(key)?, key)?;
        let mut out = Vec::new();
        f.read_to_end(&mut out)
            .map_err(|e| Error::io(format!("reading object {key}"), e))?;
        Ok(out)
    }

    fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        let mut f = open_existing(&self.path(key)?, key)?;
        let size = f
            .metadata()
            .map_err(|e| Error::io(format!("stat of object {key}"), e))?
            .len();
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::corrupt(format!(
                "range {offset}+{len} is outside object {key} of {size} bytes"
            )));
        }
        let mut out = vec![0; len as usize];
        f.seek(SeekFrom::Start(offset))
            .and_then(|_| f.read_exact(&mut out))
            .map_err(|e| Error::io(format!("reading object {key}"), e))?;
        Ok(out)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        check_prefix(prefix)?;
        // Walk from the deepest directory that the prefix names completely.
        let dir_part = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
        let mut out = Vec::new();
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        walk(&start, dir_part, prefix, &mut out)?;
        out.sort();
        Ok(out)
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter + '_>> {
        let path = self.path(key)?;
        let dir = path
            .parent()
            .expect("keys are below the root")
            .to_path_buf();
        self.ensure_dir(&dir)?;
        let tmp = temp_path(&path);
        let open = |flags| {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(flags)
                .open(&tmp)
        };
        // A concurrent delete or cleanup removed the folder it emptied: make it again.
        let open = |flags| match open(flags) {
            Err(e) if e.kind() == IoKind::NotFound => {
                fs::create_dir_all(&dir)?;
                open(flags)
            }
            other => other,
        };
        // Direct I/O where the filesystem has it (not tmpfs, for one).
        let (file, direct) = match open(libc::O_DIRECT) {
            Ok(f) => (Ok(f), Some(Direct::new())),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(0), None),
            Err(e) => (Err(e), None),
        };
        let file = file.map_err(|e| Error::io(format!("creating object {key}"), e))?;
        Ok(Box::new(LocalWriter {
            file: Some(file),
            tmp,
            path,
            key: key.to_string(),
            src: LastFile::default(),
            writeback: Writeback::default(),
            direct,
            renamed: false,
        }))
    }

    fn local_file(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok()
    }

    fn clean_temporaries(&self, prefix: &str, older_than: Duration) -> Result<Cleaned> {
        check_prefix(prefix)?;
        let cutoff = SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut out = Cleaned::default();
        // A prefix names a folder (`2026-11-01/`) or the whole store; clean the deepest folder
        // it names completely, as `list` walks.
        let dir_part = prefix.rfind('/').map(|i| &prefix[..i]).unwrap_or("");
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.root.join(dir_part)
        };
        if clean_dir(&start, &self.root, cutoff, &mut out)? {
            // The folder went: so may its parents, as `delete` does.
            let mut dir = start.parent().expect("below root");
            while dir != self.root && fs::remove_dir(dir).is_ok() {
                dir = dir.parent().expect("below root");
            }
        }
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("deleting object {key}"), e)),
        }
        // Directories are an artefact of this backend: remove the ones left empty, as an object
        // store would show no prefix once its last object is gone.
        let mut dir = path.parent().expect("below root");
        while dir != self.root && fs::remove_dir(dir).is_ok() {
            dir = dir.parent().expect("below root");
        }
        sync_dir(dir)
    }
}

fn walk(dir: &Path, rel: &str, prefix: &str, out: &mut Vec<ObjectInfo>) -> Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    for ent in rd {
        let ent = ent.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') {
            continue; // temporary files of puts in flight or interrupted
        }
        let key = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let ft = ent
            .file_type()
            .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        if ft.is_dir() {
            // Descend only where keys below could still match the prefix.
            let k = format!("{key}/");
            if k.starts_with(prefix) || prefix.starts_with(&k) {
                walk(&ent.path(), &key, prefix, out)?;
            }
        } else if ft.is_file() && key.starts_with(prefix) {
            let size = ent
                .metadata()
                .map_err(|e| Error::io(format!("stat of {key}"), e))?
                .len();
            out.push(ObjectInfo { key, size });
        }
    }
    Ok(())
}
