//! layotto-runtime-api: LayOtto's gRPC runtime API served by layotto-rs. The process-level
//! [`runtime::Runtime`] owns every component (built once from the config, by building block, see
//! [`components`]); the `grpc` network filter ([`filter`]) runs a hand-wired HTTP/2 gRPC server
//! ([`grpc`]) on every shard whose router ([`api`], and Dapr's service, [`dapr`]) is a thin
//! layer over that runtime. Errors
//! keep their causes and become gRPC statuses in one place ([`error`]).
#![forbid(unsafe_code)]

pub mod api;
pub mod components;
pub mod dapr;
pub mod dapr_http;
mod dapr_resources;
pub mod error;
pub mod filter;
pub mod grpc;
pub mod runtime;

pub use error::ApiError;
pub use filter::{KIND, builder};
pub use runtime::Runtime;
