//! The `etcd` state store: the value of a key lives at `<keyPrefixPath>/<key>` and its etag is
//! the key's modification revision. A batch reads every key it touches in one snapshot, checks
//! the operations in order against it (later ones seeing earlier ones), then commits all writes
//! in one transaction conditioned on none of those keys having changed since — retried from the
//! read when another writer got in between — so it is atomic. A TTL binds the key to a lease.

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};

use super::{StateEntry, StateOperation, StateStore, check_write};
use crate::components::{component::Component, registry::Entry};
use crate::{components::etcd::EtcdConnection, error::ApiError};
use std::sync::Arc;

/// Times a batch is re-read and re-checked when other writers keep changing its keys.
const ATTEMPTS: usize = 8;

/// A state store on etcd.
pub struct EtcdStateStore {
    etcd: EtcdConnection,
    prefix: String,
}

impl EtcdStateStore {
    /// A store over `etcd` under `prefix`; connects in [`StateStore::connect`].
    pub fn new(etcd: EtcdConnection, prefix: String) -> Self {
        Self { etcd, prefix }
    }

    fn key(&self, key: &str) -> String {
        format!("{}/{key}", self.prefix.trim_end_matches('/'))
    }
}

/// What a batch decided for one key: its new value and TTL, or deletion.
type Outcome = Option<(Bytes, Option<Duration>)>;

/// Checks `operations` in order against the `current` revisions (0: absent), answering the
/// final outcome of each touched key.
fn plan(
    operations: Vec<StateOperation>,
    current: &HashMap<String, i64>,
) -> Result<Vec<(String, Outcome)>, ApiError> {
    let mut staged: HashMap<String, (Option<String>, Outcome)> = HashMap::new();
    let mut order = Vec::new();
    for operation in operations {
        let key = operation.key().to_owned();
        let etag = match staged.get(&key) {
            // A key written earlier in the batch has no revision yet: only "exists" is known.
            Some((etag, _)) => etag.clone(),
            None => current
                .get(&key)
                .filter(|&&revision| revision > 0)
                .map(|revision| revision.to_string()),
        };
        let outcome = match operation {
            StateOperation::Upsert {
                value,
                etag: expected,
                concurrency,
                ttl,
                ..
            } => {
                check_write(&key, etag.as_deref(), expected.as_deref(), concurrency)?;
                (Some("staged".to_owned()), Some((value, ttl)))
            }
            StateOperation::Delete {
                etag: expected,
                concurrency,
                ..
            } => {
                check_write(&key, etag.as_deref(), expected.as_deref(), concurrency)?;
                (None, None)
            }
        };
        if !staged.contains_key(&key) {
            order.push(key.clone());
        }
        staged.insert(key, outcome);
    }
    Ok(order
        .into_iter()
        .map(|key| {
            let outcome = staged.remove(&key).and_then(|(_, outcome)| outcome);
            (key, outcome)
        })
        .collect())
}

#[async_trait(?Send)]
impl Component for EtcdStateStore {
    async fn start(&self) -> Result<(), ApiError> {
        self.etcd.connect().await
    }

    async fn health(&self) -> Result<(), ApiError> {
        self.etcd.health().await
    }
}

#[async_trait(?Send)]
impl StateStore for EtcdStateStore {
    async fn get(&self, key: &str) -> Result<Option<StateEntry>, ApiError> {
        let key = self.key(key);
        let response = self
            .etcd
            .call(move |mut client| async move { client.get(key, None).await })
            .await?;
        Ok(response.kvs().first().map(|kv| StateEntry {
            value: Bytes::copy_from_slice(kv.value()),
            etag: kv.mod_revision().to_string(),
        }))
    }

    async fn apply(&self, operations: Vec<StateOperation>) -> Result<(), ApiError> {
        let mut keys: Vec<String> = operations.iter().map(|o| o.key().to_owned()).collect();
        keys.sort();
        keys.dedup();
        for _ in 0..ATTEMPTS {
            // One snapshot of every touched key.
            let stored: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
            let reads = stored
                .iter()
                .map(|k| TxnOp::get(k.clone(), None))
                .collect::<Vec<_>>();
            let snapshot = self
                .etcd
                .call(move |mut client| async move { client.txn(Txn::new().and_then(reads)).await })
                .await?;
            let mut current = HashMap::new();
            for (key, response) in keys.iter().zip(snapshot.op_responses()) {
                let revision = match response {
                    TxnOpResponse::Get(get) => get.kvs().first().map_or(0, |kv| kv.mod_revision()),
                    _ => 0,
                };
                current.insert(key.clone(), revision);
            }
            let outcomes = plan(operations.clone(), &current)?;
            let guards: Vec<Compare> = keys
                .iter()
                .map(|key| Compare::mod_revision(self.key(key), CompareOp::Equal, current[key]))
                .collect();
            let writes: Vec<(String, Outcome)> = outcomes
                .into_iter()
                .map(|(key, outcome)| (self.key(&key), outcome))
                .collect();
            let committed = self
                .etcd
                .call(move |mut client| async move {
                    let mut operations = Vec::with_capacity(writes.len());
                    for (key, outcome) in writes {
                        operations.push(match outcome {
                            None => TxnOp::delete(key, None),
                            Some((value, None)) => TxnOp::put(key, value.to_vec(), None),
                            Some((value, Some(ttl))) => {
                                let seconds = (ttl.as_secs_f64().ceil() as i64).max(1);
                                let lease = client.lease_grant(seconds, None).await?.id();
                                TxnOp::put(
                                    key,
                                    value.to_vec(),
                                    Some(PutOptions::new().with_lease(lease)),
                                )
                            }
                        });
                    }
                    let txn = Txn::new().when(guards).and_then(operations);
                    Ok(client.txn(txn).await?.succeeded())
                })
                .await?;
            if committed {
                return Ok(());
            }
        }
        Err(ApiError::unavailable(format!(
            "{}: the keys kept changing under {ATTEMPTS} attempts",
            self.etcd.describe()
        )))
    }
}

/// Builds one from its entry (LayOtto's etcd keys, under `/state` unless `keyPrefixPath` says).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn StateStore>> {
    let (etcd, prefix) = EtcdConnection::from_entry(entry, "/state")?;
    Some(Arc::new(EtcdStateStore::new(etcd, prefix)))
}
