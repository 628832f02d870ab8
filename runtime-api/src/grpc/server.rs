//! The `grpc` terminal filter: serves HTTP/2 with prior knowledge (h2c) on each shard's
//! connections, routed by `:path`. A call is polled first in its connection's task: one whose
//! handler completes without waiting is answered there, one that waits goes on in a task of its
//! own. Applies the call's `grpc-timeout`, notices client cancellation, writes `grpc-status`
//! trailers, sends keep-alive PINGs when configured, and on process drain sends GOAWAY so clients
//! finish their calls and go elsewhere. What h2 writes in one poll round of a connection's task
//! leaves in one send ([`super::write_buffer`]). Everything runs on the shard that accepted the
//! connection.

use std::{
    cell::{Cell, RefCell},
    future::poll_fn,
    rc::Rc,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_lite::future::{BoxedLocal, or};
use glommio::net::TcpStream;
use h2::{Ping, PingPong, RecvStream, server::SendResponse};
use layotto_core::{handler::ConnectionInfo, read_uninit::TokioIo};
use layotto_filters::{
    chain::{Observers, Terminal, TerminalFactory},
    observed::{ByteCounters, ObservedStream},
    stream::{StreamFilterFactory, StreamFilters},
};
use tracing::debug;

use super::{
    budget::{ConnectionBuffers, ListenerBuffers},
    call::{self, Requests, ResponseState, Responses, SharedResponse},
    guard::{ConnectionTimeouts, GuardedStream, Watch},
    router::{Call, Router},
    stats::{GrpcStats, RpcStats},
    status::{Code, Status},
    timeout,
    write_buffer::{self, BufferedStream, WRITE_BUFFER_CAPACITY},
};

pub use super::settings::GrpcSettings;

/// Request headers looked up in every call, parsed once.
const GRPC_ENCODING: http::HeaderName = http::HeaderName::from_static("grpc-encoding");
const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");

/// A handler's work for one call, as its [`Router`] entry returns it.
type Work = BoxedLocal<Result<(), Status>>;

/// Builds each shard's router.
pub type RouterFactory = Arc<dyn Fn(usize) -> Router + Send + Sync>;

/// The configured server, shared by all shards.
pub struct GrpcServerFactory {
    settings: GrpcSettings,
    routes: RouterFactory,
    stream_filters: Vec<Arc<dyn StreamFilterFactory>>,
    stats: Arc<GrpcStats>,
    bytes: Arc<ByteCounters>,
    buffers: Arc<ListenerBuffers>,
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
            buffers: Arc::new(ListenerBuffers::new(listener.to_owned(), settings.buffers)),
        }
    }

    /// The buffered-byte counts of all connections, for `/metrics`.
    pub fn buffers(&self) -> Arc<ListenerBuffers> {
        self.buffers.clone()
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
            buffers: self.buffers.clone(),
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
    buffers: Arc<ListenerBuffers>,
}

impl Terminal for GrpcServer {
    fn serve(
        self: Rc<Self>,
        stream: TcpStream,
        conn: ConnectionInfo,
        observers: Observers,
    ) -> BoxedLocal<()> {
        let _ = stream.set_nodelay(true);
        let stream = ObservedStream::new(stream, observers, self.bytes.clone(), conn.shard);
        // What h2 writes in one poll round of the connection's task leaves in one send.
        let (stream, flusher) = write_buffer::buffered(stream, WRITE_BUFFER_CAPACITY);
        Box::pin(flusher.send_on_yield(self.serve_connection(stream, conn)))
    }
}

impl GrpcServer {
    async fn serve_connection(
        self: Rc<Self>,
        stream: BufferedStream<ObservedStream<TcpStream>>,
        conn: ConnectionInfo,
    ) {
        let s = &self.settings;
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
        let handshake = async { Some(builder.handshake::<_, Bytes>(TokioIo::new(stream)).await) };
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
        // The connection task's own waker: a call polled inline registers it, which at worst
        // wakes the connection once more, until the call's own task (if it needs one) polls it.
        let waker = poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
        let calls = Rc::new(CallCount::new());
        let buffers = ConnectionBuffers::new(self.buffers.clone());
        let mut shutdown = conn.shutdown.clone();
        let mut draining = false;
        // One future for the connection's life (not one per call): its first handshake, flood,
        // idle or keep-alive event, or the process's drain.
        let mut events = Box::pin(or(
            connection_events(
                watch,
                handshake_deadline,
                calls.clone(),
                s.timeouts,
                connection.ping_pong(),
            ),
            async move {
                shutdown.wait().await;
                Event::Drain
            },
        ));
        loop {
            let accepted = if draining {
                connection.accept().await
            } else {
                let next = or(async { Ok(connection.accept().await) }, async {
                    Err(events.as_mut().await)
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
                    Err(event @ (Event::Flood | Event::Unanswered)) => {
                        let reason = if let Event::Flood = event {
                            debug!(peer = %conn.peer, "PING/SETTINGS flood; GOAWAY ENHANCE_YOUR_CALM");
                            h2::Reason::ENHANCE_YOUR_CALM
                        } else {
                            debug!(peer = %conn.peer, "keep-alive PING unanswered; GOAWAY");
                            h2::Reason::NO_ERROR
                        };
                        connection.abrupt_shutdown(reason);
                        let close = async { while let Some(Ok(_)) = connection.accept().await {} };
                        or(close, glommio::timer::sleep(s.timeouts.close_grace)).await;
                        return;
                    }
                }
            };
            match accepted {
                None => break,
                Some(Ok((request, respond))) => {
                    let mut cx = Context::from_waker(&waker);
                    self.start_call(
                        request,
                        respond,
                        calls.start(),
                        &buffers,
                        conn.shard,
                        &mut cx,
                    );
                }
                Some(Err(err)) => {
                    debug!(peer = %conn.peer, error = %err, "HTTP/2 connection ended");
                    break;
                }
            }
        }
    }

    /// Starts a call the connection accepted: refuses it, or routes it and polls its handler
    /// once, here in the connection's task. A handler that completes without waiting (hello,
    /// in-memory state) is answered at once, its response frames queued in the same poll round,
    /// with no task of its own; one that waits (a backend, more request bytes, the client's
    /// window) goes on in a task of its own under the call's deadline and the client's
    /// cancellation.
    fn start_call(
        self: &Rc<Self>,
        request: http::Request<RecvStream>,
        mut respond: SendResponse<Bytes>,
        in_progress: CallInProgress,
        buffers: &Rc<ConnectionBuffers>,
        shard: usize,
        cx: &mut Context<'_>,
    ) {
        if !buffers.admit_stream() {
            // The connection or the listener holds half a buffer limit: the client may retry the
            // call (later, or elsewhere), as nothing of it was processed.
            respond.send_reset(h2::Reason::REFUSED_STREAM);
            return;
        }
        let (parts, body) = request.into_parts();
        if parts.method != http::Method::POST || !is_grpc(&parts.headers) {
            glommio::spawn_local(async move {
                reject_not_grpc(body, respond).await;
                drop(in_progress);
            })
            .detach();
            return;
        }
        let started = Instant::now();
        let method = self.stats.method(parts.uri.path());
        method.started(shard);
        let response = Rc::new(RefCell::new(ResponseState::Waiting(respond)));
        let (mut work, deadline) =
            match self.route(parts.uri.path(), parts.headers, body, &response, buffers) {
                Ok(routed) => routed,
                Err(status) => return end_call(&response, status, method, shard, started),
            };
        if let Poll::Ready(result) = work.as_mut().poll(cx) {
            return end_call(
                &response,
                result.err().unwrap_or_else(Status::ok),
                method,
                shard,
                started,
            );
        }
        self.stats.waited(shard);
        let server = self.clone();
        let uri = parts.uri;
        glommio::spawn_local(async move {
            let status = wait_for(work, deadline, &response).await;
            end_call(
                &response,
                status,
                server.stats.method(uri.path()),
                shard,
                started,
            );
            drop(in_progress);
        })
        .detach();
    }

    /// The handler's work for the call at `path`, not polled yet, and the call's deadline; or the
    /// status that refuses the call.
    fn route(
        &self,
        path: &str,
        headers: http::HeaderMap,
        body: RecvStream,
        response: &SharedResponse,
        buffers: &Rc<ConnectionBuffers>,
    ) -> Result<(Work, Option<Duration>), Status> {
        let Some(handler) = self.router.get(path) else {
            return Err(Status::new(
                Code::Unimplemented,
                format!("unknown method {path}"),
            ));
        };
        if let Err(rejection) = self.stream_filters.on_call(path) {
            return Err(rejection.into());
        }
        if let Some(encoding) = headers.get(GRPC_ENCODING)
            && encoding != "identity"
        {
            return Err(Status::new(
                Code::Unimplemented,
                format!("grpc-encoding {encoding:?} is not supported; only identity is"),
            ));
        }
        let deadline = match headers.get(GRPC_TIMEOUT) {
            None => None,
            Some(value) => match value.to_str().map_err(|_| ()).map(timeout::parse) {
                Ok(Ok(deadline)) => Some(deadline),
                Ok(Err(status)) => return Err(status),
                Err(()) => return Err(Status::new(Code::Internal, "malformed grpc-timeout")),
            },
        };
        let max = self.settings.max_message_size;
        let work = handler(Call {
            headers,
            requests: Requests::new(body, max, buffers),
            responses: Responses::new(response.clone(), max, buffers.clone()),
        });
        Ok((work, deadline))
    }
}

/// Runs a handler that waited to its end, under `deadline` (from now) and the client's
/// cancellation; returns the call's status.
async fn wait_for(work: Work, deadline: Option<Duration>, response: &SharedResponse) -> Status {
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

/// Writes the call's status and counts it.
fn end_call(
    response: &SharedResponse,
    status: Status,
    method: &RpcStats,
    shard: usize,
    started: Instant,
) {
    if status.code != Code::Ok && status.code != Code::Cancelled {
        debug!(%status, "call failed");
    }
    call::finish(response, &status);
    method.finished(shard, status.code, started.elapsed());
}

fn is_grpc(headers: &http::HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// Answers a request that is not gRPC with 415, after reading (and dropping) it to its end, so
/// the stream ends as HTTP/2 says and not with an early reset; the connection's flow control
/// bounds what is read.
async fn reject_not_grpc(mut body: RecvStream, respond: SendResponse<Bytes>) {
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(chunk) => {
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            Err(_) => return,
        }
    }
    call::reject_http(respond, http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
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
    /// A keep-alive PING went unanswered for the keep-alive timeout.
    Unanswered,
}

/// The connection's first handshake, flood, idle or keep-alive event.
async fn connection_events(
    watch: Watch,
    handshake_deadline: Instant,
    calls: Rc<CallCount>,
    timeouts: ConnectionTimeouts,
    pings: Option<PingPong>,
) -> Event {
    let flooded = async {
        watch.flooded().await;
        Event::Flood
    };
    let unanswered = async {
        match (timeouts.keepalive_interval, pings) {
            (Some(interval), Some(pings)) => {
                keep_alive(pings, interval, timeouts.keepalive_timeout).await
            }
            _ => std::future::pending().await,
        }
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
        calls.idle_for(timeouts.idle).await;
        Event::Idle
    };
    or(or(flooded, unanswered), lifetime).await
}

/// Sends a PING every `interval` and waits up to `timeout` for its answer; resolves when one
/// goes unanswered. (h2 answers the client's PINGs itself; this is the server's own.)
async fn keep_alive(mut pings: PingPong, interval: Duration, timeout: Duration) -> Event {
    loop {
        glommio::timer::sleep(interval).await;
        if pings.send_ping(Ping::opaque()).is_err() {
            // The connection is ending; its driver notices on its own.
            return std::future::pending().await;
        }
        let pong = async { Some(poll_fn(|cx| pings.poll_pong(cx)).await) };
        match or(pong, sleep_until(Instant::now() + timeout, None)).await {
            Some(Ok(_)) => {}
            Some(Err(_)) => return std::future::pending().await,
            None => return Event::Unanswered,
        }
    }
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
