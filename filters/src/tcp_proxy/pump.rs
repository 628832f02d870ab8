//! The byte pump of the tcp_proxy: both directions of one connection driven from a single poll
//! function (no stream splitting, so no lock). End of input on one side becomes a write shutdown
//! (FIN) on the other while the opposite direction keeps flowing. Each direction carries its
//! bytes in a shard buffer ([`BufferCarrier`]); when no filter watches the bytes and a read
//! fills the whole buffer (a bulk transfer), it goes on with a kernel pipe and splice(2)
//! ([`PipeCarrier`]), which saves the copies of large transfers but costs more than a copy for
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
    splice::{PipeCarrier, PipePool},
};
use crate::{
    buffer_pool::BufferPool,
    chain::{Direction, Observers},
};

/// Reads a direction may do in one poll before yielding to the shard's other tasks.
const READS_PER_POLL: usize = 16;

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

/// What one read brought.
pub(super) enum Fill {
    /// The end of input.
    End,
    /// Bytes; `whole` when they filled all the carrier could take.
    Bytes { whole: bool },
}

/// Holds a direction's bytes between their read and their write.
pub(super) trait Carrier {
    /// Writes what it holds to `to`; ready once it holds nothing.
    fn poll_drain(&mut self, cx: &mut Context<'_>, to: &mut TcpStream) -> Poll<io::Result<()>>;

    /// Reads from `from` into the (empty) carrier.
    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut TcpStream,
        direction: Direction,
        hooks: &mut PumpHooks<'_>,
    ) -> Poll<io::Result<Fill>>;

    /// Gives back the buffer or pipe it borrowed, if it holds no bytes.
    fn release(&mut self);
}

/// Carries bytes in a shard buffer, showing every read to the filters.
struct BufferCarrier<'a> {
    pool: &'a BufferPool,
    buffer: Option<Box<[u8]>>,
    filled: usize,
    written: usize,
}

impl Carrier for BufferCarrier<'_> {
    fn poll_drain(&mut self, cx: &mut Context<'_>, to: &mut TcpStream) -> Poll<io::Result<()>> {
        if let Some(buffer) = &self.buffer {
            while self.written < self.filled {
                let n =
                    ready!(Pin::new(&mut *to).poll_write(cx, &buffer[self.written..self.filled]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.written += n;
            }
        }
        Poll::Ready(Ok(()))
    }

    fn poll_fill(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut TcpStream,
        direction: Direction,
        hooks: &mut PumpHooks<'_>,
    ) -> Poll<io::Result<Fill>> {
        let buffer = self.buffer.get_or_insert_with(|| self.pool.take());
        let n = ready!(Pin::new(&mut *from).poll_read(cx, buffer))?;
        if n == 0 {
            return Poll::Ready(Ok(Fill::End));
        }
        hooks.observers.on_data(direction, &buffer[..n]);
        hooks.count_read(direction, n);
        self.filled = n;
        self.written = 0;
        Poll::Ready(Ok(Fill::Bytes {
            whole: n == buffer.len(),
        }))
    }

    fn release(&mut self) {
        if self.written == self.filled
            && let Some(buffer) = self.buffer.take()
        {
            self.pool.give_back(buffer);
        }
    }
}

/// Why a direction's driver stopped.
enum Stop {
    /// Input ended and the other side was shut down for writes.
    Ended,
    /// A read filled the carrier and was written out (asked for with `stop_when_full`).
    Full,
}

/// One direction's progress, whatever carries its bytes.
struct Progress {
    input_ended: bool,
    done: bool,
    last_fill_whole: bool,
    /// Stop with [`Stop::Full`] after a read that filled the carrier.
    stop_when_full: bool,
}

impl Progress {
    fn poll_with(
        &mut self,
        carrier: &mut impl Carrier,
        cx: &mut Context<'_>,
        from: &mut TcpStream,
        to: &mut TcpStream,
        direction: Direction,
        hooks: &mut PumpHooks<'_>,
    ) -> Poll<io::Result<Stop>> {
        let mut reads_left = READS_PER_POLL;
        loop {
            if self.done {
                return Poll::Ready(Ok(Stop::Ended));
            }
            ready!(carrier.poll_drain(cx, to))?;
            if self.input_ended {
                ready!(Pin::new(&mut *to).poll_close(cx))?;
                self.done = true;
                carrier.release();
                return Poll::Ready(Ok(Stop::Ended));
            }
            if self.stop_when_full && self.last_fill_whole {
                carrier.release();
                return Poll::Ready(Ok(Stop::Full));
            }
            if reads_left == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            reads_left -= 1;
            match carrier.poll_fill(cx, from, direction, hooks) {
                Poll::Ready(Ok(Fill::End)) => self.input_ended = true,
                Poll::Ready(Ok(Fill::Bytes { whole })) => self.last_fill_whole = whole,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    carrier.release();
                    return Poll::Pending;
                }
            }
        }
    }
}

/// One direction: copies through buffers, and splices through pipes once a read fills the
/// buffer if no filter needs the bytes.
struct AdaptivePump<'a> {
    progress: Progress,
    buffer: BufferCarrier<'a>,
    pipes: Option<&'a PipePool>,
    pipe: Option<PipeCarrier<'a>>,
}

impl<'a> AdaptivePump<'a> {
    /// A direction copying through buffers from `buffers`, and splicing through pipes from
    /// `pipes` when given (only when no filter needs the bytes).
    fn new(buffers: &'a BufferPool, pipes: Option<&'a PipePool>) -> Self {
        Self {
            progress: Progress {
                input_ended: false,
                done: false,
                last_fill_whole: false,
                stop_when_full: pipes.is_some(),
            },
            buffer: BufferCarrier {
                pool: buffers,
                buffer: None,
                filled: 0,
                written: 0,
            },
            pipes,
            pipe: None,
        }
    }

    /// Moves what `from` has to `to`; ready once `from` ended and `to` was shut down for writes.
    fn poll_one_way(
        &mut self,
        cx: &mut Context<'_>,
        from: &mut TcpStream,
        to: &mut TcpStream,
        direction: Direction,
        hooks: &mut PumpHooks<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(pipe) = &mut self.pipe {
            ready!(
                self.progress
                    .poll_with(pipe, cx, from, to, direction, hooks)
            )?;
            return Poll::Ready(Ok(()));
        }
        let stop =
            ready!(
                self.progress
                    .poll_with(&mut self.buffer, cx, from, to, direction, hooks)
            )?;
        match (stop, self.pipes) {
            (Stop::Full, Some(pipes)) => {
                // splice(2) between sockets needs them nonblocking; the copy path does not mind.
                for stream in [&*from, &*to] {
                    rustix::io::ioctl_fionbio(stream, true)?;
                }
                hooks.stats.spliced_directions.add(hooks.shard, 1);
                self.progress.stop_when_full = false;
                self.pipe = Some(PipeCarrier::new(pipes));
                self.poll_one_way(cx, from, to, direction, hooks)
            }
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// Moves bytes both ways between `downstream` and `upstream` until both directions have ended.
pub(crate) struct Pumping<'a> {
    downstream: &'a mut TcpStream,
    upstream: &'a mut TcpStream,
    to_upstream: AdaptivePump<'a>,
    to_downstream: AdaptivePump<'a>,
    hooks: PumpHooks<'a>,
}

impl<'a> Pumping<'a> {
    /// A pump between two connected streams, each direction copying through buffers from
    /// `buffers` and splicing through pipes from `pipes` when given.
    pub(crate) fn new(
        downstream: &'a mut TcpStream,
        upstream: &'a mut TcpStream,
        buffers: &'a BufferPool,
        pipes: Option<&'a PipePool>,
        hooks: PumpHooks<'a>,
    ) -> Self {
        Self {
            downstream,
            upstream,
            to_upstream: AdaptivePump::new(buffers, pipes),
            to_downstream: AdaptivePump::new(buffers, pipes),
            hooks,
        }
    }
}

impl Future for Pumping<'_> {
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
