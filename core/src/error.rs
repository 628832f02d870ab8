//! Errors of the core crate (start-up of listeners and shards). Main thread.

use std::{io, net::SocketAddr};

/// What can go wrong while binding listeners or running shards.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A listener's address could not be bound.
    #[error("listener \"{listener}\": cannot listen on {address}: {source}")]
    Bind {
        /// Listener name from the config.
        listener: String,
        /// The address asked for.
        address: SocketAddr,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A listener's Unix domain socket could not be bound.
    #[error("listener \"{listener}\": cannot listen on unix socket {}: {source}", .path.display())]
    BindUnix {
        /// Listener name from the config.
        listener: String,
        /// The socket's path.
        path: std::path::PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// No CPU is available to pin shards to, or zero shards were asked for.
    #[error("no shard can run: {0}")]
    NoCores(String),
    /// A shard thread or its executor could not start.
    #[error("shard {shard} failed to start: {reason}")]
    ShardStart {
        /// Index of the shard.
        shard: usize,
        /// Why it failed.
        reason: String,
    },
    /// A shard thread panicked.
    #[error("shard {0} panicked")]
    ShardPanicked(usize),
    /// A component could not start (e.g. its server is unreachable).
    #[error("component {component}: {reason}")]
    ComponentStart {
        /// The building block and name, e.g. `config_store "config_demo"`.
        component: String,
        /// Why, naming the address it tried.
        reason: String,
    },
}
