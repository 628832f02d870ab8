//! The byte pump of the tcp_proxy: both directions of one connection driven from a single poll
//! function (no stream splitting, so no lock). End of input on one side becomes a write shutdown
//! (FIN) on the other while the opposite direction keeps flowing. Each direction copies through a
//! shard buffer ([`CopyPump`]); when no filter watches the bytes and a read fills the whole
//! buffer (a bulk transfer), it goes on through a kernel pipe with splice(2)
//! ([`SplicePump`]), which saves the copies of large transfers but costs more than a copy for
//! small messages. Buffers and pipes are borrowed only while bytes are in flight. Runs on the
//! connection's shard.

use std::{
    cell::Cell,
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::{
    ProxyStats,
    splice::{PipePool, SplicePump},
};
use crate::{
    buffer_pool::BufferPool,
    chain::{Direction, Observers},
};

/// Reads a direction may do in one poll before yielding to the shard's other tasks.
pub(super) const READS_PER_POLL: usize = 16;

/// What both directions of one connection share: filters, activity and counters.
pub(crate) struct PumpHooks<'a> {
    /// Filters watching the bytes.
    pub observers: &'a mut Observers,
    /// Reads so far, for the idle timeout (a counter: no clock read per read).
    pub activity: &'a Cell<u64>,
    /// The listener's counters.
    pub stats: &'a ProxyStats,
    /// The connection's shard.
    pub shard: usize,
}

impl PumpHooks<'_> {
    /// Records a read of `n` bytes.
    pub(super) fn count_read(&self, direction: Direction, n: usize) {
        let counter = match direction {
            Direction::FromDownstream => &self.stats.bytes_from_downstream,
            Direction::FromUpstream => &self.stats.bytes_from_upstream,
        };
        counter.add(self.shard, n as u64);
        self.activity.set(self.activity.get().wrapping_add(1));
    }
}

/// One direction of a connection: moves bytes from one socket to the other.
pub(crate) trait OneWay {
    /// Moves what `from` has to `to`; ready once `from` ended and `to` was shut down for writes.
    fn poll_one_way(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut TcpStream,
        to: &mut TcpStream,
        direction: Direction,
        hooks: &mut PumpHooks<'_>,
    ) -> Poll<io::Result<()>>;
}

/// A direction copying through a shard buffer, showing every read to the filters.
struct CopyPump<'a> {
    pool: &'a BufferPool,
    buffer: Option<Box<[u8]>>,
    filled: usize,
    written: usize,
    input_ended: bool,
    done: bool,
    /// Stop (ready, not done) once a read that filled the buffer has been written.
    stop_when_full: bool,
}

impl<'a> CopyPump<'a> {
    fn new(pool: &'a BufferPool, stop_when_full: bool) -> Self {
        Self {
            pool,
            buffer: None,
            filled: 0,
            written: 0,
            input_ended: false,
            done: false,
            stop_when_full,
        }
    }
}

impl OneWay for CopyPump<'_> {
    fn poll_one_way(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut TcpStream,
        to: &mut TcpStream,
        direction: Direction,
        hooks: &mut PumpHooks<'_>,
    ) -> Poll<io::Result<()>> {
        let mut reads_left = READS_PER_POLL;
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if let Some(buffer) = &self.buffer {
                while self.written < self.filled {
                    let n = ready!(
                        Pin::new(&mut *to).poll_write(cx, &buffer[self.written..self.filled])
                    )?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.written += n;
                }
            }
            if self.input_ended {
                ready!(Pin::new(&mut *to).poll_close(cx))?;
                self.done = true;
                if let Some(buffer) = self.buffer.take() {
                    self.pool.give_back(buffer);
                }
                return Poll::Ready(Ok(()));
            }
            if self.stop_when_full
                && let Some(buffer) = self.buffer.take_if(|buffer| self.filled == buffer.len())
            {
                self.pool.give_back(buffer);
                return Poll::Ready(Ok(()));
            }
            if reads_left == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            reads_left -= 1;
            let buffer = self.buffer.get_or_insert_with(|| self.pool.take());
            match Pin::new(&mut *from).poll_read(cx, buffer) {
                Poll::Ready(Ok(0)) => self.input_ended = true,
                Poll::Ready(Ok(n)) => {
                    hooks.observers.on_data(direction, &buffer[..n]);
                    hooks.count_read(direction, n);
                    self.filled = n;
                    self.written = 0;
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    if let Some(buffer) = self.buffer.take() {
                        self.pool.give_back(buffer);
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// A direction that copies, and splices once a read fills the copy buffer if no filter watches
/// the bytes.
pub(crate) struct AdaptivePump<'a> {
    copy: CopyPump<'a>,
    pipes: Option<&'a PipePool>,
    splice: Option<SplicePump<'a>>,
}

impl<'a> AdaptivePump<'a> {
    /// A direction copying through buffers from `buffers`, and splicing through pipes from
    /// `pipes` when given (only when no filter needs the bytes).
    pub(crate) fn new(buffers: &'a BufferPool, pipes: Option<&'a PipePool>) -> Self {
        Self {
            copy: CopyPump::new(buffers, pipes.is_some()),
            pipes,
            splice: None,
        }
    }
}

impl OneWay for AdaptivePump<'_> {
    fn poll_one_way(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut TcpStream,
        to: &mut TcpStream,
        direction: Direction,
        hooks: &mut PumpHooks<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(splice) = &mut self.splice {
            return splice.poll_one_way(cx, from, to, direction, hooks);
        }
        ready!(self.copy.poll_one_way(cx, from, to, direction, hooks))?;
        match self.pipes {
            Some(pipes) if !self.copy.done => {
                // splice(2) between sockets needs them nonblocking; the copy path does not mind.
                for stream in [&*from, &*to] {
                    rustix::io::ioctl_fionbio(stream, true)?;
                }
                hooks.stats.spliced_directions.add(hooks.shard, 1);
                self.splice
                    .insert(SplicePump::new(pipes))
                    .poll_one_way(cx, from, to, direction, hooks)
            }
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// Moves bytes both ways between `downstream` and `upstream` until both directions have ended.
pub(crate) struct Pumping<'a, P> {
    downstream: &'a mut TcpStream,
    upstream: &'a mut TcpStream,
    to_upstream: P,
    to_downstream: P,
    hooks: PumpHooks<'a>,
}

impl<'a, P: OneWay> Pumping<'a, P> {
    /// A pump between two connected streams, one [`OneWay`] per direction.
    pub(crate) fn new(
        downstream: &'a mut TcpStream,
        upstream: &'a mut TcpStream,
        [to_upstream, to_downstream]: [P; 2],
        hooks: PumpHooks<'a>,
    ) -> Self {
        Self {
            downstream,
            upstream,
            to_upstream,
            to_downstream,
            hooks,
        }
    }
}

impl<P: OneWay + Unpin> Future for Pumping<'_, P> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let up = this.to_upstream.poll_one_way(
            cx,
            this.downstream,
            this.upstream,
            Direction::FromDownstream,
            &mut this.hooks,
        )?;
        let down = this.to_downstream.poll_one_way(
            cx,
            this.upstream,
            this.downstream,
            Direction::FromUpstream,
            &mut this.hooks,
        )?;
        if up.is_ready() && down.is_ready() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}
