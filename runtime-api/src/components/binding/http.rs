//! The `http` output binding (Dapr's and LayOtto's): `InvokeBinding` sends the request to the
//! component's `metadata.url` (plus the request's `path` metadata), with the operation as the
//! method (`get`, `post`, `put`, `delete`, `patch`, `head`, `options`; `create` is `post`), the
//! data as the body and the other request metadata as headers. The answer's body comes back as
//! data, with metadata keyed as Dapr's binding (which LayOtto serves) keys it: `statusCode`,
//! `status` (`201 Created`) and each response header under Go's canonical name (`Content-Type`),
//! several values joined with `, `; a status of 400 or more is an error. The HTTP
//! client ([`HttpClient`]) runs on the backend pool, bounded by the component's timeout.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use bytes::Bytes;

use super::{BindingResponse, OutputBinding};
use crate::{
    components::{component::Component, http_client::HttpClient, registry::Entry},
    error::ApiError,
};

/// A binding's timeout unless its metadata's `timeout` says.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds one from its entry: `url` (required, `http://` or `https://`), `timeout` (seconds)
/// and the client's TLS metadata ([`HttpClient::from_entry`]).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn OutputBinding>> {
    let url = entry
        .take("url")
        .filter(|url| url.starts_with("http://") || url.starts_with("https://"));
    let timeout = entry.seconds("timeout", DEFAULT_TIMEOUT);
    let Some(url) = url else {
        entry.metadata_error("url", "an http binding needs an http:// or https:// url");
        return None;
    };
    let http = HttpClient::from_entry(entry, timeout?)?;
    Some(Arc::new(HttpBinding { url, http }))
}

/// An `http` output binding.
struct HttpBinding {
    url: String,
    http: HttpClient,
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
        // As Dapr's: the url as configured, or with the `path` metadata after one `/`.
        let url = match metadata.remove("path").filter(|path| !path.is_empty()) {
            Some(path) => format!(
                "{}/{}",
                self.url.trim_end_matches('/'),
                path.trim_start_matches('/')
            ),
            None => self.url.clone(),
        };
        let headers = metadata
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()));
        let (parts, body) = self.http.exchange(method, &url, headers, data).await?;
        Ok(BindingResponse {
            data: body,
            metadata: response_metadata(&parts),
        })
    }
}

/// The response's metadata as Dapr's http binding returns it.
fn response_metadata(parts: &http::response::Parts) -> HashMap<String, String> {
    let mut metadata: HashMap<String, String> = HashMap::with_capacity(parts.headers.len() + 2);
    for name in parts.headers.keys() {
        let values: Vec<&str> = parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect();
        metadata.insert(canonical_header_name(name.as_str()), values.join(", "));
    }
    let code = parts.status.as_u16();
    metadata.insert("statusCode".into(), code.to_string());
    let status = match parts.status.canonical_reason() {
        Some(reason) => format!("{code} {reason}"),
        None => code.to_string(),
    };
    metadata.insert("status".into(), status);
    metadata
}

/// Go's `textproto.CanonicalMIMEHeaderKey` of a (lower-case) header name: `x-reply` → `X-Reply`.
fn canonical_header_name(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_metadata_is_keyed_as_dapr_keys_it() {
        let (parts, ()) = http::Response::builder()
            .status(201)
            .header("content-type", "text/plain")
            .header("set-cookie", "a=1")
            .header("set-cookie", "b=2")
            .header("x-request-id", "r-7")
            .body(())
            .unwrap()
            .into_parts();
        let metadata = response_metadata(&parts);
        let expected = [
            ("statusCode", "201"),
            ("status", "201 Created"),
            ("Content-Type", "text/plain"),
            ("Set-Cookie", "a=1, b=2"),
            ("X-Request-Id", "r-7"),
        ];
        let expected: HashMap<String, String> = expected
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(metadata, expected);
    }
}
