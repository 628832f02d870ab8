//! `POST /v1.0-alpha1/lock/{store}` (`{"resourceId", "lockOwner", "expiryInSeconds"}` →
//! `{"success": bool}`) and `POST /v1.0-alpha1/unlock/{store}` (→ `{"status": 0..3}`, Dapr's
//! enum numbers) over the [`LockStore`] contract. Resources are locked under daprd's key,
//! `lock||{app_id}||{resourceId}`. Runs on the serving shard.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DaprHttpApi, DaprRequest, Reply, request::nullable};
use crate::{
    components::lock::{LockStatus, LockStore},
    dapr::keys,
    error::{DaprCodes, DaprHttpError},
};

const fn codes(failed: &'static str) -> DaprCodes {
    DaprCodes {
        unknown_component: (400, "ERR_LOCK_STORE_NOT_FOUND"),
        failed,
    }
}
const TRY_LOCK: DaprCodes = codes("ERR_TRY_LOCK");
const UNLOCK: DaprCodes = codes("ERR_UNLOCK");

/// A Dapr `TryLockRequest`/`UnlockRequest` in protojson (camelCase, or the proto names).
#[derive(Deserialize)]
struct LockRequest {
    #[serde(
        default,
        deserialize_with = "nullable",
        rename = "resourceId",
        alias = "resource_id"
    )]
    resource_id: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        rename = "lockOwner",
        alias = "lock_owner"
    )]
    lock_owner: String,
    #[serde(
        default,
        deserialize_with = "nullable",
        rename = "expiryInSeconds",
        alias = "expiry_in_seconds"
    )]
    expiry_in_seconds: i64,
}

#[derive(Serialize)]
struct TryLockResponse {
    success: bool,
}

#[derive(Serialize)]
struct UnlockResponse {
    status: u8,
}

fn store<'a>(
    api: &'a DaprHttpApi,
    name: &str,
    codes: DaprCodes,
) -> Result<&'a dyn LockStore, DaprHttpError> {
    api.runtime()
        .components()
        .locks
        .get(name)
        .map_err(|err| err.dapr_http(codes))
}

/// Checks the request as daprd does and answers the resource's key.
fn checked(api: &DaprHttpApi, store: &str, request: &LockRequest) -> Result<String, DaprHttpError> {
    let malformed = |what: &str| {
        DaprHttpError::new(
            400,
            "ERR_MALFORMED_REQUEST",
            format!("{what} in lock store {store}"),
        )
    };
    if request.resource_id.is_empty() {
        return Err(malformed("ResourceId is empty"));
    }
    if request.lock_owner.is_empty() {
        return Err(malformed("LockOwner is empty"));
    }
    if keys::holds_separator(&request.resource_id) {
        return Err(malformed("ResourceId contains '||'"));
    }
    Ok(keys::lock_key(api.runtime().app_id(), &request.resource_id))
}

/// `POST /v1.0-alpha1/lock/{store}`: 200 `{"success": ...}`.
pub(super) async fn try_lock(
    api: &DaprHttpApi,
    name: &str,
    request: &DaprRequest,
) -> Result<Reply, DaprHttpError> {
    let store = store(api, name, TRY_LOCK)?;
    let lock: LockRequest = request.json()?;
    let key = checked(api, name, &lock)?;
    let seconds = u64::try_from(lock.expiry_in_seconds)
        .ok()
        .filter(|&s| s > 0)
        .ok_or_else(|| {
            DaprHttpError::new(
                400,
                "ERR_MALFORMED_REQUEST",
                format!("ExpiryInSeconds is not positive in lock store {name}"),
            )
        })?;
    let success = store
        .try_lock(&key, &lock.lock_owner, Duration::from_secs(seconds))
        .await
        .map_err(|err| err.dapr_http(TRY_LOCK))?;
    Ok(Reply::json(&TryLockResponse { success }))
}

/// `POST /v1.0-alpha1/unlock/{store}`: 200 `{"status": n}` (0 success, 1 no such lock, 2 held
/// by another owner; 3, internal error, is answered as a 500 instead).
pub(super) async fn unlock(
    api: &DaprHttpApi,
    name: &str,
    request: &DaprRequest,
) -> Result<Reply, DaprHttpError> {
    let store = store(api, name, UNLOCK)?;
    let lock: LockRequest = request.json()?;
    let key = checked(api, name, &lock)?;
    let status = store
        .unlock(&key, &lock.lock_owner)
        .await
        .map_err(|err| err.dapr_http(UNLOCK))?;
    let status = match status {
        LockStatus::Success => 0,
        LockStatus::Unexist => 1,
        LockStatus::BelongsToOthers => 2,
    };
    Ok(Reply::json(&UnlockResponse { status }))
}
