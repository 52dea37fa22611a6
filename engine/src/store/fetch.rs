//! Reads planned by object: a reader that knows every range it will need hands the whole list
//! over, in the order it wants the bytes; neighbouring ranges of one object become one ranged
//! read, several reads are kept in flight, and the ranges come back in order.
//!
//! On an object store a request costs a round trip (~10–20 ms to MinIO over a network) while
//! the bytes of a pack arrive at hundreds of MB/s, so the cost of a restore or an export is
//! requests × latency ÷ requests in flight, not bytes. Reading blob by blob, one after another,
//! made a restore of 40,000 small files from S3 take 100× longer than from disk. This module
//! knows nothing of packs or blobs: it moves byte ranges of objects of any [`Store`], so every
//! backend and wrapper (retry, faults) serves it unchanged.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};

use crate::error::{Error, Result};
use crate::store::Store;

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
    /// merge rule of [`plan`] and of [`Prefetch`]'s reading threads.
    fn joined(&self, start: u64, end: u64, w: &Want) -> Option<(u64, u64)> {
        let w_end = w.offset.saturating_add(w.len);
        let (new_start, new_end) = (start.min(w.offset), end.max(w_end));
        (w_end.saturating_add(self.gap) >= start
            && w.offset <= end.saturating_add(self.gap)
            && new_end - new_start <= self.max_request)
            .then_some((new_start, new_end))
    }
}

/// What the reading threads and the taker share.
struct Shared {
    /// The next request to start.
    next: usize,
    /// The next request to hand over.
    taken: usize,
    /// Bytes of started requests not yet handed over.
    ahead: u64,
    /// Finished requests waiting to be handed over.
    done: BTreeMap<usize, Result<Vec<u8>>>,
    /// The taker stopped: the readers stop too.
    stop: bool,
}

/// Reads every want and calls `take(i, bytes)` for each, in the order of `wants` (the bytes of
/// want `i`, or the error of the request that covered it). Requests run on `opts.in_flight`
/// threads and start only while the bytes read ahead stay within `opts.window`; a request
/// that fails is handed over as an error for each want it covers, so the taker decides what
/// one lost range costs. An error returned by `take` stops everything and is returned.
pub fn fetch_in_order(
    store: &dyn Store,
    wants: &[Want],
    opts: &FetchOptions,
    mut take: impl FnMut(usize, Result<Vec<u8>>) -> Result<()>,
) -> Result<()> {
    let requests = plan(wants, opts);
    let shared = Mutex::new(Shared {
        next: 0,
        taken: 0,
        ahead: 0,
        done: BTreeMap::new(),
        stop: false,
    });
    let changed = Condvar::new();
    let threads = opts.in_flight.clamp(1, requests.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| read_requests(store, &requests, opts.window, &shared, &changed));
        }
        // Set on every way out, a panic of `take` included: the scope joins the readers before
        // it returns or unwinds, and a reader waiting for room in the window would wait forever.
        let _stop = StopReaders(&shared, &changed);
        hand_over(wants, &requests, &shared, &changed, &mut take)
    })
}

/// Stops the reading threads of [`fetch_in_order`] when dropped.
struct StopReaders<'a>(&'a Mutex<Shared>, &'a Condvar);

impl Drop for StopReaders<'_> {
    fn drop(&mut self) {
        // A panic never happens while the lock is held here, but a poisoned lock must not turn
        // an unwinding taker into an abort.
        self.0.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.1.notify_all();
    }
}

/// The loop of one reading thread: start the next request when the window allows it.
fn read_requests(
    store: &dyn Store,
    requests: &[Request],
    window: u64,
    shared: &Mutex<Shared>,
    changed: &Condvar,
) {
    loop {
        let i = {
            let mut st = shared.lock().expect("poisoned");
            loop {
                if st.stop || st.next == requests.len() {
                    return;
                }
                let len = requests[st.next].len;
                // The request the taker waits for always starts, however large.
                if st.next == st.taken || st.ahead + len <= window {
                    break;
                }
                st = changed.wait(st).expect("poisoned");
            }
            let i = st.next;
            st.next += 1;
            st.ahead += requests[i].len;
            i
        };
        let r = &requests[i];
        let got = store.get_range(&r.key, r.offset, r.len);
        shared.lock().expect("poisoned").done.insert(i, got);
        changed.notify_all();
    }
}

/// The taker's side: hands each request's wants over in order.
fn hand_over(
    wants: &[Want],
    requests: &[Request],
    shared: &Mutex<Shared>,
    changed: &Condvar,
    take: &mut impl FnMut(usize, Result<Vec<u8>>) -> Result<()>,
) -> Result<()> {
    for (i, r) in requests.iter().enumerate() {
        let got = {
            let mut st = shared.lock().expect("poisoned");
            loop {
                if let Some(got) = st.done.remove(&i) {
                    break got;
                }
                st = changed.wait(st).expect("poisoned");
            }
        };
        let mut got = got;
        for (k, w) in wants[r.first..r.first + r.count].iter().enumerate() {
            let part = part_of(&mut got, r.count == 1, w.offset - r.offset, w.len, &r.key);
            take(r.first + k, part)?;
        }
        let mut st = shared.lock().expect("poisoned");
        st.taken = i + 1;
        st.ahead -= r.len;
        drop(st);
        changed.notify_all();
    }
    Ok(())
}

/// Reads every want into memory, `opts.in_flight` requests at a time: the bytes of want `i`
/// at index `i`, or the error of the request that covered it. For a batch the caller has
/// already bounded; the window still bounds what is read beyond the wants (merged gaps).
pub fn fetch_all(store: &dyn Store, wants: &[Want], opts: &FetchOptions) -> Vec<Result<Vec<u8>>> {
    // Order does not matter here: planned in object and offset order, neighbours merge however
    // the caller listed them.
    let mut order: Vec<usize> = (0..wants.len()).collect();
    order.sort_by(|&a, &b| (&wants[a].key, wants[a].offset).cmp(&(&wants[b].key, wants[b].offset)));
    let sorted: Vec<Want> = order.iter().map(|&i| wants[i].clone()).collect();
    let mut out: Vec<Option<Result<Vec<u8>>>> = (0..wants.len()).map(|_| None).collect();
    fetch_in_order(store, &sorted, opts, |k, got| {
        out[order[k]] = Some(got);
        Ok(())
    })
    .expect("collecting cannot fail");
    out.into_iter()
        .map(|got| got.expect("every want is handed over"))
        .collect()
}

/// Queued wants a reading thread looks through for neighbours of the one at the head.
const LOOKAHEAD: usize = 512;

/// A range asked for by [`Prefetch::submit`], to be taken with [`Prefetch::redeem`].
#[derive(Debug)]
#[must_use = "a ticket holds read-ahead bytes until it is redeemed"]
pub struct Ticket {
    id: u64,
    len: u64,
}

/// Planned reads for a producer that discovers its ranges as it goes and runs ahead of the
/// consumers (the export's walk, ahead of the archive's writer and the compression workers).
///
/// The producer submits each range in the order it will be needed and hands the ticket on;
/// reading threads take the ranges in that order, merging the run of queued neighbours of one
/// object into one request ([`plan`]'s rule), `in_flight` at a time; a consumer redeems its
/// ticket, waiting for the bytes if they are not there yet. Submitting waits while the bytes
/// submitted and not yet redeemed exceed the window, which bounds memory; [`Prefetch::stop`]
/// (a consumer failed) wakes everyone with an error instead.
pub struct Prefetch<'a> {
    store: &'a dyn Store,
    opts: FetchOptions,
    state: Mutex<Pending>,
    changed: Condvar,
}

impl std::fmt::Debug for Prefetch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetch")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Pending {
    /// Submitted and not yet started, in order.
    queue: std::collections::VecDeque<(u64, Want)>,
    /// Read and not yet redeemed.
    ready: std::collections::HashMap<u64, Result<Vec<u8>>>,
    /// Bytes submitted and not yet redeemed.
    outstanding: u64,
    /// A consumer waits for this ticket (or an earlier one) that is still queued: the run at
    /// the head of the queue starts even if more neighbours could still join it.
    wanted_upto: Option<u64>,
    /// The producer waits for room in the window: nothing will join the queue until a read
    /// is made.
    producer_waiting: bool,
    next: u64,
    /// The producer submits nothing more: readers end once the queue is empty.
    closed: bool,
    /// Everything ends now.
    stopped: bool,
}

impl<'a> Prefetch<'a> {
    /// A prefetcher over `store`; its reading threads run in `scope` until [`Prefetch::close`]
    /// or [`Prefetch::stop`].
    pub fn start<'scope>(&'scope self, scope: &'scope std::thread::Scope<'scope, '_>) {
        for _ in 0..self.opts.in_flight.max(1) {
            scope.spawn(move || self.read_loop());
        }
    }

    /// A prefetcher that has not started reading (see [`Prefetch::start`]).
    pub fn new(store: &'a dyn Store, opts: FetchOptions) -> Prefetch<'a> {
        Prefetch {
            store,
            opts,
            state: Mutex::new(Pending::default()),
            changed: Condvar::new(),
        }
    }

    /// Asks for a range; waits while the window is full. Fails once stopped.
    pub fn submit(&self, want: Want) -> Result<Ticket> {
        let len = want.len;
        let mut st = self.state.lock().expect("poisoned");
        while !st.stopped && st.outstanding > 0 && st.outstanding + len > self.opts.window {
            st.producer_waiting = true;
            self.changed.notify_all();
            st = self.changed.wait(st).expect("poisoned");
        }
        st.producer_waiting = false;
        if st.stopped {
            return Err(stopped());
        }
        let id = st.next;
        st.next += 1;
        st.outstanding += len;
        st.queue.push_back((id, want));
        drop(st);
        self.changed.notify_all();
        Ok(Ticket { id, len })
    }

    /// The bytes of a submitted range, or the error of the request that covered it.
    pub fn redeem(&self, ticket: Ticket) -> Result<Vec<u8>> {
        let mut st = self.state.lock().expect("poisoned");
        loop {
            if let Some(got) = st.ready.remove(&ticket.id) {
                st.outstanding -= ticket.len;
                drop(st);
                self.changed.notify_all();
                return got;
            }
            if st.stopped {
                return Err(stopped());
            }
            if st
                .queue
                .front()
                .is_some_and(|(first, _)| *first <= ticket.id)
            {
                st.wanted_upto = Some(st.wanted_upto.map_or(ticket.id, |w| w.max(ticket.id)));
                self.changed.notify_all();
            }
            st = self.changed.wait(st).expect("poisoned");
        }
    }

    /// The producer is done: the readers read what is queued and end.
    pub fn close(&self) {
        self.state.lock().expect("poisoned").closed = true;
        self.changed.notify_all();
    }

    /// Whether [`Prefetch::stop`] was called: a failed redeem then means "give up", not "read
    /// it alone".
    pub fn is_stopped(&self) -> bool {
        self.state.lock().expect("poisoned").stopped
    }

    /// Ends everything: waiting submitters and redeemers get an error, readers end. Also called
    /// while a consumer unwinds, so a poisoned lock is taken as it is.
    pub fn stop(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).stopped = true;
        self.changed.notify_all();
    }

    /// The queued wants (positions in the queue) that join the head's request: those of the
    /// head's object that lie within `gap` of the run so far, among the first [`LOOKAHEAD`]
    /// queued (wants of several packs interleave in archive order); and whether the run is
    /// final: large enough, or enough is queued that waiting would not find more.
    fn head_run(&self, queue: &std::collections::VecDeque<(u64, Want)>) -> (Vec<usize>, bool) {
        let Some((_, first)) = queue.front() else {
            return (Vec::new(), false);
        };
        let (mut start, mut end) = (first.offset, first.offset + first.len);
        let mut run = vec![0];
        for (n, (_, w)) in queue.iter().enumerate().skip(1).take(LOOKAHEAD) {
            if w.key == first.key
                && let Some(grown) = self.opts.joined(start, end, w)
            {
                (start, end) = grown;
                run.push(n);
            }
        }
        let sealed = end - start >= self.opts.max_request / 2 || queue.len() > LOOKAHEAD;
        (run, sealed)
    }

    fn read_loop(&self) {
        loop {
            let (key, offset, len, parts) = {
                let mut st = self.state.lock().expect("poisoned");
                // Merging needs neighbours: a run at the head waits for more until it is
                // final, the producer is done or blocked, or a consumer needs it now.
                let run = loop {
                    if st.stopped {
                        return;
                    }
                    let (run, sealed) = self.head_run(&st.queue);
                    let head = st.queue.front().map(|(id, _)| *id);
                    let needed = head.is_some_and(|h| st.wanted_upto.is_some_and(|w| h <= w));
                    if !run.is_empty() && (sealed || st.closed || st.producer_waiting || needed) {
                        break run;
                    }
                    if run.is_empty() && st.closed {
                        return;
                    }
                    st = self.changed.wait(st).expect("poisoned");
                };
                // Taken from the back, so that the positions still hold.
                let mut parts: Vec<(u64, Want)> = run
                    .iter()
                    .rev()
                    .map(|&n| st.queue.remove(n).expect("a queued position"))
                    .collect();
                parts.reverse();
                let start = parts
                    .iter()
                    .map(|(_, w)| w.offset)
                    .min()
                    .expect("one part at least");
                let end = parts
                    .iter()
                    .map(|(_, w)| w.offset + w.len)
                    .max()
                    .expect("one part at least");
                let key = parts[0].1.key.clone();
                let parts: Vec<(u64, u64, u64)> = parts
                    .into_iter()
                    .map(|(id, w)| (id, w.offset, w.len))
                    .collect();
                drop(st);
                self.changed.notify_all();
                (key, start, end - start, parts)
            };
            let mut got = self.store.get_range(&key, offset, len);
            let mut st = self.state.lock().expect("poisoned");
            let alone = parts.len() == 1;
            for (id, at, n) in parts {
                let part = part_of(&mut got, alone, at - offset, n, &key);
                st.ready.insert(id, part);
            }
            drop(st);
            self.changed.notify_all();
        }
    }
}

/// One want's share of a request's outcome: moved out when it is the request's only want and
/// spans all of it (no copy of a large frame), sliced otherwise; the request's error otherwise.
fn part_of(
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

fn stopped() -> Error {
    Error::new(crate::ErrorKind::Io, "reading ahead stopped")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Fault, FaultStore, MemoryStore, Op};

    fn want(key: &str, offset: u64, len: u64) -> Want {
        Want {
            key: key.into(),
            offset,
            len,
        }
    }

    const OPTS: FetchOptions = FetchOptions {
        gap: 100,
        max_request: 1000,
        in_flight: 4,
        window: 2000,
    };

    #[test]
    fn neighbours_of_one_object_merge_in_order() {
        let wants = [
            want("a", 0, 10),
            want("a", 10, 10),     // adjacent
            want("a", 120, 10),    // a gap of 100: still one request
            want("a", 231, 10),    // a gap of 101: a new one
            want("b", 241, 10),    // another object
            want("b", 241, 10),    // the same range again
            want("b", 0, 10),      // backwards
            want("b", 10, 995),    // would grow the request beyond 1000
            want("b", 2000, 5000), // alone larger than max_request
        ];
        let r = plan(&wants, &OPTS);
        let shape: Vec<_> = r
            .iter()
            .map(|r| (r.key.as_str(), r.offset, r.len, r.first, r.count))
            .collect();
        assert_eq!(
            shape,
            [
                ("a", 0, 130, 0, 3),
                ("a", 231, 10, 3, 1),
                ("b", 241, 10, 4, 2),
                ("b", 0, 10, 6, 1),
                ("b", 10, 995, 7, 1),
                ("b", 2000, 5000, 8, 1),
            ]
        );
    }

    /// Chunks of one file written by several backup threads are near each other in a pack but
    /// not always in order: a want just before the request joins it too.
    #[test]
    fn a_neighbour_just_before_joins_the_request() {
        let wants = [want("c", 500, 10), want("c", 450, 10), want("c", 300, 10)];
        let r = plan(&wants, &OPTS);
        let shape: Vec<_> = r
            .iter()
            .map(|r| (r.offset, r.len, r.first, r.count))
            .collect();
        assert_eq!(shape, [(450, 60, 0, 2), (300, 10, 2, 1)]);
        let store = MemoryStore::new();
        store
            .put("c", &(0..=255u8).cycle().take(1000).collect::<Vec<_>>())
            .unwrap();
        let got = fetch_all(&store, &wants, &OPTS);
        for (w, g) in wants.iter().zip(got) {
            assert_eq!(
                g.unwrap(),
                (0..=255u8)
                    .cycle()
                    .skip(w.offset as usize)
                    .take(10)
                    .collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn ranges_come_back_in_order_with_the_right_bytes() {
        let store = FaultStore::new(MemoryStore::new());
        let objects: Vec<Vec<u8>> = (0..5u8)
            .map(|k| {
                (0..10_000u32)
                    .map(|i| (i as u8) ^ k.wrapping_mul(37))
                    .collect()
            })
            .collect();
        for (k, o) in objects.iter().enumerate() {
            store.put(&format!("o{k}"), o).unwrap();
        }
        // A slow object, so that later requests finish first.
        store.inject(
            Some(Op::GetRange),
            "o0",
            Fault::Delay(std::time::Duration::from_millis(30)),
        );
        let mut x = 12_345u64;
        let wants: Vec<Want> = (0..400)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let k = (x >> 60) % 5;
                let off = (x >> 20) % 9_000;
                want(&format!("o{k}"), off, (x >> 8) % 1000 + 1)
            })
            .collect();
        let mut seen = Vec::new();
        fetch_in_order(&store, &wants, &OPTS, |i, got| {
            let w = &wants[i];
            let k: usize = w.key[1..].parse().unwrap();
            assert_eq!(
                got.unwrap(),
                objects[k][w.offset as usize..(w.offset + w.len) as usize]
            );
            seen.push(i);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, (0..400).collect::<Vec<_>>());
        assert_eq!(
            store.calls(Op::GetRange) as usize,
            plan(&wants, &OPTS).len()
        );
    }

    #[test]
    fn many_small_neighbours_cost_few_requests() {
        let store = FaultStore::new(MemoryStore::new());
        store.put("pack", &vec![7u8; 1 << 20]).unwrap();
        let wants: Vec<Want> = (0..5000).map(|i| want("pack", i * 200, 150)).collect();
        let all = fetch_all(&store, &wants, &FetchOptions::REMOTE);
        assert!(all.iter().all(|r| r.as_ref().unwrap() == &vec![7u8; 150]));
        assert_eq!(store.calls(Op::GetRange), 1);
    }

    #[test]
    fn a_failed_request_fails_only_its_wants_and_take_can_stop() {
        let store = FaultStore::new(MemoryStore::new());
        store.put("good", &[1u8; 100]).unwrap();
        store.put("bad", &[2u8; 100]).unwrap();
        store.inject(
            Some(Op::GetRange),
            "bad",
            Fault::FailAlways(crate::ErrorKind::Io),
        );
        let wants = [
            want("good", 0, 10),
            want("bad", 0, 10),
            want("bad", 10, 10),
            want("good", 50, 10),
        ];
        let got = fetch_all(&store, &wants, &OPTS);
        let ok: Vec<bool> = got.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, false, false, true]);
        assert_eq!(got[1].as_ref().unwrap_err().kind(), crate::ErrorKind::Io);
        let mut calls = 0;
        let e = fetch_in_order(&store, &wants, &OPTS, |_, got| {
            calls += 1;
            got.map(|_| ())
        })
        .unwrap_err();
        assert_eq!((calls, e.kind()), (2, crate::ErrorKind::Io));
    }

    /// A taker that panics ends the fetch instead of leaving readers waiting for room in the
    /// window, which the scope would join forever.
    #[test]
    fn a_panicking_taker_stops_the_readers() {
        let store = MemoryStore::new();
        store.put("o", &vec![0u8; 100_000]).unwrap();
        let wants: Vec<Want> = (0..50).map(|i| want("o", i * 2000, 1000)).collect();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                fetch_in_order(&store, &wants, &OPTS, |i, _| {
                    assert!(i < 3, "the taker gives up at want {i}");
                    Ok(())
                })
            }));
            let _ = tx.send(r.is_err());
        });
        let panicked = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("fetch_in_order hung after its taker panicked");
        assert!(panicked);
    }

    #[test]
    fn the_window_bounds_what_is_read_ahead() {
        let store = FaultStore::new(MemoryStore::new());
        store.put("o", &vec![0u8; 100_000]).unwrap();
        // 50 requests of 1,000 bytes (their gaps of 1,000 are too wide to merge) and a window
        // of 2,000: when want i is taken, at most requests i..i + 2 were started.
        let wants: Vec<Want> = (0..50).map(|i| want("o", i * 2000, 1000)).collect();
        let mut most_ahead = 0;
        fetch_in_order(&store, &wants, &OPTS, |i, got| {
            got?;
            // Give the readers time to run as far ahead as they may.
            std::thread::sleep(std::time::Duration::from_millis(2));
            let ahead = store.calls(Op::GetRange) as usize - i;
            assert!(ahead <= 2, "{ahead} requests started beyond want {i}");
            most_ahead = most_ahead.max(ahead);
            Ok(())
        })
        .unwrap();
        assert_eq!(most_ahead, 2, "the readers never read ahead");
    }

    #[test]
    fn prefetch_merges_what_is_queued_and_hands_back_each_range() {
        let store = FaultStore::new(MemoryStore::new());
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        store.put("p", &data).unwrap();
        let p = Prefetch::new(&store, OPTS);
        // Submitted before the readers start: 20 neighbours merge into few requests.
        let tickets: Vec<(u64, Ticket)> = (0..20u64)
            .map(|i| (i * 90, p.submit(want("p", i * 90, 80)).unwrap()))
            .collect();
        std::thread::scope(|s| {
            p.start(s);
            // Redeemed out of order, as parallel consumers do.
            for (at, t) in tickets.into_iter().rev() {
                let got = p.redeem(t).unwrap();
                assert_eq!(got, data[at as usize..at as usize + 80]);
            }
            p.close();
        });
        // 20 ranges 90 bytes apart: a request of up to 1,000 bytes holds 11 of them.
        assert!(
            store.calls(Op::GetRange) <= 2,
            "{}",
            store.calls(Op::GetRange)
        );
    }

    #[test]
    fn prefetch_blocks_the_producer_at_the_window_and_stop_frees_everyone() {
        let store = MemoryStore::new();
        store.put("p", &vec![1u8; 10_000]).unwrap();
        let p = Prefetch::new(&store, OPTS);
        let submitted = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            p.start(s);
            let producer = s.spawn(|| -> Result<()> {
                for i in 0..10 {
                    // 1,000 bytes each, a window of 2,000: the third waits for a redeem.
                    // Never redeemed: the window stays full.
                    let _held = p.submit(want("p", i * 1000, 1000))?;
                    submitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Ok(())
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            assert_eq!(submitted.load(std::sync::atomic::Ordering::SeqCst), 2);
            p.stop();
            assert!(producer.join().unwrap().is_err());
        });
    }
}
