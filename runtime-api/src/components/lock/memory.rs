//! The `in-memory` lock store: one map of holders and expiry times shared by all shards behind
//! a short lock; expired holds count as free.

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;

use super::{LockStatus, LockStore};
use crate::components::{component::Component, registry::Entry};
use crate::error::ApiError;
use layotto_core::clock::Clock;
use std::sync::Arc;

/// Holders and when their holds expire (on the store's clock), by resource.
type Holds = HashMap<String, (String, Duration)>;

/// An in-memory lock store.
#[expect(
    clippy::disallowed_types,
    reason = "a lock must be one for every shard; held for one map operation, never across an await"
)]
pub struct InMemoryLockStore {
    holds: std::sync::Mutex<Holds>,
    clock: Arc<dyn Clock>,
}

impl InMemoryLockStore {
    /// An empty store whose holds expire on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            holds: Default::default(),
            clock,
        }
    }

    /// Applies `change` to `owner`'s live hold on `resource`, if it is theirs.
    fn with_hold(
        &self,
        resource: &str,
        owner: &str,
        change: impl FnOnce(&mut Holds, Duration),
    ) -> LockStatus {
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now();
        match holds.get(resource) {
            Some((_, expires)) if *expires <= now => {
                holds.remove(resource);
                LockStatus::Unexist
            }
            None => LockStatus::Unexist,
            Some((holder, _)) if holder != owner => LockStatus::BelongsToOthers,
            Some(_) => {
                change(&mut holds, now);
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
        let mut holds = self.holds.lock().unwrap_or_else(|p| p.into_inner());
        let now = self.clock.now();
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
        Ok(self.with_hold(resource, owner, |holds, _| {
            holds.remove(resource);
        }))
    }

    async fn keep_alive(
        &self,
        resource: &str,
        owner: &str,
        expire: Duration,
    ) -> Result<LockStatus, ApiError> {
        Ok(self.with_hold(resource, owner, |holds, now| {
            if let Some(hold) = holds.get_mut(resource) {
                hold.1 = now + expire;
            }
        }))
    }
}

/// Builds one from its entry (in-memory: no settings; TTLs on the runtime's clock).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn LockStore>> {
    Some(Arc::new(InMemoryLockStore::new(entry.clock())))
}

#[cfg(test)]
mod tests {
    use super::*;

    use layotto_core::clock::ManualClock;

    #[test]
    fn only_the_owner_unlocks_and_holds_expire() {
        let clock = Arc::new(ManualClock::default());
        let store = InMemoryLockStore::new(clock.clone());
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
            clock.advance(Duration::from_millis(19));
            assert!(!store.try_lock("s", "b", long).await.unwrap());
            clock.advance(Duration::from_millis(1));
            assert_eq!(store.unlock("s", "a").await.unwrap(), LockStatus::Unexist);
            assert!(store.try_lock("s", "b", long).await.unwrap());
        });
    }
}
