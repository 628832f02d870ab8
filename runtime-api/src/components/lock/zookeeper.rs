//! The `zookeeper` lock store, as LayOtto's: a lock is the ephemeral znode
//! `<keyPrefixPath>/<resource>` holding the owner, created by a session of its own whose timeout
//! is the lock's expiry. The session is closed when the expiry passes, which removes the znode;
//! if layotto-rs dies first, zookeeper expires the session (after the negotiated timeout, which
//! the server bounds by its `maxSessionTimeout`) and the lock goes with it. A taken lock is seen
//! through the component's shared session first, so contention opens no session. Unlock reads
//! the znode through the shared session, checks the owner and deletes it at the version read.
//! Keep-alive (which LayOtto leaves unimplemented) moves the close of the lock's session later;
//! only the layotto-rs that took a lock holds its session, so only it can keep the lock alive.
//! Calls run on the backend pool; the held sessions and their release timers live there too.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use tokio::time::Instant;
use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError, SessionId};

use super::{LockStatus, LockStore};
use crate::components::{
    component::Component,
    registry::Entry,
    zookeeper::{KeyPaths, ZookeeperConnection},
};
use crate::error::ApiError;

/// A lock store on zookeeper.
pub(super) struct ZookeeperLockStore {
    zk: ZookeeperConnection,
    paths: KeyPaths,
    held: Arc<HeldLocks>,
}

/// The sessions of the locks this process took, by znode path.
#[derive(Default)]
#[expect(
    clippy::disallowed_types,
    reason = "touched only on the backend pool's tokio threads, never held across an await"
)]
struct HeldLocks(std::sync::Mutex<HashMap<String, Held>>);

/// One lock's session and when it is to be closed.
struct Held {
    client: Client,
    release_at: Instant,
}

impl HeldLocks {
    /// Keeps `client`, whose session holds the znode `path`, until `expire` from now (tokio).
    fn hold(self: &Arc<Self>, path: String, client: Client, expire: Duration) {
        let session = client.session_id();
        let release_at = Instant::now() + expire;
        // A lock taken here before whose znode is gone: its session holds nothing any more.
        self.locked()
            .insert(path.clone(), Held { client, release_at });
        let held = Arc::clone(self);
        tokio::spawn(async move {
            while let Some(release_at) = held.release_at(&path, session) {
                if release_at <= Instant::now() {
                    held.release(&path, session);
                    return;
                }
                tokio::time::sleep_until(release_at).await;
            }
        });
    }

    /// When the lock at `path` held by `session` is to be released, if it still is held here.
    fn release_at(&self, path: &str, session: SessionId) -> Option<Instant> {
        self.locked()
            .get(path)
            .filter(|held| held.client.session_id() == session)
            .map(|held| held.release_at)
    }

    /// Moves the release of the lock at `path` held by `session` to `expire` from now; `false`
    /// if no session of this process holds it.
    fn extend(&self, path: &str, session: SessionId, expire: Duration) -> bool {
        let mut locked = self.locked();
        match locked.get_mut(path) {
            Some(held) if held.client.session_id() == session => {
                held.release_at = Instant::now() + expire;
                true
            }
            _ => false,
        }
    }

    /// Closes the session holding `path` if it is `session` (which removes the znode).
    fn release(&self, path: &str, session: SessionId) {
        let mut locked = self.locked();
        if locked
            .get(path)
            .is_some_and(|held| held.client.session_id() == session)
        {
            // Dropping the last client closes the session.
            locked.remove(path);
        }
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The owner in a lock znode's data, else what holds instead (nobody, someone else), with the
/// znode's version and the session holding it.
async fn held_by(
    client: &Client,
    path: &str,
    owner: &str,
) -> Result<Result<(i32, SessionId), LockStatus>, ZkError> {
    match client.get_data(path).await {
        Ok((data, _)) if data != owner.as_bytes() => Ok(Err(LockStatus::BelongsToOthers)),
        Ok((_, stat)) => Ok(Ok((stat.version, SessionId(stat.ephemeral_owner)))),
        Err(ZkError::NoNode) => Ok(Err(LockStatus::Unexist)),
        Err(err) => Err(err),
    }
}

#[async_trait(?Send)]
impl Component for ZookeeperLockStore {
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
impl LockStore for ZookeeperLockStore {
    async fn try_lock(
        &self,
        resource: &str,
        owner: &str,
        expire: Duration,
    ) -> Result<bool, ApiError> {
        let (path, owner) = (self.paths.path(resource)?, owner.to_owned());
        let (opener, held) = (self.zk.opener(), self.held.clone());
        self.zk
            .call(move |shared| async move {
                if shared.check_stat(&path).await?.is_some() {
                    return Ok(false);
                }
                let session = opener.open(expire).await?;
                let ephemeral = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
                match session.create(&path, owner.as_bytes(), &ephemeral).await {
                    Ok(_) => {
                        held.hold(path, session, expire);
                        Ok(true)
                    }
                    // Taken meanwhile; dropping `session` closes it.
                    Err(ZkError::NodeExists) => Ok(false),
                    Err(err) => Err(err),
                }
            })
            .await
    }

    async fn unlock(&self, resource: &str, owner: &str) -> Result<LockStatus, ApiError> {
        let (path, owner) = (self.paths.path(resource)?, owner.to_owned());
        let held = self.held.clone();
        self.zk
            .call(move |shared| async move {
                let (version, session) = match held_by(&shared, &path, &owner).await? {
                    Ok(found) => found,
                    Err(status) => return Ok(status),
                };
                match shared.delete(&path, Some(version)).await {
                    Ok(()) => {}
                    Err(ZkError::NoNode) => return Ok(LockStatus::Unexist),
                    Err(ZkError::BadVersion) => return Ok(LockStatus::BelongsToOthers),
                    Err(err) => return Err(err),
                }
                held.release(&path, session);
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
        let (path, owner) = (self.paths.path(resource)?, owner.to_owned());
        let held = self.held.clone();
        let kept = self
            .zk
            .call(move |shared| async move {
                Ok(match held_by(&shared, &path, &owner).await? {
                    Ok((_, session)) => held
                        .extend(&path, session, expire)
                        .then_some(LockStatus::Success),
                    Err(status) => Some(status),
                })
            })
            .await?;
        kept.ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "{}: lock \"{resource}\" was taken through another sidecar's zookeeper session; only that one can keep it alive",
                self.zk.describe()
            ))
        })
    }
}

/// Builds one from its entry (LayOtto's keys: `zookeeperHosts`, `sessionTimeout`; locks at the
/// root unless `keyPrefixPath` says).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn LockStore>> {
    let (zk, paths) = ZookeeperConnection::from_entry(entry, "zookeeperHosts")?;
    Some(Arc::new(ZookeeperLockStore {
        zk,
        paths,
        held: Arc::default(),
    }))
}
