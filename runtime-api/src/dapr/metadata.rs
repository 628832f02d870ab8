//! Dapr's sidecar rpcs: `GetMetadata` ([`describe`], which Dapr's HTTP API answers too), `SetMetadata` (extended
//! metadata, process-wide) and `Shutdown` (stops the process as SIGTERM does: stop accepting,
//! drain, exit 0). Runs on the calling shard.

use std::rc::Rc;

use layotto_proto::dapr::runtime::{
    AppConnectionProperties, GetMetadataRequest, GetMetadataResponse, PubsubSubscription,
    PubsubSubscriptionRule, PubsubSubscriptionRules, PubsubSubscriptionType, RegisteredComponents,
    SetMetadataRequest, ShutdownRequest,
};

use super::{DaprApi, path};
use crate::{
    components::Label,
    error::ApiError,
    grpc::{
        router::{Router, unary},
        status::Status,
    },
    runtime::Runtime,
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
        "pub_subs" => "pubsub",
        "config_store" => "configuration",
        "secret_store" => "secretstores",
        other => other,
    };
    format!("{prefix}.{kind}")
}

/// What Dapr's metadata says a component of `block` on backend `kind` can do: every state store
/// has etags and transactions, and all but zookeeper's expire entries.
fn capabilities(block: &str, kind: &str) -> Vec<String> {
    let names: &[&str] = match (block, kind) {
        ("state", "zookeeper") => &["ETAG", "TRANSACTIONAL"],
        ("state", _) => &["ETAG", "TRANSACTIONAL", "TTL"],
        _ => &[],
    };
    names.iter().map(|&n| n.to_owned()).collect()
}

/// What the sidecar reports about itself, for `GetMetadata` and `GET /v1.0/metadata` (daprd
/// builds its HTTP answer from the same message): the app id, every component with its Dapr
/// type, the extended metadata, the subscriptions (the app channels' as PROGRAMMATIC, with the
/// route they deliver to as their one rule; the streaming ones as STREAMING) and the app
/// channel's connection properties when there is one.
pub(crate) fn describe(runtime: &Runtime) -> GetMetadataResponse {
    let registered_components = runtime
        .components()
        .types()
        .into_iter()
        .map(|(label, kind)| RegisteredComponents {
            r#type: dapr_type(&label, kind),
            version: "v1".into(),
            capabilities: capabilities(label.block, kind),
            name: label.name,
        })
        .collect();
    let programmatic = runtime
        .app_subscriptions()
        .list()
        .into_iter()
        .map(|s| PubsubSubscription {
            pubsub_name: s.pubsub,
            topic: s.topic,
            rules: s
                .rules
                .iter()
                .any(|(matches, path)| !(matches.is_empty() && path.is_empty()))
                .then(|| PubsubSubscriptionRules {
                    rules: s
                        .rules
                        .into_iter()
                        .map(|(matches, path)| PubsubSubscriptionRule {
                            r#match: matches,
                            path,
                        })
                        .collect(),
                }),
            dead_letter_topic: s.dead_letter_topic,
            r#type: PubsubSubscriptionType::Programmatic as i32,
            ..Default::default()
        });
    let streaming = runtime
        .dapr()
        .topic_subscriptions()
        .into_iter()
        .map(|s| PubsubSubscription {
            pubsub_name: s.pubsub,
            topic: s.topic,
            dead_letter_topic: s.dead_letter_topic,
            r#type: PubsubSubscriptionType::Streaming as i32,
            ..Default::default()
        });
    let app_connection_properties = runtime.app().and_then(|app| {
        Some(AppConnectionProperties {
            port: i32::from(app.app_port?),
            protocol: app.app_protocol.name().into(),
            channel_address: app.app_channel_address.clone(),
            // daprd's default `--app-max-concurrency`: unlimited, as layotto-rs delivers.
            max_concurrency: -1,
            health: None,
        })
    });
    GetMetadataResponse {
        id: runtime.app_id().to_owned(),
        registered_components,
        extended_metadata: runtime.extended_metadata().into_iter().collect(),
        subscriptions: programmatic.chain(streaming).collect(),
        app_connection_properties,
        runtime_version: concat!("layotto-rs ", env!("CARGO_PKG_VERSION")).into(),
        ..Default::default()
    }
}

impl DaprApi {
    async fn get_metadata(
        self: Rc<Self>,
        _request: GetMetadataRequest,
    ) -> Result<GetMetadataResponse, Status> {
        Ok(describe(&self.runtime))
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
