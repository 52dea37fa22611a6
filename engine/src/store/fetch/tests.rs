//! Unit tests of the planner, the in-order fetch and the prefetcher, over a memory store with
//! injected delays and failures.

use super::*;
use crate::error::Result;
use crate::store::{Fault, FaultStore, MemoryStore, Op, Store};

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
