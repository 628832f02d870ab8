//! One shard's keep-alive HTTP/1.1 connections to upstream hosts: hyper client connections over
//! glommio streams, their drivers local tasks of the shard ([`GlommioExecutor`]). A connection is
//! taken for one exchange and given back once its response body has been read to the end
//! ([`PooledBody`]), up to a bounded number of idle ones per host; one closed by the host is
//! dropped when next looked at. Shard-local, never shared.

use std::{
    cell::RefCell,
    collections::HashMap,
    net::SocketAddr,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use glommio::net::TcpStream;
use http_body_util::BodyExt;
use hyper::{
    body::{Body, Frame, Incoming, SizeHint},
    client::conn::http1::SendRequest,
    rt::Executor,
};

use crate::http1::{GlommioExecutor, HyperIo};

/// Any error a body may end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body of every request and response going through the proxy (streamed, never collected;
/// shard-local, so not `Send`).
pub type ProxyBody = Pin<Box<dyn Body<Data = Bytes, Error = BoxError>>>;

/// `body` as a [`ProxyBody`].
pub fn boxed<B>(body: B) -> ProxyBody
where
    B: Body<Data = Bytes> + 'static,
    B::Error: Into<BoxError>,
{
    Box::pin(body.map_err(Into::into))
}

/// Why no connection to a host could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The host refused or the connect failed.
    #[error("connect to {host} failed")]
    Connect {
        /// The host.
        host: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP/1 handshake failed.
    #[error("HTTP/1 handshake with {host} failed")]
    Handshake {
        /// The host.
        host: SocketAddr,
        /// Why.
        #[source]
        source: hyper::Error,
    },
}

/// Idle connections by host.
pub struct UpstreamPool {
    idle: RefCell<HashMap<SocketAddr, Vec<SendRequest<ProxyBody>>>>,
    max_idle_per_host: usize,
}

impl UpstreamPool {
    /// A pool keeping at most `max_idle_per_host` idle connections to each host.
    pub fn new(max_idle_per_host: usize) -> Self {
        Self {
            idle: RefCell::default(),
            max_idle_per_host,
        }
    }

    /// A kept connection to `host` that is still open and ready for a request, if any.
    pub async fn take(&self, host: SocketAddr) -> Option<SendRequest<ProxyBody>> {
        loop {
            let mut sender = {
                let mut idle = self.idle.borrow_mut();
                idle.get_mut(&host)?.pop()?
            };
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
    }

    /// Keeps `sender` for the next request to `host`, unless it is closed or enough are kept.
    pub fn put(&self, host: SocketAddr, sender: SendRequest<ProxyBody>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let kept = idle.entry(host).or_default();
        kept.retain(|s| !s.is_closed());
        if kept.len() < self.max_idle_per_host {
            kept.push(sender);
        }
    }

    /// A new connection to `host`, its driver spawned on this shard.
    pub async fn connect(
        host: SocketAddr,
        timeout: Duration,
    ) -> Result<SendRequest<ProxyBody>, ConnectError> {
        let stream = TcpStream::connect_timeout(host, timeout)
            .await
            .map_err(|err| ConnectError::Connect {
                host,
                source: err.into(),
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(HyperIo::new(stream))
            .await
            .map_err(|source| ConnectError::Handshake { host, source })?;
        GlommioExecutor.execute(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%host, error = %err, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// An upstream response body that gives its connection back to the pool once read to the end
/// (a body dropped before its end takes the connection with it: it is mid-response).
pub struct PooledBody {
    inner: Incoming,
    ended: bool,
    giveback: Option<(Rc<UpstreamPool>, SocketAddr, SendRequest<ProxyBody>)>,
}

impl PooledBody {
    /// `inner`, whose exchange ran on `sender` to `host` of `pool`.
    pub fn new(
        inner: Incoming,
        pool: Rc<UpstreamPool>,
        host: SocketAddr,
        sender: SendRequest<ProxyBody>,
    ) -> Self {
        Self {
            inner,
            ended: false,
            giveback: Some((pool, host, sender)),
        }
    }

    fn give_back(&mut self) {
        if let Some((pool, host, sender)) = self.giveback.take() {
            pool.put(host, sender);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.ended = true,
            Poll::Ready(Some(Err(_))) => this.giveback = None,
            _ => {}
        }
        if this.ended || this.inner.is_end_stream() {
            this.give_back();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        if self.is_end_stream() {
            self.give_back();
        }
    }
}
