//! The writer's direct I/O: an object streamed into a file opened with `O_DIRECT` through one
//! aligned buffer, falling back to the page cache where the filesystem refuses it.

use std::fs::File;
use std::io::ErrorKind as IoKind;
use std::os::unix::fs::FileExt;

use rustix::fs::OFlags;

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
pub(super) struct Direct {
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
    pub(super) fn new() -> Direct {
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

    pub(super) fn stage(&mut self, file: &File, mut data: &[u8]) -> std::io::Result<()> {
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
    pub(super) fn fill_from(
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
    pub(super) fn finish(&mut self, file: &File) -> std::io::Result<()> {
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
    let flags = rustix::fs::fcntl_getfl(file)?;
    rustix::fs::fcntl_setfl(file, flags.difference(OFlags::DIRECT))?;
    Ok(())
}
