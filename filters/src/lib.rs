//! layotto-filters: network filter chains and the filters that plug into them — for now the
//! `tcp_proxy` L4 proxy. A chain is built once per listener on the main thread from the config
//! ([`registry`]) and instantiated per shard; everything it does per connection runs on the
//! shard that accepted the connection.
#![forbid(unsafe_code)]

pub mod buffer_pool;
pub mod chain;
pub mod error;
pub mod registry;
pub mod tcp_proxy;

pub use error::FilterError;
