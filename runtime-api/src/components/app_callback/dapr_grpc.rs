//! Dapr's gRPC channel to the app (`app_protocol` `grpc`): its `dapr.proto.runtime.v1.AppCallback`
//! server, asked `ListTopicSubscriptions` (UNIMPLEMENTED: no subscriptions) and called
//! `OnTopicEvent` with Dapr's `TopicEventRequest` (`path` = the subscription's route) and the
//! event's metadata as gRPC metadata (with `pubsubname`), as daprd's gRPC postman does: SUCCESS,
//! RETRY and DROP as answered, an unknown status or a failed call retried, UNIMPLEMENTED
//! dropped. Runs on the backend pool.

use std::fmt;

use async_trait::async_trait;
use layotto_proto::{
    dapr::runtime::{
        TopicSubscription, app_callback_client::AppCallbackClient,
        topic_event_response::TopicEventResponseStatus as DaprStatus,
    },
    runtime::{TopicEventRequest, topic_event_response::TopicEventResponseStatus},
};
use tonic::{
    Code,
    metadata::{MetadataKey, MetadataValue},
};
use tracing::info;

use super::{AppChannel, AppSubscription, LazyChannel, Listed, select_route, warn_unsupported};
use crate::{components::pubsub::Answer, dapr::pubsub::dapr_event};

/// The app's Dapr `AppCallback` server.
pub(super) struct DaprCallback {
    server: LazyChannel,
}

impl DaprCallback {
    pub(super) fn new(server: LazyChannel) -> Self {
        Self { server }
    }
}

impl fmt::Display for DaprCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dapr gRPC app at {}", self.server)
    }
}

#[async_trait]
impl AppChannel for DaprCallback {
    async fn subscriptions(&self) -> Listed {
        let mut client = AppCallbackClient::new(self.server.get());
        match client.list_topic_subscriptions(()).await {
            Ok(reply) => Listed::Subscriptions(
                reply
                    .into_inner()
                    .subscriptions
                    .into_iter()
                    .filter_map(subscription)
                    .collect(),
            ),
            Err(status) if status.code() == Code::Unimplemented => {
                info!(app = %self, "the app does not implement ListTopicSubscriptions");
                Listed::Subscriptions(Vec::new())
            }
            Err(status) => Listed::NoAnswer(status.to_string()),
        }
    }

    async fn deliver(&self, event: &TopicEventRequest, route: &str) -> Answer {
        let mut request = tonic::Request::new(dapr_event(event, route));
        let headers = request.metadata_mut();
        let pubsub = [("pubsubname", event.pubsub_name.as_str())];
        let metadata = event.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str()));
        for (key, value) in metadata.chain(pubsub) {
            let key = MetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes());
            if let (Ok(key), Ok(value)) = (key, MetadataValue::try_from(value))
                && !key.as_str().starts_with("grpc-")
            {
                headers.insert(key, value);
            }
        }
        match AppCallbackClient::new(self.server.get())
            .on_topic_event(request)
            .await
        {
            Ok(reply) => match DaprStatus::try_from(reply.into_inner().status) {
                Ok(DaprStatus::Success) => Ok(TopicEventResponseStatus::Success),
                Ok(DaprStatus::Retry) => Ok(TopicEventResponseStatus::Retry),
                Ok(DaprStatus::Drop) => Ok(TopicEventResponseStatus::Drop),
                Err(unknown) => Err(format!("unknown status {}", unknown.0)),
            },
            Err(status) if status.code() == Code::Unimplemented => {
                Ok(TopicEventResponseStatus::Drop)
            }
            Err(status) => Err(status.to_string()),
        }
    }
}

/// The subscription the app listed, with its route; `None` (logged) when no route is usable.
fn subscription(listed: TopicSubscription) -> Option<AppSubscription> {
    let bulk = listed.bulk_subscribe.is_some_and(|bulk| bulk.enabled);
    let raw = listed
        .metadata
        .get("rawPayload")
        .is_some_and(|raw| raw.eq_ignore_ascii_case("true"));
    warn_unsupported(&listed.topic, &listed.dead_letter_topic, bulk, raw);
    // daprd's gRPC default: an empty path when no route is given.
    let route = match &listed.routes {
        Some(routes) if !(routes.rules.is_empty() && routes.default.is_empty()) => {
            let rules = routes
                .rules
                .iter()
                .map(|rule| (rule.r#match.as_str(), rule.path.as_str()));
            select_route(&listed.topic, rules, &routes.default)?
        }
        _ => String::new(),
    };
    Some(AppSubscription {
        pubsub: listed.pubsub_name,
        topic: listed.topic,
        route,
    })
}
