//! Service invocation over HTTP (LayOtto's HTTP path of `InvokeService`): the `rpcs` component
//! `http` maps app ids to `host:port` (`metadata.targets`, `app2=127.0.0.1:8080;app3=...`);
//! a call becomes `VERB http://<target>/<method>?<querystring>` with the request data as the
//! body and its content type, and the answer's body and content type come back. Bounded by the
//! component's timeout; runs on the backend pool.

use std::{collections::HashMap, time::Duration};

use bytes::Bytes;
use layotto_core::backend::BackendHandle;

use crate::{components::http_client::HttpClient, error::ApiError};

/// The answer of an invoked service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoked {
    /// The body.
    pub data: Bytes,
    /// Its `Content-Type`.
    pub content_type: String,
}

/// Where app ids are and how to call them.
pub struct ServiceInvoker {
    targets: HashMap<String, String>,
    http: HttpClient,
}

impl ServiceInvoker {
    /// An invoker for `component` calling `targets` (app id → `host:port`).
    pub fn new(
        component: String,
        targets: HashMap<String, String>,
        timeout: Duration,
        backend: BackendHandle,
    ) -> Self {
        Self {
            targets,
            http: HttpClient::new(component, timeout, backend),
        }
    }

    /// Calls `method` of app `id` with `verb` (`None`: POST, as Dapr).
    pub async fn invoke(
        &self,
        id: &str,
        method: &str,
        verb: Option<http::Method>,
        querystring: &str,
        data: Bytes,
        content_type: &str,
    ) -> Result<Invoked, ApiError> {
        let Some(target) = self.targets.get(id) else {
            let mut known: Vec<&String> = self.targets.keys().collect();
            known.sort();
            return Err(ApiError::InvalidArgument(format!(
                "{}: no app \"{id}\" (known: {known:?})",
                self.http.component()
            )));
        };
        let mut url = format!("http://{target}/{}", method.trim_start_matches('/'));
        if !querystring.is_empty() {
            url.push('?');
            url.push_str(querystring.trim_start_matches('?'));
        }
        let headers = (!content_type.is_empty()).then_some(("content-type", content_type));
        let method = verb.unwrap_or(http::Method::POST);
        let (parts, body) = self.http.exchange(method, &url, headers, data).await?;
        let content_type = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok(Invoked {
            data: body,
            content_type,
        })
    }
}
