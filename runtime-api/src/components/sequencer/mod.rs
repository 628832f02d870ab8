//! The sequencer building block: ids per key that only grow. Every store reserves blocks of ids
//! ([`IdStore::reserve`]); `STRONG` takes one id at a time (each exactly one more than the last),
//! `WEAK` may take a segment of `segmentStep` ids at once and hand them out from memory
//! ([`Sequencer`]), skipping what a restart leaves unused. Stores: `in-memory`, `redis`
//! (`INCRBY`), `etcd` (compare-and-swap on a counter key), `zookeeper` (znode data versions).
//! Shared by all shards.

mod etcd;
mod memory;
mod redis;
mod zookeeper;

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;

pub use etcd::EtcdIdStore;
pub use memory::InMemoryIdStore;
pub use redis::RedisIdStore;

use crate::error::ApiError;

use crate::components::{
    component::Component,
    registry::{Entry, Registry},
};

/// Where ids come from.
#[async_trait(?Send)]
pub trait IdStore: Component {
    /// Reserves the next `count` ids of `key`; answers the last of them.
    async fn reserve(&self, key: &str, count: u32) -> Result<i64, ApiError>;
}

/// A store with its `WEAK` segment cache.
#[expect(
    clippy::disallowed_types,
    reason = "the segment cache is shared by all shards so ids stay unique; held to take one id, never across an await"
)]
pub struct Sequencer {
    store: Arc<dyn IdStore>,
    segment: u32,
    /// Per key: the next cached id and the last one reserved.
    cached: std::sync::Mutex<HashMap<String, (i64, i64)>>,
}

#[async_trait(?Send)]
impl Component for Sequencer {
    async fn start(&self) -> Result<(), ApiError> {
        self.store.start().await
    }

    async fn health(&self) -> Result<(), ApiError> {
        self.store.health().await
    }

    async fn close(&self) {
        self.store.close().await;
    }
}

impl Sequencer {
    /// Ids from `store`; `WEAK` requests take `segment` ids at a time (1: no caching).
    pub fn new(store: Arc<dyn IdStore>, segment: u32) -> Self {
        Self {
            store,
            segment: segment.max(1),
            cached: Default::default(),
        }
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

/// The backend types of `sequencer`.
pub(crate) const BACKENDS: Registry<Sequencer> = Registry {
    label: "sequencer",
    kind: "sequencer",
    default_type: None,
    fields: &[],
    backends: &[
        ("in-memory", memory::build),
        ("redis", redis::build),
        ("etcd", etcd::build),
        ("zookeeper", zookeeper::build),
    ],
};

impl Sequencer {
    /// A sequencer over `store` with LayOtto's `WEAK` segment settings from the entry:
    /// `segmentCacheEnable` and `segmentStep` (default 50). Each backend's `build` ends here.
    pub(super) fn over(entry: &mut Entry<'_>, store: Arc<dyn IdStore>) -> Option<Arc<Self>> {
        let caching = entry
            .take("segmentCacheEnable")
            .is_some_and(|v| v == "true");
        let segment = match (caching, entry.take("segmentStep")) {
            (false, _) => 1,
            (true, None) => 50,
            (true, Some(step)) => match step.parse::<u32>() {
                Ok(step) if step > 0 => step,
                _ => {
                    entry.metadata_error(
                        "segmentStep",
                        format!("invalid \"{step}\": expected a positive whole number"),
                    );
                    return None;
                }
            },
        };
        Some(Arc::new(Self::new(store, segment)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_ids_come_from_segments_and_strong_ones_one_by_one() {
        let sequencer = Sequencer::new(Arc::new(InMemoryIdStore::default()), 10);
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
