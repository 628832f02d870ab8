//! Output bindings: `http` (Dapr's and LayOtto's): `InvokeBinding` sends the request to the
//! component's `metadata.url` (plus the request's `path` metadata), with the operation as the
//! method (`get`, `post`, `put`, `delete`, `patch`, `head`, `options`; `create` is `post`), the
//! data as the body and the other request metadata as headers. The answer's body comes back as
//! data, its status and headers as metadata; a status of 400 or more is an error. The HTTP
//! client (hyper) runs on the backend pool, bounded by the component's timeout.

use std::{collections::HashMap, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use layotto_core::backend::BackendHandle;

use crate::error::ApiError;

/// An `http` output binding.
pub struct HttpBinding {
    component: String,
    url: String,
    timeout: Duration,
    backend: BackendHandle,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A binding's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingResponse {
    /// The body.
    pub data: Bytes,
    /// `statusCode` and the response headers.
    pub metadata: HashMap<String, String>,
}

impl HttpBinding {
    /// A binding for `component` (for messages) to `url`.
    pub fn new(component: String, url: String, timeout: Duration, backend: BackendHandle) -> Self {
        Self {
            component,
            url,
            timeout,
            backend,
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Sends one request.
    pub async fn invoke(
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
                    self.component
                )));
            }
        };
        let path = metadata.remove("path").unwrap_or_default();
        let url = format!(
            "{}/{}",
            self.url.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let mut request = http::Request::builder().method(method).uri(&url);
        for (name, value) in &metadata {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .body(Full::new(data))
            .map_err(|err| ApiError::InvalidArgument(format!("{}: {err}", self.component)))?;
        let (client, timeout, component) =
            (self.client.clone(), self.timeout, self.component.clone());
        let answer = self
            .backend
            .submit(async move {
                tokio::time::timeout(timeout, async move {
                    let response = client
                        .request(request)
                        .await
                        .map_err(|err| err.to_string())?;
                    let (parts, body) = response.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map_err(|err| err.to_string())?
                        .to_bytes();
                    Ok::<_, String>((parts, body))
                })
                .await
            })
            .await?;
        let (parts, body) = match answer {
            Err(_) => {
                return Err(ApiError::Unavailable(format!(
                    "{component}: {url} did not answer within {}s",
                    timeout.as_secs_f64()
                )));
            }
            Ok(Err(err)) => {
                return Err(ApiError::Unavailable(format!("{component}: {url}: {err}")));
            }
            Ok(Ok(answer)) => answer,
        };
        if parts.status.as_u16() >= 400 {
            return Err(ApiError::Internal(format!(
                "{component}: {url} answered {}: {}",
                parts.status,
                String::from_utf8_lossy(&body[..body.len().min(512)])
            )));
        }
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
