//! Per-shard counters, merged on read. Each shard writes only its own cache line (no contention,
//! no lock); readers on any thread add the slots up.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

/// A monotonically increasing count with one slot per shard.
#[derive(Debug)]
pub struct ShardedCounter {
    slots: Box<[CachePadded<AtomicU64>]>,
}

impl ShardedCounter {
    /// A counter for `shards` shards, all zero.
    pub fn new(shards: usize) -> Self {
        Self {
            slots: (0..shards.max(1))
                .map(|_| CachePadded::new(AtomicU64::new(0)))
                .collect(),
        }
    }

    /// Adds `n` to the slot of `shard` (called only from that shard's thread).
    pub fn add(&self, shard: usize, n: u64) {
        self.slots[shard % self.slots.len()].fetch_add(n, Ordering::Relaxed);
    }

    /// The total over all shards.
    pub fn sum(&self) -> u64 {
        self.slots.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }

    /// Each shard's own count, by shard index.
    pub fn per_shard(&self) -> Vec<u64> {
        self.slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_slots_on_read() {
        let counter = ShardedCounter::new(3);
        counter.add(0, 2);
        counter.add(2, 5);
        counter.add(2, 1);
        assert_eq!(counter.per_shard(), vec![2, 0, 6]);
        assert_eq!(counter.sum(), 8);
    }

    #[test]
    fn counts_from_many_threads() {
        let counter = std::sync::Arc::new(ShardedCounter::new(4));
        let threads: Vec<_> = (0..4)
            .map(|shard| {
                let counter = counter.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| counter.add(shard, 1)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.sum(), 4000);
        assert_eq!(counter.per_shard(), vec![1000; 4]);
    }
}
