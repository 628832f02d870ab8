//! A small HTTP/1.1 server for admin endpoints — Prometheus scrapes and the actuator — run as a
//! terminal on the shards like any listener. GET and HEAD only, keep-alive, request heads up to
//! 8 KiB parsed with `httparse`; a route answers a complete response (no streaming). A client
//! that sends nothing for [`READ_TIMEOUT`] (an unfinished head, or an idle keep-alive
//! connection) is disconnected.

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

/// Answers a request path (without its query), or `None` for 404. Called on the serving shard.
pub type AdminRoutes = Arc<dyn Fn(&str) -> Option<BoxedLocal<AdminResponse>> + Send + Sync>;

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
    let connection = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("connection"))
        .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase());
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
    }))
}

fn encode(response: &AdminResponse, keep_alive: bool, with_body: bool) -> Vec<u8> {
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
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
            if let Err(err) = self.serve_connection(stream).await {
                debug!(peer = %conn.peer, error = %err, "admin connection ended");
            }
        })
    }
}

impl AdminHttp {
    async fn serve_connection(&self, mut stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        let mut buffer = Vec::with_capacity(1024);
        let mut chunk = [0u8; 2048];
        loop {
            let request = loop {
                match parse_head(&buffer) {
                    Ok(Some(request)) => break Ok(request),
                    Ok(None) if buffer.len() >= MAX_HEAD => {
                        break Err(AdminResponse::text(431, "request head too large\n"));
                    }
                    Ok(None) => {}
                    Err(err) => break Err(AdminResponse::text(400, &format!("{err}\n"))),
                }
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                buffer.extend_from_slice(&chunk[..n]);
            };
            let request = match request {
                Ok(request) => request,
                Err(response) => {
                    stream.write_all(&encode(&response, false, true)).await?;
                    return Ok(());
                }
            };
            buffer.drain(..request.head_len);
            let head_only = request.method == "HEAD";
            let response = if request.method != "GET" && !head_only {
                AdminResponse::text(405, "only GET and HEAD\n")
            } else {
                match (self.routes)(&request.path) {
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
}
