//! `GET /v1.0/metadata` (what `GetMetadata` answers, in daprd's JSON shape) and `PUT /v1.0/metadata/{key}` (the raw body becomes the value). Runs on
//! the serving shard.

use std::collections::HashMap;

use layotto_proto::dapr::runtime::GetMetadataResponse;
use serde::Serialize;

use super::{DaprHttpApi, DaprRequest, Reply};
use crate::{dapr::metadata::describe, error::DaprHttpError};

/// daprd's `metadataResponse` (every field `omitempty`): the fields of `GetMetadataResponse`
/// layotto-rs fills, under daprd's JSON names.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetadataResponse {
    id: String,
    runtime_version: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    components: Vec<RegisteredComponent>,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    extended: HashMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subscriptions: Vec<Subscription>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_connection_properties: Option<AppConnection>,
}

/// daprd's `RegisteredComponents` (protojson names).
#[derive(Serialize)]
struct RegisteredComponent {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    version: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    capabilities: Vec<String>,
}

/// daprd's `metadataResponsePubsubSubscription`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Subscription {
    #[serde(rename = "pubsubname")]
    pubsub_name: String,
    topic: String,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    metadata: HashMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rules: Vec<Rule>,
    dead_letter_topic: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// daprd's `metadataResponsePubsubSubscriptionRule`.
#[derive(Serialize)]
struct Rule {
    #[serde(rename = "match", skip_serializing_if = "String::is_empty")]
    condition: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    path: String,
}

/// daprd's `metadataResponseAppConnectionProperties`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AppConnection {
    port: i32,
    protocol: String,
    channel_address: String,
    max_concurrency: i32,
}

impl From<GetMetadataResponse> for MetadataResponse {
    fn from(described: GetMetadataResponse) -> Self {
        Self {
            id: described.id,
            runtime_version: described.runtime_version,
            components: described
                .registered_components
                .into_iter()
                .map(|c| RegisteredComponent {
                    name: c.name,
                    kind: c.r#type,
                    version: c.version,
                    capabilities: c.capabilities,
                })
                .collect(),
            extended: described.extended_metadata,
            subscriptions: described
                .subscriptions
                .into_iter()
                .map(|s| Subscription {
                    kind: s.r#type().as_str_name(),
                    rules: s
                        .rules
                        .map(|rules| rules.rules)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|rule| Rule {
                            condition: rule.r#match,
                            path: rule.path,
                        })
                        .collect(),
                    pubsub_name: s.pubsub_name,
                    topic: s.topic,
                    metadata: s.metadata,
                    dead_letter_topic: s.dead_letter_topic,
                })
                .collect(),
            app_connection_properties: described.app_connection_properties.map(|app| {
                AppConnection {
                    port: app.port,
                    protocol: app.protocol,
                    channel_address: app.channel_address,
                    max_concurrency: app.max_concurrency,
                }
            }),
        }
    }
}

/// `GET /v1.0/metadata`.
pub(super) fn get(api: &DaprHttpApi) -> Reply {
    Reply::json(&MetadataResponse::from(describe(api.runtime())))
}

/// `PUT /v1.0/metadata/{key}`: 204.
pub(super) fn put(
    api: &DaprHttpApi,
    key: &str,
    request: &DaprRequest,
) -> Result<Reply, DaprHttpError> {
    let value = String::from_utf8(request.body.to_vec())
        .map_err(|_| DaprHttpError::malformed("the metadata value is not UTF-8"))?;
    api.runtime().set_extended_metadata(key.to_owned(), value);
    Ok(Reply::no_content())
}

#[cfg(test)]
mod tests {
    use layotto_proto::dapr::runtime::{
        AppConnectionProperties, PubsubSubscription, PubsubSubscriptionRule,
        PubsubSubscriptionRules, PubsubSubscriptionType, RegisteredComponents,
    };
    use serde_json::json;

    use super::*;

    #[test]
    fn metadata_is_written_under_daprds_json_names() {
        let described = GetMetadataResponse {
            id: "app1".into(),
            runtime_version: "layotto-rs 0.1.0".into(),
            registered_components: vec![RegisteredComponents {
                name: "ps".into(),
                r#type: "pubsub.redis".into(),
                version: "v1".into(),
                capabilities: vec![],
            }],
            subscriptions: vec![PubsubSubscription {
                pubsub_name: "ps".into(),
                topic: "orders".into(),
                rules: Some(PubsubSubscriptionRules {
                    rules: vec![PubsubSubscriptionRule {
                        r#match: String::new(),
                        path: "/orders".into(),
                    }],
                }),
                r#type: PubsubSubscriptionType::Programmatic as i32,
                ..Default::default()
            }],
            app_connection_properties: Some(AppConnectionProperties {
                port: 3000,
                protocol: "http".into(),
                channel_address: "127.0.0.1".into(),
                max_concurrency: -1,
                health: None,
            }),
            ..Default::default()
        };
        let written = serde_json::to_value(MetadataResponse::from(described)).unwrap();
        assert_eq!(
            written,
            json!({
                "id": "app1",
                "runtimeVersion": "layotto-rs 0.1.0",
                "components": [{"name": "ps", "type": "pubsub.redis", "version": "v1"}],
                "subscriptions": [{
                    "pubsubname": "ps",
                    "topic": "orders",
                    "rules": [{"path": "/orders"}],
                    "deadLetterTopic": "",
                    "type": "PROGRAMMATIC"
                }],
                "appConnectionProperties": {
                    "port": 3000,
                    "protocol": "http",
                    "channelAddress": "127.0.0.1",
                    "maxConcurrency": -1
                }
            })
        );
    }
}
