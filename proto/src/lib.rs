//! LayOtto's runtime API, `spec.proto.runtime.v1`: services `Runtime`, `AppCallback` and
//! `Lifecycle`, generated at build time from the `.proto` files in `spec/` (protox, no `protoc`).
//! With the `tonic` feature the module also holds tonic clients and servers.
#![forbid(unsafe_code)]

/// Messages (and, with `tonic`, client/server stubs) of package `spec.proto.runtime.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod runtime {
    include!(concat!(env!("OUT_DIR"), "/spec.proto.runtime.v1.rs"));
}

/// The encoded `FileDescriptorSet` of the API (for reflection and contract checks).
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor_set.bin"));

#[cfg(test)]
mod contract;
