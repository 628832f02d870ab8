//! A small HTTP/1.1 server for admin endpoints — Prometheus scrapes and the actuator — run as a
//! terminal on the shards like any listener. GET, HEAD and POST (a `Content-Length` body of up
//! to 64 KiB), keep-alive, request heads up to 8 KiB parsed with `httparse` (never more
//! buffered); a route answers a complete response (no streaming). A client that sends nothing
//! for [`READ_TIMEOUT`] (an unfinished head, or an idle keep-alive connection) is disconnected.

use std::{rc::Rc, sync::Arc, time::Duration};

use futures_lite::{AsyncReadExt, AsyncWriteExt, future::BoxedLocal};
use glommio::net::TcpStream;
use layotto_core::handler::ConnectionInfo;
use tracing::debug;

use crate::chain::{Observers, Terminal, TerminalFactory};

/// Longest wait for the next bytes of a request head (Envoy's edge guidance for request headers).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// A complete HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminResponse {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl AdminResponse {
    /// A JSON response.
    pub fn json(status: u16, body: String) -> Self {
        Self {
            status,
            content_type: "application/json",
            body,
        }
    }

    fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
        }
    }
}

/// A request as a route sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminRequest {
    /// `GET`, `HEAD` or `POST`.
    pub method: String,
    /// The path, without its query.
    pub path: String,
    /// The body (empty without one).
    pub body: Vec<u8>,
    /// Whether the process is stopping (its shutdown was triggered).
    pub stopping: bool,
}

/// Answers a request, or `None` for 404. Called on the serving shard.
pub type AdminRoutes = Arc<dyn Fn(AdminRequest) -> Option<BoxedLocal<AdminResponse>> + Send + Sync>;

/// The admin server of one listener, shared by all shards.
pub struct AdminHttpFactory {
    routes: AdminRoutes,
}

impl AdminHttpFactory {
    /// A server answering with `routes`.
    pub fn new(routes: AdminRoutes) -> Self {
        Self { routes }
    }
}

impl TerminalFactory for AdminHttpFactory {
    fn for_shard(&self, _shard: usize) -> Rc<dyn Terminal> {
        Rc::new(AdminHttp {
            routes: self.routes.clone(),
        })
    }
}

struct AdminHttp {
    routes: AdminRoutes,
}

/// What a request head asked for.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    method: String,
    path: String,
    keep_alive: bool,
    head_len: usize,
    body_len: usize,
}

/// Parses a request head from the start of `buffer`: `Ok(None)` when more bytes are needed.
fn parse_head(buffer: &[u8]) -> Result<Option<Request>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(buffer) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(err.to_string()),
    };
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    if header("transfer-encoding").is_some() {
        return Err("a chunked body is not supported; send Content-Length".into());
    }
    let body_len = match header("content-length") {
        None => 0,
        Some(length) => length
            .parse()
            .map_err(|_| format!("invalid Content-Length {length:?}"))?,
    };
    let connection = header("connection");
    let keep_alive = match connection.as_deref() {
        Some("close") => false,
        Some("keep-alive") => true,
        _ => request.version == Some(1),
    };
    let target = request.path.unwrap_or("/");
    Ok(Some(Request {
        method: request.method.unwrap_or_default().to_owned(),
        path: target.split('?').next().unwrap_or(target).to_owned(),
        keep_alive,
        head_len,
        body_len,
    }))
}

/// The request heads of one connection from the bytes read so far (sans-IO). It never holds
/// more than [`MAX_HEAD`] bytes: a head not complete by then is refused.
#[derive(Debug)]
struct HeadReader {
    buffer: Vec<u8>,
}

impl HeadReader {
    fn new() -> Self {
        Self {
            buffer: Vec::with_capacity(1024),
        }
    }

    /// How many bytes may be read next; at least one whenever [`Self::next_request`] has just
    /// asked for more.
    fn room(&self) -> usize {
        MAX_HEAD.saturating_sub(self.buffer.len())
    }

    /// Adds bytes read (at most [`Self::room`]; any beyond it are dropped).
    fn push(&mut self, bytes: &[u8]) {
        let room = self.room();
        self.buffer
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    /// Takes up to `len` bytes already read past the last head (the start of its body).
    fn take(&mut self, len: usize) -> Vec<u8> {
        let len = len.min(self.buffer.len());
        self.buffer.drain(..len).collect()
    }

    /// The next request head (its bytes consumed), `Ok(None)` when more are needed, or the
    /// response that refuses it (the connection then closes).
    fn next_request(&mut self) -> Result<Option<Request>, AdminResponse> {
        match parse_head(&self.buffer) {
            Ok(Some(request)) => {
                self.buffer.drain(..request.head_len);
                Ok(Some(request))
            }
            Ok(None) if self.room() == 0 => {
                Err(AdminResponse::text(431, "request head too large\n"))
            }
            Ok(None) => Ok(None),
            Err(err) => Err(AdminResponse::text(400, &format!("{err}\n"))),
        }
    }
}

fn encode(response: &AdminResponse, keep_alive: bool, with_body: bool) -> Vec<u8> {
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    )
    .into_bytes();
    if with_body {
        out.extend_from_slice(response.body.as_bytes());
    }
    out
}

impl Terminal for AdminHttp {
    fn serve(
        self: Rc<Self>,
        stream: TcpStream,
        conn: ConnectionInfo,
        _observers: Observers,
    ) -> BoxedLocal<()> {
        Box::pin(async move {
            if let Err(err) = self.serve_connection(stream, &conn).await {
                debug!(peer = %conn.peer, error = %err, "admin connection ended");
            }
        })
    }
}

impl AdminHttp {
    async fn serve_connection(
        &self,
        mut stream: TcpStream,
        conn: &ConnectionInfo,
    ) -> std::io::Result<()> {
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        let mut heads = HeadReader::new();
        let mut chunk = [0u8; 2048];
        loop {
            let request = loop {
                match heads.next_request() {
                    Ok(Some(request)) => break request,
                    Ok(None) => {}
                    Err(response) => {
                        stream.write_all(&encode(&response, false, true)).await?;
                        return Ok(());
                    }
                }
                let room = heads.room().min(chunk.len());
                let n = stream.read(&mut chunk[..room]).await?;
                if n == 0 {
                    return Ok(());
                }
                heads.push(&chunk[..n]);
            };
            if request.body_len > MAX_BODY {
                let response = AdminResponse::text(413, "request body too large\n");
                stream.write_all(&encode(&response, false, true)).await?;
                return Ok(());
            }
            let mut body = heads.take(request.body_len);
            while body.len() < request.body_len {
                let want = (request.body_len - body.len()).min(chunk.len());
                let n = stream.read(&mut chunk[..want]).await?;
                if n == 0 {
                    return Ok(());
                }
                body.extend_from_slice(&chunk[..n]);
            }
            let head_only = request.method == "HEAD";
            let response = if !matches!(request.method.as_str(), "GET" | "HEAD" | "POST") {
                AdminResponse::text(405, "only GET, HEAD and POST\n")
            } else {
                let admin_request = AdminRequest {
                    method: request.method,
                    path: request.path,
                    body,
                    stopping: conn.shutdown.is_triggered(),
                };
                match (self.routes)(admin_request) {
                    Some(answer) => answer.await,
                    None => AdminResponse::text(404, "not found\n"),
                }
            };
            stream
                .write_all(&encode(&response, request.keep_alive, !head_only))
                .await?;
            if !request.keep_alive {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_heads_in_pieces_and_honours_connection() {
        let head = b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\nGET /next";
        assert_eq!(parse_head(&head[..20]), Ok(None));
        let request = parse_head(head).unwrap().unwrap();
        assert_eq!(request.path, "/metrics");
        assert!(request.keep_alive);
        assert_eq!(request.head_len, head.len() - "GET /next".len());
        let close = parse_head(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!close.keep_alive);
        let old = parse_head(b"HEAD / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!old.keep_alive);
        assert_eq!(old.method, "HEAD");
        assert!(parse_head(b"\x00\x01 nonsense\r\n\r\n").is_err());
        let post = parse_head(b"POST /a HTTP/1.1\r\nContent-Length: 12\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((post.method.as_str(), post.body_len), ("POST", 12));
        assert!(parse_head(b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"POST /a HTTP/1.1\r\nContent-Length: x\r\n\r\n").is_err());
    }

    #[test]
    fn encodes_length_and_connection() {
        let response = AdminResponse::json(503, "{}".into());
        let text = String::from_utf8(encode(&response, false, true)).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        );
        let head = String::from_utf8(encode(&response, true, false)).unwrap();
        assert!(head.ends_with("Connection: keep-alive\r\n\r\n"));
    }

    /// Feeds `stream` to a reader in chunks of the given sizes (cycled, each cut to the room
    /// left, as the server reads), checking it never holds more than [`MAX_HEAD`]; answers the
    /// requests read and the refusal that ended the connection, if any.
    fn read_all(stream: &[u8], chunk_sizes: &[usize]) -> (Vec<Request>, Option<u16>) {
        let mut heads = HeadReader::new();
        let mut requests = Vec::new();
        let mut rest = stream;
        let mut sizes = chunk_sizes.iter().cycle();
        loop {
            match heads.next_request() {
                Ok(Some(request)) => {
                    requests.push(request);
                    continue;
                }
                Ok(None) => {}
                Err(response) => return (requests, Some(response.status)),
            }
            let room = heads.room();
            assert!(room > 0, "asked for more with no room");
            let size = (*sizes.next().unwrap()).min(room).min(rest.len());
            if size == 0 {
                return (requests, None);
            }
            heads.push(&rest[..size]);
            rest = &rest[size..];
            assert!(heads.buffer.len() <= MAX_HEAD);
        }
    }

    fn request_line() -> impl Strategy<Value = (String, String, bool)> {
        (
            prop_oneof![Just("GET"), Just("HEAD"), Just("POST")],
            "/[a-z0-9/_.-]{0,40}",
            any::<bool>(),
        )
            .prop_map(|(method, path, close)| (method.to_owned(), path, close))
    }

    proptest! {
        /// Any bytes: parsing never panics, and a complete head lies within the bytes given.
        #[test]
        fn any_bytes_parse_or_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(Some(request)) = parse_head(&bytes) {
                prop_assert!(request.head_len <= bytes.len());
                prop_assert!(!request.path.contains('?'));
            }
        }

        /// Any byte stream in any chunks: the reader never holds more than MAX_HEAD, always
        /// makes progress, and what it reads as heads were bytes it was given.
        #[test]
        fn any_stream_is_read_within_the_head_limit(
            stream in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..20_000),
                // Mostly header-shaped text, so that complete heads and large partial ones occur.
                "(GET / HTTP/1.1\r\n|[a-zA-Z-]{1,20}: [ -~]{0,3000}\r\n|\r\n){0,12}".prop_map(String::into_bytes),
            ],
            // Small splits are the pipelined test's; here heads are large (re-parsing per chunk).
            chunk_sizes in prop::collection::vec(32usize..3000, 1..6),
        ) {
            let (requests, _) = read_all(&stream, &chunk_sizes);
            let consumed: usize = requests.iter().map(|r| r.head_len).sum();
            prop_assert!(consumed <= stream.len());
        }

        /// Well-formed pipelined requests, split anywhere: each comes out, in order.
        #[test]
        fn pipelined_requests_split_anywhere_come_out_in_order(
            lines in prop::collection::vec(request_line(), 1..6),
            chunk_sizes in prop::collection::vec(1usize..64, 1..6),
        ) {
            let stream: String = lines
                .iter()
                .map(|(method, path, close)| {
                    let connection = if *close { "close" } else { "keep-alive" };
                    format!("{method} {path}?q=1 HTTP/1.1\r\nHost: a\r\nConnection: {connection}\r\n\r\n")
                })
                .collect();
            let (requests, refused) = read_all(stream.as_bytes(), &chunk_sizes);
            prop_assert_eq!(refused, None);
            let got: Vec<_> = requests.iter().map(|r| (r.method.clone(), r.path.clone(), !r.keep_alive)).collect();
            prop_assert_eq!(got, lines);
        }
    }

    #[test]
    fn a_head_over_the_limit_is_refused_once_the_limit_is_held() {
        let mut stream = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        stream.resize(MAX_HEAD * 3, b'a');
        for chunk in [7, 2047, 2048, MAX_HEAD * 3] {
            let (requests, refused) = read_all(&stream, &[chunk]);
            assert!(requests.is_empty());
            assert_eq!(refused, Some(431), "chunks of {chunk}");
        }
        // A head of exactly the limit is served.
        let mut exact = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        exact.resize(MAX_HEAD - 4, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        let (requests, refused) = read_all(&exact, &[MAX_HEAD]);
        assert_eq!((requests.len(), refused), (1, None));
    }
}
