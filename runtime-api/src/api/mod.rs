//! LayOtto's `spec.proto.runtime.v1.Runtime` service over the process's [`Runtime`]: one module
//! per building block, each adding its rpcs to the router and answering them in a few lines over
//! the block's contract. Rpcs whose block is not served are not routed, so they answer
//! UNIMPLEMENTED. LayOtto's `Lifecycle` service is routed here too ([`lifecycle`]). One instance
//! per shard, over the runtime shared by all shards.

mod binding;
mod configuration;
mod file;
mod hello;
pub(crate) mod invoke;
mod lifecycle;
mod lock;
pub(crate) mod pubsub;
mod secret;
mod sequencer;
mod state;

use std::{rc::Rc, sync::Arc};

use crate::{components::Components, grpc::router::Router, runtime::Runtime};

/// Path prefix of the service's rpcs.
pub const SERVICE: &str = "/spec.proto.runtime.v1.Runtime/";

/// The full path of rpc `rpc` of the service.
fn path(rpc: &str) -> String {
    format!("{SERVICE}{rpc}")
}

/// The runtime API on one shard.
pub struct RuntimeApi {
    runtime: Arc<Runtime>,
}

impl RuntimeApi {
    /// A router serving every implemented rpc over `runtime`.
    pub fn router(runtime: Arc<Runtime>) -> Router {
        let api = Rc::new(Self { runtime });
        let mut router = Router::default();
        for add in [
            hello::routes,
            state::routes,
            configuration::routes,
            lock::routes,
            sequencer::routes,
            secret::routes,
            file::routes,
            binding::routes,
            pubsub::routes,
            invoke::routes,
            lifecycle::routes,
        ] {
            add(&mut router, &api);
        }
        router
    }

    fn components(&self) -> &Components {
        self.runtime.components()
    }
}
