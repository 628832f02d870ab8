//! layotto-filters: network filter chains and the filters that plug into them — the `tcp_proxy`
//! L4 proxy, MOSN's HTTP/1 `proxy` (L7, on hyper), `connection_limit`, the `flowControlFilter` stream filter on lock-free process-wide
//! rate limits ([`rate_limit`]), and the admin HTTP server for the actuator and Prometheus. A chain is built once per listener on the main thread from the config
//! ([`registry`]) and instantiated per shard; everything it does per connection runs on the
//! shard that accepted the connection.
#![forbid(unsafe_code)]

pub mod actuator;
pub mod admin_http;
pub mod buffer_pool;
pub mod chain;
pub mod connection_limit;
pub mod error;
pub mod flow_control;
pub mod http1;
pub mod http_proxy;
pub mod observed;
pub mod rate_limit;
pub mod registry;
pub mod stream;
pub mod tcp_proxy;
pub mod tcpcopy;

pub use error::FilterError;
