//! What the Dapr HTTP handlers share: the request as they see it (method, headers, query, whole
//! body), `metadata.*` query parameters, JSON bodies decoded through serde, and [`Reply`], the
//! response they build. Sans-IO; runs on the serving shard.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use percent_encoding::percent_decode_str;
use serde::{Serialize, de::DeserializeOwned};

use crate::error::DaprHttpError;

/// The prefix of query parameters that are component metadata (`?metadata.ttlInSeconds=5`).
const METADATA_PREFIX: &str = "metadata.";

/// The path's segments, percent-decoded (`/v1.0/state/s/a%2Fb` → `["v1.0", "state", "s",
/// "a/b"]`); a trailing slash is ignored, as daprd ignores it.
pub(super) fn segments(path: &str) -> Result<Vec<String>, DaprHttpError> {
    path.trim_matches('/')
        .split('/')
        .map(|segment| {
            percent_decode_str(segment)
                .decode_utf8()
                .map(|decoded| decoded.into_owned())
                .map_err(|_| {
                    DaprHttpError::new(
                        400,
                        "ERR_MALFORMED_REQUEST",
                        format!("the path segment {segment:?} is not UTF-8 once decoded"),
                    )
                })
        })
        .collect()
}

/// Deserializes a field that may be `null` (Go clients send `null` for empty maps and lists) as
/// its default; use with `#[serde(default, deserialize_with = "nullable")]`.
pub(super) fn nullable<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + serde::Deserialize<'de>,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(deserializer)?.unwrap_or_default())
}

/// A request with its whole body read.
pub(super) struct DaprRequest {
    /// The method.
    pub(super) method: Method,
    /// The path as sent (not decoded).
    pub(super) path: String,
    /// The query string as sent, if any.
    pub(super) raw_query: Option<String>,
    /// The request headers.
    pub(super) headers: HeaderMap,
    /// The decoded query parameters, in order.
    pub(super) query: Vec<(String, String)>,
    /// The body.
    pub(super) body: Bytes,
}

impl DaprRequest {
    /// The request of `head` with `body`.
    pub(super) fn new(head: http::request::Parts, body: Bytes) -> Self {
        let raw_query = head.uri.query().map(str::to_owned);
        let query = raw_query
            .as_deref()
            .map(|q| {
                form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            method: head.method,
            path: head.uri.path().to_owned(),
            raw_query,
            headers: head.headers,
            query,
            body,
        }
    }

    /// The first value of query parameter `name`.
    pub(super) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find_map(|(k, v)| (k == name).then_some(v.as_str()))
    }

    /// Every value of query parameter `name`, in order.
    pub(super) fn query_all(&self, name: &str) -> Vec<String> {
        self.query
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The `metadata.<key>=<value>` query parameters, as `key → value`.
    pub(super) fn metadata(&self) -> HashMap<String, String> {
        self.query
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(METADATA_PREFIX)
                    .map(|key| (key.to_owned(), v.clone()))
            })
            .collect()
    }

    /// Header `name` as text, if present and printable.
    pub(super) fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body decoded as JSON into `T` (daprd's `ERR_MALFORMED_REQUEST`, 400, otherwise).
    pub(super) fn json<T: DeserializeOwned>(&self) -> Result<T, DaprHttpError> {
        serde_json::from_slice(&self.body).map_err(DaprHttpError::malformed)
    }
}

/// A response being built.
#[derive(Debug)]
pub(super) struct Reply {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Reply {
    /// An empty response with `status`.
    pub(super) fn status(status: StatusCode) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// 204 No Content.
    pub(super) fn no_content() -> Self {
        Self::status(StatusCode::NO_CONTENT)
    }

    /// 200 with `value` as JSON.
    pub(super) fn json(value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::bytes(StatusCode::OK, Some("application/json"), body.into()),
            Err(err) => Self::error(DaprHttpError::new(
                500,
                "ERR_INTERNAL",
                format!("cannot encode the response: {err}"),
            )),
        }
    }

    /// `status` with `body` of `content_type` (none: no `Content-Type`).
    pub(super) fn bytes(status: StatusCode, content_type: Option<&str>, body: Bytes) -> Self {
        let mut reply = Self::status(status);
        reply.body = body;
        if let Some(content_type) = content_type {
            reply = reply.with_header(header::CONTENT_TYPE, content_type);
        }
        reply
    }

    /// The error's status with its JSON body (the token refusal is daprd's plain text).
    pub(super) fn error(err: DaprHttpError) -> Self {
        let status = StatusCode::from_u16(err.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if err.error_code == DaprHttpError::INVALID_TOKEN {
            let body = Bytes::from(format!("{}\n", err.message));
            return Self::bytes(status, Some("text/plain; charset=utf-8"), body);
        }
        let body = serde_json::to_vec(&err).unwrap_or_default();
        Self::bytes(status, Some("application/json"), body.into())
    }

    /// The same reply with `status`.
    pub(super) fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds header `name: value` (left out if `value` is not a valid header value).
    pub(super) fn with_header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(value) = HeaderValue::from_str(value) {
            self.headers.push((name, value));
        }
        self
    }

    /// Adds every one of `headers`.
    pub(super) fn with_headers(mut self, headers: &HeaderMap) -> Self {
        for (name, value) in headers {
            self.headers.push((name.clone(), value.clone()));
        }
        self
    }

    /// Adds each `metadata` entry as a `metadata.<key>` header (daprd's response metadata).
    pub(super) fn with_metadata<'a>(
        mut self,
        metadata: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Self {
        for (key, value) in metadata {
            if let Ok(name) = HeaderName::try_from(format!("{METADATA_PREFIX}{key}")) {
                self = self.with_header(name, value);
            }
        }
        self
    }

    /// The hyper response.
    pub(super) fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_segments_and_ignores_slashes_at_the_ends() {
        assert_eq!(
            segments("/v1.0/state/s/a%2Fb%20c/").unwrap(),
            vec!["v1.0", "state", "s", "a/b c"]
        );
        assert!(segments("/v1.0/%ff").is_err());
    }

    #[test]
    fn reads_query_and_metadata() {
        let (head, ()) =
            http::Request::get("/v1.0/x?key=a&key=b&metadata.ttlInSeconds=5&metadata.a%20b=c%2Bd")
                .body(())
                .unwrap()
                .into_parts();
        let request = DaprRequest::new(head, Bytes::new());
        assert_eq!(request.query_all("key"), vec!["a", "b"]);
        assert_eq!(request.query("key"), Some("a"));
        let metadata = request.metadata();
        assert_eq!(metadata.len(), 2);
        assert_eq!(metadata["ttlInSeconds"], "5");
        assert_eq!(metadata["a b"], "c+d");
    }
}
