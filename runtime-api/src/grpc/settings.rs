//! The HTTP/2 and gRPC limits of a server, with defaults after Envoy's edge-hardening guidance.
//! Decoded from the `grpc` filter's config on the main thread; copied to every shard.

use std::time::Duration;

use super::{
    budget::BufferLimits,
    guard::{ConnectionTimeouts, ControlFrameBudget},
};

/// HTTP/2 and gRPC limits of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcSettings {
    /// Largest request or response message, in bytes (default 4 MiB).
    pub max_message_size: usize,
    /// Concurrent calls per connection.
    pub max_concurrent_streams: u32,
    /// Largest request header block, in bytes.
    pub max_header_list_size: u32,
    /// Streams reset by the client before the server accepted them, tolerated per connection
    /// (defence against HTTP/2 Rapid Reset).
    pub max_pending_accept_reset_streams: usize,
    /// Initial flow-control window per stream, in bytes.
    pub stream_window: u32,
    /// Initial flow-control window per connection, in bytes.
    pub connection_window: u32,
    /// Handshake, idle and close timeouts of each connection.
    pub timeouts: ConnectionTimeouts,
    /// PING and SETTINGS frames a client may send before it gets GOAWAY ENHANCE_YOUR_CALM.
    pub control_frames: ControlFrameBudget,
    /// Request and response bytes a connection and the listener may hold buffered.
    pub buffers: BufferLimits,
}

impl Default for GrpcSettings {
    fn default() -> Self {
        Self {
            max_message_size: 4 * 1024 * 1024,
            max_concurrent_streams: 1024,
            max_header_list_size: 16 * 1024,
            max_pending_accept_reset_streams: 32,
            stream_window: 1024 * 1024,
            connection_window: 4 * 1024 * 1024,
            // Envoy's edge guidance: request headers within 10 s, idle connections closed after
            // an hour, at most 1000 queued control-frame replies. Keep-alive PINGs are off, as
            // in Envoy and tonic; when on, an answer is awaited 20 s (tonic's default).
            timeouts: ConnectionTimeouts {
                handshake: Duration::from_secs(10),
                idle: Duration::from_secs(3600),
                close_grace: Duration::from_secs(1),
                keepalive_interval: None,
                keepalive_timeout: Duration::from_secs(20),
            },
            control_frames: ControlFrameBudget {
                burst: 1000,
                per_second: 100,
            },
            // Envoy's edge guidance holds 32 KiB per connection, but Envoy streams bodies; a gRPC
            // message is held whole until it is complete or sent, so one connection may hold two
            // messages of the largest size each way, and the listener 1 GiB each way (half the
            // 2 GiB heap Envoy's guidance gives its overload manager).
            buffers: BufferLimits {
                per_connection: 2 * 4 * 1024 * 1024,
                per_listener: 1024 * 1024 * 1024,
            },
        }
    }
}
