//! A sequential reader of one object through ranged reads, for archives too large to hold.

use std::io::Read;

use super::Store;
use crate::error::Result;

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
