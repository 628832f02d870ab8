//! The sequencer building block: ids per key that only grow. Every store reserves blocks of ids
//! ([`IdStore::reserve`]); `STRONG` takes one id at a time (each exactly one more than the last),
//! `WEAK` may take a segment of `segmentStep` ids at once and hand them out from memory
//! ([`Sequencer`]), skipping what a restart leaves unused. Stores: `in-memory`, `redis`
//! (`INCRBY`), `etcd` (compare-and-swap on a counter key). Shared by all shards.

mod etcd;
mod memory;
mod redis;

use std::collections::HashMap;

use async_trait::async_trait;

pub use etcd::EtcdIdStore;
pub use memory::InMemoryIdStore;
pub use redis::RedisIdStore;

use crate::error::ApiError;

/// Where ids come from.
#[async_trait(?Send)]
pub trait IdStore: Send + Sync {
    /// Connects to the backend; called once at start-up, on the main thread.
    async fn connect(&self) -> Result<(), ApiError> {
        Ok(())
    }
    /// Reserves the next `count` ids of `key`; answers the last of them.
    async fn reserve(&self, key: &str, count: u32) -> Result<i64, ApiError>;
}

/// A store with its `WEAK` segment cache.
#[expect(
    clippy::disallowed_types,
    reason = "the segment cache is shared by all shards so ids stay unique; held to take one id, never across an await"
)]
pub struct Sequencer {
    store: Box<dyn IdStore>,
    segment: u32,
    /// Per key: the next cached id and the last one reserved.
    cached: std::sync::Mutex<HashMap<String, (i64, i64)>>,
}

impl Sequencer {
    /// Ids from `store`; `WEAK` requests take `segment` ids at a time (1: no caching).
    pub fn new(store: Box<dyn IdStore>, segment: u32) -> Self {
        Self {
            store,
            segment: segment.max(1),
            cached: Default::default(),
        }
    }

    /// Connects the store.
    pub async fn connect(&self) -> Result<(), ApiError> {
        self.store.connect().await
    }

    /// The next id of `key`: exactly one more than the last when `strong`.
    pub async fn next_id(&self, key: &str, strong: bool) -> Result<i64, ApiError> {
        if strong || self.segment == 1 {
            return self.store.reserve(key, 1).await;
        }
        if let Some(id) = self.take_cached(key) {
            return Ok(id);
        }
        let last = self.store.reserve(key, self.segment).await?;
        let first = last - i64::from(self.segment) + 1;
        let mut cached = self.cached.lock().expect("sequencer cache poisoned");
        // Another call may have refilled meanwhile: keep the newer segment.
        let entry = cached.entry(key.to_owned()).or_insert((first + 1, last));
        if entry.1 < last {
            *entry = (first + 1, last);
        }
        Ok(first)
    }

    fn take_cached(&self, key: &str) -> Option<i64> {
        let mut cached = self.cached.lock().expect("sequencer cache poisoned");
        let (next, last) = cached.get_mut(key)?;
        (*next <= *last).then(|| {
            *next += 1;
            *next - 1
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_ids_come_from_segments_and_strong_ones_one_by_one() {
        let sequencer = Sequencer::new(Box::new(InMemoryIdStore::default()), 10);
        futures_lite::future::block_on(async {
            let weak: Vec<i64> = [0; 12].iter().map(|_| 0).collect();
            let mut ids = Vec::new();
            for _ in weak {
                ids.push(sequencer.next_id("k", false).await.unwrap());
            }
            assert_eq!(ids, (1..=12).collect::<Vec<_>>());
            // The second segment reserved 11..=20: a strong id comes after it.
            assert_eq!(sequencer.next_id("k", true).await.unwrap(), 21);
            assert_eq!(sequencer.next_id("other", true).await.unwrap(), 1);
        });
    }
}
