//! Files with holes: reading them without reading the holes, and writing them with holes.
//!
//! A sparse disk image may be a gigabyte long and hold a few megabytes of data. Reading it
//! plainly makes the kernel fill page-cache pages with zeros for every hole; asking it where the
//! data is (`SEEK_DATA`/`SEEK_HOLE`) lets a hole be produced with a memset instead. The bytes
//! handed out are exactly those a plain read gives, so chunking and ids do not change.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use crate::error::{Error, Result};

/// Reads a file from its start, filling holes with zeros instead of reading them.
#[derive(Debug)]
pub struct SparseReader<'a> {
    file: &'a File,
    pos: u64,
    /// `pos < hole_end`: inside a hole that ends there.
    hole_end: u64,
    /// `hole_end <= pos < data_end`: inside data that ends there.
    data_end: u64,
    /// Whether to ask about holes at all: only for files that have fewer blocks than bytes, and
    /// only on filesystems that answer.
    probe: bool,
}

impl<'a> SparseReader<'a> {
    /// A reader of `file`; `allocated` is its allocated size (`st_blocks * 512`) and `size` its
    /// length, which tell whether it can have holes.
    pub fn new(file: &'a File, allocated: u64, size: u64) -> Self {
        SparseReader {
            file,
            pos: 0,
            hole_end: 0,
            data_end: 0,
            probe: allocated < size,
        }
    }

    /// `lseek` with `SEEK_DATA` or `SEEK_HOLE` (`whence`) from `pos`. It moves only the file
    /// position, which this reader never uses (it reads at explicit offsets).
    fn seek(&self, whence: fn(u64) -> rustix::fs::SeekFrom) -> io::Result<Option<u64>> {
        match rustix::fs::seek(self.file, whence(self.pos)) {
            Ok(at) => Ok(Some(at)),
            // No data at or after `pos` (for SEEK_DATA), or `pos` beyond the end.
            Err(rustix::io::Errno::NXIO) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Learns what lies at `pos`.
    fn probe_at_pos(&mut self) -> io::Result<()> {
        match self.seek(rustix::fs::SeekFrom::Data) {
            Ok(Some(data)) if data > self.pos => self.hole_end = data,
            Ok(Some(_)) => {
                self.data_end = match self.seek(rustix::fs::SeekFrom::Hole)? {
                    Some(hole) if hole > self.pos => hole,
                    // The file shrank under us: let a plain read find the end.
                    _ => u64::MAX,
                };
            }
            // Only a hole up to the end of the file (or nothing) is left.
            Ok(None) => {
                let end = self.file.metadata()?.len();
                if end > self.pos {
                    self.hole_end = end;
                } else {
                    self.data_end = u64::MAX; // a plain read reports the end
                }
            }
            // A filesystem that cannot say: read everything.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => {
                self.probe = false;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

impl Read for SparseReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.probe && self.pos >= self.hole_end && self.pos >= self.data_end {
            self.probe_at_pos()?;
        }
        let n = if self.pos < self.hole_end {
            let n = buf.len().min((self.hole_end - self.pos) as usize);
            buf[..n].fill(0);
            n
        } else {
            let limit = if self.probe {
                buf.len()
                    .min(usize::try_from(self.data_end - self.pos).unwrap_or(usize::MAX))
            } else {
                buf.len()
            };
            self.file.read_at(&mut buf[..limit], self.pos)?
        };
        self.pos += n as u64;
        Ok(n)
    }
}

/// Writes file content, turning 4 KiB blocks of zeros into holes.
#[derive(Debug)]
pub struct SparseWriter {
    file: File,
    pos: u64,
}

impl SparseWriter {
    /// A writer at the start of `file`, which must be empty.
    pub fn new(file: File) -> SparseWriter {
        SparseWriter { file, pos: 0 }
    }

    /// Bytes written or skipped so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The file, for its final length (a trailing hole needs `set_len`) and metadata.
    pub fn into_file(self) -> File {
        self.file
    }

    /// Leaves a hole of `len` bytes.
    pub fn skip(&mut self, len: u64) -> Result<()> {
        use std::io::{Seek, SeekFrom};
        self.file
            .seek(SeekFrom::Current(len as i64))
            .map_err(|e| Error::io("seeking", e))?;
        self.pos += len;
        Ok(())
    }

    /// Writes `data`, one syscall per run: runs of all-zero 4 KiB blocks are skipped with one
    /// seek (leaving a hole), runs of other blocks are written with one write.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        use std::io::Write;
        let zero = crate::format::chunk::all_zero;
        let mut at = 0;
        while at < data.len() {
            let first_zero = zero(&data[at..(at + 4096).min(data.len())]);
            let mut end = at;
            while end < data.len() {
                let block = &data[end..(end + 4096).min(data.len())];
                if zero(block) != first_zero {
                    break;
                }
                end += block.len();
            }
            let run = &data[at..end];
            if first_zero {
                self.skip(run.len() as u64)?;
            } else {
                self.file
                    .write_all(run)
                    .map_err(|e| Error::io("writing restored content", e))?;
                self.pos += run.len() as u64;
            }
            at = end;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::MetadataExt;

    fn read_all(f: &File) -> Vec<u8> {
        let md = f.metadata().unwrap();
        let mut r = SparseReader::new(f, md.blocks() * 512, md.len());
        let mut out = Vec::new();
        let mut buf = vec![0u8; 100_000];
        loop {
            let n = r.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn holes_read_as_zeros_and_data_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let mut f = File::create(&path).unwrap();
        // hole, data, hole, data, trailing hole
        let mut want = vec![0u8; 40 << 20];
        for (at, len, byte) in [
            (3 << 20, 70_000, 1u8),
            (20 << 20, 1 << 20, 2),
            (33 << 20, 5, 3),
        ] {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(&vec![byte; len]).unwrap();
            want[at as usize..at as usize + len].fill(byte);
        }
        f.set_len(40 << 20).unwrap();
        drop(f);
        let f = File::open(&path).unwrap();
        assert!(
            f.metadata().unwrap().blocks() * 512 < 40 << 20,
            "not sparse here"
        );
        assert!(read_all(&f) == want);

        // A file that is all data reads the same way.
        std::fs::write(&path, b"dense").unwrap();
        assert_eq!(read_all(&File::open(&path).unwrap()), b"dense");
        // An empty file and a file that is one hole.
        let f = File::create(&path).unwrap();
        assert!(read_all(&File::open(&path).unwrap()).is_empty());
        f.set_len(3 << 20).unwrap();
        assert!(read_all(&File::open(&path).unwrap()) == vec![0u8; 3 << 20]);
    }
}
