//! Filter chains. A listener's chain is zero or more [`NetworkFilter`]s followed by one
//! [`Terminal`] that owns the connection (tcp_proxy, later grpc). Filters see each connection when
//! it is accepted and may refuse it (rate limits) or attach a [`ConnectionObserver`] that is shown
//! every byte read from either side (tcpcopy, stats) — without the terminal knowing which filters
//! exist. Factories are built on the main thread; per-shard instances run on their shard only.

use std::{rc::Rc, sync::Arc};

use futures_lite::future::BoxedLocal;
use glommio::net::TcpStream;
use layotto_core::handler::{ConnectionHandler, ConnectionInfo, HandlerFactory};

/// Which way bytes are flowing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Read from the client, on the way to the upstream or server.
    FromDownstream,
    /// Read from the upstream, on the way to the client.
    FromUpstream,
}

/// A filter's decision about a new connection.
pub enum Admission {
    /// Close the connection before reading from it.
    Reject,
    /// Let it through without watching it.
    Continue,
    /// Let it through and show its bytes to this observer.
    Observe(Box<dyn ConnectionObserver>),
}

/// Sees one connection's bytes (in the order they were read) and its end.
pub trait ConnectionObserver {
    /// Bytes just read from one side, before they are written to the other.
    fn on_data(&mut self, direction: Direction, data: &[u8]);
    /// The connection ended.
    fn on_close(&mut self) {}
}

/// A non-terminal filter instance on one shard.
pub trait NetworkFilter {
    /// Decides about a connection as it is accepted.
    fn on_accept(&self, conn: &ConnectionInfo) -> Admission;
}

/// Builds a [`NetworkFilter`] for each shard.
pub trait NetworkFilterFactory: Send + Sync {
    /// The instance for `shard`, called on that shard.
    fn for_shard(&self, shard: usize) -> Rc<dyn NetworkFilter>;
}

/// The observers attached to one connection; told of its end when dropped.
#[derive(Default)]
pub struct Observers(Vec<Box<dyn ConnectionObserver>>);

impl Observers {
    /// True when no filter watches the bytes (a terminal may then take a zero-copy path).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Shows `data` to every observer.
    pub fn on_data(&mut self, direction: Direction, data: &[u8]) {
        for observer in &mut self.0 {
            observer.on_data(direction, data);
        }
    }
}

impl Drop for Observers {
    fn drop(&mut self) {
        for observer in &mut self.0 {
            observer.on_close();
        }
    }
}

/// The filter that owns a connection and serves it to the end.
pub trait Terminal {
    /// Serves one accepted connection, showing every byte read to `observers`.
    fn serve(self: Rc<Self>, stream: TcpStream, conn: ConnectionInfo, observers: Observers)
    -> BoxedLocal<()>;
}

/// Builds a [`Terminal`] for each shard.
pub trait TerminalFactory: Send + Sync {
    /// The instance for `shard`, called on that shard.
    fn for_shard(&self, shard: usize) -> Rc<dyn Terminal>;
    /// Counters as `(name, total over shards)`.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// A listener's chain as configured: filter factories, then the terminal's.
pub struct FilterChainFactory {
    filters: Vec<Arc<dyn NetworkFilterFactory>>,
    terminal: Arc<dyn TerminalFactory>,
}

impl FilterChainFactory {
    /// A chain running `filters` in order, then `terminal`.
    pub fn new(
        filters: Vec<Arc<dyn NetworkFilterFactory>>,
        terminal: Arc<dyn TerminalFactory>,
    ) -> Self {
        Self { filters, terminal }
    }
}

impl HandlerFactory for FilterChainFactory {
    fn for_shard(&self, shard: usize) -> Rc<dyn ConnectionHandler> {
        Rc::new(FilterChain {
            filters: self.filters.iter().map(|f| f.for_shard(shard)).collect(),
            terminal: self.terminal.for_shard(shard),
        })
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.terminal.counters()
    }
}

/// One shard's instance of a listener's chain.
struct FilterChain {
    filters: Vec<Rc<dyn NetworkFilter>>,
    terminal: Rc<dyn Terminal>,
}

impl ConnectionHandler for FilterChain {
    fn serve(self: Rc<Self>, stream: TcpStream, conn: ConnectionInfo) -> BoxedLocal<()> {
        let mut observers = Vec::new();
        for filter in &self.filters {
            match filter.on_accept(&conn) {
                Admission::Reject => return Box::pin(async move { drop(stream) }),
                Admission::Continue => {}
                Admission::Observe(observer) => observers.push(observer),
            }
        }
        self.terminal
            .clone()
            .serve(stream, conn, Observers(observers))
    }
}
