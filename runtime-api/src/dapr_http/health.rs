//! `/v1.0/healthz`, `/v1.0/healthz/outbound` (both 204, open without the API token, as daprd's)
//! and `POST /v1.0/shutdown` (starts the drain SIGTERM starts). Runs on the serving shard.

use http::Method;

use super::{DaprHttpApi, DaprRequest, Reply};
use crate::error::DaprHttpError;

/// Whether `method path` is open without the API token (daprd: `GET` of the two healthz routes).
pub(super) fn is_open_route(method: &Method, path: &[&str]) -> bool {
    *method == Method::GET && matches!(path, ["v1.0", "healthz"] | ["v1.0", "healthz", "outbound"])
}

/// `GET /v1.0/healthz[?appid=]`: 204 once serving; 500 `ERR_HEALTH_APPID_NOT_MATCH` when
/// `appid` is not this sidecar's app id.
pub(super) fn healthz(api: &DaprHttpApi, request: &DaprRequest) -> Result<Reply, DaprHttpError> {
    match request.query("appid") {
        Some(app_id) if app_id != api.runtime().app_id() => Err(DaprHttpError::new(
            500,
            "ERR_HEALTH_APPID_NOT_MATCH",
            "dapr app-id does not match",
        )),
        _ => Ok(Reply::no_content()),
    }
}

/// `POST /v1.0/shutdown`: 204, and the process drains and exits as on SIGTERM.
pub(super) fn shutdown(api: &DaprHttpApi) -> Reply {
    tracing::info!(
        shard = api.shard,
        "shutdown requested through the Dapr HTTP API"
    );
    api.shared.stop.trigger();
    Reply::no_content()
}
