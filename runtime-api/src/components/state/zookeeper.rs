//! The `zookeeper` state store, as Dapr's `state.zookeeper` (which LayOtto serves): the value of
//! a key is the data of the persistent znode `<keyPrefixPath>/<key>`, its etag the znode's data
//! version. A batch becomes one multi request, atomic in zookeeper: a write or delete with an
//! etag is conditioned on that version, a first write is a create; the others (no etag, or
//! last-write) become a create, a write or a delete after a read of which keys exist, and the
//! batch is read and sent again if another writer changed that meanwhile. Unlike Dapr's, an etag
//! that is not a version fails the write (Dapr writes anyway), and a delete with an etag of a
//! missing key fails (Dapr answers success). `ttlInSeconds` is refused: zookeeper has no
//! expiry a read honours (Dapr's store ignores it). Calls run on the backend pool.

use std::{collections::HashMap, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::try_join_all;
use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError, MultiWriteError};

use super::{Concurrency, StateEntry, StateOperation, StateStore};
use crate::components::{
    component::Component,
    registry::Entry,
    zookeeper::{KeyPaths, ZookeeperConnection},
};
use crate::error::ApiError;

/// Times a batch is re-read and sent again when other writers keep changing its keys.
const ATTEMPTS: usize = 8;

/// A state store on zookeeper.
pub(super) struct ZookeeperStateStore {
    zk: ZookeeperConnection,
    paths: KeyPaths,
}

/// One znode change of a batch.
#[derive(Debug, Clone)]
struct Write {
    /// The key, for an etag mismatch.
    key: String,
    path: String,
    change: Change,
    /// Whether it carries the caller's condition (an etag, or create-only): its failure is an
    /// etag mismatch. Otherwise it rests on the read of which keys exist, and its failure means
    /// that changed.
    conditional: bool,
}

#[derive(Debug, Clone)]
enum Change {
    Create(Bytes),
    Set(Bytes, Option<i32>),
    Delete(Option<i32>),
}

/// The etag's version, or the mismatch it is bound to be.
fn version(key: &str, etag: &str) -> Result<i32, ApiError> {
    etag.parse()
        .map_err(|_| ApiError::EtagMismatch(key.to_owned()))
}

/// Turns `operations` into znode writes, knowing which keys exist (`exists`, updated as the
/// batch goes; a later operation on a key sees the earlier ones, as zookeeper applies them).
fn plan(
    operations: &[StateOperation],
    paths: &KeyPaths,
    mut exists: HashMap<String, bool>,
) -> Result<Vec<Write>, ApiError> {
    let mut writes = Vec::with_capacity(operations.len());
    for operation in operations {
        let key = operation.key().to_owned();
        let path = paths.path(&key)?;
        let present = exists.get(&key).copied().unwrap_or(false);
        let (change, conditional) = match operation {
            StateOperation::Upsert {
                value,
                etag,
                concurrency,
                ..
            } => match (concurrency, etag) {
                (Concurrency::LastWrite, _) | (Concurrency::Unspecified, None) if present => {
                    (Change::Set(value.clone(), None), false)
                }
                (Concurrency::LastWrite, _) | (Concurrency::Unspecified, None) => {
                    (Change::Create(value.clone()), false)
                }
                (_, Some(etag)) => (Change::Set(value.clone(), Some(version(&key, etag)?)), true),
                (Concurrency::FirstWrite, None) => (Change::Create(value.clone()), true),
            },
            StateOperation::Delete {
                etag, concurrency, ..
            } => match (concurrency, etag) {
                (Concurrency::LastWrite, _) | (Concurrency::Unspecified, None) if !present => {
                    continue;
                }
                (Concurrency::LastWrite, _) | (Concurrency::Unspecified, None) => {
                    (Change::Delete(None), false)
                }
                (_, Some(etag)) => (Change::Delete(Some(version(&key, etag)?)), true),
                // Only an absent key passes first-write without an etag; deleting it is a no-op.
                (Concurrency::FirstWrite, None) if present => {
                    return Err(ApiError::EtagMismatch(key));
                }
                (Concurrency::FirstWrite, None) => continue,
            },
        };
        exists.insert(key.clone(), !matches!(change, Change::Delete(_)));
        writes.push(Write {
            key,
            path,
            change,
            conditional,
        });
    }
    Ok(writes)
}

/// What sending a batch came to.
enum Sent {
    Committed,
    Mismatch(String),
    /// A key's existence changed since it was read: read again.
    Raced,
}

/// Sends `writes` as one multi request.
async fn send(client: &Client, writes: &[Write]) -> Result<Sent, ZkError> {
    if writes.is_empty() {
        return Ok(Sent::Committed);
    }
    let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
    let mut multi = client.new_multi_writer();
    for write in writes {
        match &write.change {
            Change::Create(value) => multi.add_create(&write.path, value, &persistent)?,
            Change::Set(value, version) => multi.add_set_data(&write.path, value, *version)?,
            Change::Delete(version) => multi.add_delete(&write.path, *version)?,
        }
    }
    match multi.commit().await {
        Ok(_) => Ok(Sent::Committed),
        Err(MultiWriteError::OperationFailed { index, source }) => {
            let lost = matches!(
                source,
                ZkError::NoNode | ZkError::NodeExists | ZkError::BadVersion
            );
            match writes.get(index) {
                Some(write) if lost && write.conditional => Ok(Sent::Mismatch(write.key.clone())),
                Some(_) if lost => Ok(Sent::Raced),
                _ => Err(source),
            }
        }
        Err(MultiWriteError::RequestFailed { source }) => Err(source),
    }
}

#[async_trait(?Send)]
impl Component for ZookeeperStateStore {
    async fn start(&self) -> Result<(), ApiError> {
        self.zk.connect(&self.paths).await
    }

    async fn health(&self) -> Result<(), ApiError> {
        self.zk.health().await
    }

    async fn close(&self) {
        self.zk.close().await;
    }
}

#[async_trait(?Send)]
impl StateStore for ZookeeperStateStore {
    async fn get(&self, key: &str) -> Result<Option<StateEntry>, ApiError> {
        let path = self.paths.path(key)?;
        self.zk
            .call(move |client| async move {
                match client.get_data(&path).await {
                    Ok((data, stat)) => Ok(Some(StateEntry {
                        value: Bytes::from(data),
                        etag: stat.version.to_string(),
                    })),
                    Err(ZkError::NoNode) => Ok(None),
                    Err(err) => Err(err),
                }
            })
            .await
    }

    async fn apply(&self, operations: Vec<StateOperation>) -> Result<(), ApiError> {
        if let Some(operation) = operations
            .iter()
            .find(|o| matches!(o, StateOperation::Upsert { ttl: Some(_), .. }))
        {
            return Err(ApiError::InvalidArgument(format!(
                "{}: zookeeper keeps no expiry; ttlInSeconds of key \"{}\" is not supported",
                self.zk.describe(),
                operation.key()
            )));
        }
        let mut keys: Vec<String> = operations.iter().map(|o| o.key().to_owned()).collect();
        keys.sort();
        keys.dedup();
        let paths = keys
            .iter()
            .map(|key| self.paths.path(key))
            .collect::<Result<Vec<_>, _>>()?;
        let (key_paths, describe) = (self.paths.clone(), self.zk.describe());
        self.zk
            .call(move |client| async move {
                for _ in 0..ATTEMPTS {
                    let stats =
                        try_join_all(paths.iter().map(|path| client.check_stat(path))).await?;
                    let exists = keys
                        .iter()
                        .cloned()
                        .zip(stats.iter().map(Option::is_some))
                        .collect();
                    let writes = match plan(&operations, &key_paths, exists) {
                        Ok(writes) => writes,
                        Err(err) => return Ok(Err(err)),
                    };
                    match send(&client, &writes).await? {
                        Sent::Committed => return Ok(Ok(())),
                        Sent::Mismatch(key) => return Ok(Err(ApiError::EtagMismatch(key))),
                        Sent::Raced => continue,
                    }
                }
                Ok(Err(ApiError::unavailable(format!(
                    "{describe}: the keys kept changing under {ATTEMPTS} attempts"
                ))))
            })
            .await?
    }
}

/// Builds one from its entry (Dapr's keys: `servers`, `sessionTimeout`, `keyPrefixPath`,
/// default `/`).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn StateStore>> {
    let (zk, paths) = ZookeeperConnection::from_entry(entry, "servers")?;
    Some(Arc::new(ZookeeperStateStore { zk, paths }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upsert(key: &str, etag: Option<&str>, concurrency: Concurrency) -> StateOperation {
        StateOperation::Upsert {
            key: key.into(),
            value: Bytes::from_static(b"v"),
            etag: etag.map(Into::into),
            concurrency,
            ttl: None,
        }
    }

    fn delete(key: &str, etag: Option<&str>, concurrency: Concurrency) -> StateOperation {
        StateOperation::Delete {
            key: key.into(),
            etag: etag.map(Into::into),
            concurrency,
        }
    }

    fn kinds(writes: &[Write]) -> Vec<String> {
        writes
            .iter()
            .map(|w| {
                let change = match &w.change {
                    Change::Create(_) => "create".to_owned(),
                    Change::Set(_, v) => format!("set{v:?}"),
                    Change::Delete(v) => format!("delete{v:?}"),
                };
                format!("{}:{change}:{}", w.key, w.conditional)
            })
            .collect()
    }

    #[test]
    fn batches_become_conditioned_znode_writes() {
        use Concurrency::*;
        let paths = KeyPaths::new("/state").unwrap();
        let exists = HashMap::from([("a".to_owned(), true), ("b".to_owned(), false)]);
        let writes = plan(
            &[
                upsert("a", None, Unspecified),
                upsert("b", None, LastWrite),
                upsert("b", Some("0"), Unspecified),
                delete("a", Some("bogus"), LastWrite),
                // `a` is gone after the delete above: this one is a no-op.
                delete("a", None, Unspecified),
                delete("c", None, Unspecified),
                upsert("c", None, FirstWrite),
            ],
            &paths,
            exists.clone(),
        )
        .unwrap();
        assert_eq!(
            kinds(&writes),
            [
                "a:setNone:false",
                "b:create:false",
                "b:setSome(0):true",
                "a:deleteNone:false",
                "c:create:true",
            ]
        );
        assert_eq!(writes[0].path, "/state/a");
        assert!(
            matches!(plan(&[upsert("a", Some("x"), Unspecified)], &paths, exists.clone()), Err(ApiError::EtagMismatch(k)) if k == "a")
        );
        assert!(
            matches!(plan(&[delete("a", None, FirstWrite)], &paths, exists), Err(ApiError::EtagMismatch(k)) if k == "a")
        );
    }
}
