//! LayOtto's `mosn` invoker with its HTTP channel (`{"mosn": {"config": {"channel": [{"size": 16,
//! "protocol": "http", "listener": "egress_runtime_http"}]}}}`): an `InvokeService` call becomes an
//! HTTP/1.1 request handed, in process, to the named listener's HTTP `proxy`, which routes it
//! (MOSN's routers) to a cluster's host — as LayOtto's channel hands a pipe to the MOSN listener.
//! The request is built as LayOtto's `httpchannel` builds it: the method from the
//! `http_extension` verb (`GET` without one), the path `/<method>`, the `querystring`, the call's
//! headers (from LayOtto's API: its gRPC metadata), `Host: localhost` and the header `id` = the
//! app id; the message data is the body. The exchange (answer and body) is bounded by the
//! metadata's `rpc_request_timeout` (milliseconds, default 3000). The answer (status, headers, body) comes back; for LayOtto's
//! `InvokeService` a status other than 200 is `UNAVAILABLE` with `http response code <status>,
//! body: <body>`, as LayOtto's. Runs on the calling shard, against that shard's instance of the
//! proxy (its upstream connections).

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use async_trait::async_trait;
use futures_lite::future::or;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use layotto_filters::http_proxy::{HttpProxyDirectory, HttpProxyFactory, boxed};
use serde::Deserialize;
use serde_json::Value;

use super::{InvokeRequest, Invoked, Invoker, forwardable};
use crate::{
    components::{component::Component, registry::Entry},
    error::ApiError,
};

/// LayOtto's metadata key of a call's timeout, in milliseconds.
const REQUEST_TIMEOUT_KEY: &str = "rpc_request_timeout";
/// A call's timeout without `rpc_request_timeout` (LayOtto's `DefaultRequestTimeoutMs`).
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_millis(3000);
/// Largest answer body read (the gRPC default message size; a larger answer could not be sent).
const MAX_ANSWER: usize = 4 << 20;
/// The only channel protocol served.
const HTTP_CHANNEL: &str = "http";

#[derive(Deserialize)]
struct MosnConfig {
    #[serde(default)]
    before_invoke: Vec<Value>,
    #[serde(default)]
    after_invoke: Vec<Value>,
    #[serde(default)]
    channel: Vec<Value>,
}

#[derive(Deserialize)]
struct ChannelConfig {
    protocol: String,
    listener: String,
    #[serde(rename = "size")]
    _size: Option<usize>,
}

/// Builds one from its entry's `config` (LayOtto's `mosnConfig`).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn Invoker>> {
    let Some(config) = entry.field("config") else {
        entry.error("config", "missing: the mosn invoker's channel");
        return None;
    };
    let path = layotto_core::config::join(entry.path(), "config");
    let config: MosnConfig = entry.decode(&config, &path, &[])?;
    for (key, callbacks) in [
        ("before_invoke", &config.before_invoke),
        ("after_invoke", &config.after_invoke),
    ] {
        if !callbacks.is_empty() {
            entry.error(
                &format!("config.{key}"),
                "invoke callbacks (LayOtto's Go plug-ins) are not supported",
            );
        }
    }
    let channels_path = layotto_core::config::join(&path, "channel");
    let Some((first, rest)) = config.channel.split_first() else {
        entry.error(
            "config.channel",
            "missing channel config (one http channel)",
        );
        return None;
    };
    if !rest.is_empty() {
        entry.ignore(
            &layotto_core::config::index(&channels_path, 1),
            "only the first channel is used, as LayOtto",
        );
    }
    let channel_path = layotto_core::config::index(&channels_path, 0);
    let channel: ChannelConfig = entry.decode(first, &channel_path, &["ext"])?;
    if channel.protocol != HTTP_CHANNEL {
        entry.error(
            "config.channel[0].protocol",
            format!(
                "channel protocol \"{}\" is not supported (supported: {HTTP_CHANNEL})",
                channel.protocol
            ),
        );
        return None;
    }
    if channel.listener.parse::<std::net::SocketAddr>().is_ok() {
        entry.error(
            "config.channel[0].listener",
            "a listener address is not supported; name the listener (served in process)",
        );
        return None;
    }
    let proxies = entry.http_proxies().clone();
    proxies.want(
        &channel.listener,
        &layotto_core::config::join(&channel_path, "listener"),
    );
    Some(Arc::new(MosnInvoker {
        component: entry.component().to_owned(),
        listener: channel.listener,
        proxies,
        proxy: OnceLock::new(),
    }))
}

/// The invoker: the listener its calls go to.
struct MosnInvoker {
    component: String,
    listener: String,
    proxies: Arc<HttpProxyDirectory>,
    /// The listener's proxy, found at start-up.
    proxy: OnceLock<Arc<HttpProxyFactory>>,
}

#[async_trait(?Send)]
impl Component for MosnInvoker {
    async fn start(&self) -> Result<(), ApiError> {
        let proxy = self.proxies.get(&self.listener).ok_or_else(|| {
            ApiError::unavailable(format!(
                "{}: listener \"{}\" has no HTTP proxy",
                self.component, self.listener
            ))
        })?;
        let _ = self.proxy.set(proxy);
        Ok(())
    }
}

#[async_trait(?Send)]
impl Invoker for MosnInvoker {
    async fn invoke(&self, request: InvokeRequest<'_>) -> Result<Invoked, ApiError> {
        let proxy = self
            .proxy
            .get()
            .and_then(|proxy| proxy.on_this_shard())
            .ok_or_else(|| {
                ApiError::unavailable(format!(
                    "{}: listener \"{}\" is not serving on this shard",
                    self.component, self.listener
                ))
            })?;
        let timeout = request_timeout(request.headers);
        let request = channel_request(request)
            .map_err(|err| ApiError::InvalidArgument(format!("{}: {err}", self.component)))?;
        let exchange = async {
            let (parts, body) = proxy.forward(request).await.into_parts();
            let body = Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map_err(|err| {
                    ApiError::unreachable(
                        format!("{}: reading the answer failed", self.component),
                        err,
                    )
                })?
                .to_bytes();
            Ok((parts, body))
        };
        let expired = async {
            glommio::timer::sleep(timeout).await;
            Err(ApiError::unavailable(format!(
                "{}: no answer within {} ms",
                self.component,
                timeout.as_millis()
            )))
        };
        let (parts, data) = or(exchange, expired).await?;
        Ok(Invoked {
            status: parts.status,
            headers: parts.headers,
            data,
            grpc_status: None,
        })
    }

    /// LayOtto's `httpchannel`: a status other than 200 is UNAVAILABLE with the body.
    fn failure(&self, _id: &str, answer: &Invoked) -> Option<ApiError> {
        (answer.status != StatusCode::OK).then(|| {
            ApiError::unavailable(format!(
                "http response code {}, body: {}",
                answer.status.as_u16(),
                String::from_utf8_lossy(&answer.data)
            ))
        })
    }
}

/// `rpc_request_timeout` of the metadata (milliseconds; absent, unparsable or 0: the default).
fn request_timeout(metadata: &HeaderMap) -> Duration {
    metadata
        .get(REQUEST_TIMEOUT_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|ms| *ms > 0)
        .map_or(DEFAULT_REQUEST_TIMEOUT, |ms| {
            Duration::from_millis(u64::from(ms))
        })
}

/// The request LayOtto's `httpchannel` builds for a call.
fn channel_request(
    call: InvokeRequest<'_>,
) -> Result<Request<layotto_filters::http_proxy::ProxyBody>, http::Error> {
    let mut target = format!("/{}", call.method.trim_start_matches('/'));
    let query = call.querystring.trim_start_matches('?');
    if !query.is_empty() {
        target.push('?');
        target.push_str(query);
    }
    let mut request = Request::builder()
        .method(call.verb.unwrap_or(Method::GET))
        .uri(target)
        .body(boxed(Full::new(call.data)))?;
    let headers = request.headers_mut();
    *headers = forwardable(call.headers);
    headers.insert(header::HOST, HeaderValue::from_static("localhost"));
    headers.insert("id", HeaderValue::from_str(call.id)?);
    if !call.content_type.is_empty() {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(call.content_type)?,
        );
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn requests_are_built_as_layotto_s_httpchannel_builds_them() {
        let mut metadata = HeaderMap::new();
        metadata.insert("x-trace", HeaderValue::from_static("t1"));
        metadata.insert("content-type", HeaderValue::from_static("application/grpc"));
        metadata.insert("connection", HeaderValue::from_static("close"));
        let request = channel_request(InvokeRequest {
            id: "HelloService:1.0",
            method: "hello",
            verb: None,
            querystring: "a=1",
            data: Bytes::from_static(b"body"),
            content_type: "text/plain",
            headers: &metadata,
        })
        .unwrap();
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri(), "/hello?a=1");
        let headers = request.headers();
        assert_eq!(headers["id"], "HelloService:1.0");
        assert_eq!(headers["host"], "localhost");
        assert_eq!(headers["x-trace"], "t1");
        assert_eq!(headers["content-type"], "text/plain");
        assert!(!headers.contains_key("connection"));
    }

    #[test]
    fn the_timeout_is_rpc_request_timeout_in_milliseconds() {
        let mut metadata = HeaderMap::new();
        assert_eq!(request_timeout(&metadata), DEFAULT_REQUEST_TIMEOUT);
        metadata.insert(REQUEST_TIMEOUT_KEY, HeaderValue::from_static("250"));
        assert_eq!(request_timeout(&metadata), Duration::from_millis(250));
        metadata.insert(REQUEST_TIMEOUT_KEY, HeaderValue::from_static("soon"));
        assert_eq!(request_timeout(&metadata), DEFAULT_REQUEST_TIMEOUT);
    }
}
