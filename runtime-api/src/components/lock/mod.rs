//! The lock building block: the [`LockStore`] contract (TryLock, Unlock, LockKeepAlive with
//! owner checks and expiry) and its stores: `in-memory`, `redis` (SET NX PX and Lua checks),
//! `redis_cluster` (Redlock over independent masters), `etcd` (keys bound to leases) and
//! `zookeeper` (ephemeral znodes, a session per lock). Stores are shared by all shards.

mod etcd;
mod memory;
mod redis;
mod redis_cluster;
mod zookeeper;

use std::time::Duration;

use async_trait::async_trait;

pub use etcd::EtcdLockStore;
pub use memory::InMemoryLockStore;
pub use redis::RedisLockStore;

use crate::error::ApiError;

use crate::components::{component::Component, registry::Registry};

/// What an unlock or keep-alive found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockStatus {
    /// Done: the lock was the caller's.
    Success,
    /// No such lock (never taken, released or expired).
    Unexist,
    /// Someone else holds it.
    BelongsToOthers,
}

/// A lock store.
#[async_trait(?Send)]
pub trait LockStore: Component {
    /// Takes `resource` for `owner` until `expire` from now, unless someone holds it.
    async fn try_lock(
        &self,
        resource: &str,
        owner: &str,
        expire: Duration,
    ) -> Result<bool, ApiError>;
    /// Releases `resource` if `owner` holds it.
    async fn unlock(&self, resource: &str, owner: &str) -> Result<LockStatus, ApiError>;
    /// Extends `owner`'s hold on `resource` to `expire` from now.
    async fn keep_alive(
        &self,
        resource: &str,
        owner: &str,
        expire: Duration,
    ) -> Result<LockStatus, ApiError>;
}

/// The backend types of `lock`.
pub(crate) const BACKENDS: Registry<dyn LockStore> = Registry {
    label: "lock",
    kind: "lock",
    default_type: None,
    fields: &[],
    backends: &[
        ("in-memory", memory::build),
        ("redis", redis::build),
        ("redis_cluster", redis_cluster::build),
        ("etcd", etcd::build),
        ("zookeeper", zookeeper::build),
    ],
};
