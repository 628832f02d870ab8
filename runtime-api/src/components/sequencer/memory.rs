//! The `in-memory` id store: one counter per key, shared by all shards behind a short lock.

use std::collections::HashMap;

use async_trait::async_trait;

use super::{IdStore, Sequencer};
use crate::components::{component::Component, registry::Entry};
use crate::error::ApiError;
use std::sync::Arc;

/// In-memory counters.
#[derive(Default)]
#[expect(
    clippy::disallowed_types,
    reason = "ids must grow across all shards; held for one increment, never across an await"
)]
pub struct InMemoryIdStore {
    counters: std::sync::Mutex<HashMap<String, i64>>,
}

impl Component for InMemoryIdStore {}

#[async_trait(?Send)]
impl IdStore for InMemoryIdStore {
    async fn reserve(&self, key: &str, count: u32) -> Result<i64, ApiError> {
        let mut counters = self.counters.lock().expect("sequencer poisoned");
        let counter = counters.entry(key.to_owned()).or_insert(0);
        *counter += i64::from(count);
        Ok(*counter)
    }
}

/// Builds one from its entry (in-memory: no settings).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<Sequencer>> {
    Sequencer::over(entry, Arc::new(InMemoryIdStore::default()))
}
