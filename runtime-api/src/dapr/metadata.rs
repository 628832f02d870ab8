//! Dapr's sidecar rpcs: `GetMetadata` (the app id, every component with its Dapr type name,
//! the extended metadata and the live streaming subscriptions), `SetMetadata` (extended
//! metadata, process-wide) and `Shutdown` (stops the process as SIGTERM does: stop accepting,
//! drain, exit 0). Runs on the calling shard.

use std::rc::Rc;

use layotto_proto::dapr::runtime::{
    GetMetadataRequest, GetMetadataResponse, PubsubSubscription, PubsubSubscriptionType,
    RegisteredComponents, SetMetadataRequest, ShutdownRequest,
};

use super::{DaprApi, path};
use crate::{
    components::Label,
    error::ApiError,
    grpc::{
        router::{Router, unary},
        status::Status,
    },
};

/// Adds this block's rpcs to `router`.
pub(super) fn routes(router: &mut Router, api: &Rc<DaprApi>) {
    router
        .add(
            path("GetMetadata"),
            unary(api.clone(), DaprApi::get_metadata),
        )
        .add(
            path("SetMetadata"),
            unary(api.clone(), DaprApi::set_metadata),
        )
        .add(path("Shutdown"), unary(api.clone(), DaprApi::shutdown));
}

/// A component's type as Dapr names it (`state.redis`, `pubsub.in-memory`,
/// `secretstores.local.file`, ...); LayOtto-only blocks keep their block key as the prefix.
fn dapr_type(label: &Label, kind: &str) -> String {
    let prefix = match label.block {
        "state" => "state",
        "pub_subs" => "pubsub",
        "config_store" => "configuration",
        "lock" => "lock",
        "secret_store" => "secretstores",
        "bindings" => "bindings",
        other => other,
    };
    format!("{prefix}.{kind}")
}

/// What Dapr's metadata says a component of `block` can do.
fn capabilities(block: &str) -> Vec<String> {
    let names: &[&str] = match block {
        "state" => &["ETAG", "TRANSACTIONAL", "TTL"],
        _ => &[],
    };
    names.iter().map(|&n| n.to_owned()).collect()
}

impl DaprApi {
    async fn get_metadata(
        self: Rc<Self>,
        _request: GetMetadataRequest,
    ) -> Result<GetMetadataResponse, Status> {
        let registered_components = self
            .components()
            .types()
            .into_iter()
            .map(|(label, kind)| RegisteredComponents {
                r#type: dapr_type(&label, kind),
                version: "v1".into(),
                capabilities: capabilities(label.block),
                name: label.name,
            })
            .collect();
        let subscriptions = self
            .shared()
            .topic_subscriptions()
            .into_iter()
            .map(|s| PubsubSubscription {
                pubsub_name: s.pubsub,
                topic: s.topic,
                dead_letter_topic: s.dead_letter_topic,
                r#type: PubsubSubscriptionType::Streaming as i32,
                ..Default::default()
            })
            .collect();
        Ok(GetMetadataResponse {
            id: self.app_id().to_owned(),
            registered_components,
            extended_metadata: self.runtime.extended_metadata().into_iter().collect(),
            subscriptions,
            runtime_version: concat!("layotto-rs ", env!("CARGO_PKG_VERSION")).into(),
            ..Default::default()
        })
    }

    async fn set_metadata(self: Rc<Self>, request: SetMetadataRequest) -> Result<(), Status> {
        if request.key.is_empty() {
            return Err(ApiError::InvalidArgument("the metadata key is empty".into()).into());
        }
        self.runtime
            .set_extended_metadata(request.key, request.value);
        Ok(())
    }

    async fn shutdown(self: Rc<Self>, _request: ShutdownRequest) -> Result<(), Status> {
        self.stop.trigger();
        Ok(())
    }
}
