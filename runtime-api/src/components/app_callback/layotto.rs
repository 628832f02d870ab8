//! LayOtto's channel to the app: its `spec.proto.runtime.v1.AppCallback` server, asked
//! `ListTopicSubscriptions` and called `OnTopicEvent` with LayOtto's event, as LayOtto does (any
//! failed call is retried). Runs on the backend pool.

use std::fmt;

use async_trait::async_trait;
use layotto_proto::runtime::{TopicEventRequest, app_callback_client::AppCallbackClient};

use super::{AppChannel, AppSubscription, LazyChannel, Listed};
use crate::components::pubsub::Answer;

/// The app's LayOtto `AppCallback` server.
pub(super) struct LayOttoCallback {
    server: LazyChannel,
}

impl LayOttoCallback {
    pub(super) fn new(server: LazyChannel) -> Self {
        Self { server }
    }
}

impl fmt::Display for LayOttoCallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LayOtto AppCallback at {}", self.server)
    }
}

#[async_trait]
impl AppChannel for LayOttoCallback {
    async fn subscriptions(&self) -> Listed {
        let mut client = AppCallbackClient::new(self.server.get());
        match client.list_topic_subscriptions(()).await {
            Ok(reply) => Listed::Subscriptions(
                reply
                    .into_inner()
                    .subscriptions
                    .into_iter()
                    .map(|subscription| AppSubscription {
                        pubsub: subscription.pubsub_name,
                        topic: subscription.topic,
                        routes: super::routing::Routes::to(""),
                        dead_letter_topic: None,
                        bulk: None,
                        raw_payload: false,
                    })
                    .collect(),
            ),
            Err(status) => Listed::NoAnswer(status.to_string()),
        }
    }

    async fn deliver(&self, event: &TopicEventRequest, _route: &str) -> Answer {
        AppCallbackClient::new(self.server.get())
            .on_topic_event(event.clone())
            .await
            .map(|reply| reply.into_inner().status())
            .map_err(|status| status.to_string())
    }
}
