//! The `redis` broker on redis streams: publishing is `XADD <topic> * event <bytes>` (the
//! event's protobuf encoding, lossless for any data); each subscription reads with
//! `XREADGROUP` in the consumer group `metadata.consumerID` (created before `subscribe` returns)
//! on a connection of its own (a
//! blocking read would hold up a shared one), hands events over one at a time and `XACK`s each
//! once its subscriber is done with it. Unacknowledged events stay pending in redis.

use std::time::Duration;

use async_trait::async_trait;
use layotto_proto::runtime::TopicEventRequest;
use prost::Message;
use redis::{AsyncCommands, streams::StreamReadReply};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::{Delivery, PubSub, Subscription};
use crate::components::{component::Component, registry::Entry};
use crate::{components::redis::RedisConnection, error::ApiError};
use std::sync::Arc;

/// The stream field holding the event.
const FIELD: &str = "event";
/// How long one blocking read waits before checking whether the subscriber is still there.
const BLOCK: Duration = Duration::from_secs(1);

/// A broker on redis streams.
pub struct RedisPubSub {
    redis: RedisConnection,
    group: String,
}

impl RedisPubSub {
    /// A broker over `redis` reading as consumer group `group`.
    pub fn new(redis: RedisConnection, group: String) -> Self {
        Self { redis, group }
    }
}

#[async_trait(?Send)]
impl Component for RedisPubSub {
    async fn start(&self) -> Result<(), ApiError> {
        self.redis.connect().await
    }

    async fn health(&self) -> Result<(), ApiError> {
        self.redis.health().await
    }
}

#[async_trait]
impl PubSub for RedisPubSub {
    async fn publish(&self, event: TopicEventRequest) -> Result<(), ApiError> {
        let topic = event.topic.clone();
        let bytes = event.encode_to_vec();
        self.redis
            .call(move |mut redis| async move {
                redis
                    .xadd::<_, _, _, _, String>(topic, "*", &[(FIELD, bytes)])
                    .await
            })
            .await?;
        Ok(())
    }

    async fn subscribe(&self, topic: &str) -> Result<Subscription, ApiError> {
        // The group must exist before this returns: events published from then on are read.
        let (stream, group) = (topic.to_owned(), self.group.clone());
        self.redis
            .call(move |mut redis| async move { create_group(&mut redis, &stream, &group).await })
            .await?;
        let (sender, subscription) = mpsc::unbounded_channel();
        let follow = follow(
            self.redis.client()?,
            topic.to_owned(),
            self.group.clone(),
            self.redis.describe(),
            sender,
        );
        self.redis.backend().spawn(follow)?;
        Ok(subscription)
    }
}

/// Creates consumer group `group` on `topic` (and the stream), reading from now on; an existing
/// group is kept as it is.
async fn create_group(
    connection: &mut impl AsyncCommands,
    topic: &str,
    group: &str,
) -> redis::RedisResult<()> {
    match connection
        .xgroup_create_mkstream::<_, _, _, ()>(topic, group, "$")
        .await
    {
        Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// Reads `topic` as `group` until the subscriber goes away. Backend pool.
async fn follow(
    client: redis::Client,
    topic: String,
    group: String,
    describe: String,
    subscriber: mpsc::UnboundedSender<Delivery>,
) {
    let consumer = format!("layotto-{}", std::process::id());
    while !subscriber.is_closed() {
        let mut connection = match client.get_multiplexed_async_connection().await {
            Ok(connection) => connection,
            Err(err) => {
                warn!("{describe}: cannot read {topic}: {err}; retrying");
                tokio::time::sleep(BLOCK).await;
                continue;
            }
        };
        // The group may exist already (BUSYGROUP): that is fine.
        let _: redis::RedisResult<()> =
            connection.xgroup_create_mkstream(&topic, &group, "$").await;
        loop {
            if subscriber.is_closed() {
                return;
            }
            let options = redis::streams::StreamReadOptions::default()
                .group(&group, &consumer)
                .count(16)
                .block(BLOCK.as_millis() as usize);
            let reply: StreamReadReply =
                match connection.xread_options(&[&topic], &[">"], &options).await {
                    Ok(reply) => reply,
                    Err(err) => {
                        warn!("{describe}: reading {topic} failed: {err}; reconnecting");
                        tokio::time::sleep(BLOCK).await;
                        break;
                    }
                };
            for entry in reply.keys.into_iter().flat_map(|key| key.ids) {
                let event = entry
                    .get::<Vec<u8>>(FIELD)
                    .and_then(|bytes| TopicEventRequest::decode(bytes.as_slice()).ok());
                if let Some(event) = event {
                    let (done, finished) = oneshot::channel();
                    if subscriber
                        .send(Delivery {
                            event,
                            done: Some(done),
                        })
                        .is_err()
                    {
                        return; // left pending: another consumer of the group can claim it
                    }
                    let _ = finished.await;
                }
                let _: redis::RedisResult<i64> =
                    connection.xack(&topic, &group, &[&entry.id]).await;
            }
        }
    }
}

/// Builds one from its entry (LayOtto's redis keys and `consumerID`, the consumer group (default `layotto`)).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn PubSub>> {
    let group = entry.take("consumerID").unwrap_or_else(|| "layotto".into());
    Some(Arc::new(RedisPubSub::new(
        RedisConnection::from_entry(entry)?,
        group,
    )))
}
