//! The gRPC server layer on its own, over real sockets: a test router (echo, collect, flood, slow,
//! hang) served by `GrpcServerFactory` on a glommio executor, called by tonic. Covers the four
//! call shapes, flow-control backpressure both ways, deadlines, cancellation, many streams on one
//! connection and GOAWAY on drain. Handlers tell the tests where they are through a shared
//! [`Probe`]; the only sleeps are the observation windows of the backpressure tests.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

use std::{
    net::SocketAddr,
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::StreamExt;
use http::uri::PathAndQuery;
use layotto_core::{
    handler::ConnectionInfo,
    metrics::{Exposition, MetricSource},
    shutdown::{self, ShutdownSignal, ShutdownTrigger},
};
use layotto_filters::chain::{Observers, TerminalFactory};
use layotto_proto::runtime::{GetFileResponse, SayHelloRequest, SayHelloResponse};
use layotto_runtime_api::grpc::{
    call::{Requests, Responses},
    router::{Router, bidirectional, client_streaming, server_streaming, unary},
    server::{GrpcServerFactory, GrpcSettings},
    stats::GrpcStats,
    status::Status,
};
use tokio::sync::Notify;
use tonic::{Code, client::Grpc, transport::Channel};
use tonic_prost::ProstCodec;

const CHUNK: usize = 64 * 1024;
/// How long any single wait for a handler may take before the test fails.
const WAIT: Duration = Duration::from_secs(20);

/// What the test handlers record and wait for, shared with the tests on the client side.
struct Probe {
    flood_sent: AtomicUsize,
    hang_dropped: AtomicBool,
    /// Told when `Hang`'s handler is dropped.
    hang_dropped_now: Notify,
    /// Told by `Collect` once it has read its first message and stopped reading.
    collect_paused: Notify,
    /// Tells `Collect` to read on.
    collect_resume: Notify,
    /// Told by `UntilDrain` once its call has arrived.
    drain_call_arrived: Notify,
    /// The server's drain signal, which `UntilDrain` waits for.
    drain: ShutdownSignal,
}

struct TestService {
    probe: Arc<Probe>,
}

impl TestService {
    async fn echo(
        self: Rc<Self>,
        mut requests: Requests,
        mut responses: Responses,
    ) -> Result<(), Status> {
        while let Some(request) = requests.next::<SayHelloRequest>().await? {
            responses
                .send(&SayHelloResponse {
                    hello: request.name,
                    data: None,
                })
                .await?;
        }
        Ok(())
    }

    /// Reads one message, pauses (not reading) until the test resumes it, then reads the rest;
    /// answers with the count.
    async fn collect(self: Rc<Self>, mut requests: Requests) -> Result<SayHelloResponse, Status> {
        let mut count = usize::from(requests.next_raw().await?.is_some());
        self.probe.collect_paused.notify_one();
        self.probe.collect_resume.notified().await;
        while requests.next_raw().await?.is_some() {
            count += 1;
        }
        Ok(SayHelloResponse {
            hello: count.to_string(),
            data: None,
        })
    }

    /// Sends `name` chunks of 64 KiB as fast as the client's window allows.
    async fn flood(
        self: Rc<Self>,
        request: SayHelloRequest,
        mut responses: Responses,
    ) -> Result<(), Status> {
        let count: usize = request.name.parse().unwrap();
        let chunk = GetFileResponse {
            data: Bytes::from(vec![7u8; CHUNK]),
        };
        for _ in 0..count {
            responses.send(&chunk).await?;
            self.probe.flood_sent.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Answers after `name` milliseconds: a handler that takes that long (for deadlines).
    async fn slow(self: Rc<Self>, request: SayHelloRequest) -> Result<SayHelloResponse, Status> {
        let millis: u64 = request.name.parse().unwrap();
        glommio::timer::sleep(Duration::from_millis(millis)).await;
        Ok(SayHelloResponse {
            hello: "done".into(),
            data: None,
        })
    }

    /// Answers at once, without waiting for anything.
    async fn hello(self: Rc<Self>, request: SayHelloRequest) -> Result<SayHelloResponse, Status> {
        Ok(SayHelloResponse {
            hello: request.name,
            data: None,
        })
    }

    /// Answers only once the server drains: in flight when the drain starts, by construction.
    async fn until_drain(self: Rc<Self>, _: SayHelloRequest) -> Result<SayHelloResponse, Status> {
        self.probe.drain_call_arrived.notify_one();
        self.probe.drain.clone().wait().await;
        Ok(SayHelloResponse {
            hello: "done".into(),
            data: None,
        })
    }

    /// Sends one message, then waits until the call is dropped (cancelled).
    async fn hang(
        self: Rc<Self>,
        _: SayHelloRequest,
        mut responses: Responses,
    ) -> Result<(), Status> {
        struct OnDrop(Arc<Probe>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.hang_dropped.store(true, Ordering::SeqCst);
                self.0.hang_dropped_now.notify_one();
            }
        }
        let _guard = OnDrop(self.probe.clone());
        responses
            .send(&SayHelloResponse {
                hello: "first".into(),
                data: None,
            })
            .await?;
        std::future::pending::<()>().await;
        Ok(())
    }
}

struct TestServer {
    address: SocketAddr,
    stats: Arc<GrpcStats>,
    probe: Arc<Probe>,
    shutdown: ShutdownTrigger,
}

fn start_server() -> TestServer {
    let (shutdown, signal) = shutdown::channel();
    let probe = Arc::new(Probe {
        flood_sent: AtomicUsize::new(0),
        hang_dropped: AtomicBool::new(false),
        hang_dropped_now: Notify::new(),
        collect_paused: Notify::new(),
        collect_resume: Notify::new(),
        drain_call_arrived: Notify::new(),
        drain: signal.clone(),
    });
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stats_tx, stats_rx) = std::sync::mpsc::channel();
    let shard_probe = probe.clone();
    std::thread::spawn(move || {
        let routes = Arc::new(move |_shard| {
            let service = Rc::new(TestService {
                probe: shard_probe.clone(),
            });
            let mut router = Router::default();
            router
                .add(
                    "/test.Stream/Echo",
                    bidirectional(service.clone(), TestService::echo),
                )
                .add(
                    "/test.Stream/Collect",
                    client_streaming(service.clone(), TestService::collect),
                )
                .add(
                    "/test.Stream/Flood",
                    server_streaming(service.clone(), TestService::flood),
                )
                .add(
                    "/test.Stream/Hello",
                    unary(service.clone(), TestService::hello),
                )
                .add(
                    "/test.Stream/Slow",
                    unary(service.clone(), TestService::slow),
                )
                .add(
                    "/test.Stream/UntilDrain",
                    unary(service.clone(), TestService::until_drain),
                )
                .add(
                    "/test.Stream/Hang",
                    server_streaming(service, TestService::hang),
                );
            router
        });
        let factory =
            GrpcServerFactory::new(GrpcSettings::default(), routes, Vec::new(), "test", 1);
        stats_tx.send(factory.stats()).unwrap();
        glommio::LocalExecutor::default().run(async move {
            let server = factory.for_shard(0);
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            ready_tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let stream = listener.accept().await.unwrap();
                let conn = ConnectionInfo {
                    listener: "test".into(),
                    shard: 0,
                    peer: stream.peer_addr().unwrap(),
                    local: stream.local_addr().unwrap(),
                    shutdown: signal.clone(),
                };
                glommio::spawn_local(server.clone().serve(stream, conn, Observers::default()))
                    .detach();
            }
        });
    });
    TestServer {
        stats: stats_rx.recv().unwrap(),
        address: ready_rx.recv().unwrap(),
        probe,
        shutdown,
    }
}

async fn client(address: SocketAddr) -> Grpc<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Grpc::new(channel)
}

fn hello(name: impl Into<String>) -> SayHelloRequest {
    SayHelloRequest {
        name: name.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bidirectional_stream_interleaves_requests_and_responses() {
    let server = start_server();
    let mut grpc = client(server.address).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<SayHelloRequest>(1);
    let requests =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    grpc.ready().await.unwrap();
    tx.send(hello("0")).await.unwrap();
    let mut responses = grpc
        .streaming::<_, SayHelloRequest, SayHelloResponse, _>(
            tonic::Request::new(requests),
            PathAndQuery::from_static("/test.Stream/Echo"),
            ProstCodec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    // Each answer arrives before the next request is even sent.
    for i in 0..100 {
        let reply = responses.message().await.unwrap().unwrap();
        assert_eq!(reply.hello, i.to_string());
        if i < 99 {
            tx.send(hello((i + 1).to_string())).await.unwrap();
        }
    }
    drop(tx);
    assert!(responses.message().await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_holds_back_a_server_stream() {
    const CHUNKS: usize = 2000; // 125 MiB if nothing held it back
    let server = start_server();
    let mut grpc = client(server.address).await;
    grpc.ready().await.unwrap();
    let mut stream = grpc
        .server_streaming::<_, GetFileResponse, _>(
            tonic::Request::new(hello(CHUNKS.to_string())),
            PathAndQuery::from_static("/test.Stream/Flood"),
            ProstCodec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().data.len(), CHUNK);
    // The thing tested: in this while, a server that ignored the window would send it all.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = server.probe.flood_sent.load(Ordering::SeqCst);
    assert!(
        sent < 150,
        "the server sent {sent} chunks to a client that read one"
    );
    let mut received = 1;
    while let Some(chunk) = stream.message().await.unwrap() {
        assert_eq!(chunk.data.len(), CHUNK);
        received += 1;
    }
    assert_eq!(received, CHUNKS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_handler_holds_back_a_client_stream() {
    const MESSAGES: usize = 2000;
    let server = start_server();
    let mut grpc = client(server.address).await;
    let produced = Arc::new(AtomicUsize::new(0));
    let counter = produced.clone();
    let requests = futures_util::stream::iter(0..MESSAGES).map(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
        hello("x".repeat(CHUNK))
    });
    grpc.ready().await.unwrap();
    let call = tokio::spawn(async move {
        grpc.client_streaming::<_, SayHelloRequest, SayHelloResponse, _>(
            tonic::Request::new(requests),
            PathAndQuery::from_static("/test.Stream/Collect"),
            ProstCodec::default(),
        )
        .await
    });
    tokio::time::timeout(WAIT, server.probe.collect_paused.notified())
        .await
        .expect("the handler read the first message");
    // The thing tested: in this while, a server that ignored the window would take it all.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let taken = produced.load(Ordering::SeqCst);
    assert!(
        taken < 200,
        "the client pushed {taken} messages into a handler that read one"
    );
    server.probe.collect_resume.notify_one();
    let reply = call.await.unwrap().unwrap().into_inner();
    assert_eq!(reply.hello, MESSAGES.to_string());
}

/// One unary call over a raw h2 connection with a `grpc-timeout` header, answering the
/// `grpc-status` and the time the answer took. tonic would enforce the deadline on the client side
/// as well and race the server's answer, so this checks the server alone.
async fn raw_call_with_timeout(
    address: SocketAddr,
    millis: u64,
    timeout: &str,
) -> (String, Duration) {
    raw_call(address, "Slow", &millis.to_string(), Some(timeout)).await
}

/// One unary call of `method` with `name` over a raw h2 connection, its headers and its one DATA
/// frame queued together (so with a current-thread client runtime they leave in one write),
/// answering the `grpc-status` and the time the answer took.
async fn raw_call(
    address: SocketAddr,
    method: &str,
    name: &str,
    timeout: Option<&str>,
) -> (String, Duration) {
    use prost::Message;
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut h2, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::post(format!("http://{address}/test.Stream/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(timeout) = timeout {
        request = request.header("grpc-timeout", timeout);
    }
    let request = request.body(()).unwrap();
    let payload = hello(name).encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    let started = Instant::now();
    let (response, mut body) = h2.send_request(request, false).unwrap();
    body.send_data(Bytes::from(frame), true).unwrap();
    let response = response.await.unwrap();
    let status_in_headers = response.headers().get("grpc-status").cloned();
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        chunk.unwrap();
    }
    let status = match status_in_headers {
        Some(status) => status,
        None => body.trailers().await.unwrap().unwrap()["grpc-status"].clone(),
    };
    (status.to_str().unwrap().to_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_end_slow_calls_with_deadline_exceeded() {
    let server = start_server();
    let (status, took) = raw_call_with_timeout(server.address, 3000, "200m").await;
    assert_eq!(status, (Code::DeadlineExceeded as i32).to_string());
    assert!(took >= Duration::from_millis(190), "{took:?}");
    assert!(took < Duration::from_millis(2000), "{took:?}");
    let (status, _) = raw_call_with_timeout(server.address, 10, "5S").await;
    assert_eq!(
        status, "0",
        "the server keeps serving after an expired call"
    );
}

/// The server's count of calls that waited (and so ran in a task of their own).
fn calls_waited(stats: &GrpcStats) -> u64 {
    let mut out = Exposition::default();
    stats.collect(&mut out);
    let text = out.render();
    let line = text
        .lines()
        .find(|line| line.starts_with("layotto_grpc_calls_waited_total{"))
        .unwrap_or_else(|| panic!("no waited count in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// A call whose handler completes without waiting, its request all there when the call is
/// accepted, is answered in its connection's task; a handler that waits (a timer) gets a task
/// of its own and is answered too. The client runs on one thread, so each request's HEADERS
/// and DATA frames leave in one write.
#[tokio::test]
async fn calls_answered_at_once_need_no_task_of_their_own() {
    let server = start_server();
    for i in 0..20 {
        let (status, _) = raw_call(server.address, "Hello", &format!("call {i}"), None).await;
        assert_eq!(status, "0");
    }
    assert_eq!(calls_waited(&server.stats), 0);
    let (status, _) = raw_call(server.address, "Slow", "10", None).await;
    assert_eq!(status, "0");
    assert_eq!(calls_waited(&server.stats), 1);
    let (status, _) = raw_call(server.address, "Hello", "again", None).await;
    assert_eq!(status, "0");
    assert_eq!(calls_waited(&server.stats), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_call_stops_its_handler() {
    let server = start_server();
    let mut grpc = client(server.address).await;
    grpc.ready().await.unwrap();
    let mut stream = grpc
        .server_streaming::<_, SayHelloResponse, _>(
            tonic::Request::new(hello("")),
            PathAndQuery::from_static("/test.Stream/Hang"),
            ProstCodec::default(),
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stream.message().await.unwrap().unwrap().hello, "first");
    assert!(!server.probe.hang_dropped.load(Ordering::SeqCst));
    drop(stream); // tonic resets the stream
    tokio::time::timeout(WAIT, server.probe.hang_dropped_now.notified())
        .await
        .expect("the handler of a cancelled call kept running");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_streams_on_one_connection() {
    let server = start_server();
    let grpc = client(server.address).await;
    let streams = (0..200).map(|s| {
        let mut grpc = grpc.clone();
        async move {
            let requests =
                futures_util::stream::iter((0..10).map(move |i| hello(format!("{s}-{i}"))));
            grpc.ready().await.unwrap();
            let mut responses = grpc
                .streaming::<_, SayHelloRequest, SayHelloResponse, _>(
                    tonic::Request::new(requests),
                    PathAndQuery::from_static("/test.Stream/Echo"),
                    ProstCodec::default(),
                )
                .await
                .unwrap()
                .into_inner();
            let mut got = Vec::new();
            while let Some(reply) = responses.message().await.unwrap() {
                got.push(reply.hello);
            }
            assert_eq!(got, (0..10).map(|i| format!("{s}-{i}")).collect::<Vec<_>>());
        }
    });
    futures_util::future::join_all(streams).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_lets_inflight_calls_finish() {
    let server = start_server();
    let mut grpc = client(server.address).await;
    grpc.ready().await.unwrap();
    let inflight = tokio::spawn(async move {
        grpc.unary::<_, SayHelloResponse, _>(
            tonic::Request::new(hello("")),
            PathAndQuery::from_static("/test.Stream/UntilDrain"),
            ProstCodec::default(),
        )
        .await
    });
    tokio::time::timeout(WAIT, server.probe.drain_call_arrived.notified())
        .await
        .expect("the call reached its handler");
    server.shutdown.trigger(); // the server sends GOAWAY; the handler answers only now
    let reply = inflight.await.unwrap().unwrap().into_inner();
    assert_eq!(reply.hello, "done");
}
