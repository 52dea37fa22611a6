//! Content-defined chunking: FastCDC v2020 cut points over a streaming reader, BLAKE3 ids.
//!
//! The cut points decide deduplication for the life of a repository, so the parameters live in
//! the repository config and a golden test pins the points. Chunks are handed out as slices of
//! one reusable buffer, so chunking a file allocates once, not once per chunk.

use std::io::{self, Read};

use fastcdc::v2020::{MASKS, cut};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::Id;

/// The largest chunk any repository may hold: FastCDC v2020's largest maximum. A repository's
/// own bound is its [`ChunkerParams::max`], at most this.
pub const MAX_CHUNK_LEN: usize = fastcdc::v2020::MAXIMUM_MAX as usize;

/// FastCDC sizes, in bytes. Persisted in the repository config: changing them changes every cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// No chunk is smaller, except the last one of a file.
    pub min: u32,
    /// The size that cut points aim for.
    pub avg: u32,
    /// No chunk is larger.
    pub max: u32,
}

impl Default for ChunkerParams {
    fn default() -> Self {
        ChunkerParams {
            min: 256 * 1024,
            avg: 1024 * 1024,
            max: 4 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    /// Checks the sizes against the limits of FastCDC v2020.
    pub fn validate(&self) -> Result<()> {
        let ok = self.min >= fastcdc::v2020::MINIMUM_MIN
            && self.min <= fastcdc::v2020::MINIMUM_MAX
            && self.avg >= fastcdc::v2020::AVERAGE_MIN
            && self.avg <= fastcdc::v2020::AVERAGE_MAX
            && self.max >= fastcdc::v2020::MAXIMUM_MIN
            && self.max <= fastcdc::v2020::MAXIMUM_MAX
            && self.min <= self.avg
            && self.avg <= self.max
            && self.avg.is_power_of_two();
        if ok {
            Ok(())
        } else {
            Err(Error::config(format!(
                "invalid chunker sizes: min {}, avg {}, max {} (min <= avg <= max, avg a power of two, within fastcdc's bounds)",
                self.min, self.avg, self.max
            )))
        }
    }

    /// Length and id of every chunk that starts with `max` zero bytes (a cut never looks
    /// further): what the holes of sparse files are cut into, so backup and restore can know
    /// such chunks without hashing or reading them.
    pub fn zero_run_chunk(&self) -> (usize, Id) {
        let mut chunker = Chunker::new(io::repeat(0).take(u64::from(self.max)), *self);
        let chunk = chunker
            .next_chunk()
            .expect("reading zeros cannot fail")
            .unwrap_or_default();
        (chunk.len(), Id::of(chunk))
    }

    /// The normalization-level-1 masks that `fastcdc::v2020::FastCDC::new` uses, so that
    /// streaming and in-memory chunking cut at the same places.
    fn masks(&self) -> (u64, u64) {
        let bits = self.avg.ilog2() as usize;
        (MASKS[bits + 1], MASKS[bits - 1])
    }
}

/// Splits a reader into content-defined chunks.
///
/// The buffer holds at least `max` bytes ahead of the cut whenever the reader has them, which
/// makes every cut identical to what in-memory FastCDC finds over the whole input.
#[derive(Debug)]
pub struct Chunker<R> {
    reader: R,
    params: ChunkerParams,
    mask_s: u64,
    mask_l: u64,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
    consumed: u64,
    /// The cut of a chunk that starts with `max` zero bytes, found once.
    zero_len: Option<usize>,
    last_zero: bool,
}

/// Whether every byte is zero. ORs 64-byte blocks, which the compiler turns into vector
/// instructions: sparse images hold gigabytes of zeros.
pub(crate) fn all_zero(data: &[u8]) -> bool {
    let mut blocks = data.chunks_exact(64);
    let whole = blocks
        .by_ref()
        .all(|c| c.iter().fold(0u8, |acc, &b| acc | b) == 0);
    whole && blocks.remainder().iter().all(|&b| b == 0)
}

impl<R: Read> Chunker<R> {
    /// A chunker over `reader`.
    pub fn new(reader: R, params: ChunkerParams) -> Self {
        Self::with_size_hint(reader, params, u64::MAX)
    }

    /// A chunker whose buffer starts just large enough for `size_hint` bytes. A share holds
    /// mostly small files: a full-size buffer (twice the maximum chunk) for each of them would
    /// cost an 8 MiB allocation and memset per file. The buffer grows when the input turns out
    /// larger than announced.
    pub fn with_size_hint(reader: R, params: ChunkerParams, size_hint: u64) -> Self {
        Self::with_buffer(reader, params, size_hint, Vec::new())
    }

    /// Like [`Chunker::with_size_hint`], reading into `buf` (grown if needed): a backup thread
    /// passes one buffer from file to file instead of allocating one per file.
    pub fn with_buffer(reader: R, params: ChunkerParams, size_hint: u64, mut buf: Vec<u8>) -> Self {
        let (mask_s, mask_l) = params.masks();
        let full = params.max as u64 * 2;
        // At most twice the maximum: a refill then copies at most one chunk's worth of bytes.
        let wanted = size_hint.saturating_add(4096).min(full) as usize;
        if buf.len() < wanted {
            buf.resize(wanted, 0);
        }
        buf.truncate(full as usize);
        Chunker {
            reader,
            params,
            mask_s,
            mask_l,
            buf,
            start: 0,
            end: 0,
            eof: false,
            consumed: 0,
            zero_len: None,
            last_zero: false,
        }
    }

    /// The buffer, for the next file.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }

    /// Total bytes handed out so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let full = self.params.max as usize * 2;
        while !self.eof {
            if self.end == self.buf.len() {
                if self.buf.len() >= full {
                    break;
                }
                let grown = (self.buf.len() * 2).min(full);
                self.buf.resize(grown, 0);
            }
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn cut(&self, window: &[u8]) -> usize {
        let p = &self.params;
        cut(
            window,
            p.min as usize,
            p.avg as usize,
            p.max as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        )
        .1
    }

    /// The next chunk, or `None` at the end of the input.
    pub fn next_chunk(&mut self) -> io::Result<Option<&[u8]>> {
        Ok(self.next_chunk_marked()?.map(|(c, _)| c))
    }

    /// The next chunk and whether it is known to be all zeros (then its id depends only on its
    /// length), or `None` at the end of the input.
    pub fn next_chunk_marked(&mut self) -> io::Result<Option<(&[u8], bool)>> {
        let max = self.params.max as usize;
        if self.end - self.start < max && !self.eof {
            self.fill()?;
        }
        if self.start == self.end {
            return Ok(None);
        }
        // A cut never looks past `max` bytes, so a chunk that starts with `max` zeros always has
        // the same length: found once, then runs of zeros (holes of sparse files, preallocated
        // images) cost a zero test instead of a gear scan.
        let window = &self.buf[self.start..self.end];
        self.last_zero = window.len() >= max && all_zero(&window[..max]);
        let len = match (self.last_zero, self.zero_len) {
            (true, Some(len)) => len,
            _ => {
                let len = self.cut(window);
                if self.last_zero {
                    self.zero_len = Some(len);
                }
                len
            }
        };
        let begin = self.start;
        self.start += len;
        self.consumed += len as u64;
        Ok(Some((&self.buf[begin..begin + len], self.last_zero)))
    }
}

/// The lengths of the chunks of an in-memory buffer (for tests and tools).
pub fn chunk_lengths(data: &[u8], params: ChunkerParams) -> Vec<usize> {
    let mut chunker = Chunker::new(data, params);
    let mut out = Vec::new();
    while let Some(c) = chunker
        .next_chunk()
        .expect("reading from memory cannot fail")
    {
        out.push(c.len());
    }
    out
}

/// Deterministic test data shared by the engine's unit tests.
#[cfg(test)]
pub(crate) mod tests_support {
    /// A pseudo-random byte stream (xorshift), so tests need no fixtures.
    pub(crate) fn seeded(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::seeded;
    use super::*;

    #[test]
    fn runs_of_zeros_cut_where_in_memory_fastcdc_cuts() {
        let p = ChunkerParams::default();
        let mut data = seeded(3 << 20, 1);
        data.resize(data.len() + (29 << 20) + 12_345, 0);
        data.extend_from_slice(&seeded(5 << 20, 2));
        data.resize(data.len() + (9 << 20) + 1, 0);
        data.extend_from_slice(&seeded(100, 3));
        data.resize(data.len() + (6 << 20), 0);
        let reference: Vec<usize> = fastcdc::v2020::FastCDC::new(&data, p.min, p.avg, p.max)
            .map(|c| c.length)
            .collect();
        let mut chunker = Chunker::new(&data[..], p);
        let (mut lens, mut zero_chunks) = (Vec::new(), 0);
        while let Some((c, zeros)) = chunker.next_chunk_marked().unwrap() {
            if zeros {
                assert!(all_zero(c));
                zero_chunks += 1;
            }
            lens.push(c.len());
        }
        assert_eq!(lens, reference);
        // 29 MiB and 9 MiB runs of zeros: all but their edges take the zero path.
        assert!(zero_chunks >= 6, "{zero_chunks} chunks took the zero path");
    }

    #[test]
    fn streaming_cuts_match_in_memory_fastcdc() {
        let data = seeded(20 << 20, 7);
        let p = ChunkerParams::default();
        let reference: Vec<usize> = fastcdc::v2020::FastCDC::new(&data, p.min, p.avg, p.max)
            .map(|c| c.length)
            .collect();
        // A reader that returns short reads, as pipes and network filesystems do.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = out.len().min(self.0.len()).min(100_003);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut chunker = Chunker::new(Trickle(&data), p);
        let mut got = Vec::new();
        while let Some(c) = chunker.next_chunk().unwrap() {
            got.push(c.len());
        }
        assert_eq!(got, reference);
        assert_eq!(chunker.consumed(), data.len() as u64);
    }

    #[test]
    fn a_wrong_size_hint_changes_nothing() {
        let data = seeded(11 << 20, 5);
        let p = ChunkerParams::default();
        let cuts = |hint: u64| {
            let mut c = Chunker::with_size_hint(&data[..], p, hint);
            let mut v = Vec::new();
            while let Some(x) = c.next_chunk().unwrap() {
                v.push(x.len());
            }
            v
        };
        assert_eq!(cuts(0), cuts(u64::MAX));
        assert_eq!(cuts(1000), cuts(u64::MAX));
    }

    #[test]
    fn empty_input_has_no_chunks() {
        assert!(chunk_lengths(&[], ChunkerParams::default()).is_empty());
    }

    #[test]
    fn zeros_cut_at_max() {
        let zeros = vec![0u8; 9 << 20];
        assert_eq!(
            chunk_lengths(&zeros, ChunkerParams::default()),
            vec![4 << 20, 4 << 20, 1 << 20]
        );
        for p in [
            ChunkerParams::default(),
            ChunkerParams {
                min: 64 * 1024,
                avg: 256 * 1024,
                max: 1024 * 1024,
            },
        ] {
            let first = fastcdc::v2020::FastCDC::new(&zeros, p.min, p.avg, p.max)
                .next()
                .unwrap()
                .length;
            assert_eq!(p.zero_run_chunk(), (first, Id::of(&zeros[..first])));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever sizes the reads return (pipes, network filesystems), the cuts are those of
        /// FastCDC over the whole input, runs of zeros included.
        #[test]
        fn any_read_sizes_give_the_same_cuts(
            seed in proptest::prelude::any::<u64>(),
            zeros in 0usize..200_000,
            reads in proptest::collection::vec(1usize..100_000, 1..40),
        ) {
            let p = ChunkerParams { min: 2048, avg: 8192, max: 32768 };
            let mut data = seeded(600_000, seed);
            data.resize(data.len() + zeros, 0);
            data.extend_from_slice(&seeded(300_000, seed ^ 1));
            let reference: Vec<usize> = fastcdc::v2020::FastCDC::new(&data, p.min, p.avg, p.max)
                .map(|c| c.length)
                .collect();
            struct Uneven<'a> {
                data: &'a [u8],
                reads: &'a [usize],
                n: usize,
            }
            impl Read for Uneven<'_> {
                fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                    let want = self.reads[self.n % self.reads.len()];
                    self.n += 1;
                    let k = out.len().min(self.data.len()).min(want);
                    out[..k].copy_from_slice(&self.data[..k]);
                    self.data = &self.data[k..];
                    Ok(k)
                }
            }
            let mut chunker = Chunker::new(Uneven { data: &data, reads: &reads, n: 0 }, p);
            let mut got = Vec::new();
            while let Some((c, _)) = chunker.next_chunk_marked().unwrap() {
                got.push(c.len());
            }
            proptest::prop_assert_eq!(got, reference);
        }
    }

    #[test]
    fn params_are_checked() {
        assert!(ChunkerParams::default().validate().is_ok());
        assert!(
            ChunkerParams {
                min: 10,
                avg: 1 << 20,
                max: 4 << 20
            }
            .validate()
            .is_err()
        );
        assert!(
            ChunkerParams {
                min: 1 << 18,
                avg: 3 << 19,
                max: 4 << 20
            }
            .validate()
            .is_err()
        );
    }
}
