//! The pub/sub building block: events in CloudEvents shape (`TopicEventRequest`: id, source,
//! type, specversion, datacontenttype, data, topic, pubsubname), brokers `in-memory` and
//! `redis` (streams in Dapr's layout, consumer groups named by `metadata.consumerID`,
//! at-least-once delivery), and the bounded retry rule ([`next_step`]) both kinds of subscriber
//! follow: `SubscribeTopicEvents` streams and the app's `AppCallback.OnTopicEvent`. Brokers are
//! shared by all shards; their subscriptions are channels any thread can read.

mod envelope;
mod memory;
mod redis;

use std::{
    collections::HashMap,
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_trait::async_trait;
use bytes::Bytes;
use layotto_proto::runtime::{TopicEventRequest, topic_event_response::TopicEventResponseStatus};
use tokio::sync::{mpsc, oneshot};

pub(crate) use envelope::{cloud_event_json, is_raw_payload};
pub use memory::InMemoryPubSub;
pub use redis::{RedisPubSub, StreamSettings};

use crate::error::ApiError;

use crate::components::{component::Component, registry::Registry};

/// Attempts to deliver one event before it is dropped (RETRY answers or failures).
pub const MAX_ATTEMPTS: u32 = 5;
/// Pause before the first retry; doubled each time.
pub const FIRST_RETRY: Duration = Duration::from_millis(100);

/// One event handed to a subscriber. [`Delivery::finish`] acknowledges it; a delivery dropped
/// without it (the subscriber went away mid-event) stays unacknowledged, and a broker that keeps
/// events (redis) delivers it again.
pub struct Delivery {
    /// The event.
    pub event: TopicEventRequest,
    /// Told when the subscriber has finished with the event; `None` if the broker keeps nothing.
    done: Option<oneshot::Sender<()>>,
    /// `event` is a raw payload's wrapping ([`Deliveries`]): its data are the broker's bytes,
    /// which a dead-letter topic gets as they are.
    raw_payload: bool,
}

impl Delivery {
    /// `event`, for a subscriber to finish with; `done` is told when it has.
    fn new(event: TopicEventRequest, done: Option<oneshot::Sender<()>>) -> Self {
        Self {
            event,
            done,
            raw_payload: false,
        }
    }

    /// The subscriber is finished with the event: delivered (SUCCESS), or given up on (DROP,
    /// asked for or after the retries).
    pub fn finish(self) {
        if let Some(done) = self.done {
            let _ = done.send(());
        }
    }
}

/// Events of one subscription, in order.
pub type Subscription = mpsc::UnboundedReceiver<Delivery>;

/// A subscription's deliveries in the form its subscriber asked for: with `raw_payload` (Dapr's
/// `rawPayload` subscription metadata), each event as daprd's `FromRawPayload` wraps the
/// broker's bytes for it ([`envelope::as_raw_payload`]).
pub struct Deliveries {
    events: Subscription,
    raw_payload: bool,
}

impl Deliveries {
    /// `events`, as raw payloads when `raw_payload`.
    pub fn new(events: Subscription, raw_payload: bool) -> Self {
        Self {
            events,
            raw_payload,
        }
    }

    /// The next delivery; `None` once the subscription ended.
    pub async fn recv(&mut self) -> Option<Delivery> {
        let mut delivery = self.events.recv().await?;
        if self.raw_payload {
            delivery.event = envelope::as_raw_payload(std::mem::take(&mut delivery.event));
            delivery.raw_payload = true;
        }
        Some(delivery)
    }
}

/// A broker. Its futures are `Send`: the app's callback subscribes from the backend pool.
#[async_trait]
pub trait PubSub: Component {
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

/// A subscription's dead-letter topic (Dapr's `deadLetterTopic`) on the subscription's own
/// broker: where the events its subscriber does not take (DROP, retries run out, no route) are
/// moved, as daprd moves them.
pub struct DeadLetter {
    broker: std::sync::Arc<dyn PubSub>,
    topic: String,
}

impl DeadLetter {
    /// `topic` of `broker`.
    pub fn new(broker: std::sync::Arc<dyn PubSub>, topic: String) -> Self {
        Self { broker, topic }
    }

    /// Finishes `delivery`, which its subscriber did not take: after publishing it (the same
    /// event, its `topic` the dead-letter one) on `dead_letter` when there is one, and left
    /// unacknowledged (logged) when that broker refuses it, so a broker that keeps events
    /// delivers it again.
    pub async fn give_up(dead_letter: Option<&DeadLetter>, delivery: Delivery) {
        let Some(dead_letter) = dead_letter else {
            return delivery.finish();
        };
        let mut moved = delivery.event.clone();
        moved.topic.clone_from(&dead_letter.topic);
        if delivery.raw_payload {
            envelope::mark_raw_payload(&mut moved.metadata);
        }
        match dead_letter.broker.publish(moved).await {
            Ok(()) => delivery.finish(),
            Err(err) => tracing::warn!(
                id = %delivery.event.id,
                topic = %delivery.event.topic,
                dead_letter_topic = %dead_letter.topic,
                "cannot move the event to its dead-letter topic: {}",
                crate::error::chain(&err)
            ),
        }
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

/// The retries of one event's delivery, whoever delivers it (a streaming subscriber on a shard,
/// the app's `OnTopicEvent` on the backend pool): counts attempts and sleeps between them with
/// the caller's timer, so the rule lives in one place and tests can pass a fake sleep.
#[derive(Debug)]
pub struct Retries {
    attempt: u32,
}

impl Default for Retries {
    fn default() -> Self {
        Self { attempt: 1 }
    }
}

impl Retries {
    /// After an attempt answered `answer`: the final status, or `None` once `sleep` has waited
    /// out the pause before the next attempt.
    pub async fn settle<F: Future<Output = ()>>(
        &mut self,
        answer: &Answer,
        sleep: impl FnOnce(Duration) -> F,
    ) -> Option<TopicEventResponseStatus> {
        match next_step(answer, self.attempt) {
            Step::Finish(status) => Some(status),
            Step::RetryAfter(pause) => {
                sleep(pause).await;
                self.attempt += 1;
                None
            }
        }
    }
}

/// The backend types of `pub_subs`.
pub(crate) const BACKENDS: Registry<dyn PubSub> = Registry {
    label: "pub_subs",
    kind: "pub/sub",
    default_type: None,
    fields: &[],
    backends: &[("in-memory", memory::build), ("redis", redis::build)],
};

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
    fn retries_sleep_between_attempts_with_the_callers_timer() {
        use std::cell::RefCell;
        let slept = RefCell::new(Vec::new());
        let sleep = |pause| {
            slept.borrow_mut().push(pause);
            std::future::ready(())
        };
        let mut retries = Retries::default();
        let mut attempts = 0;
        let status = futures_lite::future::block_on(async {
            loop {
                attempts += 1;
                let answer = if attempts < 3 {
                    Err("down".to_owned())
                } else {
                    Ok(TopicEventResponseStatus::Success)
                };
                if let Some(status) = retries.settle(&answer, sleep).await {
                    break status;
                }
            }
        });
        assert_eq!(status, TopicEventResponseStatus::Success);
        assert_eq!(*slept.borrow(), vec![FIRST_RETRY, FIRST_RETRY * 2]);
        let mut exhausted = Retries::default();
        let status = futures_lite::future::block_on(async {
            loop {
                let answer = Ok(TopicEventResponseStatus::Retry);
                if let Some(status) = exhausted.settle(&answer, |_| std::future::ready(())).await {
                    break status;
                }
            }
        });
        assert_eq!(status, TopicEventResponseStatus::Drop);
        assert_eq!(exhausted.attempt, MAX_ATTEMPTS);
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
