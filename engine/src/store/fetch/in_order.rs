//! Reads of a list of ranges known in advance: [`fetch_in_order`] hands each range over in the
//! order of the list while reading threads run ahead within a window; [`fetch_all`] collects
//! a batch in memory.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};

use super::planner::{FetchOptions, Request, Want, part_of, plan};
use crate::error::Result;
use crate::store::Store;

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
