//! The `zookeeper` id store, as LayOtto's: the ids of a key are the data versions of the znode
//! `<keyPrefixPath>/<key>`. Each id is one unconditional write (zookeeper adds one to the version
//! atomically, so concurrent sidecars never get the same id); a segment of `n` ids is `n` writes
//! in one multi request, so its ids are consecutive. Unlike LayOtto, which creates the znode
//! ephemeral (so its ids start over whenever its session ends), the znode is persistent: ids
//! keep growing across restarts. Versions are 32-bit: past 2 147 483 647 ids a key fails, as
//! LayOtto's does. Calls run on the backend pool.

use std::sync::Arc;

use async_trait::async_trait;
use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError, MultiWriteResult};

use super::{IdStore, Sequencer};
use crate::components::{
    component::Component,
    registry::Entry,
    zookeeper::{KeyPaths, ZookeeperConnection},
};
use crate::error::ApiError;

/// Counters in zookeeper znode versions.
pub(super) struct ZookeeperIdStore {
    zk: ZookeeperConnection,
    paths: KeyPaths,
}

/// Writes the znode at `path` `count` times (atomically), answering its version after the last.
async fn advance(client: &Client, path: &str, count: u32) -> Result<i32, ZkError> {
    if count == 1 {
        return Ok(client.set_data(path, b"", None).await?.version);
    }
    let mut writes = client.new_multi_writer();
    for _ in 0..count {
        writes.add_set_data(path, b"", None)?;
    }
    let results = writes.commit().await?;
    match results.last() {
        Some(MultiWriteResult::SetData { stat }) => Ok(stat.version),
        other => Err(ZkError::UnexpectedError(format!(
            "a multi of writes answered {other:?}"
        ))),
    }
}

#[async_trait(?Send)]
impl Component for ZookeeperIdStore {
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
impl IdStore for ZookeeperIdStore {
    async fn reserve(&self, key: &str, count: u32) -> Result<i64, ApiError> {
        let path = self.paths.path(key)?;
        let last = self
            .zk
            .call(move |client| async move {
                loop {
                    match advance(&client, &path, count).await {
                        Err(ZkError::NoNode) => {
                            let persistent = CreateMode::Persistent.with_acls(Acls::anyone_all());
                            match client.create(&path, b"", &persistent).await {
                                Ok(_) | Err(ZkError::NodeExists) => continue,
                                Err(err) => return Err(err),
                            }
                        }
                        result => return result,
                    }
                }
            })
            .await?;
        // Created at version 0, so the first id is 1; a version that wrapped is not an id.
        if i64::from(last) < i64::from(count) {
            return Err(ApiError::internal(format!(
                "{}: the version of key \"{key}\" overflowed 32 bits (zookeeper ids end at {})",
                self.zk.describe(),
                i32::MAX
            )));
        }
        Ok(i64::from(last))
    }
}

/// Builds one from its entry (LayOtto's keys: `zookeeperHosts`, `sessionTimeout`; counters at
/// the root unless `keyPrefixPath` says).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<Sequencer>> {
    let (zk, paths) = ZookeeperConnection::from_entry(entry, "zookeeperHosts")?;
    Sequencer::over(entry, Arc::new(ZookeeperIdStore { zk, paths }))
}
