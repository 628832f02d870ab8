//! The load generator's gRPC client: unary calls straight on `h2` with the request frame encoded
//! once, so the one core the client has goes as far as it can (tonic's client stack costs about
//! as much per call as the servers under test, which made both servers look client-bound).
//! Every response is checked: HTTP 200, `grpc-status` 0 (in trailers, or in the headers of a
//! trailers-only response) and the decoded reply. Runs on the load generator's thread.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::client::SendRequest;
use http::{HeaderMap, Request, Uri};
use prost::Message;
use tokio::net::TcpStream;

/// Unary calls of one rpc, with one request message, over one HTTP/2 connection; clones share
/// the connection (one stream per call in flight).
#[derive(Clone)]
pub(crate) struct UnaryCaller {
    sender: SendRequest<Bytes>,
    uri: Uri,
    frame: Bytes,
}

impl UnaryCaller {
    /// Connects to `address` for calls of `path` (`/package.Service/Method`) with the encoded
    /// request `message`.
    pub(crate) async fn connect(address: SocketAddr, path: &str, message: &[u8]) -> Result<Self> {
        let tcp = TcpStream::connect(address).await?;
        tcp.set_nodelay(true)?;
        let (sender, connection) = h2::client::Builder::new()
            .initial_window_size(1 << 20)
            .initial_connection_window_size(1 << 24)
            .handshake(tcp)
            .await
            .context("HTTP/2 handshake")?;
        tokio::task::spawn_local(async move {
            let _ = connection.await;
        });
        let mut frame = BytesMut::with_capacity(5 + message.len());
        frame.put_u8(0);
        frame.put_u32(u32::try_from(message.len())?);
        frame.put_slice(message);
        Ok(Self {
            sender,
            uri: format!("http://{address}{path}").parse()?,
            frame: frame.freeze(),
        })
    }

    /// One call; the decoded reply, or what was wrong.
    pub(crate) async fn call<R: Message + Default>(&mut self) -> Result<R, String> {
        let request = Request::post(self.uri.clone())
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .map_err(|err| err.to_string())?;
        let sender = self
            .sender
            .clone()
            .ready()
            .await
            .map_err(|err| err.to_string())?;
        self.sender = sender;
        let (response, mut stream) = self
            .sender
            .send_request(request, false)
            .map_err(|err| err.to_string())?;
        stream
            .send_data(self.frame.clone(), true)
            .map_err(|err| err.to_string())?;
        let response = response.await.map_err(|err| err.to_string())?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("HTTP {}", response.status()));
        }
        if response.headers().contains_key("grpc-status") {
            check_status(response.headers())?;
            return Err("trailers-only response without a message".into());
        }
        let mut body = response.into_body();
        let mut message = BytesMut::new();
        while let Some(data) = body.data().await {
            let data = data.map_err(|err| err.to_string())?;
            let _ = body.flow_control().release_capacity(data.len());
            message.extend_from_slice(&data);
        }
        let trailers = body.trailers().await.map_err(|err| err.to_string())?;
        check_status(&trailers.ok_or("no trailers")?)?;
        let mut message = message.freeze();
        if message.len() < 5 {
            return Err("short gRPC frame".into());
        }
        message.advance(5);
        R::decode(message).map_err(|err| err.to_string())
    }
}

fn check_status(headers: &HeaderMap) -> Result<(), String> {
    match headers.get("grpc-status").map(|status| status.as_bytes()) {
        Some(b"0") => Ok(()),
        Some(status) => Err(format!(
            "grpc-status {} {:?}",
            String::from_utf8_lossy(status),
            headers.get("grpc-message")
        )),
        None => Err("no grpc-status".into()),
    }
}
