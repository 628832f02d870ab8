//! The `redis` lock store, as LayOtto's: the resource id is the key, the owner its value, taken
//! with `SET NX PX`; unlock and keep-alive check the owner and act in one Lua script, so no
//! other client can slip in between the check and the change.

use std::time::Duration;

use async_trait::async_trait;
use redis::Script;

use super::{LockStatus, LockStore};
use crate::components::{component::Component, registry::Entry};
use crate::{components::redis::RedisConnection, error::ApiError};
use std::sync::Arc;

/// `GET`, compare with the owner, then `DEL`: 0 done, 1 no lock, 2 someone else's.
const UNLOCK: &str = r"
local holder = redis.call('GET', KEYS[1])
if not holder then return 1 end
if holder ~= ARGV[1] then return 2 end
redis.call('DEL', KEYS[1])
return 0";

/// `GET`, compare with the owner, then `PEXPIRE`: 0 done, 1 no lock, 2 someone else's.
const KEEP_ALIVE: &str = r"
local holder = redis.call('GET', KEYS[1])
if not holder then return 1 end
if holder ~= ARGV[1] then return 2 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0";

/// A lock store on redis.
pub struct RedisLockStore {
    redis: RedisConnection,
}

impl RedisLockStore {
    /// A store over `redis`; connects in [`LockStore::connect`].
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }
}

fn status(code: i64) -> Result<LockStatus, ApiError> {
    match code {
        0 => Ok(LockStatus::Success),
        1 => Ok(LockStatus::Unexist),
        2 => Ok(LockStatus::BelongsToOthers),
        other => Err(ApiError::internal(format!("lock script answered {other}"))),
    }
}

fn millis(expire: Duration) -> u64 {
    expire.as_millis().try_into().unwrap_or(u64::MAX)
}

#[async_trait(?Send)]
impl Component for RedisLockStore {
    async fn start(&self) -> Result<(), ApiError> {
        self.redis.connect().await
    }

    async fn health(&self) -> Result<(), ApiError> {
        self.redis.health().await
    }
}

#[async_trait(?Send)]
impl LockStore for RedisLockStore {
    async fn try_lock(
        &self,
        resource: &str,
        owner: &str,
        expire: Duration,
    ) -> Result<bool, ApiError> {
        let (resource, owner) = (resource.to_owned(), owner.to_owned());
        let taken: Option<String> = self
            .redis
            .call(move |mut redis| async move {
                redis::cmd("SET")
                    .arg(resource)
                    .arg(owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(expire))
                    .query_async(&mut redis)
                    .await
            })
            .await?;
        Ok(taken.is_some())
    }

    async fn unlock(&self, resource: &str, owner: &str) -> Result<LockStatus, ApiError> {
        let (resource, owner) = (resource.to_owned(), owner.to_owned());
        let code: i64 = self
            .redis
            .call(move |mut redis| async move {
                Script::new(UNLOCK)
                    .key(resource)
                    .arg(owner)
                    .invoke_async(&mut redis)
                    .await
            })
            .await?;
        status(code)
    }

    async fn keep_alive(
        &self,
        resource: &str,
        owner: &str,
        expire: Duration,
    ) -> Result<LockStatus, ApiError> {
        let (resource, owner) = (resource.to_owned(), owner.to_owned());
        let code: i64 = self
            .redis
            .call(move |mut redis| async move {
                Script::new(KEEP_ALIVE)
                    .key(resource)
                    .arg(owner)
                    .arg(millis(expire))
                    .invoke_async(&mut redis)
                    .await
            })
            .await?;
        status(code)
    }
}

/// Builds one from its entry (LayOtto's redis keys).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn LockStore>> {
    Some(Arc::new(RedisLockStore::new(RedisConnection::from_entry(
        entry,
    )?)))
}
