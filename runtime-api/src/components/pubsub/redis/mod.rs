//! The `redis` broker on redis streams, in Dapr's `pubsub.redis` layout (components-contrib), so
//! LayOtto and Dapr sidecars on the same redis read what it publishes and the other way round:
//!
//! - publishing is `XADD <topic> [MAXLEN ~ <maxLenApprox>] * data <CloudEvent JSON>
//!   [metadata <JSON map>]` (see [`envelope`](super::envelope) for the JSON);
//! - each subscription reads with `XREADGROUP` as a consumer of its own in the group
//!   `consumerID` (created, reading from then on, before `subscribe` returns), on a connection of
//!   its own (a blocking read would hold up a shared one). A read blocks at most [`BLOCK`] and is
//!   given that plus the component's timeout to answer, so it never runs into a response timeout;
//! - an entry is acknowledged (`XACK`) only once its subscriber is finished with it (SUCCESS,
//!   DROP, or the retries used up);
//! - entries handed to a consumer and never acknowledged are delivered again: this consumer's own
//!   (a reply lost with a cut connection) at once after reconnecting, and any consumer's left idle
//!   for `processingTimeout` (a crashed or stopped sidecar, a subscriber that went away) claimed
//!   with `XAUTOCLAIM` (redis ≥ 6.2) on subscribing and every `redeliverInterval`, as Dapr does.
//!
//! So every published event is delivered at least once; one whose subscriber is slower than
//! `processingTimeout` may be delivered twice. Runs on the backend pool (the redis client needs
//! tokio); subscribers read their channel on any thread.

use std::{
    collections::HashMap,
    io,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_trait::async_trait;
use layotto_proto::runtime::TopicEventRequest;
use redis::{
    AsyncCommands, RedisResult,
    aio::MultiplexedConnection,
    streams::{StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply},
};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::{Delivery, PubSub, Subscription, envelope};
use follower::Follower;

mod follower;
use crate::{
    components::{
        component::Component,
        redis::{DedicatedConnector, RedisConnection},
        registry::Entry,
    },
    error::ApiError,
};

/// The entry field holding the CloudEvent JSON (Dapr's).
const DATA: &str = "data";
/// The entry field holding the publish request's metadata as a JSON map (Dapr's).
const METADATA: &str = "metadata";
/// The longest one blocking read waits before checking whether the subscriber is still there.
const BLOCK: Duration = Duration::from_secs(1);
/// Entries read or claimed at once.
const BATCH: usize = 16;
/// The first pause before reaching redis again after a failure; doubled up to [`LAST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest pause between attempts to reach redis again.
const LAST_RETRY: Duration = Duration::from_secs(1);
/// Dapr's `processingTimeout` default.
const DEFAULT_PROCESSING_TIMEOUT: Duration = Duration::from_secs(60);
/// Dapr's `redeliverInterval` default.
const DEFAULT_REDELIVER_INTERVAL: Duration = Duration::from_secs(15);

/// How a redis broker publishes and redelivers (Dapr's `pubsub.redis` metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// The component's name: the `pubsubname` of the events it delivers.
    pub pubsub_name: String,
    /// `consumerID`: the consumer group its subscriptions read as.
    pub group: String,
    /// `processingTimeout`: how long an entry stays unacknowledged before it is claimed and
    /// delivered again (default 60 s); zero turns claiming off.
    pub processing_timeout: Duration,
    /// `redeliverInterval`: how often to look for such entries (default 15 s); zero turns
    /// claiming off.
    pub redeliver_interval: Duration,
    /// `maxLenApprox`: streams are trimmed to about this many entries when publishing.
    pub max_len_approx: Option<u64>,
}

impl StreamSettings {
    /// The settings of component `pubsub_name` reading as `group`, from Dapr's metadata keys as
    /// `take` hands them out (removing them): durations in milliseconds (`"30000"`) or as Go
    /// durations (`"30s"`), as Dapr reads them. An error names the key.
    pub fn from_metadata(
        pubsub_name: &str,
        group: String,
        mut take: impl FnMut(&str) -> Option<String>,
    ) -> Result<Self, (&'static str, String)> {
        let mut duration = |key: &'static str, default: Duration| match take(key) {
            None => Ok(default),
            Some(text) => dapr_duration(&text).map_err(|message| (key, message)),
        };
        let processing_timeout = duration("processingTimeout", DEFAULT_PROCESSING_TIMEOUT)?;
        let redeliver_interval = duration("redeliverInterval", DEFAULT_REDELIVER_INTERVAL)?;
        let max_len_approx = match take("maxLenApprox") {
            None => None,
            Some(text) => Some(text.trim().parse::<u64>().ok().filter(|n| *n > 0).ok_or((
                "maxLenApprox",
                format!("\"{text}\" is not a positive count"),
            ))?),
        };
        Ok(Self {
            pubsub_name: pubsub_name.to_owned(),
            group,
            processing_timeout,
            redeliver_interval,
            max_len_approx,
        })
    }

    fn claims(&self) -> bool {
        !self.processing_timeout.is_zero() && !self.redeliver_interval.is_zero()
    }
}

/// Dapr's reading of a duration: a whole number is milliseconds, anything else a Go duration.
fn dapr_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(millis) = text.parse::<u64>() {
        return Ok(Duration::from_millis(millis));
    }
    humantime::parse_duration(text)
        .map_err(|err| format!("invalid duration \"{text}\": {err} (expected e.g. \"30s\")"))
}

/// A broker on redis streams.
pub struct RedisPubSub {
    redis: RedisConnection,
    settings: StreamSettings,
}

impl RedisPubSub {
    /// A broker over `redis` with `settings`.
    pub fn new(redis: RedisConnection, settings: StreamSettings) -> Self {
        Self { redis, settings }
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
        let mut command = redis::cmd("XADD");
        command.arg(&event.topic);
        if let Some(max_len) = self.settings.max_len_approx {
            command.arg("MAXLEN").arg("~").arg(max_len);
        }
        command.arg("*").arg(DATA).arg(envelope::to_json(&event));
        if !event.metadata.is_empty() {
            let metadata = serde_json::to_vec(&event.metadata).expect("a string map serializes");
            command.arg(METADATA).arg(metadata);
        }
        self.redis
            .call(move |mut redis| async move { command.query_async::<String>(&mut redis).await })
            .await?;
        Ok(())
    }

    async fn subscribe(&self, topic: &str) -> Result<Subscription, ApiError> {
        // The group must exist before this returns: events published from then on are read.
        let (stream, group) = (topic.to_owned(), self.settings.group.clone());
        self.redis
            .call(move |mut redis| async move {
                create_group(&mut redis, &stream, &group, "$").await
            })
            .await?;
        static SUBSCRIPTIONS: AtomicU64 = AtomicU64::new(0);
        let (sender, subscription) = mpsc::unbounded_channel();
        let follower = Follower {
            connector: self.redis.dedicated()?,
            topic: topic.to_owned(),
            settings: self.settings.clone(),
            consumer: format!(
                "layotto-{}-{}",
                std::process::id(),
                SUBSCRIPTIONS.fetch_add(1, Ordering::Relaxed)
            ),
            describe: self.redis.describe(),
            subscriber: sender,
            claims: self.settings.claims(),
        };
        self.redis.backend().spawn(follower.run())?;
        Ok(subscription)
    }
}

/// Creates consumer group `group` on `topic` (and the stream) reading after entry `start`
/// (`$`: from now on, `0`: everything); an existing group is kept as it is.
async fn create_group(
    connection: &mut impl AsyncCommands,
    topic: &str,
    group: &str,
    start: &str,
) -> RedisResult<()> {
    match connection
        .xgroup_create_mkstream::<_, _, _, ()>(topic, group, start)
        .await
    {
        Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// Builds one from its entry: LayOtto's redis keys, `consumerID` (the consumer group, default
/// `layotto`) and Dapr's stream keys (see [`StreamSettings`]).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn PubSub>> {
    let group = entry.take("consumerID").unwrap_or_else(|| "layotto".into());
    let name = entry.name().to_owned();
    let streams = StreamSettings::from_metadata(&name, group, |key| entry.take(key));
    let redis = RedisConnection::from_entry(entry);
    let streams = streams
        .map_err(|(key, message)| entry.metadata_error(key, message))
        .ok();
    Some(Arc::new(RedisPubSub::new(redis?, streams?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<StreamSettings, (&'static str, String)> {
        let mut metadata: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        StreamSettings::from_metadata("ps", "group1".into(), |key| metadata.remove(key))
    }

    #[test]
    fn dapr_metadata_is_read_as_dapr_reads_it() {
        let defaults = settings(&[]).unwrap();
        assert_eq!(defaults.processing_timeout, DEFAULT_PROCESSING_TIMEOUT);
        assert_eq!(defaults.redeliver_interval, DEFAULT_REDELIVER_INTERVAL);
        assert_eq!(defaults.max_len_approx, None);
        assert!(defaults.claims());
        let given = settings(&[
            ("processingTimeout", "1500"),
            ("redeliverInterval", "2s"),
            ("maxLenApprox", "10000"),
        ])
        .unwrap();
        assert_eq!(given.processing_timeout, Duration::from_millis(1500));
        assert_eq!(given.redeliver_interval, Duration::from_secs(2));
        assert_eq!(given.max_len_approx, Some(10000));
        assert!(!settings(&[("redeliverInterval", "0")]).unwrap().claims());
        assert_eq!(
            settings(&[("processingTimeout", "soon")]).unwrap_err().0,
            "processingTimeout"
        );
        assert_eq!(
            settings(&[("maxLenApprox", "-1")]).unwrap_err().0,
            "maxLenApprox"
        );
    }
}
