//! The `in-memory` broker: every subscription of a topic gets every event published on it after
//! it subscribed. Subscribers are channels; the list is behind a short lock taken to publish and
//! to subscribe, never while an event is being handled.

use std::collections::HashMap;

use async_trait::async_trait;
use layotto_proto::runtime::TopicEventRequest;
use tokio::sync::mpsc;

use super::{Delivery, PubSub, Subscription, envelope};
use crate::components::{component::Component, registry::Entry};
use crate::error::ApiError;
use std::sync::Arc;

/// An in-process broker.
#[derive(Default)]
#[expect(
    clippy::disallowed_types,
    reason = "subscribers on every shard see every event; held to publish or subscribe, never while an event is handled"
)]
pub struct InMemoryPubSub {
    topics: std::sync::Mutex<HashMap<String, Vec<mpsc::UnboundedSender<Delivery>>>>,
}

impl Component for InMemoryPubSub {}

#[async_trait]
impl PubSub for InMemoryPubSub {
    async fn publish(&self, event: TopicEventRequest) -> Result<(), ApiError> {
        // What is published raw is read back as redis's subscribers read its bytes: a CloudEvent
        // if it is one, else a raw payload under the event's id.
        let event = if envelope::is_raw_payload(&event.metadata) {
            let TopicEventRequest {
                id,
                data,
                topic,
                pubsub_name,
                metadata,
                ..
            } = event;
            envelope::from_payload(&data, &id, &topic, &pubsub_name, metadata)
        } else {
            event
        };
        let mut topics = self.topics.lock().expect("pubsub lock poisoned");
        if let Some(subscribers) = topics.get_mut(&event.topic) {
            subscribers
                .retain(|subscriber| subscriber.send(Delivery::new(event.clone(), None)).is_ok());
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &str) -> Result<Subscription, ApiError> {
        let (sender, subscription) = mpsc::unbounded_channel();
        self.topics
            .lock()
            .expect("pubsub lock poisoned")
            .entry(topic.to_owned())
            .or_default()
            .push(sender);
        Ok(subscription)
    }
}

/// Builds one from its entry (in-memory: no settings).
pub(super) fn build(_entry: &mut Entry<'_>) -> Option<Arc<dyn PubSub>> {
    Some(Arc::new(InMemoryPubSub::default()))
}
