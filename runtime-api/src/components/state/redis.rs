//! The `redis` state store, in Dapr's and LayOtto's layout: each key is a hash with fields
//! `data` and `version`; the version is the etag. A batch (save, bulk delete, transaction) runs
//! as one Lua script — checks of every operation first (later operations seeing earlier ones),
//! then the writes — so it is atomic: other clients see all of it or none. On a Redis Cluster
//! a batch's keys must share a hash slot (redis refuses it with CROSSSLOT otherwise, answered
//! as an invalid argument).

use async_trait::async_trait;
use bytes::Bytes;
use redis::Script;

use super::{Concurrency, StateEntry, StateOperation, StateStore};
use crate::components::registry::Entry;
use crate::{
    components::{component::Component, redis::RedisConnection},
    error::{ApiError, chain},
};
use std::sync::Arc;

/// Checks, then applies, `ARGV[1]` operations on `KEYS`; each takes five arguments:
/// kind (`u`/`d`), expected etag (or empty), concurrency (`u`/`f`/`l`), value, TTL in ms (0: none).
const APPLY: &str = r"
local count = tonumber(ARGV[1])
local staged = {}
local function current(key)
  if staged[key] then return staged[key] end
  local version = redis.call('HGET', key, 'version')
  if version then return {true, tonumber(version)} end
  return {false, 0}
end
for i = 1, count do
  local base = 1 + (i - 1) * 5
  local kind, etag, concurrency = ARGV[base + 1], ARGV[base + 2], ARGV[base + 3]
  local key = KEYS[i]
  local exists, version = unpack(current(key))
  local ok = true
  if concurrency ~= 'l' then
    if etag ~= '' then
      ok = exists and tostring(version) == etag
    elseif concurrency == 'f' then
      ok = not exists
    end
  end
  if not ok then return redis.error_reply('ETAG_MISMATCH ' .. key) end
  if kind == 'u' then staged[key] = {true, version + 1} else staged[key] = {false, 0} end
end
for i = 1, count do
  local base = 1 + (i - 1) * 5
  local key = KEYS[i]
  if ARGV[base + 1] == 'u' then
    local version = tonumber(redis.call('HGET', key, 'version') or '0') + 1
    redis.call('HSET', key, 'data', ARGV[base + 4], 'version', version)
    local ttl = tonumber(ARGV[base + 5])
    if ttl > 0 then redis.call('PEXPIRE', key, ttl) else redis.call('PERSIST', key) end
  else
    redis.call('DEL', key)
  end
end
return count";

/// A state store on redis.
pub struct RedisStateStore {
    redis: RedisConnection,
}

impl RedisStateStore {
    /// A store over `redis`; connects in [`StateStore::connect`].
    pub fn new(redis: RedisConnection) -> Self {
        Self { redis }
    }
}

#[async_trait(?Send)]
impl Component for RedisStateStore {
    async fn start(&self) -> Result<(), ApiError> {
        self.redis.connect().await
    }

    async fn health(&self) -> Result<(), ApiError> {
        self.redis.health().await
    }
}

#[async_trait(?Send)]
impl StateStore for RedisStateStore {
    async fn get(&self, key: &str) -> Result<Option<StateEntry>, ApiError> {
        let key = key.to_owned();
        let (data, version): (Option<Vec<u8>>, Option<String>) = self
            .redis
            .call(move |mut redis| async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg("data")
                    .arg("version")
                    .query_async(&mut redis)
                    .await
            })
            .await?;
        Ok(data.zip(version).map(|(value, etag)| StateEntry {
            value: Bytes::from(value),
            etag,
        }))
    }

    async fn apply(&self, operations: Vec<StateOperation>) -> Result<(), ApiError> {
        if operations.is_empty() {
            return Ok(());
        }
        let mut keys = Vec::with_capacity(operations.len());
        let mut args: Vec<Vec<u8>> = vec![operations.len().to_string().into_bytes()];
        for operation in operations {
            keys.push(operation.key().to_owned());
            let (kind, etag, concurrency, value, ttl) = match operation {
                StateOperation::Upsert {
                    value,
                    etag,
                    concurrency,
                    ttl,
                    ..
                } => (
                    "u",
                    etag,
                    concurrency,
                    value,
                    ttl.map_or(0, |t| t.as_millis()),
                ),
                StateOperation::Delete {
                    etag, concurrency, ..
                } => ("d", etag, concurrency, Bytes::new(), 0),
            };
            let concurrency = match concurrency {
                Concurrency::Unspecified => "u",
                Concurrency::FirstWrite => "f",
                Concurrency::LastWrite => "l",
            };
            args.extend([
                kind.as_bytes().to_vec(),
                etag.unwrap_or_default().into_bytes(),
                concurrency.as_bytes().to_vec(),
                value.to_vec(),
                ttl.to_string().into_bytes(),
            ]);
        }
        let result = self
            .redis
            .call(move |mut redis| async move {
                let script = Script::new(APPLY);
                let mut invocation = script.prepare_invoke();
                for key in keys {
                    invocation.key(key);
                }
                for arg in args {
                    invocation.arg(arg);
                }
                invocation.invoke_async::<i64>(&mut redis).await
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err @ ApiError::Backend { .. })
                if chain(&err).to_string().contains("ETAG_MISMATCH") =>
            {
                let message = chain(&err).to_string();
                // redis-rs shows the reply's code and detail apart (`ETAG_MISMATCH": "<key>`).
                let key = message
                    .split("ETAG_MISMATCH")
                    .nth(1)
                    .map(|rest| rest.trim_start_matches([':', ' ', '"']))
                    .and_then(|rest| rest.split(['"', ' ']).next())
                    .unwrap_or_default();
                Err(ApiError::EtagMismatch(key.to_owned()))
            }
            Err(err @ ApiError::Backend { .. })
                if chain(&err)
                    .to_string()
                    .to_ascii_uppercase()
                    .contains("CROSSSLOT") =>
            {
                Err(ApiError::InvalidArgument(format!(
                    "{}: on a redis cluster the keys of one batch must share a hash slot \
                     (give them one {{hash tag}}): {}",
                    self.redis.describe(),
                    chain(&err)
                )))
            }
            Err(err) => Err(err),
        }
    }
}

/// Builds one from its entry (LayOtto's redis keys).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn StateStore>> {
    Some(Arc::new(RedisStateStore::new(RedisConnection::from_entry(
        entry,
    )?)))
}
