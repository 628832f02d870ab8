//! Dapr's `dapr.proto.runtime.v1.Dapr` service (dapr/dapr v1.18.3) over the process's
//! [`Runtime`], on the same HTTP/2 listeners as LayOtto's `Runtime` service (the paths differ):
//! one module per building block, each adding its rpcs to the router and answering them in a
//! few lines over the block's contract, with Dapr's semantics where they differ from LayOtto's
//! (state keys prefixed `{app_id}||`, Dapr's error codes and messages through
//! [`crate::error::dapr_status`]). Every Dapr rpc checks `dapr-api-token` when the listener has
//! a token. Actors, workflows, jobs, crypto and conversation answer UNIMPLEMENTED. One instance
//! per shard; the state Dapr's API keeps for the whole process is [`DaprShared`], in the runtime.

mod binding;
mod configuration;
pub(crate) mod invocation;
mod invoke;
pub mod keys;
mod lock;
pub(crate) mod metadata;
pub(crate) mod pubsub;
pub(crate) mod query;
mod secret;
mod shared;
mod state;
mod unimplemented;

use std::{rc::Rc, sync::Arc};

use layotto_core::shutdown::ShutdownTrigger;
pub use shared::DaprShared;

use crate::{
    components::Components,
    error::{ApiError, DaprOp, dapr_status},
    grpc::{
        router::{Call, Handler, Router},
        status::Status,
    },
    runtime::Runtime,
};

/// Path prefix of the service's rpcs.
pub const SERVICE: &str = "/dapr.proto.runtime.v1.Dapr/";

/// The gRPC metadata key carrying Dapr's API token.
pub const TOKEN_HEADER: &str = "dapr-api-token";

/// Dapr's environment variable with the API token (read when the config gives none).
pub const TOKEN_ENV: &str = "DAPR_API_TOKEN";

/// The API token of a listener: the config's `dapr_api_token`, else [`TOKEN_ENV`]; empty means
/// none (no check).
pub fn api_token(configured: Option<String>) -> Option<String> {
    configured
        .or_else(|| std::env::var(TOKEN_ENV).ok())
        .filter(|token| !token.is_empty())
}

/// The full path of rpc `rpc` of the service.
fn path(rpc: &str) -> String {
    format!("{SERVICE}{rpc}")
}

/// Dapr's API on one shard.
pub struct DaprApi {
    runtime: Arc<Runtime>,
    /// Pulled by `Shutdown`: the drain SIGTERM starts.
    stop: Arc<ShutdownTrigger>,
}

impl DaprApi {
    /// Adds every Dapr rpc to `router`, over `runtime`, with `Shutdown` pulling `stop`; with
    /// `token`, each call must carry it in `dapr-api-token` (else UNAUTHENTICATED).
    pub fn add_routes(
        router: &mut Router,
        runtime: Arc<Runtime>,
        stop: Arc<ShutdownTrigger>,
        token: Option<Arc<str>>,
    ) {
        let api = Rc::new(Self { runtime, stop });
        let mut routes = Router::default();
        for add in [
            state::routes,
            pubsub::routes,
            invoke::routes,
            binding::routes,
            secret::routes,
            configuration::routes,
            lock::routes,
            metadata::routes,
            unimplemented::routes,
        ] {
            add(&mut routes, &api);
        }
        for (path, handler) in routes.into_routes() {
            router.add(path, guarded(token.clone(), handler));
        }
    }

    fn components(&self) -> &Components {
        self.runtime.components()
    }

    /// The runtime's app id: Dapr's key prefix and event source.
    fn app_id(&self) -> &str {
        self.runtime.app_id()
    }

    fn shared(&self) -> &DaprShared {
        self.runtime.dapr()
    }
}

/// `handler`, answering UNAUTHENTICATED unless the call carries `token` (when there is one).
fn guarded(token: Option<Arc<str>>, handler: Handler) -> Handler {
    let Some(token) = token else {
        return handler;
    };
    Rc::new(move |call: Call| {
        let given = call.headers.get(TOKEN_HEADER).map(|v| v.as_bytes());
        if given == Some(token.as_bytes()) {
            handler(call)
        } else {
            let reason = if given.is_some() {
                "authentication error: api token mismatch"
            } else {
                "authentication error: missing api token in request metadata"
            };
            let status = Status::from(ApiError::Unauthenticated(reason.into()));
            Box::pin(async move { Err(status) })
        }
    })
}

/// `err` as daprd answers it for `op`.
fn fail(op: DaprOp<'_>) -> impl FnOnce(ApiError) -> Status + '_ {
    move |err| dapr_status(err, op)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use layotto_core::{backend::BackendPool, config::Findings, health::HealthRegistry};
    use prost::Message;

    use super::*;
    use crate::runtime::RuntimeBuilder;

    #[test]
    fn every_rpc_of_daprs_service_is_routed_and_nothing_else() {
        let pool = BackendPool::start(1, 4).unwrap();
        let backend = pool.handle();
        let runtime = RuntimeBuilder::new(&backend)
            .finish(&HealthRegistry::default(), &mut Findings::default());
        let mut router = Router::default();
        let (stop, _signal) = layotto_core::shutdown::channel();
        DaprApi::add_routes(&mut router, runtime, Arc::new(stop), None);
        let routed: BTreeSet<String> = router.paths().map(str::to_owned).collect();
        let set =
            prost_types::FileDescriptorSet::decode(layotto_proto::dapr::DESCRIPTOR_SET).unwrap();
        let declared: BTreeSet<String> = set
            .file
            .iter()
            .flat_map(|f| &f.service)
            .filter(|s| s.name() == "Dapr")
            .flat_map(|s| &s.method)
            .map(|m| path(m.name()))
            .collect();
        assert_eq!(declared.len(), 72);
        assert_eq!(routed, declared);
    }
}
