//! Per-shard counters and latency histograms, merged on read. Each shard writes only its own
//! cache-padded slots (no contention, no lock); readers on any thread add the slots up.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use hdrhistogram::Histogram;

/// Exact values below this; above, buckets keep this many distinct values per power of two
/// (at most 1/32 ≈ 3% relative error).
const SUB_BUCKETS: u64 = 32;
const HALF: u64 = SUB_BUCKETS / 2;
/// Values are clamped below 2^36 (in µs: 19 hours).
const MAX_SHIFT: u32 = 36 - 5;
/// Buckets a shard keeps.
const BUCKETS: usize = (SUB_BUCKETS + MAX_SHIFT as u64 * HALF) as usize;

/// A log-linear histogram of `u64` values (e.g. latencies in µs) with one set of atomic buckets
/// per shard; [`ShardedHistogram::merged`] adds them into an HdrHistogram for quantiles.
#[derive(Debug)]
pub struct ShardedHistogram {
    shards: Box<[CachePadded<Box<[AtomicU64]>>]>,
}

impl ShardedHistogram {
    /// An empty histogram for `shards` shards.
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| CachePadded::new((0..BUCKETS).map(|_| AtomicU64::new(0)).collect()))
                .collect(),
        }
    }

    /// Records `value` in `shard`'s buckets (called only from that shard's thread).
    pub fn record(&self, shard: usize, value: u64) {
        self.shards[shard % self.shards.len()][bucket_of(value)].fetch_add(1, Ordering::Relaxed);
    }

    /// All shards' values, each at its bucket's middle.
    pub fn merged(&self) -> Histogram<u64> {
        let mut merged =
            Histogram::new_with_max(1 << 40, 3).expect("bounds and 3 significant digits are valid");
        for shard in self.shards.iter() {
            for (bucket, count) in shard.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    merged.saturating_record_n(bucket_value(bucket), count);
                }
            }
        }
        merged
    }
}

/// The bucket of `value`: exact below [`SUB_BUCKETS`], then [`HALF`] buckets per power of two.
fn bucket_of(value: u64) -> usize {
    if value < SUB_BUCKETS {
        return value as usize;
    }
    let shift = (63 - value.leading_zeros() - (SUB_BUCKETS.trailing_zeros() - 1)).min(MAX_SHIFT);
    let top = (value >> shift).min(SUB_BUCKETS - 1);
    (SUB_BUCKETS + u64::from(shift - 1) * HALF + (top - HALF)) as usize
}

/// The middle of bucket `bucket`'s range.
fn bucket_value(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < SUB_BUCKETS {
        return bucket;
    }
    let shift = (bucket - SUB_BUCKETS) / HALF + 1;
    let top = (bucket - SUB_BUCKETS) % HALF + HALF;
    (top << shift) + (1 << shift) / 2
}

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
    fn buckets_are_exact_then_within_three_percent() {
        for value in (0..5_000u64).chain([1 << 20, 123_456_789, (1 << 36) - 1]) {
            let bucket = bucket_of(value);
            assert!(bucket < BUCKETS, "{value}");
            let middle = bucket_value(bucket);
            let error = middle.abs_diff(value) as f64 / value.max(1) as f64;
            assert!(error <= 1.0 / 32.0, "{value} -> bucket {bucket} = {middle}");
            if value < SUB_BUCKETS {
                assert_eq!(middle, value);
            }
        }
        assert!(bucket_of(u64::MAX) < BUCKETS, "huge values are clamped");
        for pair in (0..BUCKETS).collect::<Vec<_>>().windows(2) {
            assert!(
                bucket_value(pair[0]) < bucket_value(pair[1]),
                "buckets ascend"
            );
        }
    }

    #[test]
    fn histograms_merge_shards_on_read() {
        let histogram = ShardedHistogram::new(2);
        for value in 1..=1000u64 {
            histogram.record((value % 2) as usize, value * 10);
        }
        let merged = histogram.merged();
        assert_eq!(merged.len(), 1000);
        let p50 = merged.value_at_quantile(0.5) as f64;
        let p99 = merged.value_at_quantile(0.99) as f64;
        assert!((p50 - 5_000.0).abs() / 5_000.0 < 0.04, "p50 {p50}");
        assert!((p99 - 9_900.0).abs() / 9_900.0 < 0.04, "p99 {p99}");
    }

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
