//! Dapr's HTTP API v1.0, the `dapr_http` terminal filter: HTTP/1.1 (hyper, on the shard that
//! accepted the connection, through [`layotto_filters::http1`]) over the same process-level
//! [`Runtime`] LayOtto's gRPC API serves. One module per building block answers its routes in a
//! few lines over the block's contract; [`request`] holds what they share (the request as a
//! handler sees it, replies, JSON). Routing, the `dapr-api-token` check and the body cap are
//! here. Errors become Dapr's statuses and `{"errorCode","message"}` bodies in one place,
//! [`crate::error::DaprHttpError`].
//!
//! State keys are stored as daprd stores them, `{app_id}||{key}`, so a Dapr sidecar with the same
//! app id sharing the store sees the same items.

mod binding;
mod configuration;
mod health;
mod invoke;
mod lock;
mod metadata;
mod pubsub;
mod request;
mod secret;
mod state;

use std::{convert::Infallible, rc::Rc, sync::Arc};

use bytes::Bytes;
use futures_lite::future::BoxedLocal;
use glommio::net::TcpStream;
use http::{Method, Response};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use layotto_core::{
    config::{FilterConfig, Findings, join, parse_duration},
    handler::ConnectionInfo,
    shutdown::ShutdownTrigger,
};
use layotto_filters::{
    chain::{Observers, Terminal, TerminalFactory},
    http1::{self, BodyError, ServerLimits},
    observed::{ByteCounters, ObservedStream},
    registry::BuildContext,
};
use serde::Deserialize;
use tracing::debug;

use crate::{components::app_callback::AppProtocol, dapr, error::DaprHttpError, runtime::Runtime};
use request::{DaprRequest, Reply};

/// The filter's `type` in the config.
pub const KIND: &str = "dapr_http";

/// Largest request body by default: daprd's `--max-body-size` default, 4 MiB.
const DEFAULT_MAX_BODY: usize = 4 << 20;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DaprHttpConfig {
    dapr_api_token: Option<String>,
    max_body_size: Option<usize>,
    head_timeout: Option<String>,
    app_port: Option<u16>,
}

/// The `dapr_http` terminal's builder: Dapr HTTP API servers over `runtime`; `stop` is what
/// `POST /v1.0/shutdown` triggers (the drain SIGTERM starts).
pub fn builder(
    runtime: Arc<Runtime>,
    stop: Arc<ShutdownTrigger>,
) -> impl Fn(&FilterConfig, &BuildContext<'_>, &mut Findings) -> Option<Arc<dyn TerminalFactory>>
+ Send
+ Sync
+ 'static {
    move |filter, ctx, findings| build(filter, ctx, findings, &runtime, &stop)
}

fn build(
    filter: &FilterConfig,
    ctx: &BuildContext<'_>,
    findings: &mut Findings,
    runtime: &Arc<Runtime>,
    stop: &Arc<ShutdownTrigger>,
) -> Option<Arc<dyn TerminalFactory>> {
    let path = join(&filter.path, "config");
    let config: DaprHttpConfig = match &filter.config {
        serde_json::Value::Null => DaprHttpConfig {
            dapr_api_token: None,
            max_body_size: None,
            head_timeout: None,
            app_port: None,
        },
        config => findings.decode(config, &path, &[])?,
    };
    let mut limits = ServerLimits::default();
    if let Some(text) = &config.head_timeout {
        match parse_duration(text) {
            Ok(timeout) if !timeout.is_zero() => limits.head_timeout = timeout,
            Ok(_) => findings.error(join(&path, "head_timeout"), "must be greater than zero"),
            Err(err) => findings.error(join(&path, "head_timeout"), err),
        }
    }
    let max_body = config.max_body_size.unwrap_or(DEFAULT_MAX_BODY);
    if max_body == 0 {
        findings.error(join(&path, "max_body_size"), "must be greater than zero");
    }
    let token = dapr::api_token(config.dapr_api_token);
    if token.is_none()
        && let Some(listener) = ctx
            .listener
            .filter(|l| l.unix_path.is_none() && !l.address.ip().is_loopback())
    {
        findings.ignore(
            listener.path.clone(),
            format!(
                "the Dapr HTTP API on {} answers anyone who can reach it, without an API token; \
                 bind 127.0.0.1 or set config.dapr_api_token (or {})",
                listener.address,
                dapr::TOKEN_ENV
            ),
        );
    }
    let server = DaprHttpFactory {
        shared: Arc::new(Shared {
            runtime: runtime.clone(),
            token,
            max_body,
            limits,
            stop: stop.clone(),
            app_port: config.app_port.or_else(|| http_app_port(runtime)),
            subscriptions: configuration::Subscriptions::default(),
        }),
        bytes: Arc::new(ByteCounters::new(ctx.shards)),
    };
    Some(Arc::new(server))
}

/// The port of the app's Dapr channel when it speaks HTTP (`app.app_port`, daprd's
/// `--app-port`), where configuration changes go when the filter names no `app_port`.
fn http_app_port(runtime: &Runtime) -> Option<u16> {
    runtime
        .app()
        .filter(|app| app.app_protocol == AppProtocol::Http)
        .and_then(|app| app.app_port)
}

/// What every shard's server shares.
struct Shared {
    runtime: Arc<Runtime>,
    /// The API token callers must send, if any.
    token: Option<String>,
    max_body: usize,
    limits: ServerLimits,
    stop: Arc<ShutdownTrigger>,
    /// The app's HTTP port on 127.0.0.1 (daprd's `--app-port`): where configuration changes
    /// are pushed.
    app_port: Option<u16>,
    /// Configuration subscriptions by id (an unsubscribe may come on any shard).
    subscriptions: configuration::Subscriptions,
}

/// The configured Dapr HTTP API of one listener, shared by all shards.
struct DaprHttpFactory {
    shared: Arc<Shared>,
    bytes: Arc<ByteCounters>,
}

impl TerminalFactory for DaprHttpFactory {
    fn for_shard(&self, shard: usize) -> Rc<dyn Terminal> {
        Rc::new(DaprHttp {
            api: Rc::new(DaprHttpApi {
                shared: self.shared.clone(),
                shard,
            }),
            bytes: self.bytes.clone(),
        })
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.bytes.counters().to_vec()
    }
}

/// One shard's server.
struct DaprHttp {
    api: Rc<DaprHttpApi>,
    bytes: Arc<ByteCounters>,
}

impl Terminal for DaprHttp {
    fn serve(
        self: Rc<Self>,
        stream: TcpStream,
        conn: ConnectionInfo,
        observers: Observers,
    ) -> BoxedLocal<()> {
        Box::pin(async move {
            let _ = stream.set_nodelay(true);
            let stream = ObservedStream::new(stream, observers, self.bytes.clone(), conn.shard);
            let api = self.api.clone();
            let service = service_fn(move |request| api.clone().answer(request));
            if let Err(err) =
                http1::serve(stream, service, self.api.shared.limits, conn.shutdown).await
            {
                debug!(peer = %conn.peer, error = %err, "Dapr HTTP connection ended");
            }
        })
    }
}

/// The Dapr HTTP API on one shard.
struct DaprHttpApi {
    shared: Arc<Shared>,
    shard: usize,
}

impl DaprHttpApi {
    fn runtime(&self) -> &Runtime {
        &self.shared.runtime
    }

    /// Answers one request: token check, body read (capped), routing, and the error body.
    async fn answer(
        self: Rc<Self>,
        request: http::Request<Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let (head, body) = request.into_parts();
        let path = head.uri.path().to_owned();
        let traceparent = head.headers.get("traceparent").cloned();
        let reply = async {
            let segments = request::segments(&path)?;
            let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
            if !health::is_open_route(&head.method, &segments) {
                self.check_token(&head.headers)?;
            }
            let body =
                http1::read_body(body, self.shared.max_body)
                    .await
                    .map_err(|err| match err {
                        BodyError::TooLarge(max) => DaprHttpError::body_too_large(max),
                        BodyError::Read(err) => DaprHttpError::body_read(&err),
                    })?;
            let request = DaprRequest::new(head, body);
            self.route(&request, &segments).await
        }
        .await;
        let mut response = reply.unwrap_or_else(Reply::error).into_response();
        if let Some(traceparent) = traceparent {
            response.headers_mut().insert("traceparent", traceparent);
        }
        Ok(response)
    }

    fn check_token(&self, headers: &http::HeaderMap) -> Result<(), DaprHttpError> {
        let Some(token) = &self.shared.token else {
            return Ok(());
        };
        match headers.get(dapr::TOKEN_HEADER) {
            Some(sent) if sent.as_bytes() == token.as_bytes() => Ok(()),
            _ => Err(DaprHttpError::invalid_token()),
        }
    }

    /// Dispatches on the method and the decoded path segments.
    async fn route(&self, request: &DaprRequest, path: &[&str]) -> Result<Reply, DaprHttpError> {
        use Method as M;
        let method = &request.method;
        let any_write = *method == M::POST || *method == M::PUT;
        match path {
            ["v1.0", "healthz"] if *method == M::GET => health::healthz(self, request),
            ["v1.0", "healthz", "outbound"] if *method == M::GET => Ok(Reply::no_content()),
            ["v1.0", "metadata"] if *method == M::GET => Ok(metadata::get(self)),
            ["v1.0", "metadata", key] if *method == M::PUT => metadata::put(self, key, request),
            ["v1.0", "shutdown"] if *method == M::POST => Ok(health::shutdown(self)),
            ["v1.0", "state", store, "bulk"] if any_write => {
                state::get_bulk(self, store, request).await
            }
            ["v1.0", "state", store, "transaction"] if any_write => {
                state::transaction(self, store, request).await
            }
            ["v1.0", "state", store] if any_write => state::save(self, store, request).await,
            ["v1.0-alpha1", "state", store, "query"] if any_write => {
                state::query(self, store, request).await
            }
            ["v1.0", "state", store, key] if *method == M::GET => {
                state::get(self, store, key).await
            }
            ["v1.0", "state", store, key] if *method == M::DELETE => {
                state::delete_key(self, store, key, request).await
            }
            [
                "v1.0" | "v1.0-alpha1",
                "publish",
                "bulk",
                pubsub,
                topic @ ..,
            ] if any_write && !topic.is_empty() => {
                pubsub::publish_bulk(self, pubsub, &topic.join("/"), request).await
            }
            ["v1.0", "publish", pubsub, topic @ ..] if any_write && !topic.is_empty() => {
                pubsub::publish(self, pubsub, &topic.join("/"), request).await
            }
            ["v1.0", "bindings", name] if any_write => binding::invoke(self, name, request).await,
            ["v1.0", "invoke", app, "method", method_path @ ..] => {
                invoke::invoke(self, app, &method_path.join("/"), request).await
            }
            ["v1.0", "secrets", store, "bulk"] if *method == M::GET => {
                secret::get_bulk(self, store)
            }
            ["v1.0", "secrets", store, key] if *method == M::GET => secret::get(self, store, key),
            ["v1.0" | "v1.0-alpha1", "configuration", store] if *method == M::GET => {
                configuration::get(self, store, request).await
            }
            ["v1.0" | "v1.0-alpha1", "configuration", store, "subscribe"] if *method == M::GET => {
                configuration::subscribe(self, store, request).await
            }
            [
                "v1.0" | "v1.0-alpha1",
                "configuration",
                store,
                id,
                "unsubscribe",
            ] if *method == M::GET => configuration::unsubscribe(self, store, id),
            ["v1.0-alpha1", "lock", store] if *method == M::POST => {
                lock::try_lock(self, store, request).await
            }
            ["v1.0-alpha1", "unlock", store] if *method == M::POST => {
                lock::unlock(self, store, request).await
            }
            _ if request.headers.contains_key(invoke::APP_ID_HEADER) => {
                invoke::invoke_by_header(self, path, request).await
            }
            _ => Err(DaprHttpError::no_route(method, &request.path)),
        }
    }
}
