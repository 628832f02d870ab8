//! The contract between a shard and what serves its connections. A [`HandlerFactory`] is built
//! once on the main thread per listener; each shard asks it for its own [`ConnectionHandler`],
//! which then lives and runs only on that shard's thread.

use std::{net::SocketAddr, rc::Rc};

use futures_lite::future::BoxedLocal;
use glommio::net::TcpStream;

use crate::shutdown::ShutdownSignal;

/// Who a connection is: which listener and shard accepted it, and its two ends.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// Name of the listener (from the config).
    pub listener: Rc<str>,
    /// Index of the shard serving it.
    pub shard: usize,
    /// The client's address ([`crate::listener::UNIX_STAND_IN`] on a Unix domain socket).
    pub peer: SocketAddr,
    /// Our address the client connected to (the stand-in on a Unix domain socket).
    pub local: SocketAddr,
    /// Fires when the process starts draining (protocols with a goodbye, like HTTP/2, send it).
    pub shutdown: ShutdownSignal,
}

/// Serves accepted connections on one shard.
pub trait ConnectionHandler {
    /// Serves one connection until it ends. Runs on the shard that accepted it. On a Unix
    /// domain socket listener the stream is that socket (TCP-only calls on it fail).
    fn serve(self: Rc<Self>, stream: TcpStream, conn: ConnectionInfo) -> BoxedLocal<()>;
}

/// Builds each shard's [`ConnectionHandler`] for one listener; shared by all shards.
pub trait HandlerFactory: Send + Sync {
    /// The handler for shard `shard`, called once on that shard's thread.
    fn for_shard(&self, shard: usize) -> Rc<dyn ConnectionHandler>;

    /// Connects what the handler needs before the listener opens (e.g. component backends), on
    /// the main thread; an error stops start-up.
    fn start(&self) -> Result<(), crate::CoreError> {
        Ok(())
    }

    /// Counters of this listener's handler as `(name, total)`, read at shutdown.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}
