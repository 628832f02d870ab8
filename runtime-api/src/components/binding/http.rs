//! The `http` output binding (Dapr's and LayOtto's): `InvokeBinding` sends the request to the
//! component's `metadata.url` (plus the request's `path` metadata), with the operation as the
//! method (`get`, `post`, `put`, `delete`, `patch`, `head`, `options`; `create` is `post`), the
//! data as the body and the other request metadata as headers. The answer's body comes back as
//! data, its status and headers as metadata; a status of 400 or more is an error. The HTTP
//! client ([`HttpClient`]) runs on the backend pool, bounded by the component's timeout.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;
use layotto_core::backend::BackendHandle;

use super::{BindingResponse, OutputBinding};
use crate::{
    components::{component::Component, http_client::HttpClient, registry::Entry},
    error::ApiError,
};

/// A binding's timeout unless its metadata's `timeout` says.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds one from its entry: `url` (required) and `timeout` (seconds).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn OutputBinding>> {
    let url = entry.take("url").filter(|url| url.starts_with("http://"));
    let timeout = entry.seconds("timeout", DEFAULT_TIMEOUT);
    let Some(url) = url else {
        entry.metadata_error("url", "an http binding needs an http:// url");
        return None;
    };
    Some(Arc::new(HttpBinding::new(
        entry.component().to_owned(),
        url,
        timeout?,
        entry.backend().clone(),
    )))
}

/// An `http` output binding.
struct HttpBinding {
    url: String,
    http: HttpClient,
}

impl HttpBinding {
    /// A binding for `component` (for messages) to `url`.
    fn new(component: String, url: String, timeout: Duration, backend: BackendHandle) -> Self {
        Self {
            url,
            http: HttpClient::new(component, timeout, backend),
        }
    }
}

impl Component for HttpBinding {}

#[async_trait(?Send)]
impl OutputBinding for HttpBinding {
    async fn invoke(
        &self,
        operation: &str,
        data: Bytes,
        mut metadata: HashMap<String, String>,
    ) -> Result<BindingResponse, ApiError> {
        let method = match operation.to_ascii_lowercase().as_str() {
            "get" => http::Method::GET,
            "post" | "create" => http::Method::POST,
            "put" => http::Method::PUT,
            "delete" => http::Method::DELETE,
            "patch" => http::Method::PATCH,
            "head" => http::Method::HEAD,
            "options" => http::Method::OPTIONS,
            other => {
                return Err(ApiError::InvalidArgument(format!(
                    "{}: operation \"{other}\" is not supported (get, post, create, put, delete, patch, head, options)",
                    self.http.component()
                )));
            }
        };
        let path = metadata.remove("path").unwrap_or_default();
        let url = format!(
            "{}/{}",
            self.url.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let headers = metadata
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()));
        let (parts, body) = self.http.exchange(method, &url, headers, data).await?;
        let mut metadata: HashMap<String, String> = parts
            .headers
            .iter()
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .collect();
        metadata.insert("statusCode".into(), parts.status.as_u16().to_string());
        Ok(BindingResponse {
            data: body,
            metadata,
        })
    }
}
