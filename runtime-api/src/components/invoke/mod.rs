//! The service invocation building block (`rpcs`): the [`Invoker`] contract (`InvokeService`:
//! call a method of another app) and the registry of its backend types (`http`, and LayOtto's
//! `mosn`, the default type: its entry is keyed `mosn` and gives none). One `rpcs` component
//! serves the `InvokeService` of LayOtto's API and both of Dapr's: a backend hands back the
//! app's answer whatever its status, with its headers, and each API decides what a status means
//! (LayOtto's by the backend's [`Invoker::failure`], Dapr's as daprd). Shared by all shards; `http` calls hop to the backend pool, `mosn`
//! calls run on the calling shard.

mod http;

pub(crate) use http::app_channel;
mod mosn;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    components::{component::Component, registry::Registry},
    error::ApiError,
};

/// One call of another app's method.
#[derive(Debug, Clone)]
pub struct InvokeRequest<'a> {
    /// The app id.
    pub id: &'a str,
    /// The method (a path, without the leading `/`).
    pub method: &'a str,
    /// The HTTP verb (`None`: the backend's default).
    pub verb: Option<::http::Method>,
    /// The query string (without `?`).
    pub querystring: &'a str,
    /// The body.
    pub data: Bytes,
    /// Its `Content-Type` (empty: none).
    pub content_type: &'a str,
    /// Headers for the app, as the API that took the call prepared them; backends leave out
    /// the connection's own ([`layotto_filters::http_proxy::strip_hop_by_hop`]), `Host`,
    /// `Content-Length` and `Content-Type` (that is `content_type`).
    pub headers: &'a ::http::HeaderMap,
}

/// The answer of an invoked app, whatever its status: each API decides what a status means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoked {
    /// The app's status.
    pub status: ::http::StatusCode,
    /// The app's headers, without the connection's own (hop-by-hop) ones.
    pub headers: ::http::HeaderMap,
    /// The body.
    pub data: Bytes,
    /// A gRPC app's status (OK included), when the app answered over gRPC; `status` is then
    /// the HTTP status daprd gives it ([`crate::dapr::invocation::http_status_of`]).
    pub grpc_status: Option<crate::grpc::status::Status>,
}

impl Invoked {
    /// The answer's `Content-Type` (empty without one).
    pub fn content_type(&self) -> &str {
        self.headers
            .get(::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }
}

/// Calls other apps.
#[async_trait(?Send)]
pub trait Invoker: Component {
    /// Calls the method of `request`; any status the app answers is an [`Invoked`], errors are
    /// for calls that got no answer (or could not be made).
    async fn invoke(&self, request: InvokeRequest<'_>) -> Result<Invoked, ApiError>;

    /// The error LayOtto's `InvokeService` answers for `answer` of app `id` — what this backend
    /// counts as the app's failure —, `None` when it is a success.
    fn failure(&self, id: &str, answer: &Invoked) -> Option<ApiError>;
}

/// `headers` without those that only frame one HTTP message or connection: hop-by-hop ones,
/// `Host`, `Content-Length` and `Content-Type`. What backends send an app from a request's headers.
pub(crate) fn forwardable(headers: &::http::HeaderMap) -> ::http::HeaderMap {
    let mut headers = headers.clone();
    layotto_filters::http_proxy::strip_hop_by_hop(&mut headers);
    for name in [
        ::http::header::HOST,
        ::http::header::CONTENT_LENGTH,
        ::http::header::CONTENT_TYPE,
    ] {
        headers.remove(name);
    }
    headers
}

/// The backend types of `rpcs`.
pub(crate) const BACKENDS: Registry<dyn Invoker> = Registry {
    label: "rpcs",
    kind: "rpcs",
    default_type: Some("mosn"),
    fields: &["config"],
    backends: &[("http", http::build), ("mosn", mosn::build)],
};
