//! Reads planned as they are discovered ([`Prefetch`]): a producer submits ranges in the order
//! they will be needed, reading threads merge queued neighbours into requests, and consumers
//! redeem their tickets, within a window of bytes read ahead.

use std::sync::{Condvar, Mutex};

use super::planner::{FetchOptions, Want, part_of};
use crate::error::{Error, Result};
use crate::store::Store;

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
/// object into one request ([`plan`](super::plan)'s rule), `in_flight` at a time; a consumer
/// redeems its ticket, waiting for the bytes if they are not there yet. Submitting waits while
/// the bytes submitted and not yet redeemed exceed the window, which bounds memory;
/// [`Prefetch::stop`] (a consumer failed) wakes everyone with an error instead.
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

fn stopped() -> Error {
    Error::new(crate::ErrorKind::Io, "reading ahead stopped")
}
