//! Errors of the filters crate, raised while serving a connection on a shard.

use std::{io, net::SocketAddr, time::Duration};

/// Why a proxied connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The upstream host refused, was unreachable, or did not answer in time.
    #[error("cannot connect to upstream {address}: {source}")]
    UpstreamConnect {
        /// The host tried.
        address: SocketAddr,
        /// The reason.
        source: io::Error,
    },
    /// Neither side sent a byte for the idle timeout.
    #[error("idle for {0:?}")]
    Idle(Duration),
    /// Reading or writing one side failed (e.g. reset by peer).
    #[error("transfer failed: {0}")]
    Transfer(#[from] io::Error),
}
