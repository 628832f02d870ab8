//! Filter chains. A listener's chain is zero or more [`NetworkFilter`]s followed by one
//! [`Terminal`] that owns the connection (tcp_proxy, later grpc). Filters see each connection when
//! it is accepted and may refuse it (rate limits) or attach a [`ConnectionObserver`] that is shown
//! every byte read from either side (tcpcopy, stats) — without the terminal knowing which filters
//! exist. Factories are built on the main thread; per-shard instances run on their shard only.

use std::{rc::Rc, sync::Arc};

use futures_lite::future::BoxedLocal;
use glommio::net::TcpStream;
use layotto_core::{
    CoreError,
    handler::{ConnectionHandler, ConnectionInfo, HandlerFactory},
};

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
    /// Let it through, keeping this value until the connection ends (then it is dropped).
    Hold(Box<dyn std::any::Any>),
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
    /// Counters as `(name, total over shards)`.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
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
    fn serve(
        self: Rc<Self>,
        stream: TcpStream,
        conn: ConnectionInfo,
        observers: Observers,
    ) -> BoxedLocal<()>;
}

/// Builds a [`Terminal`] for each shard.
pub trait TerminalFactory: Send + Sync {
    /// The instance for `shard`, called on that shard.
    fn for_shard(&self, shard: usize) -> Rc<dyn Terminal>;
    /// Connects what the terminal needs before the listener opens, on the main thread.
    fn start(&self) -> Result<(), CoreError> {
        Ok(())
    }
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

    fn start(&self) -> Result<(), CoreError> {
        self.terminal.start()
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut counters: Vec<_> = self.filters.iter().flat_map(|f| f.counters()).collect();
        counters.extend(self.terminal.counters());
        counters
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
        let mut held = Vec::new();
        for filter in &self.filters {
            match filter.on_accept(&conn) {
                Admission::Reject => return Box::pin(async move { drop(stream) }),
                Admission::Continue => {}
                Admission::Observe(observer) => observers.push(observer),
                Admission::Hold(value) => held.push(value),
            }
        }
        let serving = self
            .terminal
            .clone()
            .serve(stream, conn, Observers(observers));
        if held.is_empty() {
            return serving;
        }
        Box::pin(async move {
            serving.await;
            drop(held);
        })
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::{Shutdown, SocketAddr},
        sync::atomic::{AtomicUsize, Ordering},
    };

    use glommio::{LocalExecutor, net::TcpListener};
    use layotto_core::config::{Config, Findings};

    use super::*;
    use crate::registry::BuildContext;

    #[expect(
        clippy::disallowed_types,
        reason = "a test's recorder, read by the test thread after the shard has stopped"
    )]
    type Seen = Arc<std::sync::Mutex<Vec<(Direction, Vec<u8>)>>>;

    /// Records every byte and the close of each connection; or refuses them all.
    struct Recording {
        seen: Seen,
        closed: Arc<AtomicUsize>,
        reject: bool,
    }

    struct Recorder(Seen, Arc<AtomicUsize>);

    impl ConnectionObserver for Recorder {
        fn on_data(&mut self, direction: Direction, data: &[u8]) {
            self.0.lock().unwrap().push((direction, data.to_vec()));
        }
        fn on_close(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl NetworkFilter for Recording {
        fn on_accept(&self, _: &ConnectionInfo) -> Admission {
            if self.reject {
                Admission::Reject
            } else {
                Admission::Observe(Box::new(Recorder(self.seen.clone(), self.closed.clone())))
            }
        }
    }

    impl NetworkFilterFactory for Recording {
        fn for_shard(&self, _: usize) -> Rc<dyn NetworkFilter> {
            Rc::new(Recording {
                seen: self.seen.clone(),
                closed: self.closed.clone(),
                reject: self.reject,
            })
        }
    }

    /// An echo upstream that counts the connections it accepted.
    fn echo_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let mut data = Vec::new();
                stream.read_to_end(&mut data).unwrap();
                stream.write_all(&data).unwrap();
            }
        });
        (address, accepted)
    }

    /// Proxies one client connection through a chain of `filter` + tcp_proxy; returns the reply.
    fn through_chain(filter: Recording, upstream: SocketAddr) -> Vec<u8> {
        let text = format!(
            r#"{{"servers": [{{"listeners": [{{"address": "127.0.0.1:0", "filter_chains": [{{"filters":
                [{{"type": "tcp_proxy", "config": {{"cluster": "c"}}}}]}}]}}]}}],
                "cluster_manager": {{"clusters": [{{"name": "c", "hosts": [{{"address": "{upstream}"}}]}}]}}}}"#
        );
        let mut findings = Findings::default();
        let config = Config::parse(&text, &mut findings);
        let pool = layotto_core::backend::BackendPool::start(1, 16).unwrap();
        let ctx = BuildContext::new(
            &config,
            1,
            pool.handle(),
            Default::default(),
            Default::default(),
        );
        let proxy_filter = &config.listeners[0].network_filters[0];
        let terminal = crate::tcp_proxy::build(proxy_filter, &ctx, &mut findings).unwrap();
        assert!(findings.errors.is_empty(), "{:?}", findings.errors);
        let chain = FilterChainFactory::new(vec![Arc::new(filter)], terminal);

        LocalExecutor::default().run(async move {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap();
            let client = std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(address).unwrap();
                let _ = stream.write_all(b"ping");
                let _ = stream.shutdown(Shutdown::Write);
                let mut reply = Vec::new();
                let _ = stream.read_to_end(&mut reply);
                reply
            });
            let stream = listener.accept().await.unwrap();
            let conn = ConnectionInfo {
                listener: "test".into(),
                shard: 0,
                peer: stream.peer_addr().unwrap(),
                local: address,
                shutdown: layotto_core::shutdown::channel().1,
            };
            chain.for_shard(0).serve(stream, conn).await;
            client.join().unwrap()
        })
    }

    #[test]
    fn observers_see_both_directions_and_the_close() {
        let (upstream, _) = echo_upstream();
        let seen = Seen::default();
        let closed = Arc::new(AtomicUsize::new(0));
        let filter = Recording {
            seen: seen.clone(),
            closed: closed.clone(),
            reject: false,
        };
        assert_eq!(through_chain(filter, upstream), b"ping");
        let seen = seen.lock().unwrap();
        assert_eq!(
            *seen,
            vec![
                (Direction::FromDownstream, b"ping".to_vec()),
                (Direction::FromUpstream, b"ping".to_vec())
            ]
        );
        assert_eq!(closed.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_rejecting_filter_closes_before_the_terminal_runs() {
        let (upstream, upstream_accepted) = echo_upstream();
        let seen = Seen::default();
        let filter = Recording {
            seen: seen.clone(),
            closed: Default::default(),
            reject: true,
        };
        assert_eq!(through_chain(filter, upstream), b"");
        assert!(seen.lock().unwrap().is_empty());
        assert_eq!(upstream_accepted.load(Ordering::SeqCst), 0);
    }
}
