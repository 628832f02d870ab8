//! The byte pump of the tcp_proxy: both directions of one connection driven from a single poll
//! function (no stream splitting, so no lock), each direction borrowing a shard buffer only while
//! it has bytes in flight. End of input on one side becomes a write shutdown (FIN) on the other
//! while the opposite direction keeps flowing. Runs on the connection's shard.

use std::{
    cell::Cell,
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use futures_lite::{AsyncRead, AsyncWrite};

use crate::{
    buffer_pool::BufferPool,
    chain::{Direction, Observers},
};

/// Reads a direction may do in one poll before yielding to the shard's other tasks.
const READS_PER_POLL: usize = 16;

/// Callbacks shared by both directions of one connection.
pub(crate) struct PumpHooks<'a> {
    /// Shard buffers.
    pub pool: &'a BufferPool,
    /// Filters watching the bytes.
    pub observers: &'a mut Observers,
    /// Reads so far, for the idle timeout (a counter: no clock read per read).
    pub activity: &'a Cell<u64>,
    /// Called with each read's size and direction (stats).
    pub on_bytes: &'a dyn Fn(Direction, usize),
}

/// One direction's progress.
#[derive(Default)]
struct Pump {
    buffer: Option<Box<[u8]>>,
    filled: usize,
    written: usize,
    input_ended: bool,
    done: bool,
}

impl Pump {
    fn poll_pump<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
        direction: Direction,
        hooks: &mut PumpHooks<'_>,
    ) -> Poll<io::Result<()>>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut reads_left = READS_PER_POLL;
        loop {
            if self.done {
                return Poll::Ready(Ok(()));
            }
            if let Some(buffer) = &self.buffer {
                while self.written < self.filled {
                    let n = ready!(
                        Pin::new(&mut *writer).poll_write(cx, &buffer[self.written..self.filled])
                    )?;
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    self.written += n;
                }
            }
            if self.input_ended {
                ready!(Pin::new(&mut *writer).poll_close(cx))?;
                self.done = true;
                if let Some(buffer) = self.buffer.take() {
                    hooks.pool.give_back(buffer);
                }
                return Poll::Ready(Ok(()));
            }
            if reads_left == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            reads_left -= 1;
            let buffer = self.buffer.get_or_insert_with(|| hooks.pool.take());
            match Pin::new(&mut *reader).poll_read(cx, buffer) {
                Poll::Ready(Ok(0)) => self.input_ended = true,
                Poll::Ready(Ok(n)) => {
                    hooks.observers.on_data(direction, &buffer[..n]);
                    (hooks.on_bytes)(direction, n);
                    hooks.activity.set(hooks.activity.get().wrapping_add(1));
                    self.filled = n;
                    self.written = 0;
                }
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => {
                    if let Some(buffer) = self.buffer.take() {
                        hooks.pool.give_back(buffer);
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

/// Copies both ways between `downstream` and `upstream` until both directions have ended.
pub(crate) struct Pumping<'a, D, U> {
    downstream: &'a mut D,
    upstream: &'a mut U,
    to_upstream: Pump,
    to_downstream: Pump,
    hooks: PumpHooks<'a>,
}

impl<'a, D, U> Pumping<'a, D, U> {
    /// A pump between two connected streams.
    pub(crate) fn new(downstream: &'a mut D, upstream: &'a mut U, hooks: PumpHooks<'a>) -> Self {
        Self {
            downstream,
            upstream,
            to_upstream: Pump::default(),
            to_downstream: Pump::default(),
            hooks,
        }
    }
}

impl<D, U> Future for Pumping<'_, D, U>
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let up = this.to_upstream.poll_pump(
            cx,
            this.downstream,
            this.upstream,
            Direction::FromDownstream,
            &mut this.hooks,
        )?;
        let down = this.to_downstream.poll_pump(
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
