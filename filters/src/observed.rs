//! A connection seen through its listener's filters: counts the bytes each way and shows them to
//! the connection's observers (tcpcopy), for terminals that hand the socket to a protocol library
//! (the gRPC server's h2) instead of copying bytes themselves. Runs on the connection's shard.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use futures_lite::AsyncWrite;
use layotto_core::{read_uninit::ReadUninit, stats::ShardedCounter};
use tokio::io::ReadBuf;

use crate::chain::{Direction, Observers};

/// Bytes a listener received from and sent to its clients, per shard.
#[derive(Debug)]
pub struct ByteCounters {
    /// Read from clients.
    pub received: ShardedCounter,
    /// Written to clients.
    pub sent: ShardedCounter,
}

impl ByteCounters {
    /// Zero counts for `shards` shards.
    pub fn new(shards: usize) -> Self {
        Self {
            received: ShardedCounter::new(shards),
            sent: ShardedCounter::new(shards),
        }
    }

    /// As `(name, total)` counters.
    pub fn counters(&self) -> [(&'static str, u64); 2] {
        [
            ("bytes_received", self.received.sum()),
            ("bytes_sent", self.sent.sum()),
        ]
    }
}

/// A stream whose reads are bytes from the client ([`Direction::FromDownstream`]) and whose
/// writes are bytes to it ([`Direction::FromUpstream`]).
pub struct ObservedStream<S> {
    inner: S,
    observers: Observers,
    counters: Arc<ByteCounters>,
    shard: usize,
}

impl<S> ObservedStream<S> {
    /// Wraps `inner`, the connection accepted on `shard`.
    pub fn new(inner: S, observers: Observers, counters: Arc<ByteCounters>, shard: usize) -> Self {
        Self {
            inner,
            observers,
            counters,
            shard,
        }
    }
}

impl<S: ReadUninit> ReadUninit for ObservedStream<S> {
    fn poll_read_uninit(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = self.inner.poll_read_uninit(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            let new = &buf.filled()[before..];
            self.counters.received.add(self.shard, new.len() as u64);
            self.observers.on_data(Direction::FromDownstream, new);
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ObservedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            this.counters.sent.add(this.shard, n as u64);
            this.observers.on_data(Direction::FromUpstream, &buf[..n]);
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}
