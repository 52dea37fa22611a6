//! A small least-recently-used map bounded by weight (bytes of decoded chunks, entries of
//! decoded trees), so that what a mount keeps stays bounded however much is read through it.
//! Lookups and inserts are O(1) amortized: recency is a counter per key and a queue of
//! (counter, key) whose stale items are skipped when evicting.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// The map; `V` is shared out by clone (an `Arc` in practice).
#[derive(Debug)]
pub(super) struct Lru<K, V> {
    map: HashMap<K, (V, u64, u64)>,
    order: VecDeque<(u64, K)>,
    tick: u64,
    weight: u64,
    max_weight: u64,
    /// Items kept whatever they weigh.
    floor: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> Lru<K, V> {
    /// An empty map holding at most `max_weight` (one item heavier than that is still kept
    /// alone, until the next insert).
    pub(super) fn new(max_weight: u64) -> Self {
        Lru {
            map: HashMap::new(),
            order: VecDeque::new(),
            tick: 0,
            weight: 0,
            max_weight,
            floor: 1,
        }
    }

    /// The same, keeping at least `n` items whatever they weigh: two days compared side by
    /// side (`diff -r archives/D1 archives/D2`) must not evict each other at every name.
    pub(super) fn keeping(mut self, n: usize) -> Self {
        self.floor = n.max(1);
        self
    }

    /// The value of `k`, now the most recently used.
    pub(super) fn get(&mut self, k: &K) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        let (v, t, _) = self.map.get_mut(k)?;
        *t = tick;
        let v = v.clone();
        self.order.push_back((tick, k.clone()));
        self.compact();
        Some(v)
    }

    /// Keeps `v` under `k` with weight `w`, evicting the least recently used beyond the bound.
    pub(super) fn insert(&mut self, k: K, v: V, w: u64) {
        self.tick += 1;
        if let Some((_, _, old)) = self.map.insert(k.clone(), (v, self.tick, w)) {
            self.weight -= old;
        }
        self.weight += w;
        self.order.push_back((self.tick, k));
        while self.weight > self.max_weight && self.map.len() > self.floor {
            let Some((t, k)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&k).is_some_and(|(_, last, _)| *last == t) {
                let (_, _, w) = self.map.remove(&k).expect("present");
                self.weight -= w;
            }
        }
    }

    /// Drops queue items of keys used again since, so the queue stays within a few times the
    /// map's size whatever the access pattern.
    fn compact(&mut self) {
        if self.order.len() > 4 * self.map.len() + 64 {
            let map = &self.map;
            self.order
                .retain(|(t, k)| map.get(k).is_some_and(|(_, last, _)| last == t));
        }
    }

    /// The weight held.
    #[cfg(test)]
    pub(super) fn weight(&self) -> u64 {
        self.weight
    }
}

#[cfg(test)]
mod tests {
    use super::Lru;

    #[test]
    fn the_least_recently_used_goes_first_and_the_weight_stays_bounded() {
        let mut l = Lru::new(10);
        l.insert(1, "a", 4);
        l.insert(2, "b", 4);
        assert_eq!(l.get(&1), Some("a"));
        l.insert(3, "c", 4);
        assert_eq!(l.get(&2), None, "2 was the least recently used");
        assert_eq!(l.get(&1), Some("a"));
        assert_eq!(l.get(&3), Some("c"));
        assert!(l.weight() <= 10);
        for i in 0..10_000 {
            l.insert(i % 7, "x", 3);
            let _ = l.get(&(i % 5));
        }
        assert!(l.weight() <= 10);
        assert!(l.order.len() <= 4 * l.map.len() + 64 + 1);
    }
}
