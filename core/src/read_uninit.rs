//! Reads into memory that is not initialized yet, for the protocol libraries that read into the
//! spare capacity of their own buffers (h2 through tokio's `ReadBuf`, hyper through its
//! `ReadBufCursor`). futures' `AsyncRead` wants an initialized slice, so an adapter over it
//! (tokio-util's compat) zeroes all of that capacity before every read, or copies out of a
//! buffer of its own. [`ReadUninit`] is what the socket and each layer over it implement
//! instead; [`TokioIo`] makes the top layer a tokio `AsyncRead` + `AsyncWrite`. Runs on the
//! connection's shard.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use futures_lite::AsyncWrite;
use glommio::net::TcpStream;
use tokio::io::ReadBuf;

/// A byte stream that reads into the unfilled part of a [`ReadBuf`] without initializing it
/// first; as tokio's `AsyncRead::poll_read` otherwise (`Ready(Ok)` with nothing filled is the
/// end of the stream).
pub trait ReadUninit {
    /// Reads what is there into `buf`'s unfilled part, or wakes `cx` when there is something.
    fn poll_read_uninit(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>>;
}

#[expect(
    unsafe_code,
    reason = "a recv into uninitialized memory: tokio's ReadBuf hands it out only unsafely"
)]
impl ReadUninit for TcpStream {
    fn poll_read_uninit(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // SAFETY: the socket's recv writes only bytes the kernel initialized into the region,
        // never uninitialized ones.
        let unfilled = unsafe { buf.unfilled_mut() };
        let n = ready!(TcpStream::poll_read_uninit(self, cx, unfilled))?;
        // SAFETY: the recv initialized the first `n` bytes of the unfilled part.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// A [`ReadUninit`] + futures `AsyncWrite` stream as tokio's `AsyncRead` + `AsyncWrite` (what
/// h2 wants): reads go into the caller's spare capacity as it is, writes pass through (one
/// slice at a time, as through tokio-util's compat).
pub struct TokioIo<S>(S);

impl<S> TokioIo<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self(inner)
    }
}

impl<S: ReadUninit + Unpin> tokio::io::AsyncRead for TokioIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().0.poll_read_uninit(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> tokio::io::AsyncWrite for TokioIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::{future::poll_fn, mem::MaybeUninit};

    use futures_lite::AsyncWriteExt;
    use glommio::{LocalExecutor, net::TcpListener};

    use super::*;

    /// A read through [`TokioIo`] fills the caller's uninitialized capacity with what arrived and
    /// initializes nothing beyond it (tokio-util's compat initializes all of it first); the
    /// peer's close then reads as the end.
    #[test]
    fn reads_into_uninitialized_capacity_without_zeroing_it() {
        LocalExecutor::default().run(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap();
            let client = glommio::spawn_local(async move {
                let mut stream = TcpStream::connect(address).await.unwrap();
                stream.write_all(b"hello, h2").await.unwrap();
            });
            let mut io = TokioIo::new(listener.accept().await.unwrap());
            let mut storage = [MaybeUninit::<u8>::uninit(); 4096];
            let mut buf = ReadBuf::uninit(&mut storage);
            while buf.filled().len() < 9 {
                poll_fn(|cx| tokio::io::AsyncRead::poll_read(Pin::new(&mut io), cx, &mut buf))
                    .await
                    .unwrap();
            }
            assert_eq!(buf.filled(), b"hello, h2");
            assert_eq!(buf.initialized().len(), 9, "initialized past what was read");
            client.await;
            poll_fn(|cx| tokio::io::AsyncRead::poll_read(Pin::new(&mut io), cx, &mut buf))
                .await
                .unwrap();
            assert_eq!(buf.filled().len(), 9, "the end reads as nothing");
        });
    }
}
