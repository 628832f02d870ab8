//! The gRPC server's HTTP/2 rules, frame by frame: a scripted client writes raw frames (header
//! blocks hand-encoded as HPACK literals) to a `GrpcServerFactory` served in-process on a glommio
//! executor and reads back what the server answers. Covers the RFC 9113 rules the server
//! enforces (the ones h2spec checks), the handshake and idle timeouts, the PING flood cap and the
//! buffered-byte limits.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use layotto_core::{handler::ConnectionInfo, shutdown};
use layotto_filters::chain::{Observers, TerminalFactory};
use layotto_proto::runtime::SayHelloResponse;
use layotto_runtime_api::grpc::{
    budget::{Buffered, ListenerBuffers},
    call::Requests,
    guard::ControlFrameBudget,
    router::{Router, client_streaming},
    server::{GrpcServerFactory, GrpcSettings},
    status::Status,
};

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const PROTOCOL_ERROR: u32 = 0x1;
const FRAME_SIZE_ERROR: u32 = 0x6;
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;
const NO_ERROR: u32 = 0x0;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Counts the request messages of a client-streaming call.
async fn count(_: Rc<()>, mut requests: Requests) -> Result<SayHelloResponse, Status> {
    let mut n = 0;
    while requests.next_raw().await?.is_some() {
        n += 1;
    }
    Ok(SayHelloResponse {
        hello: n.to_string(),
        data: None,
    })
}

/// The size of [`big`]'s answer.
const BIG: usize = 1024 * 1024;

/// Reads the request messages of a call and answers 1 MiB.
async fn big(_: Rc<()>, mut requests: Requests) -> Result<SayHelloResponse, Status> {
    while requests.next_raw().await?.is_some() {}
    Ok(SayHelloResponse {
        hello: "x".repeat(BIG),
        data: None,
    })
}

/// Serves the test router with `settings` on a thread of its own; returns the address.
fn start(settings: GrpcSettings) -> SocketAddr {
    start_counted(settings).0
}

/// [`start`], also returning the server's buffered-byte counts.
fn start_counted(settings: GrpcSettings) -> (SocketAddr, Arc<ListenerBuffers>) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let routes = Arc::new(|_shard| {
        let mut router = Router::default();
        router
            .add("/test.Frames/Count", client_streaming(Rc::new(()), count))
            .add("/test.Frames/Big", client_streaming(Rc::new(()), big));
        router
    });
    let factory = GrpcServerFactory::new(settings, routes, Vec::new(), "test", 1);
    let buffers = factory.buffers();
    std::thread::spawn(move || {
        let (trigger, signal) = shutdown::channel();
        glommio::LocalExecutor::default().run(async move {
            let _trigger = trigger;
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
    (ready_rx.recv().unwrap(), buffers)
}

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A header block of HPACK literals without indexing (names and values under 127 bytes).
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
        out.push(value.len() as u8);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn grpc_request() -> Vec<u8> {
    grpc_request_to("/test.Frames/Count")
}

fn grpc_request_to(path: &str) -> Vec<u8> {
    header_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "test"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ])
}

fn plain_get() -> Vec<u8> {
    header_block(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "test"),
    ])
}

/// One frame as read: type, flags, stream id, payload.
#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY frame.
    fn error_code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

/// A scripted HTTP/2 client over a blocking socket.
struct Client {
    socket: TcpStream,
}

impl Client {
    fn connect(address: SocketAddr) -> Self {
        let socket = TcpStream::connect(address).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Self { socket }
    }

    /// Connects, exchanges prefaces and SETTINGS (with `settings` from the server's answer read).
    fn handshake(address: SocketAddr) -> Self {
        Self::handshake_with(address, &[])
    }

    /// [`Client::handshake`] sending `settings` (identifier, value) pairs.
    fn handshake_with(address: SocketAddr, settings: &[(u16, u32)]) -> Self {
        let mut client = Self::connect(address);
        client.send(PREFACE);
        let payload: Vec<u8> = settings
            .iter()
            .flat_map(|(id, value)| [&id.to_be_bytes()[..], &value.to_be_bytes()[..]].concat())
            .collect();
        client.send(&frame(SETTINGS, 0, 0, &payload));
        let settings = client.expect(|f| f.kind == SETTINGS && f.flags & ACK == 0);
        assert_eq!(settings.stream, 0);
        client.send(&frame(SETTINGS, ACK, 0, &[]));
        client
    }

    fn send(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).unwrap();
    }

    /// The next frame, or `None` once the server has closed the connection.
    fn next(&mut self) -> Option<Frame> {
        let mut header = [0u8; 9];
        match self.socket.read_exact(&mut header) {
            Ok(()) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
                ) =>
            {
                return None;
            }
            Err(err) => panic!("reading a frame: {err}"),
        }
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0; len];
        self.socket.read_exact(&mut payload).unwrap();
        Some(Frame {
            kind: header[3],
            flags: header[4],
            stream: u32::from_be_bytes(header[5..9].try_into().unwrap()) & 0x7fff_ffff,
            payload,
        })
    }

    /// Reads until a frame matches `wanted` (skipping others); panics if the connection ends.
    fn expect(&mut self, wanted: impl Fn(&Frame) -> bool) -> Frame {
        loop {
            let frame = self
                .next()
                .expect("connection closed before the expected frame");
            if wanted(&frame) {
                return frame;
            }
        }
    }

    /// Reads until the server closes the connection, answering its PINGs (a graceful GOAWAY
    /// waits for one); returns the last GOAWAY it sent, if any.
    fn until_closed(&mut self) -> Option<Frame> {
        let mut goaway = None;
        while let Some(frame) = self.next() {
            match frame.kind {
                GOAWAY => goaway = Some(frame),
                PING if frame.flags & ACK == 0 => {
                    self.send(&self::frame(PING, ACK, 0, &frame.payload))
                }
                _ => {}
            }
        }
        goaway
    }

    /// Asserts that the server neither closes the connection nor sends GOAWAY for `quiet`.
    fn stays_open(&mut self, quiet: Duration) {
        let until = Instant::now() + quiet;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            self.socket.set_read_timeout(Some(left)).unwrap();
            let mut header = [0u8; 9];
            match self.socket.read_exact(&mut header) {
                Ok(()) => {
                    assert_ne!(header[3], GOAWAY, "GOAWAY");
                    let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
                    self.socket.read_exact(&mut vec![0; len]).unwrap();
                }
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return;
                }
                Err(err) => panic!("the connection ended: {err}"),
            }
        }
    }
}

fn is_reset(stream: u32) -> impl Fn(&Frame) -> bool {
    move |f| f.kind == RST_STREAM && f.stream == stream
}

#[test]
fn trailers_with_a_pseudo_header_reset_the_stream_with_protocol_error() {
    // RFC 9113 8.1: pseudo-header fields are not allowed in trailers.
    let mut client = Client::handshake(start(GrpcSettings::default()));
    client.send(&frame(HEADERS, END_HEADERS, 1, &grpc_request()));
    client.send(&frame(DATA, 0, 1, &[0, 0, 0, 0, 0]));
    let trailers = header_block(&[(":method", "POST"), ("trailer", "x")]);
    client.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &trailers));
    let reset = client.expect(|f| f.stream == 1 && matches!(f.kind, RST_STREAM | HEADERS));
    assert_eq!(
        reset.kind, RST_STREAM,
        "the call must not complete: {reset:?}"
    );
    assert_eq!(reset.error_code(), PROTOCOL_ERROR);
}

#[test]
fn plain_trailers_complete_the_call() {
    let mut client = Client::handshake(start(GrpcSettings::default()));
    client.send(&frame(HEADERS, END_HEADERS, 1, &grpc_request()));
    client.send(&frame(DATA, 0, 1, &[0, 0, 0, 0, 0]));
    let trailers = header_block(&[("trailer", "x")]);
    client.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &trailers));
    let last = client.expect(|f| f.stream == 1 && f.flags & END_STREAM != 0);
    assert_eq!(
        last.kind, HEADERS,
        "ends with grpc-status trailers: {last:?}"
    );
}

#[test]
fn a_request_that_is_not_grpc_gets_415_with_a_body_after_its_end() {
    let mut client = Client::handshake(start(GrpcSettings::default()));
    client.send(&frame(HEADERS, END_HEADERS, 1, &plain_get()));
    client.send(&frame(WINDOW_UPDATE, 0, 1, &1u32.to_be_bytes()));
    client.send(&frame(DATA, END_STREAM, 1, b"ignored"));
    let headers = client.expect(|f| f.stream == 1);
    assert_eq!(headers.kind, HEADERS, "{headers:?}");
    assert_eq!(headers.flags & END_STREAM, 0, "a body follows");
    let body = client.expect(|f| f.stream == 1);
    assert_eq!(body.kind, DATA, "{body:?}");
    assert_ne!(body.flags & END_STREAM, 0);
    assert!(String::from_utf8_lossy(&body.payload).contains("gRPC"));
    // The stream ended cleanly: a PING still gets its answer and nothing was reset.
    client.send(&frame(PING, 0, 0, &[7; 8]));
    let pong = client.expect(|f| f.kind == PING || f.kind == RST_STREAM);
    assert_eq!((pong.kind, pong.flags), (PING, ACK), "{pong:?}");
}

#[test]
fn a_second_headers_without_end_stream_is_a_protocol_error() {
    // RFC 9113 8.1: a HEADERS frame after the first must end the stream (trailers).
    let mut client = Client::handshake(start(GrpcSettings::default()));
    client.send(&frame(HEADERS, END_HEADERS, 1, &plain_get()));
    client.send(&frame(
        HEADERS,
        END_HEADERS,
        1,
        &header_block(&[("x", "y")]),
    ));
    let reset = client.expect(|f| f.kind == GOAWAY || is_reset(1)(f));
    assert_eq!(reset.error_code(), PROTOCOL_ERROR);
}

#[test]
fn streams_beyond_the_concurrency_limit_are_refused() {
    // RFC 9113 5.1.2: a stream beyond SETTINGS_MAX_CONCURRENT_STREAMS gets REFUSED_STREAM.
    let settings = GrpcSettings {
        max_concurrent_streams: 2,
        ..GrpcSettings::default()
    };
    let mut client = Client::handshake(start(settings));
    for stream in [1, 3, 5] {
        client.send(&frame(HEADERS, END_HEADERS, stream, &plain_get()));
    }
    let reset = client.expect(|f| f.kind == RST_STREAM);
    assert_eq!((reset.stream, reset.error_code()), (5, REFUSED_STREAM));
}

#[test]
fn connection_level_violations_end_the_connection_with_goaway() {
    let address = start(GrpcSettings::default());
    // 5.1.1: a client-initiated stream id must be odd.
    let mut client = Client::handshake(address);
    client.send(&frame(HEADERS, END_HEADERS | END_STREAM, 2, &plain_get()));
    assert_eq!(client.until_closed().unwrap().error_code(), PROTOCOL_ERROR);
    // 6.9: a connection WINDOW_UPDATE of 0.
    let mut client = Client::handshake(address);
    client.send(&frame(WINDOW_UPDATE, 0, 0, &0u32.to_be_bytes()));
    assert_eq!(client.until_closed().unwrap().error_code(), PROTOCOL_ERROR);
    // 4.2: a frame larger than SETTINGS_MAX_FRAME_SIZE (16 KiB by default).
    let mut client = Client::handshake(address);
    client.send(&frame(DATA, 0, 1, &vec![0; 16 * 1024 + 1]));
    assert_eq!(
        client.until_closed().unwrap().error_code(),
        FRAME_SIZE_ERROR
    );
}

fn with_timeouts(handshake: Duration, idle: Duration) -> GrpcSettings {
    let mut settings = GrpcSettings::default();
    settings.timeouts.handshake = handshake;
    settings.timeouts.idle = idle;
    settings
}

#[test]
fn connections_that_do_not_finish_the_handshake_are_closed() {
    let timeout = Duration::from_millis(300);
    let address = start(with_timeouts(timeout, Duration::from_secs(3600)));
    for sent in [&b""[..], &PREFACE[..10], PREFACE] {
        let mut client = Client::connect(address);
        client.send(sent);
        let started = Instant::now();
        assert!(client.until_closed().is_none(), "closed without a word");
        let waited = started.elapsed();
        assert!(
            waited >= timeout - Duration::from_millis(50) && waited < Duration::from_secs(5),
            "after {sent:?}: closed after {waited:?}"
        );
    }
    // A client that completes the handshake stays past the timeout.
    Client::handshake(address).stays_open(timeout * 3);
}

#[test]
fn an_idle_connection_gets_goaway_and_is_closed() {
    let idle = Duration::from_millis(400);
    let mut client = Client::handshake(start(with_timeouts(Duration::from_secs(10), idle)));
    // A call in progress keeps the connection: the idle clock starts when it ends.
    client.send(&frame(HEADERS, END_HEADERS, 1, &grpc_request()));
    std::thread::sleep(idle * 2);
    client.send(&frame(DATA, END_STREAM, 1, &[0, 0, 0, 0, 0]));
    client.expect(|f| f.stream == 1 && f.flags & END_STREAM != 0);
    let ended = Instant::now();
    let goaway = client.until_closed().expect("a GOAWAY before the close");
    assert_eq!(goaway.error_code(), NO_ERROR);
    assert!(ended.elapsed() >= idle - Duration::from_millis(50));
}

#[test]
fn a_ping_flood_gets_goaway_enhance_your_calm() {
    let settings = GrpcSettings {
        control_frames: ControlFrameBudget {
            burst: 100,
            per_second: 10,
        },
        ..GrpcSettings::default()
    };
    let mut client = Client::handshake(start(settings));
    let mut writer = client.socket.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        let ping = frame(PING, 0, 0, &[1; 8]);
        let burst: Vec<u8> = ping
            .iter()
            .copied()
            .cycle()
            .take(ping.len() * 5000)
            .collect();
        // The server may close the connection before it has read everything.
        let _ = writer.write_all(&burst);
    });
    let mut acks = 0;
    let goaway = loop {
        let frame = client.next().expect("closed without GOAWAY");
        match frame.kind {
            PING => acks += 1,
            GOAWAY => break frame,
            _ => {}
        }
    };
    assert_eq!(goaway.error_code(), ENHANCE_YOUR_CALM);
    // The budget is checked per read; h2 answers what one read brought in (8 KiB: ~480 PINGs).
    assert!(
        acks < 1000,
        "{acks} of 5000 PINGs answered past a budget of 100"
    );
    flood.join().unwrap();
}

#[test]
fn pings_within_the_budget_are_all_answered() {
    let mut client = Client::handshake(start(GrpcSettings::default()));
    for i in 0..200u8 {
        client.send(&frame(PING, 0, 0, &[i; 8]));
        let pong = client.expect(|f| f.kind == PING || f.kind == GOAWAY);
        assert_eq!((pong.kind, pong.flags, pong.payload[0]), (PING, ACK, i));
    }
}

/// What the server answered on each stream first.
#[derive(Debug, Default)]
struct Answers {
    /// Reset with REFUSED_STREAM.
    refused: usize,
    /// A trailers-only response: the call failed (with RESOURCE_EXHAUSTED here).
    failed: usize,
    /// Response headers, and nothing more while the client grants no window.
    opened: usize,
}

impl Answers {
    fn total(&self) -> usize {
        self.refused + self.failed + self.opened
    }

    /// Counts first frames per stream until `done` says so (within 20 s).
    fn read(client: &mut Client, done: impl Fn(&Answers) -> bool) -> Answers {
        let mut answers = Answers::default();
        let mut seen = std::collections::HashSet::new();
        let until = Instant::now() + Duration::from_secs(20);
        client
            .socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        while !done(&answers) {
            assert!(Instant::now() < until, "no end in sight: {answers:?}");
            let mut header = [0u8; 9];
            match client.socket.read_exact(&mut header) {
                Ok(()) => {}
                Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue;
                }
                Err(err) => panic!("reading a frame: {err}"),
            }
            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0; len];
            client.socket.set_read_timeout(None).unwrap();
            client.socket.read_exact(&mut payload).unwrap();
            client
                .socket
                .set_read_timeout(Some(Duration::from_millis(50)))
                .unwrap();
            let (kind, flags) = (header[3], header[4]);
            let stream = u32::from_be_bytes(header[5..9].try_into().unwrap()) & 0x7fff_ffff;
            if stream == 0 || !seen.insert(stream) {
                continue;
            }
            match kind {
                RST_STREAM => {
                    let code = u32::from_be_bytes(payload[..4].try_into().unwrap());
                    assert_eq!(code, REFUSED_STREAM, "stream {stream}");
                    answers.refused += 1;
                }
                HEADERS if flags & END_STREAM != 0 => answers.failed += 1,
                HEADERS => answers.opened += 1,
                other => panic!("frame type {other} first on stream {stream}"),
            }
        }
        client
            .socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        answers
    }
}

/// A stream's HEADERS and its one empty request message, ending the stream.
fn call_frames(stream: u32, path: &str) -> Vec<u8> {
    let mut out = frame(HEADERS, END_HEADERS, stream, &grpc_request_to(path));
    out.extend(frame(DATA, END_STREAM, stream, &[0, 0, 0, 0, 0]));
    out
}

/// A Count call on a fresh stream of `client` completes with its trailers.
fn assert_call_completes(client: &mut Client, stream: u32) {
    client.send(&call_frames(stream, "/test.Frames/Count"));
    let last = client
        .expect(|f| f.stream == stream && (f.flags & END_STREAM != 0 || f.kind == RST_STREAM));
    assert_eq!(last.kind, HEADERS, "{last:?}");
}

/// Polls the server's count of `kind` bytes until it is zero (within 5 s).
fn assert_all_freed(buffers: &ListenerBuffers, kind: Buffered) {
    let until = Instant::now() + Duration::from_secs(5);
    while buffers.held(kind) > 0 {
        assert!(
            Instant::now() < until,
            "{} {kind:?} bytes still held",
            buffers.held(kind)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

#[test]
fn responses_waiting_for_window_are_bounded_per_connection() {
    // 1 000 calls answering 1 MiB each to a client that grants no window: without a limit the
    // connection would pin 1 GiB of encoded responses.
    let (address, buffers) = start_counted(GrpcSettings::default());
    let limit = GrpcSettings::default().buffers.per_connection;
    let mut stalled = Client::handshake_with(address, &[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]);
    let calls = 1000;
    let burst: Vec<u8> = (0..calls)
        .flat_map(|i| call_frames(2 * i as u32 + 1, "/test.Frames/Big"))
        .collect();
    stalled.send(&burst);
    let answers = Answers::read(&mut stalled, |a| a.total() == calls);
    let held = buffers.held(Buffered::Responses);
    assert!(held <= limit, "{held} bytes held, limit {limit}");
    assert!(answers.opened * BIG <= limit, "{answers:?}");
    assert!(
        answers.opened >= 1 && answers.refused > calls / 2,
        "{answers:?}"
    );
    assert_eq!(answers.refused as u64, buffers.refused_streams());
    assert_eq!(answers.failed as u64, buffers.exhausted_calls());
    // Another connection is served meanwhile.
    assert_call_completes(&mut Client::handshake(address), 1);
    drop(stalled);
    assert_all_freed(&buffers, Buffered::Responses);
}

#[test]
fn partial_requests_are_bounded_per_connection_and_per_listener() {
    // 40 calls that each send 32 KiB of a 200 KiB message and stall.
    let mut settings = GrpcSettings {
        max_message_size: 256 * 1024,
        ..GrpcSettings::default()
    };
    settings.buffers.per_connection = 512 * 1024;
    settings.buffers.per_listener = 512 * 1024;
    let (address, buffers) = start_counted(settings);
    let mut stalled = Client::handshake(address);
    let (calls, part) = (40, 32 * 1024);
    let mut burst = Vec::new();
    for i in 0..calls {
        let stream = 2 * i as u32 + 1;
        burst.extend(frame(HEADERS, END_HEADERS, stream, &grpc_request()));
        let mut body = vec![0u8];
        body.extend_from_slice(&(200 * 1024u32).to_be_bytes());
        body.resize(part / 2, 7);
        burst.extend(frame(DATA, 0, stream, &body));
        burst.extend(frame(DATA, 0, stream, &vec![7; part / 2]));
    }
    stalled.send(&burst);
    // Streams that hold their part get no answer; every other one is refused or fails.
    let answers = Answers::read(&mut stalled, |a| {
        a.total() + buffers.held(Buffered::Requests) / part == calls
    });
    let held = buffers.held(Buffered::Requests);
    assert!(held <= 512 * 1024, "{held} bytes held");
    assert!(
        answers.refused + answers.failed >= calls - 16,
        "{answers:?}"
    );
    // The listener holds half its limit: another connection's call is refused too.
    let mut other = Client::handshake(address);
    other.send(&call_frames(1, "/test.Frames/Count"));
    let reset = other.expect(|f| f.stream == 1);
    assert_eq!(
        (reset.kind, reset.error_code()),
        (RST_STREAM, REFUSED_STREAM)
    );
    // Once the stalled client leaves, everything it held is freed and calls are served again.
    drop(stalled);
    assert_all_freed(&buffers, Buffered::Requests);
    assert_call_completes(&mut other, 3);
}

fn with_keepalive(interval: Duration, timeout: Duration) -> GrpcSettings {
    let mut settings = GrpcSettings::default();
    settings.timeouts.keepalive_interval = Some(interval);
    settings.timeouts.keepalive_timeout = timeout;
    settings
}

#[test]
fn a_client_that_does_not_answer_keepalive_pings_gets_goaway_and_is_closed() {
    let (interval, timeout) = (Duration::from_millis(200), Duration::from_millis(300));
    let mut client = Client::handshake(start(with_keepalive(interval, timeout)));
    let ping = client.expect(|f| f.kind == PING && f.flags & ACK == 0);
    let pinged = Instant::now();
    // Not answered: a GOAWAY follows once the timeout has passed, then the close.
    let goaway = client.expect(|f| f.kind == GOAWAY);
    assert_eq!(goaway.error_code(), NO_ERROR);
    let waited = pinged.elapsed();
    assert!(
        waited >= timeout - Duration::from_millis(50) && waited < Duration::from_secs(5),
        "GOAWAY {waited:?} after the PING {ping:?}"
    );
    assert!(client.until_closed().is_none(), "closed after the GOAWAY");
}

#[test]
fn a_client_that_answers_keepalive_pings_stays_connected() {
    let interval = Duration::from_millis(100);
    let mut client = Client::handshake(start(with_keepalive(interval, interval)));
    for _ in 0..10 {
        let ping = client.expect(|f| f.kind == GOAWAY || (f.kind == PING && f.flags & ACK == 0));
        assert_eq!(ping.kind, PING, "{ping:?}");
        client.send(&frame(PING, ACK, 0, &ping.payload));
    }
    assert_call_completes(&mut client, 1);
}

/// h2's check before it sends a message (vendored patch 0005, one pass over the fields): a
/// request carrying a connection-specific field, or TE other than `trailers`, is refused before
/// anything is written, and the connection goes on serving calls.
#[tokio::test(flavor = "current_thread")]
async fn connection_specific_fields_are_refused_before_they_are_sent() {
    let tcp = tokio::net::TcpStream::connect(start(GrpcSettings::default()))
        .await
        .unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let request = |fields: &[(&'static str, &'static str)]| {
        let mut request = http::Request::post("http://test/test.Frames/Count");
        for (name, value) in fields {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap()
    };
    for refused in [
        &[("connection", "close")][..],
        &[("transfer-encoding", "chunked")],
        &[("upgrade", "h2c")],
        &[("keep-alive", "5")],
        &[("proxy-connection", "keep-alive")],
        &[("te", "gzip")],
        &[("te", "trailers"), ("te", "gzip")],
    ] {
        let sent = client.send_request(request(refused), true);
        assert!(sent.is_err(), "{refused:?} was sent");
    }
    let grpc = [("content-type", "application/grpc"), ("te", "trailers")];
    let (response, _) = client.send_request(request(&grpc), true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    let mut trailers = response.into_body();
    while trailers.data().await.is_some() {}
    let trailers = trailers.trailers().await.unwrap().unwrap();
    assert_eq!(trailers["grpc-status"], "0");
}
