//! `{any verb} /v1.0/invoke/{app}/method/{method}` and the `dapr-app-id` header form (any path
//! no other route takes is then the method, as daprd's fallback route): the body, its
//! `Content-Type`, the verb, the query string and the request's headers (daprd's selection,
//! [`invocation::to_app`], with `dapr-caller-app-id`) go to the app — this sidecar's own app
//! over its channel (HTTP, or a gRPC app's `OnInvoke`, whose status comes back as daprd's HTTP
//! status), any other through the `rpcs` component
//! ([`Runtime::dapr_invoker`](crate::runtime::Runtime::dapr_invoker)); the app's status, body, `Content-Type` and headers come back, whatever the
//! status, as daprd answers. Runs on the serving shard.

use http::header;

use super::{DaprHttpApi, DaprRequest, Reply};
use crate::{
    components::invoke::InvokeRequest,
    dapr::invocation,
    error::{DaprCodes, DaprHttpError},
};

/// The header naming the target app when the path is the method.
pub(super) const APP_ID_HEADER: &str = "dapr-app-id";

const INVOKE: DaprCodes = DaprCodes {
    unknown_component: (500, "ERR_DIRECT_INVOKE"),
    failed: "ERR_DIRECT_INVOKE",
};

/// Calls `method` of `app` with the request's verb, query, body and content type.
pub(super) async fn invoke(
    api: &DaprHttpApi,
    app: &str,
    method: &str,
    request: &DaprRequest,
) -> Result<Reply, DaprHttpError> {
    if app.is_empty() {
        return Err(DaprHttpError::new(
            404,
            "ERR_DIRECT_INVOKE",
            "failed getting app id either from the URL path or the header dapr-app-id",
        ));
    }
    let invoker = api
        .runtime()
        .dapr_invoker(app)
        .map_err(|err| err.dapr_http(INVOKE))?;
    let content_type = request.header(header::CONTENT_TYPE).unwrap_or_default();
    let answer = invoker
        .invoke(InvokeRequest {
            id: app,
            method,
            verb: Some(request.method.clone()),
            querystring: request.raw_query.as_deref().unwrap_or_default(),
            data: request.body.clone(),
            content_type,
            headers: &invocation::to_app(&request.headers, api.runtime().app_id(), app),
        })
        .await
        .map_err(|err| {
            let mut answer = err.dapr_http(INVOKE);
            answer.message = format!("failed to invoke, id: {app}, err: {}", answer.message);
            answer
        })?;
    let content_type = Some(answer.content_type()).filter(|c| !c.is_empty());
    Ok(
        Reply::bytes(answer.status, content_type, answer.data.clone())
            .with_headers(&invocation::to_http_caller(&answer.headers)),
    )
}

/// The `dapr-app-id` form: the whole path is the method.
pub(super) async fn invoke_by_header(
    api: &DaprHttpApi,
    path: &[&str],
    request: &DaprRequest,
) -> Result<Reply, DaprHttpError> {
    let app = request.header(APP_ID_HEADER).unwrap_or_default().to_owned();
    invoke(api, &app, &path.join("/"), request).await
}
