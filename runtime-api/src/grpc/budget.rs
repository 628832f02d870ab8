//! Buffered-byte budgets of the gRPC server: the request bytes held in message decoders (parts of
//! messages still arriving) and the response bytes held in encoded messages waiting for the
//! peer's flow-control window, counted per connection and per listener. A connection's counts
//! are shard-local; the listener's are atomics shared lock-free by all its shards. A new stream
//! is refused (REFUSED_STREAM) while a count holds half its limit or more; a call whose next
//! bytes would pass a limit fails with RESOURCE_EXHAUSTED. Every byte is given back when the call
//! that holds it ends, so a connection that goes frees all it held.

use std::{
    cell::Cell,
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use layotto_core::metrics::{Exposition, MetricSource};

use super::status::{Code, Status};

/// Bytes the server may hold buffered, in each direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLimits {
    /// Request bytes, and separately response bytes, one connection may hold.
    pub per_connection: usize,
    /// Request bytes, and separately response bytes, all connections of the listener may hold
    /// together.
    pub per_listener: usize,
}

/// Which bytes a count is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffered {
    /// Parts of request messages received and not yet whole.
    Requests,
    /// Encoded response messages not yet handed to HTTP/2 (waiting for the peer's window).
    Responses,
}

impl Buffered {
    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Buffered::Requests => "request",
            Buffered::Responses => "response",
        }
    }
}

/// The listener's counts, shared by its shards.
#[derive(Debug)]
pub struct ListenerBuffers {
    listener: String,
    limits: BufferLimits,
    held: [AtomicUsize; 2],
    refused_streams: AtomicU64,
    exhausted_calls: AtomicU64,
}

impl ListenerBuffers {
    /// Empty counts for listener `listener` with `limits`.
    pub fn new(listener: String, limits: BufferLimits) -> Self {
        Self {
            listener,
            limits,
            held: Default::default(),
            refused_streams: AtomicU64::new(0),
            exhausted_calls: AtomicU64::new(0),
        }
    }

    /// The bytes of `kind` all connections hold now.
    pub fn held(&self, kind: Buffered) -> usize {
        self.held[kind.index()].load(Ordering::Relaxed)
    }

    /// Streams refused because a count held half its limit.
    pub fn refused_streams(&self) -> u64 {
        self.refused_streams.load(Ordering::Relaxed)
    }

    /// Calls failed with RESOURCE_EXHAUSTED because their bytes would have passed a limit.
    pub fn exhausted_calls(&self) -> u64 {
        self.exhausted_calls.load(Ordering::Relaxed)
    }

    /// Takes `more` bytes of `kind` if the total stays within the limit.
    fn take(&self, kind: Buffered, more: usize) -> bool {
        let limit = self.limits.per_listener;
        self.held[kind.index()]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                held.checked_add(more).filter(|&total| total <= limit)
            })
            .is_ok()
    }

    fn give(&self, kind: Buffered, less: usize) {
        self.held[kind.index()].fetch_sub(less, Ordering::Relaxed);
    }
}

impl MetricSource for ListenerBuffers {
    fn collect(&self, out: &mut Exposition) {
        for kind in [Buffered::Requests, Buffered::Responses] {
            let labels = [("listener", self.listener.as_str()), ("kind", kind.name())];
            out.gauge(
                "layotto_grpc_buffered_bytes",
                "Request bytes in partial messages and response bytes waiting for the peer's window.",
                &labels,
                self.held(kind) as f64,
            );
        }
        let labels = [("listener", self.listener.as_str())];
        out.counter(
            "layotto_grpc_streams_refused_over_buffer_limit_total",
            "Streams refused with REFUSED_STREAM because buffered bytes held half a limit.",
            &labels,
            self.refused_streams(),
        );
        out.counter(
            "layotto_grpc_calls_exhausted_over_buffer_limit_total",
            "Calls failed with RESOURCE_EXHAUSTED because their bytes would pass a buffer limit.",
            &labels,
            self.exhausted_calls(),
        );
    }
}

/// One connection's counts; lives on its shard.
pub(crate) struct ConnectionBuffers {
    listener: Arc<ListenerBuffers>,
    held: [Cell<usize>; 2],
}

impl ConnectionBuffers {
    pub(crate) fn new(listener: Arc<ListenerBuffers>) -> Rc<Self> {
        Rc::new(Self {
            listener,
            held: Default::default(),
        })
    }

    /// Whether a new stream may start: every count, of the connection and of the listener,
    /// below half its limit. Counts a refusal.
    pub(crate) fn admit_stream(&self) -> bool {
        let limits = self.listener.limits;
        let admitted = [Buffered::Requests, Buffered::Responses]
            .iter()
            .all(|&kind| {
                self.held[kind.index()].get() < limits.per_connection / 2
                    && self.listener.held(kind) < limits.per_listener / 2
            });
        if !admitted {
            self.listener
                .refused_streams
                .fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// A holding of `kind` bytes, empty for now.
    pub(crate) fn hold(self: &Rc<Self>, kind: Buffered) -> Held {
        Held {
            connection: self.clone(),
            kind,
            amount: 0,
        }
    }
}

/// Bytes of one kind one call holds; given back when dropped.
pub(crate) struct Held {
    connection: Rc<ConnectionBuffers>,
    kind: Buffered,
    amount: usize,
}

impl Held {
    /// Makes the holding `amount` bytes. Growing fails with RESOURCE_EXHAUSTED (holding as
    /// before) if the connection's or the listener's count would pass its limit.
    pub(crate) fn set(&mut self, amount: usize) -> Result<(), Status> {
        let kind = self.kind;
        let connection = &self.connection;
        let listener = &connection.listener;
        let held = &connection.held[kind.index()];
        if amount <= self.amount {
            let less = self.amount - amount;
            held.set(held.get() - less);
            listener.give(kind, less);
            self.amount = amount;
            return Ok(());
        }
        let more = amount - self.amount;
        let limits = listener.limits;
        let (scope, limit) = if held.get() + more > limits.per_connection {
            ("connection", limits.per_connection)
        } else if !listener.take(kind, more) {
            ("listener", limits.per_listener)
        } else {
            held.set(held.get() + more);
            self.amount = amount;
            return Ok(());
        };
        listener.exhausted_calls.fetch_add(1, Ordering::Relaxed);
        Err(Status::new(
            Code::ResourceExhausted,
            format!(
                "{more} more buffered {} bytes would pass the {scope}'s limit of {limit} bytes",
                kind.name()
            ),
        ))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(per_connection: usize, per_listener: usize) -> Arc<ListenerBuffers> {
        Arc::new(ListenerBuffers::new(
            "t".into(),
            BufferLimits {
                per_connection,
                per_listener,
            },
        ))
    }

    #[test]
    fn a_connection_holds_up_to_its_limit_and_gives_everything_back() {
        let listener = listener(100, 1000);
        let connection = ConnectionBuffers::new(listener.clone());
        let mut a = connection.hold(Buffered::Requests);
        let mut b = connection.hold(Buffered::Requests);
        a.set(49).unwrap();
        assert!(connection.admit_stream());
        b.set(51).unwrap();
        assert!(!connection.admit_stream(), "half the limit is held");
        let err = a.set(50).unwrap_err();
        assert_eq!(err.code, Code::ResourceExhausted);
        assert_eq!(
            listener.held(Buffered::Requests),
            100,
            "unchanged by the failure"
        );
        // The other direction has its own count.
        connection.hold(Buffered::Responses).set(100).unwrap();
        drop((a, b));
        assert_eq!(listener.held(Buffered::Requests), 0);
        assert_eq!(listener.held(Buffered::Responses), 0);
        assert_eq!(
            (listener.refused_streams(), listener.exhausted_calls()),
            (1, 1)
        );
    }

    #[test]
    fn the_listener_limit_spans_connections() {
        let listener = listener(100, 150);
        let first = ConnectionBuffers::new(listener.clone());
        let second = ConnectionBuffers::new(listener.clone());
        let mut held = first.hold(Buffered::Responses);
        held.set(80).unwrap();
        assert!(!second.admit_stream(), "the listener holds more than half");
        assert!(second.hold(Buffered::Responses).set(80).is_err());
        drop(held);
        second.hold(Buffered::Responses).set(80).unwrap();
    }
}
