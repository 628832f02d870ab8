//! `{any verb} /v1.0/invoke/{app}/method/{method}` and the `dapr-app-id` header form (any path
//! no other route takes is then the method, as daprd's fallback route): the body, its
//! `Content-Type`, the verb and the query string go to the app through the `rpcs` component;
//! the app's body and `Content-Type` come back. Runs on the serving shard.

use http::{StatusCode, header};

use super::{DaprHttpApi, DaprRequest, Reply};
use crate::error::{DaprCodes, DaprHttpError};

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
        .components()
        .invoker()
        .map_err(|err| err.dapr_http(INVOKE))?;
    let content_type = request.header(header::CONTENT_TYPE).unwrap_or_default();
    let answer = invoker
        .invoke(
            app,
            method,
            Some(request.method.clone()),
            request.raw_query.as_deref().unwrap_or_default(),
            request.body.clone(),
            content_type,
        )
        .await
        .map_err(|err| {
            let mut answer = err.dapr_http(INVOKE);
            answer.message = format!("failed to invoke, id: {app}, err: {}", answer.message);
            answer
        })?;
    let content_type = Some(answer.content_type.as_str()).filter(|c| !c.is_empty());
    Ok(Reply::bytes(StatusCode::OK, content_type, answer.data))
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
