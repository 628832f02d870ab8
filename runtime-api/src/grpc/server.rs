//! The `grpc` terminal filter: serves HTTP/2 with prior knowledge (h2c) on each shard's
//! connections, one task per call, routed by `:path`. Applies the call's `grpc-timeout`, notices
//! client cancellation, writes `grpc-status` trailers, and on process drain sends GOAWAY so clients
//! finish their calls and go elsewhere. Everything runs on the shard that accepted the connection.

use std::{
    cell::{Cell, RefCell},
    future::poll_fn,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_lite::future::{BoxedLocal, or};
use glommio::net::TcpStream;
use h2::{RecvStream, server::SendResponse};
use layotto_core::handler::ConnectionInfo;
use layotto_filters::{
    chain::{Observers, Terminal, TerminalFactory},
    observed::{ByteCounters, ObservedStream},
    stream::{StreamFilterFactory, StreamFilters},
};
use tokio_util::compat::FuturesAsyncReadCompatExt;
use tracing::debug;

use super::{
    call::{self, Requests, ResponseState, Responses, SharedResponse},
    guard::{GuardedStream, Watch},
    router::{Call, Router},
    stats::GrpcStats,
    status::{Code, Status},
    timeout,
};

pub use super::settings::GrpcSettings;

/// Builds each shard's router.
pub type RouterFactory = Arc<dyn Fn(usize) -> Router + Send + Sync>;

/// The configured server, shared by all shards.
pub struct GrpcServerFactory {
    settings: GrpcSettings,
    routes: RouterFactory,
    stream_filters: Vec<Arc<dyn StreamFilterFactory>>,
    stats: Arc<GrpcStats>,
    bytes: Arc<ByteCounters>,
}

impl GrpcServerFactory {
    /// The server of listener `listener` on `shards` shards, with `settings`, routing with the
    /// routers `routes` builds after asking `stream_filters` about each call.
    pub fn new(
        settings: GrpcSettings,
        routes: RouterFactory,
        stream_filters: Vec<Arc<dyn StreamFilterFactory>>,
        listener: &str,
        shards: usize,
    ) -> Self {
        let paths: Vec<String> = routes(0).paths().map(str::to_owned).collect();
        Self {
            settings,
            routes,
            stream_filters,
            stats: Arc::new(GrpcStats::new(listener.to_owned(), shards, paths)),
            bytes: Arc::new(ByteCounters::new(shards)),
        }
    }

    /// The per-rpc statistics, for `/metrics`.
    pub fn stats(&self) -> Arc<GrpcStats> {
        self.stats.clone()
    }
}

impl TerminalFactory for GrpcServerFactory {
    fn for_shard(&self, shard: usize) -> Rc<dyn Terminal> {
        Rc::new(GrpcServer {
            router: (self.routes)(shard),
            settings: self.settings,
            stream_filters: StreamFilters::for_shard(&self.stream_filters, shard),
            stats: self.stats.clone(),
            bytes: self.bytes.clone(),
        })
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.bytes.counters().to_vec()
    }
}

/// One shard's server.
struct GrpcServer {
    router: Router,
    settings: GrpcSettings,
    stream_filters: StreamFilters,
    stats: Arc<GrpcStats>,
    bytes: Arc<ByteCounters>,
}

impl Terminal for GrpcServer {
    fn serve(
        self: Rc<Self>,
        stream: TcpStream,
        conn: ConnectionInfo,
        observers: Observers,
    ) -> BoxedLocal<()> {
        Box::pin(self.serve_connection(stream, conn, observers))
    }
}

impl GrpcServer {
    async fn serve_connection(
        self: Rc<Self>,
        stream: TcpStream,
        conn: ConnectionInfo,
        observers: Observers,
    ) {
        let _ = stream.set_nodelay(true);
        let s = &self.settings;
        let stream = ObservedStream::new(stream, observers, self.bytes.clone(), conn.shard);
        let (stream, watch) = GuardedStream::new(stream, s.control_frames);
        let mut builder = h2::server::Builder::new();
        builder
            .max_concurrent_streams(s.max_concurrent_streams)
            .max_header_list_size(s.max_header_list_size)
            .max_pending_accept_reset_streams(s.max_pending_accept_reset_streams)
            .max_local_error_reset_streams(Some(s.max_pending_accept_reset_streams * 32))
            .initial_window_size(s.stream_window)
            .initial_connection_window_size(s.connection_window);
        let handshake_deadline = Instant::now() + s.timeouts.handshake;
        let handshake = async { Some(builder.handshake::<_, Bytes>(stream.compat()).await) };
        let mut connection = match or(handshake, sleep_until(handshake_deadline, None)).await {
            Some(Ok(connection)) => connection,
            Some(Err(err)) => {
                debug!(peer = %conn.peer, error = %err, "not an HTTP/2 client; closing");
                return;
            }
            None => {
                debug!(peer = %conn.peer, "no client preface within the handshake timeout; closing");
                return;
            }
        };
        let calls = Rc::new(CallCount::new());
        let mut shutdown = conn.shutdown.clone();
        let mut draining = false;
        let mut events = Box::pin(connection_events(
            watch,
            handshake_deadline,
            calls.clone(),
            s.timeouts.idle,
        ));
        loop {
            let accepted = if draining {
                connection.accept().await
            } else {
                let next = or(async { Ok(connection.accept().await) }, async {
                    Err(or(events.as_mut(), async {
                        shutdown.wait().await;
                        Event::Drain
                    })
                    .await)
                })
                .await;
                match next {
                    Ok(accepted) => accepted,
                    Err(Event::Drain | Event::Idle) => {
                        connection.graceful_shutdown();
                        draining = true;
                        continue;
                    }
                    Err(Event::HandshakeTimeout) => {
                        debug!(peer = %conn.peer, "no SETTINGS within the handshake timeout; closing");
                        return;
                    }
                    Err(Event::Flood) => {
                        debug!(peer = %conn.peer, "PING/SETTINGS flood; GOAWAY ENHANCE_YOUR_CALM");
                        connection.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                        let close = async { while let Some(Ok(_)) = connection.accept().await {} };
                        or(close, glommio::timer::sleep(s.timeouts.close_grace)).await;
                        return;
                    }
                }
            };
            match accepted {
                None => break,
                Some(Ok((request, respond))) => {
                    let call = calls.start();
                    let server = self.clone();
                    glommio::spawn_local(async move {
                        serve_call(server, request, respond, conn.shard).await;
                        drop(call);
                    })
                    .detach();
                }
                Some(Err(err)) => {
                    debug!(peer = %conn.peer, error = %err, "HTTP/2 connection ended");
                    break;
                }
            }
        }
    }

    /// Runs the call's handler under its deadline and the client's cancellation; returns the status.
    async fn dispatch(
        &self,
        parts: http::request::Parts,
        body: RecvStream,
        response: &SharedResponse,
    ) -> Status {
        let path = parts.uri.path();
        let Some(handler) = self.router.get(path) else {
            return Status::new(Code::Unimplemented, format!("unknown method {path}"));
        };
        if let Err(rejection) = self.stream_filters.on_call(path) {
            return rejection.into();
        }
        if let Some(encoding) = parts.headers.get("grpc-encoding")
            && encoding != "identity"
        {
            return Status::new(
                Code::Unimplemented,
                format!("grpc-encoding {encoding:?} is not supported; only identity is"),
            );
        }
        let deadline = match parts.headers.get("grpc-timeout") {
            None => None,
            Some(value) => match value.to_str().map_err(|_| ()).map(timeout::parse) {
                Ok(Ok(deadline)) => Some(deadline),
                Ok(Err(status)) => return status,
                Err(()) => return Status::new(Code::Internal, "malformed grpc-timeout"),
            },
        };
        let max = self.settings.max_message_size;
        let work = handler(Call {
            headers: parts.headers,
            requests: Requests::new(body, max),
            responses: Responses::new(response.clone(), max),
        });
        let bounded = async {
            match deadline {
                None => work.await,
                Some(limit) => or(work, expire(limit)).await,
            }
        };
        let cancelled = async {
            poll_fn(|cx| call::poll_reset(response, cx)).await;
            Err(Status::new(Code::Cancelled, "cancelled by the client"))
        };
        or(bounded, cancelled)
            .await
            .err()
            .unwrap_or_else(Status::ok)
    }
}

/// Why the connection driver stops accepting calls.
enum Event {
    /// The process is draining.
    Drain,
    /// No client SETTINGS frame within the handshake timeout.
    HandshakeTimeout,
    /// The client exceeded its control-frame budget.
    Flood,
    /// No call in progress for the idle timeout.
    Idle,
}

/// The connection's first handshake, flood or idle event.
async fn connection_events(
    watch: Watch,
    handshake_deadline: Instant,
    calls: Rc<CallCount>,
    idle: Duration,
) -> Event {
    let flooded = async {
        watch.flooded().await;
        Event::Flood
    };
    let lifetime = async {
        let settings = async {
            watch.settings_received().await;
            None
        };
        if let Some(event) = or(
            settings,
            sleep_until(handshake_deadline, Some(Event::HandshakeTimeout)),
        )
        .await
        {
            return event;
        }
        calls.idle_for(idle).await;
        Event::Idle
    };
    or(flooded, lifetime).await
}

async fn sleep_until<T>(deadline: Instant, value: T) -> T {
    glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
    value
}

/// The calls in progress on one connection, and since when there have been none.
struct CallCount {
    active: Cell<usize>,
    idle_since: Cell<Instant>,
}

impl CallCount {
    fn new() -> Self {
        Self {
            active: Cell::new(0),
            idle_since: Cell::new(Instant::now()),
        }
    }

    fn start(self: &Rc<Self>) -> CallInProgress {
        self.active.set(self.active.get() + 1);
        CallInProgress(self.clone())
    }

    /// Resolves once no call has been in progress for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let wait = if self.active.get() == 0 {
                let elapsed = self.idle_since.get().elapsed();
                if elapsed >= idle {
                    return;
                }
                idle - elapsed
            } else {
                idle
            };
            glommio::timer::sleep(wait).await;
        }
    }
}

/// Counts one call while it lives.
struct CallInProgress(Rc<CallCount>);

impl Drop for CallInProgress {
    fn drop(&mut self) {
        let count = &self.0;
        count.active.set(count.active.get() - 1);
        if count.active.get() == 0 {
            count.idle_since.set(Instant::now());
        }
    }
}

async fn expire(limit: Duration) -> Result<(), Status> {
    glommio::timer::sleep(limit).await;
    Err(Status::new(
        Code::DeadlineExceeded,
        format!("deadline of {limit:?} exceeded"),
    ))
}

async fn serve_call(
    server: Rc<GrpcServer>,
    request: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    shard: usize,
) {
    let (parts, mut body) = request.into_parts();
    let is_grpc = parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if parts.method != http::Method::POST || !is_grpc {
        // Read (and drop) the request to its end first, so the stream ends as HTTP/2 says and
        // not with an early reset; the connection's flow control bounds what is read.
        while let Some(chunk) = body.data().await {
            match chunk {
                Ok(chunk) => {
                    let _ = body.flow_control().release_capacity(chunk.len());
                }
                Err(_) => return,
            }
        }
        call::reject_http(respond, http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
        return;
    }
    let started = Instant::now();
    let stats = server.stats.clone();
    let method = stats.method(parts.uri.path());
    method.started(shard);
    let response = Rc::new(RefCell::new(ResponseState::Waiting(respond)));
    let status = server.dispatch(parts, body, &response).await;
    if status.code != Code::Ok && status.code != Code::Cancelled {
        debug!(%status, "call failed");
    }
    call::finish(&response, &status);
    method.finished(shard, status.code, started.elapsed());
}
