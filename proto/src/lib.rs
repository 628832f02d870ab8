//! LayOtto's runtime API, `spec.proto.runtime.v1`: services `Runtime`, `AppCallback` and
//! `Lifecycle`, generated at build time from the `.proto` files in `spec/` (protox, no `protoc`);
//! and Dapr's, `dapr.proto.runtime.v1` (services `Dapr`, `AppCallback`, ...) with
//! `dapr.proto.common.v1`, from dapr/dapr v1.18.3's `.proto` files copied unchanged into `dapr/`.
//! With the `tonic` feature the module also holds tonic clients and servers.
#![forbid(unsafe_code)]

/// Messages (and, with `tonic`, client/server stubs) of package `spec.proto.runtime.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod runtime {
    include!(concat!(env!("OUT_DIR"), "/spec.proto.runtime.v1.rs"));
}

/// The encoded `FileDescriptorSet` of the API (for reflection and contract checks).
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor_set.bin"));

/// Dapr's API (dapr/dapr v1.18.3): packages `dapr.proto.runtime.v1` and `dapr.proto.common.v1`,
/// in modules nested as the packages are (prost's generated paths between them need that).
pub mod dapr {
    /// The generated packages.
    pub mod proto {
        /// `dapr.proto.runtime.*`.
        pub mod runtime {
            /// Messages (and, with `tonic`, client/server stubs) of `dapr.proto.runtime.v1`.
            #[allow(missing_docs, clippy::all, clippy::pedantic)]
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/dapr.proto.runtime.v1.rs"));
            }
        }
        /// `dapr.proto.common.*`.
        pub mod common {
            /// Messages of `dapr.proto.common.v1`.
            #[allow(missing_docs, clippy::all, clippy::pedantic)]
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/dapr.proto.common.v1.rs"));
            }
        }
    }

    pub use proto::{common::v1 as common, runtime::v1 as runtime};

    /// The encoded `FileDescriptorSet` of Dapr's API (for contract checks).
    pub const DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/dapr_descriptor_set.bin"));
}

#[cfg(test)]
mod contract;
#[cfg(test)]
mod dapr_contract;
