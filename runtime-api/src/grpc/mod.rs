//! A gRPC server hand-wired on `h2` + `prost`, one per shard: sans-IO framing ([`codec`]),
//! statuses ([`status`]), deadlines ([`timeout`]), the call halves ([`call`]) and the budgets of
//! the bytes they hold ([`budget`]), routing and typed handler adapters ([`router`]), the HTTP/2
//! connection/call driver ([`server`]) with its limits ([`settings`]), connection guard
//! ([`guard`]) and write buffer ([`write_buffer`]), and per-rpc statistics ([`stats`]).

pub mod budget;
pub mod call;
pub mod codec;
pub mod guard;
pub mod router;
pub mod server;
pub mod settings;
pub mod stats;
pub mod status;
pub mod timeout;
pub mod write_buffer;
