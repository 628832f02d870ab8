//! The pub/sub building block: events in CloudEvents shape (`TopicEventRequest`: id, source,
//! type, specversion, datacontenttype, data, topic, pubsubname), brokers `in-memory` and
//! `redis` (streams with consumer groups named by `metadata.consumerID`), and the bounded retry
//! rule ([`next_step`]) both kinds of subscriber follow: `SubscribeTopicEvents`
//! streams and the app's `AppCallback.OnTopicEvent`. Brokers are shared by all shards; their
//! subscriptions are channels any thread can read.

mod memory;
mod redis;

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use bytes::Bytes;
use layotto_proto::runtime::{TopicEventRequest, topic_event_response::TopicEventResponseStatus};
use tokio::sync::{mpsc, oneshot};

pub use memory::InMemoryPubSub;
pub use redis::RedisPubSub;

use crate::error::ApiError;

/// Attempts to deliver one event before it is dropped (RETRY answers or failures).
pub const MAX_ATTEMPTS: u32 = 5;
/// Pause before the first retry; doubled each time.
pub const FIRST_RETRY: Duration = Duration::from_millis(100);

/// One event handed to a subscriber; dropping `done` (or sending on it) acknowledges it.
pub struct Delivery {
    /// The event.
    pub event: TopicEventRequest,
    /// Told when the subscriber has finished with the event (delivered or given up).
    pub done: Option<oneshot::Sender<()>>,
}

/// Events of one subscription, in order.
pub type Subscription = mpsc::UnboundedReceiver<Delivery>;

/// A broker. Its futures are `Send`: the app's callback subscribes from the backend pool.
#[async_trait]
pub trait PubSub: Send + Sync {
    /// Connects to the backend; called once at start-up, on the main thread.
    async fn connect(&self) -> Result<(), ApiError> {
        Ok(())
    }
    /// Publishes `event` on its topic.
    async fn publish(&self, event: TopicEventRequest) -> Result<(), ApiError>;
    /// Follows `topic`: every event published after this returns is delivered.
    async fn subscribe(&self, topic: &str) -> Result<Subscription, ApiError>;
}

/// The CloudEvent for data published by `app_id` on `pubsub`/`topic`.
pub fn cloud_event(
    app_id: &str,
    pubsub: &str,
    topic: &str,
    data: Bytes,
    content_type: String,
    metadata: HashMap<String, String>,
) -> TopicEventRequest {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    TopicEventRequest {
        id: format!(
            "{nanos:x}-{:x}-{:x}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        ),
        source: app_id.to_owned(),
        r#type: "com.dapr.event.sent".into(),
        spec_version: "1.0".into(),
        data_content_type: if content_type.is_empty() {
            "text/plain".into()
        } else {
            content_type
        },
        data,
        topic: topic.to_owned(),
        pubsub_name: pubsub.to_owned(),
        metadata,
    }
}

/// What a subscriber made of one attempt to deliver an event.
pub type Answer = Result<TopicEventResponseStatus, String>;

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Finished with this status (SUCCESS, or DROP — asked for, or retries exhausted).
    Finish(TopicEventResponseStatus),
    /// Try again after this pause.
    RetryAfter(Duration),
}

/// The retry rule for attempt number `attempt` (from 1) of an event: SUCCESS and DROP finish;
/// RETRY answers and failures are retried up to [`MAX_ATTEMPTS`] times with doubling pauses
/// from [`FIRST_RETRY`], then the event is dropped.
pub fn next_step(answer: &Answer, attempt: u32) -> Step {
    match answer {
        Ok(TopicEventResponseStatus::Success) => Step::Finish(TopicEventResponseStatus::Success),
        Ok(TopicEventResponseStatus::Drop) => Step::Finish(TopicEventResponseStatus::Drop),
        _ if attempt < MAX_ATTEMPTS => Step::RetryAfter(FIRST_RETRY * 2u32.pow(attempt - 1)),
        _ => Step::Finish(TopicEventResponseStatus::Drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> TopicEventRequest {
        cloud_event(
            "app",
            "ps",
            "orders",
            Bytes::from_static(b"{}"),
            "application/json".into(),
            HashMap::new(),
        )
    }

    #[test]
    fn retries_are_bounded_and_honour_the_answers() {
        use TopicEventResponseStatus::*;
        assert_eq!(next_step(&Ok(Success), 1), Step::Finish(Success));
        assert_eq!(next_step(&Ok(Drop), 1), Step::Finish(Drop));
        assert_eq!(next_step(&Ok(Retry), 1), Step::RetryAfter(FIRST_RETRY));
        assert_eq!(
            next_step(&Err("down".into()), 3),
            Step::RetryAfter(FIRST_RETRY * 4)
        );
        assert_eq!(next_step(&Ok(Retry), MAX_ATTEMPTS), Step::Finish(Drop));
        let event = event();
        assert_eq!(event.spec_version, "1.0");
        assert_eq!(event.source, "app");
        assert_ne!(
            event.id,
            cloud_event(
                "app",
                "ps",
                "t",
                Bytes::new(),
                String::new(),
                HashMap::new()
            )
            .id
        );
    }
}
