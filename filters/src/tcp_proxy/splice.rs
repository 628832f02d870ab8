//! The zero-copy path of the tcp_proxy, taken when no filter needs to see the bytes: each
//! direction moves bytes socket → pipe → socket with nonblocking splice(2), so they never enter
//! user space, and waits on the reactor's readiness polls when a socket has nothing to give or
//! no room to take. Pipes come from a per-shard pool and are held only while bytes are in
//! them, so idle connections hold none. Runs on the connection's shard.

use std::{
    cell::RefCell,
    io,
    os::fd::{AsFd, OwnedFd},
    pin::Pin,
    task::{Context, Poll, ready},
};

use futures_lite::AsyncWrite;
use glommio::net::TcpStream;
use rustix::{
    io::Errno,
    pipe::{PipeFlags, SpliceFlags, fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, splice},
};

use super::pump::{OneWay, PumpHooks, READS_PER_POLL};
use crate::chain::Direction;

/// A kernel pipe: what one direction has read and not yet written.
#[derive(Debug)]
struct Pipe {
    read_end: OwnedFd,
    write_end: OwnedFd,
    capacity: usize,
}

/// Empty pipes of one shard, kept for reuse.
#[derive(Debug)]
pub(crate) struct PipePool {
    free: RefCell<Vec<Pipe>>,
    pipe_size: usize,
    keep: usize,
}

impl PipePool {
    /// A pool of pipes of `pipe_size` bytes (the kernel default if it refuses), keeping at most
    /// `keep` idle ones.
    pub(crate) fn new(pipe_size: usize, keep: usize) -> Self {
        Self {
            free: RefCell::new(Vec::with_capacity(keep)),
            pipe_size,
            keep,
        }
    }

    fn take(&self) -> io::Result<Pipe> {
        if let Some(pipe) = self.free.borrow_mut().pop() {
            return Ok(pipe);
        }
        let (read_end, write_end) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        // Over the per-user pipe quota the kernel refuses a bigger size: the pipe still works
        // with the size it has.
        let capacity = fcntl_setpipe_size(&write_end, self.pipe_size)
            .or_else(|_| fcntl_getpipe_size(&write_end))?;
        Ok(Pipe {
            read_end,
            write_end,
            capacity,
        })
    }

    /// Keeps an empty pipe for reuse (closed if the pool already keeps enough).
    fn give_back(&self, pipe: Pipe) {
        let mut free = self.free.borrow_mut();
        if free.len() < self.keep {
            free.push(pipe);
        }
    }

    /// Number of idle pipes held.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.free.borrow().len()
    }
}

/// A direction moving bytes through a pipe with splice(2). Needs both sockets in nonblocking
/// mode.
pub(crate) struct SplicePump<'a> {
    pipes: &'a PipePool,
    pipe: Option<Pipe>,
    in_pipe: usize,
    input_ended: bool,
    done: bool,
}

impl<'a> SplicePump<'a> {
    /// A direction borrowing its pipes from `pipes`.
    pub(crate) fn new(pipes: &'a PipePool) -> Self {
        Self {
            pipes,
            pipe: None,
            in_pipe: 0,
            input_ended: false,
            done: false,
        }
    }

    /// Gives the pipe back to the pool if it is empty.
    fn return_pipe(&mut self) {
        if self.in_pipe == 0
            && let Some(pipe) = self.pipe.take()
        {
            self.pipes.give_back(pipe);
        }
    }
}

impl Drop for SplicePump<'_> {
    fn drop(&mut self) {
        // A pipe still holding bytes (the connection failed) is closed, not reused.
        self.return_pipe();
    }
}

/// One nonblocking splice(2) of up to `len` bytes; `None` when it would block.
fn splice_some(from: impl AsFd, to: impl AsFd, len: usize) -> Option<io::Result<usize>> {
    loop {
        match splice(
            &from,
            None,
            &to,
            None,
            len,
            SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
        ) {
            Ok(n) => return Some(Ok(n)),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return None,
            Err(err) => return Some(Err(err.into())),
        }
    }
}

impl OneWay for SplicePump<'_> {
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
            if let Some(pipe) = &self.pipe {
                while self.in_pipe > 0 {
                    ready!(to.poll_write_ready(cx));
                    match splice_some(&pipe.read_end, &*to, self.in_pipe) {
                        Some(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                        Some(Ok(n)) => self.in_pipe -= n,
                        Some(Err(err)) => return Poll::Ready(Err(err)),
                        None => to.clear_write_ready(),
                    }
                }
            }
            if self.input_ended {
                ready!(Pin::new(&mut *to).poll_close(cx))?;
                self.done = true;
                self.return_pipe();
                return Poll::Ready(Ok(()));
            }
            if reads_left == 0 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if from.poll_read_ready(cx).is_pending() {
                self.return_pipe();
                return Poll::Pending;
            }
            reads_left -= 1;
            let pipe = match &self.pipe {
                Some(pipe) => pipe,
                None => self.pipe.insert(self.pipes.take()?),
            };
            match splice_some(&*from, &pipe.write_end, pipe.capacity) {
                Some(Ok(0)) => self.input_ended = true,
                Some(Ok(n)) => {
                    hooks.count_read(direction, n);
                    self.in_pipe = n;
                }
                Some(Err(err)) => return Poll::Ready(Err(err)),
                None => from.clear_read_ready(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_reuses_pipes_up_to_its_limit() {
        let pool = PipePool::new(256 * 1024, 1);
        let first = pool.take().unwrap();
        let second = pool.take().unwrap();
        // Asked for 256 KiB; the per-user pipe quota may leave a smaller size, never none.
        assert!(first.capacity > 0 && first.capacity <= 256 * 1024);
        pool.give_back(first);
        pool.give_back(second);
        assert_eq!(pool.idle(), 1);
        pool.take().unwrap();
        assert_eq!(pool.idle(), 0);
    }
}
