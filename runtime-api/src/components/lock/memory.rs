//! The `in-memory` lock store: one map of holders and expiry times shared by all shards behind
//! a short lock; expired holds count as free.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use async_trait::async_trait;

use super::{LockStatus, LockStore};
use crate::components::{component::Component, registry::Entry};
use crate::error::ApiError;
use std::sync::Arc;

/// An in-memory lock store.
#[derive(Default)]
#[expect(
    clippy::disallowed_types,
    reason = "a lock must be one for every shard; held for one map operation, never across an await"
)]
pub struct InMemoryLockStore {
    holds: std::sync::Mutex<HashMap<String, (String, Instant)>>,
}

impl InMemoryLockStore {
    /// Applies `change` to `owner`'s live hold on `resource`, if it is theirs.
    fn with_hold(
        &self,
        resource: &str,
        owner: &str,
        change: impl FnOnce(&mut HashMap<String, (String, Instant)>),
    ) -> LockStatus {
        let mut holds = self.holds.lock().expect("lock store poisoned");
        match holds.get(resource) {
            Some((_, expires)) if *expires <= Instant::now() => {
                holds.remove(resource);
                LockStatus::Unexist
            }
            None => LockStatus::Unexist,
            Some((holder, _)) if holder != owner => LockStatus::BelongsToOthers,
            Some(_) => {
                change(&mut holds);
                LockStatus::Success
            }
        }
    }
}

impl Component for InMemoryLockStore {}

#[async_trait(?Send)]
impl LockStore for InMemoryLockStore {
    async fn try_lock(
        &self,
        resource: &str,
        owner: &str,
        expire: Duration,
    ) -> Result<bool, ApiError> {
        let mut holds = self.holds.lock().expect("lock store poisoned");
        let now = Instant::now();
        if holds
            .get(resource)
            .is_some_and(|(_, expires)| *expires > now)
        {
            return Ok(false);
        }
        holds.insert(resource.to_owned(), (owner.to_owned(), now + expire));
        Ok(true)
    }

    async fn unlock(&self, resource: &str, owner: &str) -> Result<LockStatus, ApiError> {
        Ok(self.with_hold(resource, owner, |holds| {
            holds.remove(resource);
        }))
    }

    async fn keep_alive(
        &self,
        resource: &str,
        owner: &str,
        expire: Duration,
    ) -> Result<LockStatus, ApiError> {
        Ok(self.with_hold(resource, owner, |holds| {
            if let Some(hold) = holds.get_mut(resource) {
                hold.1 = Instant::now() + expire;
            }
        }))
    }
}

/// Builds one from its entry (in-memory: no settings).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn LockStore>> {
    let _ = entry;
    Some(Arc::new(InMemoryLockStore::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(
        clippy::disallowed_methods,
        reason = "a test thread, not a shard: waits out a real hold (the store reads the clock)"
    )]
    fn only_the_owner_unlocks_and_holds_expire() {
        let store = InMemoryLockStore::default();
        futures_lite::future::block_on(async {
            let long = Duration::from_secs(60);
            assert!(store.try_lock("r", "a", long).await.unwrap());
            assert!(!store.try_lock("r", "b", long).await.unwrap());
            assert_eq!(
                store.unlock("r", "b").await.unwrap(),
                LockStatus::BelongsToOthers
            );
            assert_eq!(
                store.keep_alive("r", "b", long).await.unwrap(),
                LockStatus::BelongsToOthers
            );
            assert_eq!(store.unlock("x", "a").await.unwrap(), LockStatus::Unexist);
            assert_eq!(
                store.keep_alive("r", "a", long).await.unwrap(),
                LockStatus::Success
            );
            assert_eq!(store.unlock("r", "a").await.unwrap(), LockStatus::Success);
            assert_eq!(store.unlock("r", "a").await.unwrap(), LockStatus::Unexist);
            assert!(
                store
                    .try_lock("s", "a", Duration::from_millis(20))
                    .await
                    .unwrap()
            );
            std::thread::sleep(Duration::from_millis(30));
            assert_eq!(store.unlock("s", "a").await.unwrap(), LockStatus::Unexist);
            assert!(store.try_lock("s", "b", long).await.unwrap());
        });
    }
}
