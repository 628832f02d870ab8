//! The `etcd` id store: the counter of a key lives at `<keyPrefixPath>/<key>` as a decimal
//! string, advanced by compare-and-swap on its modification revision (retried on conflict), so
//! concurrent sidecars never hand out the same id.

use async_trait::async_trait;
use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use super::{IdStore, Sequencer};
use crate::components::{component::Component, registry::Entry};
use crate::{components::etcd::EtcdConnection, error::ApiError};
use std::sync::Arc;

/// Counters in etcd.
pub struct EtcdIdStore {
    etcd: EtcdConnection,
    prefix: String,
}

impl EtcdIdStore {
    /// Counters over `etcd` under `prefix`; connects in [`IdStore::connect`].
    pub fn new(etcd: EtcdConnection, prefix: String) -> Self {
        Self { etcd, prefix }
    }
}

#[async_trait(?Send)]
impl Component for EtcdIdStore {
    async fn start(&self) -> Result<(), ApiError> {
        self.etcd.connect().await
    }

    async fn health(&self) -> Result<(), ApiError> {
        self.etcd.health().await
    }
}

#[async_trait(?Send)]
impl IdStore for EtcdIdStore {
    async fn reserve(&self, key: &str, count: u32) -> Result<i64, ApiError> {
        let key = format!("{}/{key}", self.prefix.trim_end_matches('/'));
        let last = self
            .etcd
            .call(move |mut client| async move {
                loop {
                    let response = client.get(key.clone(), None).await?;
                    let (current, revision) = match response.kvs().first() {
                        Some(kv) => (
                            std::str::from_utf8(kv.value())
                                .ok()
                                .and_then(|v| v.parse::<i64>().ok()),
                            kv.mod_revision(),
                        ),
                        None => (Some(0), 0),
                    };
                    let Some(current) = current else {
                        return Ok(None);
                    };
                    let next = current + i64::from(count);
                    let advance = Txn::new()
                        .when([Compare::mod_revision(
                            key.clone(),
                            CompareOp::Equal,
                            revision,
                        )])
                        .and_then([TxnOp::put(key.clone(), next.to_string(), None)]);
                    if client.txn(advance).await?.succeeded() {
                        return Ok(Some(next));
                    }
                }
            })
            .await?;
        last.ok_or_else(|| {
            ApiError::internal(format!(
                "{}: the counter is not a number",
                self.etcd.describe()
            ))
        })
    }
}

/// Builds one from its entry (LayOtto's etcd keys, under `/sequencer` unless `keyPrefixPath` says).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<Sequencer>> {
    let (etcd, prefix) = EtcdConnection::from_entry(entry, "/sequencer")?;
    Sequencer::over(entry, Arc::new(EtcdIdStore::new(etcd, prefix)))
}
