//! layotto-core: what every shard shares — the configuration model, SO_REUSEPORT listeners, the
//! shard-per-core executors with their drain, the connection-handler contract filters plug into,
//! shutdown signalling, the connection caps, per-shard counters and histograms, the metrics
//! and health registries, and socket reads into uninitialized buffers ([`read_uninit`]).
//!
//! Configuration code runs on the main thread before any shard starts; everything under
//! [`shard`] runs on the pinned shard threads.

pub mod backend;
pub mod caps;
pub mod clock;
pub mod config;
pub mod error;
pub mod handler;
pub mod health;
pub mod listener;
pub mod log_levels;
pub mod metrics;
pub mod read_uninit;
pub mod shard;
pub mod shutdown;
pub mod stats;

pub use error::CoreError;
