//! The `etcd` lock store, as LayOtto's: a lock is the key `<keyPrefixPath>/<resource>` holding
//! the owner, bound to a lease of the expiry's length, created only if absent (transaction on
//! its create revision). Unlock deletes it and revokes the lease; keep-alive rebinds it to a new
//! lease of the asked length (etcd leases cannot change length), both only for the owner.

use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{Client, Compare, CompareOp, KeyValue, Txn, TxnOp};

use super::{LockStatus, LockStore};
use crate::components::{component::Component, registry::Entry};
use crate::{components::etcd::EtcdConnection, error::ApiError};
use std::sync::Arc;

/// A lock store on etcd.
pub struct EtcdLockStore {
    etcd: EtcdConnection,
    prefix: String,
}

impl EtcdLockStore {
    /// A store over `etcd` keeping locks under `prefix`; connects in [`LockStore::connect`].
    pub fn new(etcd: EtcdConnection, prefix: String) -> Self {
        Self { etcd, prefix }
    }

    fn key(&self, resource: &str) -> String {
        format!("{}/{resource}", self.prefix.trim_end_matches('/'))
    }
}

/// The lock at `key` if `owner` holds it, else what holds instead (nobody, someone else).
async fn held_by(
    client: &mut Client,
    key: &str,
    owner: &str,
) -> Result<Result<KeyValue, LockStatus>, etcd_client::Error> {
    let response = client.get(key, None).await?;
    Ok(match response.kvs().first() {
        None => Err(LockStatus::Unexist),
        Some(kv) if kv.value() != owner.as_bytes() => Err(LockStatus::BelongsToOthers),
        Some(kv) => Ok(kv.clone()),
    })
}

/// Lease length in whole seconds (etcd's unit), at least 1.
fn ttl(expire: Duration) -> i64 {
    (expire.as_secs_f64().ceil() as i64).max(1)
}

#[async_trait(?Send)]
impl Component for EtcdLockStore {
    async fn start(&self) -> Result<(), ApiError> {
        self.etcd.connect().await
    }

    async fn health(&self) -> Result<(), ApiError> {
        self.etcd.health().await
    }
}

#[async_trait(?Send)]
impl LockStore for EtcdLockStore {
    async fn try_lock(
        &self,
        resource: &str,
        owner: &str,
        expire: Duration,
    ) -> Result<bool, ApiError> {
        let (key, owner) = (self.key(resource), owner.to_owned());
        self.etcd
            .call(move |mut client| async move {
                let lease = client.lease_grant(ttl(expire), None).await?.id();
                let take = Txn::new()
                    .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(
                        key,
                        owner,
                        Some(etcd_client::PutOptions::new().with_lease(lease)),
                    )]);
                let taken = client.txn(take).await?.succeeded();
                if !taken {
                    client.lease_revoke(lease).await?;
                }
                Ok(taken)
            })
            .await
    }

    async fn unlock(&self, resource: &str, owner: &str) -> Result<LockStatus, ApiError> {
        let (key, owner) = (self.key(resource), owner.to_owned());
        self.etcd
            .call(move |mut client| async move {
                let kv = match held_by(&mut client, &key, &owner).await? {
                    Ok(kv) => kv,
                    Err(status) => return Ok(status),
                };
                let lease = kv.lease();
                // Delete only what we looked at: a lock re-taken meanwhile is left alone.
                let release = Txn::new()
                    .when([Compare::mod_revision(
                        key.clone(),
                        CompareOp::Equal,
                        kv.mod_revision(),
                    )])
                    .and_then([TxnOp::delete(key, None)]);
                if !client.txn(release).await?.succeeded() {
                    return Ok(LockStatus::BelongsToOthers);
                }
                if lease != 0 {
                    let _ = client.lease_revoke(lease).await;
                }
                Ok(LockStatus::Success)
            })
            .await
    }

    async fn keep_alive(
        &self,
        resource: &str,
        owner: &str,
        expire: Duration,
    ) -> Result<LockStatus, ApiError> {
        let (key, owner) = (self.key(resource), owner.to_owned());
        self.etcd
            .call(move |mut client| async move {
                let kv = match held_by(&mut client, &key, &owner).await? {
                    Ok(kv) => kv,
                    Err(status) => return Ok(status),
                };
                let old_lease = kv.lease();
                let lease = client.lease_grant(ttl(expire), None).await?.id();
                let rebind = Txn::new()
                    .when([Compare::mod_revision(
                        key.clone(),
                        CompareOp::Equal,
                        kv.mod_revision(),
                    )])
                    .and_then([TxnOp::put(
                        key,
                        owner,
                        Some(etcd_client::PutOptions::new().with_lease(lease)),
                    )]);
                if !client.txn(rebind).await?.succeeded() {
                    client.lease_revoke(lease).await?;
                    return Ok(LockStatus::Unexist);
                }
                if old_lease != 0 {
                    let _ = client.lease_revoke(old_lease).await;
                }
                Ok(LockStatus::Success)
            })
            .await
    }
}

/// Builds one from its entry (LayOtto's etcd keys, under `/lock` unless `keyPrefixPath` says).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn LockStore>> {
    let (etcd, prefix) = EtcdConnection::from_entry(entry, "/lock")?;
    Some(Arc::new(EtcdLockStore::new(etcd, prefix)))
}
