//! layotto-runtime-api: LayOtto's gRPC runtime API served by layotto-rs. The `grpc` network filter
//! ([`filter`]) runs a hand-wired HTTP/2 gRPC server ([`grpc`]) on every shard, routing
//! `spec.proto.runtime.v1.Runtime` rpcs ([`api`]) to the configured building blocks and components
//! ([`components`]). Errors become gRPC statuses in one place ([`error`]).
#![forbid(unsafe_code)]

pub mod api;
pub mod components;
pub mod error;
pub mod filter;
pub mod grpc;

pub use error::ApiError;
pub use filter::{KIND, build};
