//! The plan of a batch of reads: the ranges a reader wants ([`Want`]), how neighbouring ranges
//! of one object merge into one request ([`plan`], [`FetchOptions`]), and how a request's bytes
//! are shared out again among the wants it covers.

use crate::error::{Error, Result};

/// One range a reader needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// The object.
    pub key: String,
    /// Where the range starts.
    pub offset: u64,
    /// Its length.
    pub len: u64,
}

/// How ranges are merged and read.
#[derive(Debug, Clone, Copy)]
pub struct FetchOptions {
    /// Ranges of one object at most this far apart are read by one request, the bytes between
    /// them dropped: a request costs more than reading this many bytes.
    pub gap: u64,
    /// A merged request grows no larger than this (one range alone may be larger).
    pub max_request: u64,
    /// Requests in flight at once.
    pub in_flight: usize,
    /// Bytes read ahead and not yet taken, at most (a single larger request is still read).
    pub window: u64,
}

impl FetchOptions {
    /// For an object store: at ~15 ms a request and ~100 MB/s per connection, a request costs
    /// about as much as 1.5 MB of transfer, so gaps up to 1 MiB are read through; 8 requests of
    /// up to 8 MiB in flight keep a connection pool busy (16 of 16 MiB, each body collected and
    /// copied once, took a restore's peak RSS to 458 MiB); 64 MiB read ahead bound the memory.
    pub const REMOTE: FetchOptions = FetchOptions {
        gap: 1 << 20,
        max_request: 8 << 20,
        in_flight: 8,
        window: 64 << 20,
    };
}

/// One request: a range of one object that covers the wants `first..first + count`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The object.
    pub key: String,
    /// Where the request starts.
    pub offset: u64,
    /// Its length.
    pub len: u64,
    /// The first want it serves.
    pub first: usize,
    /// How many consecutive wants it serves.
    pub count: usize,
}

/// Merges consecutive wants of one object into requests: a want joins the request before it
/// when it is of the same object, lies within `gap` bytes of it on either side (a backup
/// writes chunks from several threads, so neighbours in a file are not always in pack order),
/// and the request stays within `max_request`. Order is kept, so requests can be consumed in
/// the order of the wants.
pub fn plan(wants: &[Want], opts: &FetchOptions) -> Vec<Request> {
    let mut out: Vec<Request> = Vec::new();
    for (i, w) in wants.iter().enumerate() {
        if let Some(r) = out.last_mut()
            && r.key == w.key
            && let Some((start, end)) = opts.joined(r.offset, r.offset + r.len, w)
        {
            r.offset = start;
            r.len = end - start;
            r.count += 1;
            continue;
        }
        out.push(Request {
            key: w.key.clone(),
            offset: w.offset,
            len: w.len,
            first: i,
            count: 1,
        });
    }
    out
}

impl FetchOptions {
    /// The range `start..end` of one request grown by `w` (of the same object), if `w` lies
    /// within `gap` of it on either side and the request stays within `max_request`: the one
    /// merge rule of [`plan`] and of [`Prefetch`](super::Prefetch)'s reading threads.
    pub(super) fn joined(&self, start: u64, end: u64, w: &Want) -> Option<(u64, u64)> {
        let w_end = w.offset.saturating_add(w.len);
        let (new_start, new_end) = (start.min(w.offset), end.max(w_end));
        (w_end.saturating_add(self.gap) >= start
            && w.offset <= end.saturating_add(self.gap)
            && new_end - new_start <= self.max_request)
            .then_some((new_start, new_end))
    }
}

/// One want's share of a request's outcome: moved out when it is the request's only want and
/// spans all of it (no copy of a large frame), sliced otherwise; the request's error otherwise.
pub(super) fn part_of(
    got: &mut Result<Vec<u8>>,
    alone: bool,
    at: u64,
    len: u64,
    key: &str,
) -> Result<Vec<u8>> {
    match got {
        Ok(bytes) if alone && at == 0 && len == bytes.len() as u64 => Ok(std::mem::take(bytes)),
        Ok(bytes) => slice(bytes, at, len, key),
        Err(e) => Err(Error::new(e.kind(), e.to_string())),
    }
}

/// `len` bytes at `at` of a request's bytes; a store that returned fewer bytes than asked
/// (which its contract forbids) gives an error, not a panic in a reading thread.
fn slice(bytes: &[u8], at: u64, len: u64, key: &str) -> Result<Vec<u8>> {
    usize::try_from(at)
        .ok()
        .zip(usize::try_from(len).ok())
        .and_then(|(at, len)| bytes.get(at..at.checked_add(len)?))
        .map(<[u8]>::to_vec)
        .ok_or_else(|| Error::corrupt(format!("a ranged read of {key} returned too few bytes")))
}
