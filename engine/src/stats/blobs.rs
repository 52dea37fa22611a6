//! The figures every part of `stats` adds up: a set of blobs counted with its plaintext and
//! stored bytes, and the ratio of two byte counts.

use serde::Serialize;

use crate::repo::index::BlobLocation;

/// A set of blobs: how many, the bytes of their plaintext and the bytes of their stored frames.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BlobTotals {
    /// Blobs.
    pub count: u64,
    /// Plaintext bytes.
    pub raw_bytes: u64,
    /// Bytes of their zstd frames in the packs.
    pub stored_bytes: u64,
}

impl BlobTotals {
    /// Counts the blob at `loc`.
    pub fn add(&mut self, loc: &BlobLocation) {
        self.count += 1;
        self.raw_bytes += u64::from(loc.raw_length);
        self.stored_bytes += u64::from(loc.length);
    }

    /// Plaintext bytes per stored byte; `None` without blobs.
    pub fn compression_ratio(&self) -> Option<f64> {
        ratio(self.raw_bytes, self.stored_bytes)
    }
}

/// `num / den`, or `None` when `den` is 0.
pub fn ratio(num: u64, den: u64) -> Option<f64> {
    if den == 0 {
        None
    } else {
        Some(num as f64 / den as f64)
    }
}
