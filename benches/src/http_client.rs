//! The load generator's HTTP/1.1 client (for Dapr's HTTP API): `GET`s of one path on one
//! kept-alive connection, on hyper's connection-level client (no pool, no per-call connection
//! bookkeeping); the connection's driver is a task of the load generator's `LocalSet`. Every
//! response is checked for status 200 and read to its end. Runs on the load generator's thread.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, StatusCode, Uri, header::HOST};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// `GET path` on one HTTP/1.1 connection, one call at a time.
pub(crate) struct HttpGetter {
    sender: SendRequest<Empty<Bytes>>,
    path: Uri,
    host: String,
}

impl HttpGetter {
    /// Connects to `address` for `GET`s of `path` (origin form, `/v1.0/...`).
    pub(crate) async fn connect(address: SocketAddr, path: &str) -> Result<Self> {
        let tcp = TcpStream::connect(address).await?;
        tcp.set_nodelay(true)?;
        let (sender, connection) = http1::handshake(TokioIo::new(tcp))
            .await
            .context("HTTP/1.1 connection")?;
        tokio::task::spawn_local(async move {
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            path: path.parse()?,
            host: address.to_string(),
        })
    }

    /// One `GET`; the body of a 200, or what was wrong.
    pub(crate) async fn get(&mut self) -> Result<Bytes, String> {
        let request = Request::get(self.path.clone())
            .header(HOST, &self.host)
            .body(Empty::new())
            .map_err(|err| err.to_string())?;
        self.sender.ready().await.map_err(|err| err.to_string())?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|err| err.to_string())?;
        if response.status() != StatusCode::OK {
            return Err(format!("HTTP {}", response.status()));
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|err| err.to_string())?;
        Ok(body.to_bytes())
    }
}
