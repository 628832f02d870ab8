//! The `in-memory` state store: one map shared by every shard (one view of the data), guarded by a
//! mutex held only for the few map operations of a call, never across an await. Transactions are
//! checked against a staged view and committed only if every operation passes. Entries with a TTL
//! expire lazily.

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;

use super::{StateEntry, StateOperation, StateStore, check_write};
use crate::components::{component::Component, registry::Entry as ConfigEntry};
use crate::error::ApiError;
use layotto_core::clock::Clock;
use std::sync::Arc;

#[derive(Debug, Clone)]
struct Entry {
    value: Bytes,
    etag: u64,
    /// When it expires, on the store's clock.
    expires: Option<Duration>,
}

impl Entry {
    fn live(&self, now: Duration) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    last_etag: u64,
}

/// An in-process state store.
#[expect(
    clippy::disallowed_types,
    reason = "one view of the data for every shard; held for a few map operations, never across an await"
)]
pub struct InMemoryStateStore {
    inner: std::sync::Mutex<Inner>,
    clock: Arc<dyn Clock>,
}

impl InMemoryStateStore {
    /// An empty store whose TTLs run on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Default::default(),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Component for InMemoryStateStore {}

#[async_trait(?Send)]
impl StateStore for InMemoryStateStore {
    async fn get(&self, key: &str) -> Result<Option<StateEntry>, ApiError> {
        let now = self.clock.now();
        Ok(self
            .lock()
            .entries
            .get(key)
            .filter(|e| e.live(now))
            .map(|e| StateEntry {
                value: e.value.clone(),
                etag: e.etag.to_string(),
            }))
    }

    async fn scan(&self, prefix: &str) -> Result<Option<Vec<(String, StateEntry)>>, ApiError> {
        let now = self.clock.now();
        let mut found: Vec<(String, StateEntry)> = self
            .lock()
            .entries
            .iter()
            .filter(|(key, entry)| key.starts_with(prefix) && entry.live(now))
            .map(|(key, entry)| {
                let entry = StateEntry {
                    value: entry.value.clone(),
                    etag: entry.etag.to_string(),
                };
                (key.clone(), entry)
            })
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Some(found))
    }

    async fn apply(&self, operations: Vec<StateOperation>) -> Result<(), ApiError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        let mut last_etag = inner.last_etag;
        // The outcome of each touched key so far, checked against before the store is changed.
        let mut staged: HashMap<String, Option<Entry>> = HashMap::new();
        for operation in operations {
            let key = operation.key();
            let current = match staged.get(key) {
                Some(staged) => staged.clone(),
                None => inner.entries.get(key).filter(|e| e.live(now)).cloned(),
            };
            let current_etag = current.as_ref().map(|e| e.etag.to_string());
            let outcome = match operation {
                StateOperation::Upsert {
                    key,
                    value,
                    etag,
                    concurrency,
                    ttl,
                } => {
                    check_write(&key, current_etag.as_deref(), etag.as_deref(), concurrency)?;
                    last_etag += 1;
                    let entry = Entry {
                        value,
                        etag: last_etag,
                        expires: ttl.map(|ttl| now + ttl),
                    };
                    (key, Some(entry))
                }
                StateOperation::Delete {
                    key,
                    etag,
                    concurrency,
                } => {
                    check_write(&key, current_etag.as_deref(), etag.as_deref(), concurrency)?;
                    (key, None)
                }
            };
            staged.insert(outcome.0, outcome.1);
        }
        inner.last_etag = last_etag;
        for (key, entry) in staged {
            match entry {
                Some(entry) => inner.entries.insert(key, entry),
                None => inner.entries.remove(&key),
            };
        }
        Ok(())
    }
}

/// Builds one from its entry (in-memory: no settings; TTLs on the runtime's clock).
pub(super) fn build(entry: &mut ConfigEntry<'_>) -> Option<Arc<dyn StateStore>> {
    Some(Arc::new(InMemoryStateStore::new(entry.clock())))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_lite::future::block_on;

    use layotto_core::clock::ManualClock;

    use super::*;
    use crate::components::state::Concurrency;

    fn upsert(key: &str, value: &str, etag: Option<&str>) -> StateOperation {
        StateOperation::Upsert {
            key: key.into(),
            value: Bytes::from(value.to_owned()),
            etag: etag.map(Into::into),
            concurrency: Concurrency::Unspecified,
            ttl: None,
        }
    }

    #[test]
    fn etags_change_on_every_write() {
        let store = InMemoryStateStore::new(Arc::new(ManualClock::default()));
        block_on(store.apply(vec![upsert("k", "a", None)])).unwrap();
        let first = block_on(store.get("k")).unwrap().unwrap();
        block_on(store.apply(vec![upsert("k", "b", Some(&first.etag))])).unwrap();
        let second = block_on(store.get("k")).unwrap().unwrap();
        assert_ne!(first.etag, second.etag);
        assert_eq!(second.value, "b");
        let stale = block_on(store.apply(vec![upsert("k", "c", Some(&first.etag))]));
        assert!(matches!(stale, Err(ApiError::EtagMismatch(k)) if k == "k"));
        assert_eq!(block_on(store.get("k")).unwrap().unwrap().value, "b");
    }

    #[test]
    fn a_failing_operation_rolls_back_the_whole_batch() {
        let store = InMemoryStateStore::new(Arc::new(ManualClock::default()));
        block_on(store.apply(vec![upsert("a", "1", None)])).unwrap();
        let batch = vec![
            upsert("b", "2", None),
            StateOperation::Delete {
                key: "a".into(),
                etag: None,
                concurrency: Concurrency::Unspecified,
            },
            upsert("c", "3", Some("999")),
        ];
        assert!(block_on(store.apply(batch)).is_err());
        assert!(block_on(store.get("a")).unwrap().is_some());
        assert!(block_on(store.get("b")).unwrap().is_none());
    }

    #[test]
    fn later_operations_see_earlier_ones_in_the_same_batch() {
        let store = InMemoryStateStore::new(Arc::new(ManualClock::default()));
        let first_write = StateOperation::Upsert {
            key: "k".into(),
            value: Bytes::from_static(b"x"),
            etag: None,
            concurrency: Concurrency::FirstWrite,
            ttl: None,
        };
        // The second first-write of the same key fails: the first one is staged.
        assert!(block_on(store.apply(vec![first_write.clone(), first_write])).is_err());
        assert!(block_on(store.get("k")).unwrap().is_none());
    }

    #[test]
    fn entries_expire_after_their_ttl() {
        let clock = Arc::new(ManualClock::default());
        let store = InMemoryStateStore::new(clock.clone());
        let with_ttl = StateOperation::Upsert {
            key: "k".into(),
            value: Bytes::from_static(b"x"),
            etag: None,
            concurrency: Concurrency::Unspecified,
            ttl: Some(Duration::from_millis(50)),
        };
        block_on(store.apply(vec![with_ttl])).unwrap();
        clock.advance(Duration::from_millis(49));
        assert!(block_on(store.get("k")).unwrap().is_some());
        clock.advance(Duration::from_millis(1));
        assert!(block_on(store.get("k")).unwrap().is_none());
    }
}
