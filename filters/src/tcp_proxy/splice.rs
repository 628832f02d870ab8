//! The zero-copy path of the tcp_proxy, taken when no filter needs to see the bytes: each
//! direction moves bytes socket → pipe → socket with nonblocking splice(2), so they never enter
//! user space, and waits on the reactor's readiness polls when a socket has nothing to give or
//! no room to take. Pipes come from a per-shard pool and are held only while bytes are in
//! them, so idle connections hold none. Runs on the connection's shard.

use std::{
    cell::RefCell,
    io,
    os::fd::{AsFd, OwnedFd},
    task::{Context, Poll, ready},
};

use glommio::net::TcpStream;
use rustix::{
    io::Errno,
    pipe::{PipeFlags, SpliceFlags, fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, splice},
};

use super::pump::{Carrier, Fill, PumpHooks};
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

/// Carries a direction's bytes in a pipe with splice(2). Needs both sockets in nonblocking mode.
pub(crate) struct PipeCarrier<'a> {
    pipes: &'a PipePool,
    pipe: Option<Pipe>,
    in_pipe: usize,
}

impl<'a> PipeCarrier<'a> {
    /// A carrier borrowing its pipes from `pipes`.
    pub(crate) fn new(pipes: &'a PipePool) -> Self {
        Self {
            pipes,
            pipe: None,
            in_pipe: 0,
        }
    }
}

impl Drop for PipeCarrier<'_> {
    fn drop(&mut self) {
        // A pipe still holding bytes (the connection failed) is closed, not reused.
        self.release();
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

impl Carrier for PipeCarrier<'_> {
    fn poll_drain(&mut self, cx: &mut Context<'_>, to: &mut TcpStream) -> Poll<io::Result<()>> {
        let Some(pipe) = &self.pipe else {
            return Poll::Ready(Ok(()));
        };
        while self.in_pipe > 0 {
            ready!(to.poll_write_ready(cx));
            match splice_some(&pipe.read_end, &*to, self.in_pipe) {
                Some(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Some(Ok(n)) => self.in_pipe -= n,
                Some(Err(err)) => return Poll::Ready(Err(err)),
                None => to.clear_write_ready(),
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
        loop {
            ready!(from.poll_read_ready(cx));
            let pipe = match &self.pipe {
                Some(pipe) => pipe,
                None => self.pipe.insert(self.pipes.take()?),
            };
            match splice_some(&*from, &pipe.write_end, pipe.capacity) {
                Some(Ok(0)) => return Poll::Ready(Ok(Fill::End)),
                Some(Ok(n)) => {
                    hooks.count_read(direction, n);
                    self.in_pipe = n;
                    let whole = n == pipe.capacity;
                    return Poll::Ready(Ok(Fill::Bytes { whole }));
                }
                Some(Err(err)) => return Poll::Ready(Err(err)),
                None => from.clear_read_ready(),
            }
        }
    }

    fn release(&mut self) {
        if self.in_pipe == 0
            && let Some(pipe) = self.pipe.take()
        {
            self.pipes.give_back(pipe);
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
