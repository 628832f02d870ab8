//! The `redis_cluster` lock store, as LayOtto's: Redlock over independent redis masters
//! (`redisHosts`, comma-separated; at least 3, better 5). A lock is taken on every host at once,
//! each as the `redis` store takes it (`SET NX PX`), and is held when a majority granted it
//! within a tenth of its expiry; otherwise what was taken is released again. Unlock and
//! keep-alive act on every host and count a majority the same way. Calls run on the backend
//! pool, one per host, awaited together on the caller's shard.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use futures_util::future::join_all;
use layotto_core::clock::Clock;
use tracing::warn;

use super::{LockStatus, LockStore, redis::RedisLockStore};
use crate::{
    components::{
        component::Component,
        redis::{RedisConnection, RedisMode, RedisSettings},
        registry::{Entry, is_endpoint},
    },
    error::ApiError,
};

/// A redis call's timeout unless the metadata's `timeout` says (as the `redis` store).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A Redlock over independent redis masters.
pub(super) struct RedlockStore {
    /// `lock "NAME" (redis at A, B, C)`, for messages.
    component: String,
    hosts: Vec<RedisLockStore>,
    clock: Arc<dyn Clock>,
}

/// How the hosts answered one operation.
struct Tally<T> {
    answers: Vec<Result<T, ApiError>>,
}

impl<T: PartialEq> Tally<T> {
    /// Whether more than half of the hosts answered `wanted`.
    fn majority(&self, wanted: &T) -> bool {
        self.count(wanted) * 2 > self.answers.len()
    }

    fn count(&self, wanted: &T) -> usize {
        self.answers
            .iter()
            .filter(|answer| answer.as_ref().is_ok_and(|a| a == wanted))
            .count()
    }

    /// The first failure, if any host failed.
    fn into_first_error(self) -> Option<ApiError> {
        self.answers.into_iter().find_map(Result::err)
    }
}

impl RedlockStore {
    /// Releases `resource` for `owner` on every host (best effort: a host that fails keeps it
    /// until it expires).
    async fn release_everywhere(&self, resource: &str, owner: &str) -> Tally<LockStatus> {
        let answers = join_all(self.hosts.iter().map(|host| host.unlock(resource, owner))).await;
        Tally { answers }
    }
}

#[async_trait(?Send)]
impl Component for RedlockStore {
    async fn start(&self) -> Result<(), ApiError> {
        // As LayOtto: every host must answer at start-up.
        for answer in join_all(self.hosts.iter().map(|host| host.start())).await {
            answer?;
        }
        Ok(())
    }

    async fn health(&self) -> Result<(), ApiError> {
        let answers = join_all(self.hosts.iter().map(|host| host.health())).await;
        let healthy = answers.iter().filter(|answer| answer.is_ok()).count();
        if healthy * 2 > answers.len() {
            return Ok(());
        }
        Err(answers
            .into_iter()
            .find_map(Result::err)
            .unwrap_or_else(|| ApiError::unavailable(self.component.clone())))
    }
}

#[async_trait(?Send)]
impl LockStore for RedlockStore {
    async fn try_lock(
        &self,
        resource: &str,
        owner: &str,
        expire: Duration,
    ) -> Result<bool, ApiError> {
        let started = self.clock.now();
        let answers = join_all(
            self.hosts
                .iter()
                .map(|host| host.try_lock(resource, owner, expire)),
        )
        .await;
        let took = self.clock.now().saturating_sub(started);
        let tally = Tally { answers };
        if took > expire / 10 {
            // Too slow to trust the hold for long (LayOtto's limit): give it back.
            self.release_everywhere(resource, owner).await;
            return Err(ApiError::unavailable(format!(
                "{}: taking {resource:?} took {took:?}, more than a tenth of its expiry",
                self.component
            )));
        }
        if tally.majority(&true) {
            if let Some(err) = tally.into_first_error() {
                warn!(
                    "{}: locked {resource:?} without a host: {err}",
                    self.component
                );
            }
            return Ok(true);
        }
        self.release_everywhere(resource, owner).await;
        let refused = tally.count(&false);
        if refused * 2 > self.hosts.len() {
            return Ok(false); // someone else holds it on a majority
        }
        // Split between contenders, or undecided because hosts failed: then say why.
        match tally.into_first_error() {
            Some(err) => Err(err),
            None => Ok(false),
        }
    }

    async fn unlock(&self, resource: &str, owner: &str) -> Result<LockStatus, ApiError> {
        let tally = self.release_everywhere(resource, owner).await;
        if tally.count(&LockStatus::Success) > 0 {
            // Released wherever it was held; a host that failed lets it expire.
            return Ok(LockStatus::Success);
        }
        if tally.majority(&LockStatus::BelongsToOthers) {
            return Ok(LockStatus::BelongsToOthers);
        }
        match tally.into_first_error() {
            Some(err) => Err(err),
            None => Ok(LockStatus::Unexist),
        }
    }

    async fn keep_alive(
        &self,
        resource: &str,
        owner: &str,
        expire: Duration,
    ) -> Result<LockStatus, ApiError> {
        let answers = join_all(
            self.hosts
                .iter()
                .map(|host| host.keep_alive(resource, owner, expire)),
        )
        .await;
        let tally = Tally { answers };
        for status in [
            LockStatus::Success,
            LockStatus::BelongsToOthers,
            LockStatus::Unexist,
        ] {
            if tally.majority(&status) {
                return Ok(status);
            }
        }
        match tally.into_first_error() {
            Some(err) => Err(err),
            // No majority either way (hosts disagree): the hold is not to be relied on.
            None => Ok(LockStatus::Unexist),
        }
    }
}

/// Builds one from its entry (LayOtto's keys): `redisHosts` (required, comma-separated
/// `host:port`), `redisPassword` (every host's), our `timeout` (seconds, per host call).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn LockStore>> {
    let hosts: Vec<String> = entry
        .take("redisHosts")
        .map(|list| {
            list.split(',')
                .map(|host| host.trim().to_owned())
                .filter(|host| !host.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let password = entry.take("redisPassword").filter(|p| !p.is_empty());
    let timeout = entry.seconds("timeout", DEFAULT_TIMEOUT);
    if hosts.is_empty() || !hosts.iter().all(|host| is_endpoint(host)) {
        entry.metadata_error(
            "redisHosts",
            "redis_cluster needs \"host:port\" hosts, comma-separated",
        );
        return None;
    }
    let timeout = timeout?;
    let component = format!("{} (redis at {})", entry.component(), hosts.join(", "));
    let hosts = hosts
        .into_iter()
        .map(|address| {
            let settings = RedisSettings {
                address,
                password: password.clone(),
                timeout,
                mode: RedisMode::Node,
            };
            RedisLockStore::new(RedisConnection::new(
                entry.component().to_owned(),
                settings,
                entry.backend().clone(),
            ))
        })
        .collect();
    Some(Arc::new(RedlockStore {
        component,
        hosts,
        clock: entry.clock(),
    }))
}
