//! What every component has, whatever its building block: one lifecycle ([`Component`]: start at
//! start-up, health for readiness, dynamic configuration, close on drain) and the one way to call
//! a tokio-based client ([`bounded_call`]: on the backend pool, bounded by the component's
//! timeout). A leaf module. `start` and `close` run on the main thread; `health` on the shard
//! serving the actuator, `apply_configuration` on the shard serving LayOtto's Lifecycle call.

use std::{collections::HashMap, future::Future, time::Duration};

use async_trait::async_trait;
use layotto_core::backend::BackendHandle;

use crate::error::ApiError;

/// The lifecycle every component shares.
#[async_trait(?Send)]
pub trait Component: Send + Sync {
    /// Connects or loads what it needs, once at start-up; an error names the component and the
    /// address it tried, and stops the process from starting.
    async fn start(&self) -> Result<(), ApiError> {
        Ok(())
    }

    /// `Ok` when it can serve now (the actuator's readiness).
    async fn health(&self) -> Result<(), ApiError> {
        Ok(())
    }

    /// Applies LayOtto's dynamic configuration (`Lifecycle.ApplyConfiguration`): the component's
    /// full metadata from now on, seen by every shard. The default refuses: most components
    /// cannot change at run time (LayOtto answers "component not found" for them).
    async fn apply_configuration(
        &self,
        _metadata: &HashMap<String, String>,
    ) -> Result<(), ApiError> {
        Err(ApiError::InvalidArgument(
            "does not support dynamic configuration".into(),
        ))
    }

    /// Stops its background work and lets go of its connections, once at drain.
    async fn close(&self) {}
}

/// Runs a client call `op` of `component` on the backend pool, bounded by `timeout`: the
/// client's errors go through `map_error`; no answer in time is UNAVAILABLE naming `component`.
pub(crate) async fn bounded_call<T, E, Fut>(
    backend: &BackendHandle,
    timeout: Duration,
    component: String,
    op: Fut,
    map_error: impl FnOnce(E) -> ApiError,
) -> Result<T, ApiError>
where
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    match backend
        .submit(async move { tokio::time::timeout(timeout, op).await })
        .await?
    {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(err)) => Err(map_error(err)),
        Err(_) => Err(ApiError::unavailable(format!(
            "{component}: no answer within {}s",
            timeout.as_secs_f64()
        ))),
    }
}
