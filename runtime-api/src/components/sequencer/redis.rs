//! The `redis` id store: `INCRBY` on `sequencer|||<key>` (atomic in redis, and kept across
//! layotto-rs restarts by redis itself). The prefix keeps counters apart from other data in the
//! same redis, such as locks, whose keys are the bare resource ids.

use async_trait::async_trait;

use super::{IdStore, Sequencer};
use crate::components::{component::Component, registry::Entry};
use crate::{components::redis::RedisConnection, error::ApiError};
use std::sync::Arc;

/// Prefix of the counters' keys.
const KEY_PREFIX: &str = "sequencer|||";

/// Counters in redis.
pub struct RedisIdStore {
    redis: RedisConnection,
}

impl RedisIdStore {
    /// Counters over `redis`; connects in [`IdStore::connect`].
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }
}

#[async_trait(?Send)]
impl Component for RedisIdStore {
    async fn start(&self) -> Result<(), ApiError> {
        self.redis.connect().await
    }

    async fn health(&self) -> Result<(), ApiError> {
        self.redis.health().await
    }
}

#[async_trait(?Send)]
impl IdStore for RedisIdStore {
    async fn reserve(&self, key: &str, count: u32) -> Result<i64, ApiError> {
        let key = format!("{KEY_PREFIX}{key}");
        self.redis
            .call(move |mut redis| async move {
                redis::cmd("INCRBY")
                    .arg(key)
                    .arg(count)
                    .query_async(&mut redis)
                    .await
            })
            .await
    }
}

/// Builds one from its entry (LayOtto's redis keys).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<Sequencer>> {
    let redis = RedisConnection::from_entry(entry)?;
    Sequencer::over(entry, Arc::new(RedisIdStore::new(redis)))
}
