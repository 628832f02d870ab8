//! hyper 1.x on glommio: the glue any HTTP/1 user of the shards shares (the Dapr HTTP API now, an
//! L7 proxy next). [`HyperIo`] makes a shard's stream (a `glommio::net::TcpStream`, or one seen
//! through the listener's filters, [`crate::observed::ObservedStream`]) a hyper transport;
//! [`GlommioTimer`] gives hyper its timers (the request head timeout) on the shard's executor;
//! [`GlommioExecutor`] spawns the background tasks hyper asks for (a client connection's driver)
//! as local tasks. [`serve`] runs one server connection with the limits every listener wants:
//! keep-alive, a deadline for each request head (which also closes idle keep-alive connections),
//! a cap on the head's size, and a graceful close when the process drains; [`read_body`] reads a
//! request body up to a cap. No tokio runtime is involved: everything runs on the shard that
//! accepted the connection, and hyper's futures need not be `Send`.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_lite::{AsyncWrite, future::or, ready};
use http_body_util::{BodyExt, Limited};
use hyper::{
    body::Incoming,
    rt::{Executor, ReadBufCursor, Sleep, Timer},
    service::HttpService,
};
use layotto_core::{read_uninit::ReadUninit, shutdown::ShutdownSignal};
use tokio::sync::oneshot;

/// Bytes read from the stream per read at most (hyper asks for its own buffer's free room).
const READ_CHUNK: usize = 16 * 1024;

/// A shard's stream as a hyper transport. Reads go through a buffer of the connection's own
/// (hyper hands out uninitialised memory, which safe code may only fill by copying into it).
pub struct HyperIo<S> {
    inner: S,
    scratch: Box<[u8]>,
}

impl<S> HyperIo<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
        }
    }
}

impl<S: ReadUninit + Unpin> hyper::rt::Read for HyperIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let room = buf.remaining().min(this.scratch.len());
        let mut scratch = tokio::io::ReadBuf::new(&mut this.scratch[..room]);
        ready!(this.inner.poll_read_uninit(cx, &mut scratch))?;
        buf.put_slice(scratch.filled());
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> hyper::rt::Write for HyperIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

/// hyper's timer on the current shard. hyper wants its sleeps `Send + Sync` although it polls
/// them on the connection's thread only, so each sleep is a local task on glommio's timer that
/// signals a oneshot channel; dropping the sleep (a head read in time) ends the task at once.
/// Must be used on a glommio executor's thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct GlommioTimer;

/// A sleep of [`GlommioTimer`]: ready when its task's timer fired (or the task is gone).
struct GlommioSleep(oneshot::Receiver<()>);

impl Future for GlommioSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl Sleep for GlommioSleep {}

impl Timer for GlommioTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        let (mut fire, fired) = oneshot::channel();
        glommio::spawn_local(async move {
            let elapsed = async {
                glommio::timer::sleep(duration).await;
                true
            };
            let abandoned = async {
                fire.closed().await;
                false
            };
            if or(elapsed, abandoned).await {
                let _ = fire.send(());
            }
        })
        .detach();
        Box::pin(GlommioSleep(fired))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        self.sleep(deadline.saturating_duration_since(Instant::now()))
    }
}

/// Runs the futures hyper hands over (a client connection's driver, HTTP/2's streams) as
/// detached local tasks of the current shard. Must be used on a glommio executor's thread.
#[derive(Debug, Clone, Copy, Default)]
pub struct GlommioExecutor;

impl<F> Executor<F> for GlommioExecutor
where
    F: Future + 'static,
{
    fn execute(&self, future: F) {
        glommio::spawn_local(future).detach();
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Limits of a server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// How long a request head may take to arrive, from the moment the connection waits for it
    /// (so an idle keep-alive connection is closed after this too).
    pub head_timeout: Duration,
    /// Largest request head buffered; a larger one is answered 431 and the connection closed.
    pub max_head: usize,
}

impl Default for ServerLimits {
    /// Envoy's edge guidance for request headers (10 s); heads up to 64 KiB.
    fn default() -> Self {
        Self {
            head_timeout: Duration::from_secs(10),
            max_head: 64 * 1024,
        }
    }
}

/// Serves HTTP/1.1 on one connection with `service` until the client closes it, a head takes
/// longer than the limit, or the process drains (`shutdown`): then the request in progress is
/// answered and the connection closed.
pub async fn serve<S, T>(
    stream: T,
    service: S,
    limits: ServerLimits,
    mut shutdown: ShutdownSignal,
) -> Result<(), hyper::Error>
where
    S: HttpService<Incoming>,
    S::Error: Into<BoxError>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<BoxError>,
    T: ReadUninit + AsyncWrite + Unpin + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(GlommioTimer)
        .header_read_timeout(limits.head_timeout)
        .max_header_size(limits.max_head)
        .max_buf_size(limits.max_head.max(8192))
        .keep_alive(true);
    let connection = builder.serve_connection(HyperIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let drained = or(async { Some(connection.as_mut().await) }, async {
        shutdown.wait().await;
        None
    })
    .await;
    match drained {
        Some(result) => result,
        None => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// It is longer than the cap (answer 413).
    #[error("the request body is larger than {0} bytes")]
    TooLarge(usize),
    /// The client stopped sending it or sent it malformed.
    #[error("the request body could not be read")]
    Read(#[source] hyper::Error),
}

/// Reads a whole request body of at most `max` bytes. A `Content-Length` over the cap is refused
/// before anything is read; a chunked body as soon as it passes the cap.
pub async fn read_body(body: Incoming, max: usize) -> Result<Bytes, BodyError> {
    use hyper::body::Body;
    if body.size_hint().lower() > max as u64 {
        return Err(BodyError::TooLarge(max));
    }
    match Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => match err.downcast::<hyper::Error>() {
            Ok(err) => Err(BodyError::Read(*err)),
            Err(_) => Err(BodyError::TooLarge(max)),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, rc::Rc};

    use glommio::{
        LocalExecutorBuilder,
        net::{TcpListener, TcpStream},
    };
    use http_body_util::Full;
    use hyper::{Request, Response, service::service_fn};

    use super::*;

    /// Runs `test` on a glommio executor of its own.
    fn on_glommio<F: Future<Output = ()> + 'static>(test: impl FnOnce() -> F + Send + 'static) {
        LocalExecutorBuilder::default()
            .spawn(move || async move { test().await })
            .unwrap()
            .join()
            .unwrap();
    }

    /// A server answering each request with its body's length (capped at 8 bytes), counting
    /// the connections it served.
    async fn start_server(limits: ServerLimits) -> (std::net::SocketAddr, Rc<Cell<usize>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let connections = Rc::new(Cell::new(0));
        let counted = connections.clone();
        let (_trigger, shutdown) = layotto_core::shutdown::channel();
        glommio::spawn_local(async move {
            let _trigger = _trigger;
            loop {
                let stream = listener.accept().await.unwrap();
                counted.set(counted.get() + 1);
                let shutdown = shutdown.clone();
                glommio::spawn_local(async move {
                    let service = service_fn(|request: Request<Incoming>| async move {
                        let answer = match read_body(request.into_body(), 8).await {
                            Ok(body) => {
                                Response::new(Full::new(Bytes::from(body.len().to_string())))
                            }
                            Err(BodyError::TooLarge(_)) => Response::builder()
                                .status(413)
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                            Err(BodyError::Read(err)) => return Err(err),
                        };
                        Ok::<_, hyper::Error>(answer)
                    });
                    let _ = serve(stream, service, limits, shutdown).await;
                })
                .detach();
            }
        })
        .detach();
        (address, connections)
    }

    /// A hyper client connection, driven by [`GlommioExecutor`].
    async fn client(
        address: std::net::SocketAddr,
    ) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
        let stream = TcpStream::connect(address).await.unwrap();
        let (sender, connection) = hyper::client::conn::http1::handshake(HyperIo::new(stream))
            .await
            .unwrap();
        GlommioExecutor.execute(async move {
            let _ = connection.await;
        });
        sender
    }

    async fn post(
        sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
        body: &'static [u8],
    ) -> (u16, Bytes) {
        let request = Request::post("/")
            .body(Full::new(Bytes::from_static(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    }

    #[test]
    fn keeps_connections_alive_and_caps_bodies() {
        on_glommio(|| async {
            let (address, connections) = start_server(ServerLimits::default()).await;
            let mut sender = client(address).await;
            assert_eq!(post(&mut sender, b"abc").await, (200, Bytes::from("3")));
            assert_eq!(
                post(&mut sender, b"12345678").await,
                (200, Bytes::from("8"))
            );
            assert_eq!(
                connections.get(),
                1,
                "the second request reused the connection"
            );
            assert_eq!(post(&mut sender, b"123456789").await.0, 413);
        });
    }

    #[test]
    fn closes_a_connection_whose_head_is_late() {
        on_glommio(|| async {
            use futures_lite::{AsyncReadExt, AsyncWriteExt};
            let limits = ServerLimits {
                head_timeout: Duration::from_millis(200),
                ..ServerLimits::default()
            };
            let (address, _) = start_server(limits).await;
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream
                .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n")
                .await
                .unwrap();
            let started = Instant::now();
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.unwrap();
            let waited = started.elapsed();
            assert!(
                waited >= Duration::from_millis(150) && waited < Duration::from_secs(5),
                "{waited:?}"
            );
            // hyper answers a head timeout with 408 before closing.
            let text = String::from_utf8_lossy(&answer);
            assert!(
                text.is_empty() || text.starts_with("HTTP/1.1 408"),
                "{text}"
            );
        });
    }
}
