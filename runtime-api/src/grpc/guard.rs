//! The gRPC server's connection guard: an I/O wrapper that follows the client's HTTP/2 frame
//! headers (never their payloads) so the connection driver learns when the preface's first
//! SETTINGS frame has arrived and when the client sends frames that demand a reply (PING,
//! SETTINGS) faster than the per-connection control-frame budget allows (a SETTINGS or PING
//! flood). Shard-local: one per connection, on the shard that accepted it.

use std::{
    cell::RefCell,
    io,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use futures_lite::AsyncWrite;
use layotto_core::read_uninit::ReadUninit;
use tokio::io::ReadBuf;

/// The client connection preface (RFC 9113 section 3.4), which precedes the first frame.
const PREFACE_LEN: usize = 24;
/// Every HTTP/2 frame starts with a 9-byte header.
const FRAME_HEADER_LEN: usize = 9;
const TYPE_SETTINGS: u8 = 0x4;
const TYPE_PING: u8 = 0x6;
const FLAG_ACK: u8 = 0x1;

/// How many reply-demanding control frames a client may send: `burst` at once, refilled at
/// `per_second` (a token bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlFrameBudget {
    /// Frames accepted back to back.
    pub burst: u32,
    /// Frames added back to the budget each second.
    pub per_second: u32,
}

/// What the guard has seen of the client's frames so far.
struct WatchState {
    /// Preface bytes still to skip.
    preface_left: usize,
    /// The frame header being read.
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    /// Payload bytes of the current frame still to skip.
    payload_left: usize,
    settings_seen: bool,
    flooded: bool,
    tokens: f64,
    refilled: Instant,
    budget: ControlFrameBudget,
    waker: Option<Waker>,
}

impl WatchState {
    fn observe(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                bytes = &bytes[n..];
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
            } else {
                let n = (FRAME_HEADER_LEN - self.header_len).min(bytes.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == FRAME_HEADER_LEN {
                    self.header_len = 0;
                    let [l0, l1, l2, kind, flags, ..] = self.header;
                    self.payload_left =
                        usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2);
                    self.on_frame(kind, flags);
                }
            }
        }
    }

    fn on_frame(&mut self, kind: u8, flags: u8) {
        let demands_reply = (kind == TYPE_SETTINGS || kind == TYPE_PING) && flags & FLAG_ACK == 0;
        if kind == TYPE_SETTINGS && !self.settings_seen {
            self.settings_seen = true;
            self.wake();
        }
        if demands_reply && !self.take_token() {
            self.flooded = true;
            self.wake();
        }
    }

    fn take_token(&mut self) -> bool {
        let now = Instant::now();
        let refill =
            now.duration_since(self.refilled).as_secs_f64() * f64::from(self.budget.per_second);
        self.tokens = (self.tokens + refill).min(f64::from(self.budget.burst));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// What the connection driver asks the guard.
#[derive(Clone)]
pub(crate) struct Watch(Rc<RefCell<WatchState>>);

impl Watch {
    /// Resolves once the client's first SETTINGS frame has been read.
    pub(crate) async fn settings_received(&self) {
        std::future::poll_fn(|cx| self.poll_until(cx, |state| state.settings_seen)).await;
    }

    /// Resolves once the client has sent more reply-demanding control frames than its budget.
    pub(crate) async fn flooded(&self) {
        std::future::poll_fn(|cx| self.poll_until(cx, |state| state.flooded)).await;
    }

    fn poll_until(&self, cx: &mut Context<'_>, done: impl Fn(&WatchState) -> bool) -> Poll<()> {
        let mut state = self.0.borrow_mut();
        if done(&state) {
            return Poll::Ready(());
        }
        // Two waiters at most (the SETTINGS wait ends before the flood wait starts).
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            Some(other) => {
                let other = other.clone();
                state.waker = Some(chain_waker(other, cx.waker().clone()));
            }
            None => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// A waker that wakes both.
fn chain_waker(a: Waker, b: Waker) -> Waker {
    use std::{sync::Arc, task::Wake};
    struct Both(Waker, Waker);
    impl Wake for Both {
        fn wake(self: Arc<Self>) {
            self.0.wake_by_ref();
            self.1.wake_by_ref();
        }
    }
    Waker::from(Arc::new(Both(a, b)))
}

/// The connection's byte stream, watched; after a flood it stops reading.
pub(crate) struct GuardedStream<S> {
    inner: S,
    watch: Watch,
}

impl<S> GuardedStream<S> {
    /// Wraps a fresh connection, whose first bytes are the client preface.
    pub(crate) fn new(inner: S, budget: ControlFrameBudget) -> (Self, Watch) {
        let watch = Watch(Rc::new(RefCell::new(WatchState {
            preface_left: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            payload_left: 0,
            settings_seen: false,
            flooded: false,
            tokens: f64::from(budget.burst),
            refilled: Instant::now(),
            budget,
            waker: None,
        })));
        (
            Self {
                inner,
                watch: watch.clone(),
            },
            watch,
        )
    }
}

impl<S: ReadUninit> ReadUninit for GuardedStream<S> {
    fn poll_read_uninit(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.watch.0.borrow().flooded {
            // Read nothing more from a flooding client; the driver is closing the connection.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let read = self.inner.poll_read_uninit(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            self.watch.0.borrow_mut().observe(&buf.filled()[before..]);
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for GuardedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// Connection timeouts of the gRPC server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionTimeouts {
    /// From accept until the client's preface and first SETTINGS frame have arrived.
    pub handshake: Duration,
    /// A connection with no call in progress for this long gets a GOAWAY and is closed.
    pub idle: Duration,
    /// After a GOAWAY for a flood or an unanswered PING, how long the client gets to read it
    /// before the socket closes.
    pub close_grace: Duration,
    /// How often the server sends a keep-alive PING; `None`: never.
    pub keepalive_interval: Option<Duration>,
    /// How long a keep-alive PING may go unanswered before the connection gets GOAWAY and is
    /// closed.
    pub keepalive_timeout: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(burst: u32) -> Rc<RefCell<WatchState>> {
        let (_, watch) = GuardedStream::new(
            (),
            ControlFrameBudget {
                burst,
                per_second: 0,
            },
        );
        watch.0
    }

    #[test]
    fn follows_frame_headers_split_anywhere() {
        let state = state(2);
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[0, 0, 6, TYPE_SETTINGS, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100]);
        for _ in 0..2 {
            bytes.extend_from_slice(&[0, 0, 8, TYPE_PING, 0, 0, 0, 0, 0]);
            bytes.extend_from_slice(&[TYPE_PING; 8]);
        }
        for byte in &bytes {
            state.borrow_mut().observe(std::slice::from_ref(byte));
        }
        let seen = state.borrow();
        assert!(seen.settings_seen);
        // SETTINGS + 2 PINGs demanded 3 replies; the budget held 2.
        assert!(seen.flooded);
    }

    #[test]
    fn acks_cost_nothing() {
        let state = state(1);
        let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        bytes.extend_from_slice(&[0, 0, 0, TYPE_SETTINGS, FLAG_ACK, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[
            0, 0, 8, TYPE_PING, FLAG_ACK, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
        ]);
        bytes.extend_from_slice(&[0, 0, 0, TYPE_SETTINGS, 0, 0, 0, 0, 0]);
        state.borrow_mut().observe(&bytes);
        assert!(!state.borrow().flooded);
    }
}
