//! The state building block: the [`StateStore`] contract every store implements, the etag and
//! concurrency rules all stores share ([`check_write`]), and bulk reads with bounded parallelism.
//! Stores are shared by all shards (`Send + Sync`); calls run on the calling shard.

mod etcd;
mod memory;
mod redis;
mod zookeeper;

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, stream};

pub use etcd::EtcdStateStore;
pub use memory::InMemoryStateStore;
pub use redis::RedisStateStore;

use crate::error::ApiError;

use crate::components::{component::Component, registry::Registry};

/// A stored value and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    /// The value.
    pub value: Bytes,
    /// Opaque version; changes on every write.
    pub etag: String,
}

/// How a write treats concurrent writers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// Not specified: an etag, if given, must match.
    Unspecified,
    /// First write wins: an etag, if given, must match; without one the key must not exist yet.
    FirstWrite,
    /// Last write wins: etags are not checked.
    LastWrite,
}

/// One change to a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateOperation {
    /// Create or replace `key`.
    Upsert {
        /// The key.
        key: String,
        /// The new value.
        value: Bytes,
        /// The etag the current value must have.
        etag: Option<String>,
        /// The concurrency rule.
        concurrency: Concurrency,
        /// Expiry after the write (`ttlInSeconds` metadata).
        ttl: Option<Duration>,
    },
    /// Remove `key` (a missing key is not an error unless an etag is given).
    Delete {
        /// The key.
        key: String,
        /// The etag the current value must have.
        etag: Option<String>,
        /// The concurrency rule.
        concurrency: Concurrency,
    },
}

impl StateOperation {
    /// The key this operation changes.
    pub fn key(&self) -> &str {
        match self {
            Self::Upsert { key, .. } | Self::Delete { key, .. } => key,
        }
    }
}

/// A state store.
#[async_trait(?Send)]
pub trait StateStore: Component {
    /// The entry at `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<StateEntry>, ApiError>;

    /// Applies every operation, in order, atomically: if any etag check fails, nothing changes.
    async fn apply(&self, operations: Vec<StateOperation>) -> Result<(), ApiError>;

    /// Every live entry whose key starts with `prefix`, in key order, for queries (Dapr's
    /// `QueryStateAlpha1`); `None` when the store cannot list its keys.
    async fn scan(&self, prefix: &str) -> Result<Option<Vec<(String, StateEntry)>>, ApiError> {
        let _ = prefix;
        Ok(None)
    }
}

/// Checks a write of `key` against its current etag under the concurrency rules.
pub fn check_write(
    key: &str,
    current: Option<&str>,
    expected: Option<&str>,
    concurrency: Concurrency,
) -> Result<(), ApiError> {
    let matches = match (concurrency, expected) {
        (Concurrency::LastWrite, _) => true,
        (_, Some(expected)) => current == Some(expected),
        (Concurrency::FirstWrite, None) => current.is_none(),
        (Concurrency::Unspecified, None) => true,
    };
    if matches {
        Ok(())
    } else {
        Err(ApiError::EtagMismatch(key.to_owned()))
    }
}

/// The `ttlInSeconds` metadata (Dapr's) of a write: a positive number of seconds, or -1 (or
/// none) for no expiry.
pub fn ttl(metadata: &HashMap<String, String>) -> Result<Option<Duration>, ApiError> {
    let Some(value) = metadata.get("ttlInSeconds") else {
        return Ok(None);
    };
    match value.parse::<i64>() {
        Ok(-1) => Ok(None),
        Ok(seconds) if seconds > 0 => Ok(Some(Duration::from_secs(seconds as u64))),
        _ => Err(ApiError::InvalidArgument(format!(
            "ttlInSeconds must be a positive number of seconds or -1, not \"{value}\""
        ))),
    }
}

/// Reads `keys` with at most `parallelism` reads in flight (all at once when `parallelism` ≤ 0),
/// answering in the order asked.
pub async fn get_bulk(
    store: &dyn StateStore,
    keys: Vec<String>,
    parallelism: i32,
) -> Vec<(String, Result<Option<StateEntry>, ApiError>)> {
    let limit = usize::try_from(parallelism)
        .ok()
        .filter(|&p| p > 0)
        .unwrap_or(keys.len())
        .max(1);
    stream::iter(keys)
        .map(|key| async move {
            let entry = store.get(&key).await;
            (key, entry)
        })
        .buffered(limit)
        .collect()
        .await
}

/// The backend types of `state`.
pub(crate) const BACKENDS: Registry<dyn StateStore> = Registry {
    label: "state",
    kind: "state store",
    default_type: None,
    fields: &[],
    backends: &[
        ("in-memory", memory::build),
        ("redis", redis::build),
        ("etcd", etcd::build),
        ("zookeeper", zookeeper::build),
    ],
};

#[cfg(test)]
mod tests {
    use std::{
        cell::Cell,
        sync::atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    #[test]
    fn etag_rules() {
        use Concurrency::*;
        assert!(check_write("k", Some("1"), Some("1"), Unspecified).is_ok());
        assert!(check_write("k", Some("2"), Some("1"), Unspecified).is_err());
        assert!(check_write("k", None, Some("1"), Unspecified).is_err());
        assert!(check_write("k", Some("2"), None, Unspecified).is_ok());
        assert!(check_write("k", Some("2"), Some("1"), FirstWrite).is_err());
        assert!(check_write("k", Some("2"), None, FirstWrite).is_err());
        assert!(check_write("k", None, None, FirstWrite).is_ok());
        assert!(check_write("k", Some("2"), Some("1"), LastWrite).is_ok());
    }

    /// Counts how many reads overlap; each read yields once so that overlapping is possible.
    struct Overlap {
        active: AtomicUsize,
        peak: AtomicUsize,
    }

    impl Component for Overlap {}

    #[async_trait(?Send)]
    impl StateStore for Overlap {
        async fn get(&self, key: &str) -> Result<Option<StateEntry>, ApiError> {
            let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            let yielded = Cell::new(false);
            std::future::poll_fn(|cx| {
                if yielded.replace(true) {
                    std::task::Poll::Ready(())
                } else {
                    cx.waker().wake_by_ref();
                    std::task::Poll::Pending
                }
            })
            .await;
            self.active.fetch_sub(1, Ordering::SeqCst);
            Ok(Some(StateEntry {
                value: Bytes::from(key.to_owned()),
                etag: "1".into(),
            }))
        }

        async fn apply(&self, _: Vec<StateOperation>) -> Result<(), ApiError> {
            unreachable!("reads only")
        }
    }

    #[test]
    fn bulk_reads_honour_parallelism_and_order() {
        for (parallelism, peak) in [(1, 1), (3, 3), (0, 10), (-1, 10)] {
            let store = Overlap {
                active: AtomicUsize::new(0),
                peak: AtomicUsize::new(0),
            };
            let keys: Vec<String> = (0..10).map(|i| format!("k{i}")).collect();
            let items = futures_lite::future::block_on(get_bulk(&store, keys.clone(), parallelism));
            let got: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(got, keys.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(
                store.peak.load(Ordering::SeqCst),
                peak,
                "parallelism {parallelism}"
            );
        }
    }
}
