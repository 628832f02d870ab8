//! Dapr's lock rpcs, `TryLockAlpha1` and `UnlockAlpha1`, over the lock stores with Dapr's
//! resource key (`lock||{app_id}||{resource}`, daprd's default `keyPrefix: appid`) so daprd and
//! layotto-rs sharing a store exclude each other. Runs on the calling shard.

use std::{rc::Rc, time::Duration};

use layotto_proto::dapr::runtime::{
    TryLockRequest, TryLockResponse, UnlockRequest, UnlockResponse, unlock_response,
};

use super::{DaprApi, fail, keys, path};
use crate::{
    components::lock::LockStatus,
    error::{ApiError, DaprOp},
    grpc::{
        router::{Router, unary},
        status::Status,
    },
};

/// Adds this block's rpcs to `router`.
pub(super) fn routes(router: &mut Router, api: &Rc<DaprApi>) {
    router
        .add(path("TryLockAlpha1"), unary(api.clone(), DaprApi::try_lock))
        .add(path("UnlockAlpha1"), unary(api.clone(), DaprApi::unlock));
}

impl DaprApi {
    /// Dapr's checks of a lock request, in daprd's order and words; the stored resource key.
    fn lock_key(&self, store: &str, resource: &str, owner: &str) -> Result<String, ApiError> {
        if resource.is_empty() {
            return Err(ApiError::InvalidArgument(format!(
                "ResourceId is empty in lock store {store}"
            )));
        }
        if owner.is_empty() {
            return Err(ApiError::InvalidArgument(format!(
                "LockOwner is empty in lock store {store}"
            )));
        }
        if keys::holds_separator(resource) {
            return Err(ApiError::InvalidArgument(format!(
                "input key/keyPrefix '{resource}' can't contain '{}'",
                keys::SEPARATOR
            )));
        }
        Ok(keys::lock_key(self.app_id(), resource))
    }

    async fn try_lock(self: Rc<Self>, request: TryLockRequest) -> Result<TryLockResponse, Status> {
        let op = DaprOp::TryLock;
        let store = self
            .components()
            .locks
            .get(&request.store_name)
            .map_err(fail(op))?;
        let key = self
            .lock_key(
                &request.store_name,
                &request.resource_id,
                &request.lock_owner,
            )
            .map_err(fail(op))?;
        let Ok(seconds @ 1..) = u64::try_from(request.expiry_in_seconds) else {
            return Err(fail(op)(ApiError::InvalidArgument(format!(
                "ExpiryInSeconds is not positive in lock store {}",
                request.store_name
            ))));
        };
        let success = store
            .try_lock(&key, &request.lock_owner, Duration::from_secs(seconds))
            .await
            .map_err(fail(op))?;
        Ok(TryLockResponse { success })
    }

    async fn unlock(self: Rc<Self>, request: UnlockRequest) -> Result<UnlockResponse, Status> {
        let op = DaprOp::Unlock;
        let store = self
            .components()
            .locks
            .get(&request.store_name)
            .map_err(fail(op))?;
        let key = self
            .lock_key(
                &request.store_name,
                &request.resource_id,
                &request.lock_owner,
            )
            .map_err(fail(op))?;
        let status = match store
            .unlock(&key, &request.lock_owner)
            .await
            .map_err(fail(op))?
        {
            LockStatus::Success => unlock_response::Status::Success,
            LockStatus::Unexist => unlock_response::Status::LockDoesNotExist,
            LockStatus::BelongsToOthers => unlock_response::Status::LockBelongsToOthers,
        };
        Ok(UnlockResponse {
            status: status as i32,
        })
    }
}
