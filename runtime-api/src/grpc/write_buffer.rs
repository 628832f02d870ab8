//! The gRPC server's write buffer: h2 writes and flushes its frames once per call it accepts
//! (and the calls of a read are answered as they are accepted), so written straight to the socket
//! every response became its own `send`. [`buffered`] splits a connection's stream into the
//! [`BufferedStream`] h2 reads and writes, whose writes only collect bytes (up to
//! [`WRITE_BUFFER_CAPACITY`]), and a [`Flusher`] whose [`Flusher::send_on_yield`] wraps the
//! connection's task future and sends everything collected with one write each time that future
//! is about to yield — once per poll round, whatever number of frames h2 produced in it.
//! Shard-local: one per connection, on the shard that accepted it.

use std::{
    cell::RefCell,
    future::Future,
    io::{self, IoSlice},
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, ready},
};

use futures_lite::AsyncWrite;
use layotto_core::read_uninit::ReadUninit;
use tokio::io::ReadBuf;

/// Bytes collected at most before a write must wait for the socket; a write at least this large
/// that finds the buffer empty goes to the socket directly.
pub const WRITE_BUFFER_CAPACITY: usize = 64 * 1024;

/// The buffer's first allocation; it grows up to the capacity within a round and is freed once
/// sent, so an idle connection holds none.
const INITIAL_ALLOCATION: usize = 4 * 1024;

struct Shared<S> {
    stream: S,
    /// Collected bytes, of which the first `sent` have been written already.
    buffer: Vec<u8>,
    sent: usize,
    capacity: usize,
    /// The error of a send made at a yield, reported to the next write.
    failed: Option<io::ErrorKind>,
}

impl<S: AsyncWrite + Unpin> Shared<S> {
    /// Writes the collected bytes, one write for all of them unless the socket takes fewer.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buffer.len() {
            let n = ready!(Pin::new(&mut self.stream).poll_write(cx, &self.buffer[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buffer = Vec::new();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Collects as much of `data` as fits; `None` when nothing does.
    fn collect(&mut self, data: &[u8]) -> Option<usize> {
        let room = self.capacity - self.buffer.len();
        if room == 0 {
            return None;
        }
        if self.buffer.capacity() == 0 {
            self.buffer.reserve(INITIAL_ALLOCATION.min(self.capacity));
        }
        let n = data.len().min(room);
        self.buffer.extend_from_slice(&data[..n]);
        Some(n)
    }

    fn check_failed(&mut self) -> io::Result<()> {
        match self.failed.take() {
            Some(kind) => Err(kind.into()),
            None => Ok(()),
        }
    }
}

/// The connection's stream as h2 uses it: reads go through, writes are collected.
pub struct BufferedStream<S>(Rc<RefCell<Shared<S>>>);

/// Sends what the [`BufferedStream`] collected.
pub struct Flusher<S>(Rc<RefCell<Shared<S>>>);

/// Splits `stream` into its buffered half for h2 and the flusher that sends the collected bytes,
/// collecting at most `capacity` bytes.
pub fn buffered<S>(stream: S, capacity: usize) -> (BufferedStream<S>, Flusher<S>) {
    let shared = Rc::new(RefCell::new(Shared {
        stream,
        buffer: Vec::new(),
        sent: 0,
        capacity: capacity.max(1),
        failed: None,
    }));
    (BufferedStream(shared.clone()), Flusher(shared))
}

impl<S: AsyncWrite + Unpin> Flusher<S> {
    /// Runs `future` (the connection's task, which owns the [`BufferedStream`]), sending the
    /// collected bytes each time it returns `Pending`. A send the socket cannot take at once
    /// resumes when it is writable (the socket wakes the task); a failed one is reported to the
    /// next write.
    pub fn send_on_yield<F: Future>(self, future: F) -> SendOnYield<F, S> {
        SendOnYield {
            future: Box::pin(future),
            flusher: self,
        }
    }
}

/// The future of [`Flusher::send_on_yield`].
pub struct SendOnYield<F, S> {
    future: Pin<Box<F>>,
    flusher: Flusher<S>,
}

impl<F: Future, S: AsyncWrite + Unpin> Future for SendOnYield<F, S> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if let Poll::Ready(output) = self.future.as_mut().poll(cx) {
            return Poll::Ready(output);
        }
        let mut shared = self.flusher.0.borrow_mut();
        if let Poll::Ready(Err(err)) = shared.poll_send(cx) {
            shared.failed = Some(err.kind());
            // Let the connection see it now rather than at its next event.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }
}

impl<S: ReadUninit> ReadUninit for BufferedStream<S> {
    fn poll_read_uninit(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0.borrow_mut().stream.poll_read_uninit(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BufferedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut shared = self.0.borrow_mut();
        shared.check_failed()?;
        if shared.buffer.is_empty() && data.len() >= shared.capacity {
            return Pin::new(&mut shared.stream).poll_write(cx, data);
        }
        if let Some(n) = shared.collect(data) {
            return Poll::Ready(Ok(n));
        }
        // Full: make room first (back-pressure while the socket cannot take it).
        ready!(shared.poll_send(cx))?;
        if data.len() >= shared.capacity {
            return Pin::new(&mut shared.stream).poll_write(cx, data);
        }
        Poll::Ready(Ok(shared.collect(data).unwrap_or(0)))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let Some(first) = slices.iter().find(|slice| !slice.is_empty()) else {
            return Poll::Ready(Ok(0));
        };
        let mut shared = self.0.borrow_mut();
        let mut total = 0;
        for slice in slices {
            match shared.collect(slice) {
                Some(n) => {
                    total += n;
                    if n < slice.len() {
                        break;
                    }
                }
                None => break,
            }
        }
        if total > 0 {
            return Poll::Ready(Ok(total));
        }
        drop(shared);
        self.poll_write(cx, first)
    }

    /// Collected bytes leave at the end of the poll round ([`Flusher::send_on_yield`]), in one
    /// write with everything else h2 writes in that round.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.borrow_mut().check_failed()?;
        Poll::Ready(Ok(()))
    }

    /// Sends what is collected, then closes.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut shared = self.0.borrow_mut();
        ready!(shared.poll_send(cx))?;
        Pin::new(&mut shared.stream).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, task::Waker};

    use futures_lite::{AsyncWriteExt, future::block_on};

    use super::*;

    /// A socket that counts its writes and takes at most `room` bytes before it would block.
    struct CountingSocket {
        written: Rc<RefCell<Vec<u8>>>,
        writes: Rc<Cell<usize>>,
        room: Rc<Cell<usize>>,
        closed: Rc<Cell<bool>>,
    }

    impl ReadUninit for CountingSocket {
        fn poll_read_uninit(
            &mut self,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for CountingSocket {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = data.len().min(self.room.get());
            if n == 0 {
                return Poll::Pending;
            }
            self.room.set(self.room.get() - n);
            self.writes.set(self.writes.get() + 1);
            self.written.borrow_mut().extend_from_slice(&data[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.closed.set(true);
            Poll::Ready(Ok(()))
        }
    }

    struct Probe {
        written: Rc<RefCell<Vec<u8>>>,
        writes: Rc<Cell<usize>>,
        room: Rc<Cell<usize>>,
        closed: Rc<Cell<bool>>,
    }

    fn socket(room: usize) -> (CountingSocket, Probe) {
        let probe = Probe {
            written: Rc::default(),
            writes: Rc::default(),
            room: Rc::new(Cell::new(room)),
            closed: Rc::default(),
        };
        let socket = CountingSocket {
            written: probe.written.clone(),
            writes: probe.writes.clone(),
            room: probe.room.clone(),
            closed: probe.closed.clone(),
        };
        (socket, probe)
    }

    /// A round of the connection's task: `frames` small writes, each followed by a flush as
    /// h2 does, then the task yields.
    fn round(stream: &mut BufferedStream<CountingSocket>, frames: usize) -> Poll<()> {
        for i in 0..frames {
            block_on(stream.write_all(&[i as u8; 52])).unwrap();
            block_on(stream.flush()).unwrap();
        }
        Poll::Pending
    }

    #[test]
    fn a_round_of_many_small_responses_is_one_write() {
        let (socket, probe) = socket(usize::MAX);
        let (mut stream, flusher) = buffered(socket, WRITE_BUFFER_CAPACITY);
        let rounds = Cell::new(0);
        let mut task = flusher.send_on_yield(std::future::poll_fn(|_| {
            rounds.set(rounds.get() + 1);
            round(&mut stream, 100)
        }));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut task).poll(&mut cx).is_pending());
        assert_eq!(probe.writes.get(), 1, "100 responses of one round");
        assert_eq!(probe.written.borrow().len(), 5200);
        assert!(Pin::new(&mut task).poll(&mut cx).is_pending());
        assert_eq!(probe.writes.get(), 2, "and one for the next round");
        assert_eq!(probe.written.borrow().len(), 10400);
    }

    #[test]
    fn the_buffer_is_bounded_and_a_full_one_waits_for_the_socket() {
        let (socket, probe) = socket(1000);
        let (mut stream, _flusher) = buffered(socket, 256);
        let mut cx = Context::from_waker(Waker::noop());
        let mut accepted = 0;
        // The socket takes 1000 bytes, the buffer at most 256 more: then writes must wait.
        while let Poll::Ready(n) = Pin::new(&mut stream).poll_write(&mut cx, &[7; 100]) {
            accepted += n.unwrap();
            assert!(accepted <= 1256, "{accepted}");
        }
        assert_eq!(probe.written.borrow().len(), 1000);
        assert!(accepted > 1000, "{accepted}");
        assert!(probe.writes.get() <= 4, "{} writes", probe.writes.get());
    }

    #[test]
    fn large_writes_go_straight_to_the_socket_and_close_sends_what_is_left() {
        let (socket, probe) = socket(usize::MAX);
        let (mut stream, _flusher) = buffered(socket, 1024);
        block_on(stream.write_all(&[1; 10])).unwrap();
        block_on(stream.write_all(&[2; 4096])).unwrap();
        block_on(stream.write_all(&[3; 10])).unwrap();
        // The 4096 bytes filled the buffer, which went out in one write, and the rest directly.
        assert_eq!(probe.written.borrow().len(), 10 + 4096);
        block_on(stream.write_all(&[4; 2048])).unwrap();
        assert_eq!(probe.written.borrow().len(), 10 + 4096 + 10 + 1014 + 1034);
        block_on(stream.close()).unwrap();
        assert!(probe.closed.get());
        let written = probe.written.borrow();
        assert_eq!(written.len(), 10 + 4096 + 10 + 2048);
        assert_eq!(
            (written[0], written[10], written[4106], written[4116]),
            (1, 2, 3, 4)
        );
        assert_eq!(probe.writes.get(), 4);
    }

    #[test]
    fn vectored_writes_are_collected_whole() {
        let (socket, probe) = socket(usize::MAX);
        let (mut stream, flusher) = buffered(socket, WRITE_BUFFER_CAPACITY);
        let mut cx = Context::from_waker(Waker::noop());
        let slices = [
            IoSlice::new(b"head"),
            IoSlice::new(&[]),
            IoSlice::new(b"payload"),
        ];
        let written = Pin::new(&mut stream).poll_write_vectored(&mut cx, &slices);
        assert!(matches!(written, Poll::Ready(Ok(11))));
        let mut task = flusher.send_on_yield(std::future::pending::<()>());
        assert!(Pin::new(&mut task).poll(&mut cx).is_pending());
        assert_eq!(&probe.written.borrow()[..], b"headpayload");
        assert_eq!(probe.writes.get(), 1);
    }

    /// Counts the writes that reach the socket.
    struct Counted<S> {
        inner: S,
        writes: Rc<Cell<usize>>,
    }

    impl<S: ReadUninit> ReadUninit for Counted<S> {
        fn poll_read_uninit(
            &mut self,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.inner.poll_read_uninit(cx, buf)
        }
    }

    impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let written = Pin::new(&mut self.inner).poll_write(cx, data);
            if let Poll::Ready(Ok(_)) = written {
                self.writes.set(self.writes.get() + 1);
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

    /// An HTTP/2 client on a blocking socket: sends `calls` requests (HEADERS with END_STREAM)
    /// in one write after the preface, and returns how many responses ended before the server's
    /// stream of frames went quiet for a second.
    fn client(address: std::net::SocketAddr, calls: u32) -> u32 {
        use std::io::{Read, Write};
        let mut socket = std::net::TcpStream::connect(address).unwrap();
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(1)))
            .unwrap();
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0".to_vec();
        // :method POST, :scheme http, :path /, :authority a (literal, not indexed).
        let block = [0x83, 0x86, 0x84, 0x01, 0x01, b'a'];
        for call in 0..calls {
            bytes.extend_from_slice(&[0, 0, block.len() as u8, 0x1, 0x5]);
            bytes.extend_from_slice(&(2 * call + 1).to_be_bytes());
            bytes.extend_from_slice(&block);
        }
        socket.write_all(&bytes).unwrap();
        let mut ended = 0;
        let mut header = [0u8; 9];
        while ended < calls && socket.read_exact(&mut header).is_ok() {
            let len =
                usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            let mut payload = vec![0; len];
            socket.read_exact(&mut payload).unwrap();
            if header[3] == 0x1 && header[4] & 0x1 != 0 {
                ended += 1;
            }
        }
        ended
    }

    /// Serves one connection as the gRPC server does (each call's task spawned, so run at once
    /// by glommio, answering at once), through the write buffer or not; the client's answered
    /// calls and the writes that reached the socket.
    fn serve_100_calls(buffer: bool) -> (u32, usize) {
        use layotto_core::read_uninit::TokioIo;
        glommio::LocalExecutor::default().run(async move {
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap();
            let client = std::thread::spawn(move || client(address, 100));
            let writes = Rc::new(Cell::new(0));
            let socket = Counted {
                inner: listener.accept().await.unwrap(),
                writes: writes.clone(),
            };
            async fn serve<T: ReadUninit + AsyncWrite + Unpin + 'static>(stream: T) {
                let mut connection = h2::server::Builder::new()
                    .handshake::<_, bytes::Bytes>(TokioIo::new(stream))
                    .await
                    .unwrap();
                while let Some(Ok((_, mut respond))) = connection.accept().await {
                    glommio::spawn_local(async move {
                        let _ = respond.send_response(http::Response::new(()), true);
                    })
                    .detach();
                }
            }
            if buffer {
                let (stream, flusher) = buffered(socket, WRITE_BUFFER_CAPACITY);
                flusher.send_on_yield(serve(stream)).await;
            } else {
                serve(socket).await;
            }
            (client.join().unwrap(), writes.get())
        })
    }

    #[test]
    fn an_h2_server_answers_a_read_of_many_calls_with_few_sends() {
        let (answered, writes) = serve_100_calls(true);
        assert_eq!(answered, 100);
        // SETTINGS at the handshake, then the answers of each read of requests (and the ack of
        // the client's SETTINGS) together.
        assert!(writes <= 5, "{writes} writes for 100 calls");
        // Written as h2 flushes, each answer is a write of its own.
        let (answered, writes) = serve_100_calls(false);
        assert_eq!(answered, 100);
        assert!(writes >= 50, "only {writes} writes without the buffer");
    }
}
