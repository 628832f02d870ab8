//! The lock rpcs: `TryLock`, `Unlock`, `LockKeepAlive`. Runs on the calling shard.

use crate::components::lock::LockStatus;
use layotto_proto::runtime::{
    LockKeepAliveRequest, LockKeepAliveResponse, TryLockRequest, TryLockResponse, UnlockRequest,
    UnlockResponse, lock_keep_alive_response, unlock_response,
};
use std::rc::Rc;
use std::time::Duration;

use super::{RuntimeApi, path};
use crate::{
    error::ApiError,
    grpc::{
        router::{Router, unary},
        status::Status,
    },
};

/// Adds this block's rpcs to `router`.
pub(super) fn routes(router: &mut Router, api: &Rc<RuntimeApi>) {
    router
        .add(path("TryLock"), unary(api.clone(), RuntimeApi::try_lock))
        .add(path("Unlock"), unary(api.clone(), RuntimeApi::unlock))
        .add(
            path("LockKeepAlive"),
            unary(api.clone(), RuntimeApi::lock_keep_alive),
        );
}

impl RuntimeApi {
    async fn try_lock(self: Rc<Self>, request: TryLockRequest) -> Result<TryLockResponse, Status> {
        let store = self.components().locks.get(&request.store_name)?;
        let expire = lock_request(
            &request.resource_id,
            &request.lock_owner,
            Some(request.expire),
        )?;
        let success = store
            .try_lock(&request.resource_id, &request.lock_owner, expire)
            .await?;
        Ok(TryLockResponse { success })
    }

    async fn unlock(self: Rc<Self>, request: UnlockRequest) -> Result<UnlockResponse, Status> {
        let store = self.components().locks.get(&request.store_name)?;
        lock_request(&request.resource_id, &request.lock_owner, None)?;
        let status = match store
            .unlock(&request.resource_id, &request.lock_owner)
            .await?
        {
            LockStatus::Success => unlock_response::Status::Success,
            LockStatus::Unexist => unlock_response::Status::LockUnexist,
            LockStatus::BelongsToOthers => unlock_response::Status::LockBelongToOthers,
        };
        Ok(UnlockResponse {
            status: status as i32,
        })
    }

    async fn lock_keep_alive(
        self: Rc<Self>,
        request: LockKeepAliveRequest,
    ) -> Result<LockKeepAliveResponse, Status> {
        let store = self.components().locks.get(&request.store_name)?;
        let expire = lock_request(
            &request.resource_id,
            &request.lock_owner,
            Some(request.expire),
        )?;
        let status = match store
            .keep_alive(&request.resource_id, &request.lock_owner, expire)
            .await?
        {
            LockStatus::Success => lock_keep_alive_response::Status::Success,
            LockStatus::Unexist => lock_keep_alive_response::Status::LockUnexist,
            LockStatus::BelongsToOthers => lock_keep_alive_response::Status::LockBelongToOthers,
        };
        Ok(LockKeepAliveResponse {
            status: status as i32,
        })
    }
}

/// Checks a lock request's resource and owner, and its `expire` (seconds) when it has one.
fn lock_request(resource: &str, owner: &str, expire: Option<i32>) -> Result<Duration, ApiError> {
    if resource.is_empty() {
        return Err(ApiError::InvalidArgument(
            "the lock's resource_id is empty".into(),
        ));
    }
    if owner.is_empty() {
        return Err(ApiError::InvalidArgument("the lock_owner is empty".into()));
    }
    match expire {
        None => Ok(Duration::ZERO),
        Some(seconds) if seconds > 0 => Ok(Duration::from_secs(seconds as u64)),
        Some(seconds) => Err(ApiError::InvalidArgument(format!(
            "expire must be a positive number of seconds, not {seconds}"
        ))),
    }
}
