//! Streaming an object: bytes go into a hidden temporary file (directly to the device where the
//! filesystem allows it, with writeback started as they come), and `finish` fsyncs it, renames it
//! into place and fsyncs the directory, so the object appears complete or not at all.

use std::fs::{self, File};
use std::io::{ErrorKind as IoKind, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use rustix::io::Errno;

use super::direct::Direct;
use super::ranges::{LastFile, PIECE, read_pieces};
use crate::atomic_file::{create_new, sync_dir, temp_path};
use crate::error::{Error, Result};
use crate::store::ObjectWriter;

/// Streams into a temporary file; `finish` fsyncs and renames it into place.
pub(super) struct LocalWriter {
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
            // `finish` still fsyncs everything. Kept on libc: rustix has no `sync_file_range`.
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

impl LocalWriter {
    /// A writer into a new temporary file next to `path` (whose folder exists), opened with
    /// `O_DIRECT` where the filesystem has it.
    pub(super) fn create(path: PathBuf, key: &str) -> Result<LocalWriter> {
        let tmp = temp_path(&path);
        // Made again if a concurrent delete or cleanup removed the folder it emptied.
        let open = |flags| create_new(&tmp, flags);
        // Direct I/O where the filesystem has it (not tmpfs, for one).
        let (file, direct) = match open(libc::O_DIRECT) {
            Ok(f) => (Ok(f), Some(Direct::new())),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => (open(0), None),
            Err(e) => (Err(e), None),
        };
        let file = file.map_err(|e| Error::io(format!("creating object {key}"), e))?;
        Ok(LocalWriter {
            file: Some(file),
            tmp,
            path,
            key: key.to_string(),
            src: LastFile::default(),
            writeback: Writeback::default(),
            direct,
            renamed: false,
        })
    }

    fn copy_range(&mut self, src: &Path, offset: u64, len: u64) -> std::io::Result<()> {
        let input = self.src.open(src)?;
        let out = self.file.as_mut().expect("open until finish");
        if let Some(direct) = &mut self.direct {
            return direct.fill_from(out, input, offset, len);
        }
        let beyond =
            || std::io::Error::new(IoKind::UnexpectedEof, "range beyond the end of the file");
        // The kernel's offsets are signed: one past i64::MAX is past the end of any file.
        if i64::try_from(offset).is_err() {
            return Err(beyond());
        }
        let mut off = offset;
        let mut left = len;
        // In-kernel copy: one pass over the bytes instead of a read into and a write out of a
        // buffer.
        while left > 0 {
            let want = usize::try_from(left.min(1 << 30)).expect("fits");
            // The kernel advances `off`; no output offset means "use the file position".
            match rustix::fs::copy_file_range(input, Some(&mut off), &*out, None, want) {
                Ok(0) => return Err(beyond()),
                Ok(n) => {
                    left -= n as u64;
                    self.writeback.advance(out, n as u64);
                }
                Err(Errno::INTR) => {}
                // Another filesystem or an old kernel: copy through a buffer instead.
                Err(Errno::XDEV | Errno::NOSYS | Errno::OPNOTSUPP | Errno::INVAL) => break,
                Err(e) => return Err(e.into()),
            }
        }
        let mut buf = vec![0u8; PIECE.min(left as usize)];
        let writeback = &mut self.writeback;
        read_pieces(input, off, left, &mut buf, |piece| {
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
