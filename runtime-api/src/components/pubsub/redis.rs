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

/// Where a follower's next entries come from.
enum Source {
    /// Entries handed to this consumer earlier, after this id.
    Own(String),
    /// Entries of any consumer idle for `processingTimeout`, from this `XAUTOCLAIM` cursor.
    Claim(String),
    /// Entries never handed to any consumer of the group.
    New,
}

/// Reads one subscription's topic as one consumer of the group and hands its entries over.
struct Follower {
    connector: DedicatedConnector,
    topic: String,
    settings: StreamSettings,
    consumer: String,
    describe: String,
    subscriber: mpsc::UnboundedSender<Delivery>,
    /// Whether entries other consumers left pending are claimed (settings, and redis ≥ 6.2).
    claims: bool,
}

impl Follower {
    /// Follows the topic until the subscriber goes away, reconnecting after failures.
    async fn run(mut self) {
        // Ids delivered whose acknowledgement redis has not confirmed.
        let mut unacked = Vec::new();
        let mut pause = FIRST_RETRY;
        loop {
            let followed = match self.connector.connect().await {
                Ok(mut connection) => self.follow(&mut connection, &mut unacked, &mut pause).await,
                Err(err) => Err(err),
            };
            match followed {
                Ok(()) => return,
                Err(_) if self.subscriber.is_closed() => return,
                Err(err) => {
                    warn!(
                        "{}: reading {} failed: {err}; reconnecting in {pause:?}",
                        self.describe, self.topic
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(LAST_RETRY);
                }
            }
        }
    }

    /// Follows on one connection: first acknowledges what is left to, then redelivers what this
    /// consumer was handed and never finished, claims what other consumers left, and reads new
    /// entries, claiming again every `redeliverInterval`. `Ok` once the subscriber is gone.
    async fn follow(
        &mut self,
        connection: &mut MultiplexedConnection,
        unacked: &mut Vec<String>,
        pause: &mut Duration,
    ) -> RedisResult<()> {
        self.acknowledge(connection, unacked).await?;
        let mut source = Source::Own("0".into());
        let mut next_claim = Instant::now();
        loop {
            if self.subscriber.is_closed() {
                self.leave(connection).await;
                return Ok(());
            }
            let entries = match &source {
                Source::Own(after) => {
                    let entries = self.read(connection, after, None).await?;
                    source = match entries.last() {
                        Some(last) => Source::Own(last.id.clone()),
                        None => Source::New,
                    };
                    entries
                }
                Source::Claim(cursor) => match self.claim(connection, cursor).await {
                    Ok((next, entries)) => {
                        source = if next == "0-0" {
                            next_claim = Instant::now() + self.settings.redeliver_interval;
                            Source::New
                        } else {
                            Source::Claim(next)
                        };
                        entries
                    }
                    // Redis before 6.2 has no XAUTOCLAIM.
                    Err(err) if err.to_string().contains("unknown command") => {
                        warn!(
                            "{}: cannot claim entries of {} other consumers left pending: {err} \
                             (XAUTOCLAIM needs redis 6.2); they are not delivered again",
                            self.describe, self.topic
                        );
                        self.claims = false;
                        source = Source::New;
                        Vec::new()
                    }
                    Err(err) => return Err(err),
                },
                Source::New if self.claims && Instant::now() >= next_claim => {
                    source = Source::Claim("0-0".into());
                    continue;
                }
                Source::New => {
                    let block = if self.claims {
                        next_claim
                            .saturating_duration_since(Instant::now())
                            .min(BLOCK)
                    } else {
                        BLOCK
                    };
                    // BLOCK 0 would wait for ever.
                    let block = block.max(Duration::from_millis(1));
                    self.read(connection, ">", Some(block)).await?
                }
            };
            *pause = FIRST_RETRY;
            for entry in entries {
                let id = entry.id.clone();
                if !self.deliver(entry).await {
                    // The rest stays pending, claimed once idle for processingTimeout.
                    let _ = self.acknowledge(connection, unacked).await;
                    self.leave(connection).await;
                    return Ok(());
                }
                unacked.push(id);
            }
            // One XACK for the batch: a crash before it redelivers the batch's events.
            self.acknowledge(connection, unacked).await?;
        }
    }

    /// `XREADGROUP` of up to [`BATCH`] entries after `after` (`>`: new ones), blocking for
    /// `block` if given.
    async fn read(
        &self,
        connection: &mut MultiplexedConnection,
        after: &str,
        block: Option<Duration>,
    ) -> RedisResult<Vec<StreamId>> {
        let mut options = StreamReadOptions::default()
            .group(&self.settings.group, &self.consumer)
            .count(BATCH);
        if let Some(block) = block {
            options = options.block(block.as_millis() as usize);
        }
        let budget = block.unwrap_or_default() + self.connector.timeout();
        let mut reader = connection.clone();
        let (keys, ids) = ([&self.topic], [after]);
        let read = reader.xread_options::<_, _, StreamReadReply>(&keys, &ids, &options);
        let reply = self.recreating_group(connection, budget, read).await?;
        Ok(reply
            .unwrap_or_default()
            .keys
            .into_iter()
            .flat_map(|key| key.ids)
            .collect())
    }

    /// `XAUTOCLAIM` of up to [`BATCH`] entries idle for `processingTimeout`, from `cursor`:
    /// the next cursor (`0-0` at the end) and the entries now this consumer's.
    async fn claim(
        &self,
        connection: &mut MultiplexedConnection,
        cursor: &str,
    ) -> RedisResult<(String, Vec<StreamId>)> {
        let mut command = redis::cmd("XAUTOCLAIM");
        command
            .arg(&self.topic)
            .arg(&self.settings.group)
            .arg(&self.consumer)
            .arg(self.settings.processing_timeout.as_millis() as u64)
            .arg(cursor)
            .arg("COUNT")
            .arg(BATCH);
        let mut claimer = connection.clone();
        let claim = command.query_async::<StreamAutoClaimReply>(&mut claimer);
        let budget = self.connector.timeout();
        Ok(
            match self.recreating_group(connection, budget, claim).await? {
                Some(reply) => (reply.next_stream_id, reply.claimed),
                None => ("0-0".into(), Vec::new()),
            },
        )
    }

    /// Runs `command` within `budget`; if the group is gone (redis lost it, or the stream was
    /// deleted) creates it again over the whole stream, so nothing published since is missed,
    /// and answers `None`.
    async fn recreating_group<T>(
        &self,
        connection: &mut MultiplexedConnection,
        budget: Duration,
        command: impl Future<Output = RedisResult<T>>,
    ) -> RedisResult<Option<T>> {
        match within(budget, command).await {
            Ok(reply) => Ok(Some(reply)),
            Err(err) if err.code() == Some("NOGROUP") => {
                warn!(
                    "{}: consumer group {} of {} is gone; creating it again",
                    self.describe, self.settings.group, self.topic
                );
                let create = create_group(connection, &self.topic, &self.settings.group, "0");
                within(self.connector.timeout(), create).await?;
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Hands `entry` to the subscriber and waits until it is finished with it; `false` if the
    /// subscriber went away first (the entry stays pending). An entry with no `data` (not an
    /// event, or trimmed from the stream since it was handed out) is skipped.
    async fn deliver(&self, entry: StreamId) -> bool {
        let Some(payload) = entry.get::<Vec<u8>>(DATA) else {
            warn!(
                "{}: entry {} of {} has no \"data\" field; acknowledged without delivery",
                self.describe, entry.id, self.topic
            );
            return true;
        };
        let metadata: HashMap<String, String> = entry
            .get::<Vec<u8>>(METADATA)
            .and_then(|json| serde_json::from_slice(&json).ok())
            .unwrap_or_default();
        let event = envelope::from_payload(
            &payload,
            &entry.id,
            &self.topic,
            &self.settings.pubsub_name,
            metadata,
        );
        let (done, finished) = oneshot::channel();
        let delivery = Delivery {
            event,
            done: Some(done),
        };
        self.subscriber.send(delivery).is_ok() && finished.await.is_ok()
    }

    /// `XACK`s the `unacked` ids; they are kept for the next attempt if it fails.
    async fn acknowledge(
        &self,
        connection: &mut MultiplexedConnection,
        unacked: &mut Vec<String>,
    ) -> RedisResult<()> {
        if unacked.is_empty() {
            return Ok(());
        }
        let ack = connection.xack::<_, _, _, i64>(&self.topic, &self.settings.group, unacked);
        within(self.connector.timeout(), ack).await?;
        unacked.clear();
        Ok(())
    }

    /// The subscriber is gone: removes this consumer from the group unless entries are still
    /// pending for it (they stay, to be claimed). Best effort.
    async fn leave(&self, connection: &mut MultiplexedConnection) {
        let (topic, group, consumer) = (&self.topic, &self.settings.group, &self.consumer);
        let mut pending = redis::cmd("XPENDING");
        pending
            .arg(topic)
            .arg(group)
            .arg("-")
            .arg("+")
            .arg(1)
            .arg(consumer);
        let pending = within(
            self.connector.timeout(),
            pending.query_async::<Vec<redis::Value>>(connection),
        )
        .await;
        if pending.is_ok_and(|pending| pending.is_empty()) {
            let mut delete = redis::cmd("XGROUP");
            delete
                .arg("DELCONSUMER")
                .arg(topic)
                .arg(group)
                .arg(consumer);
            let delete = delete.query_async::<i64>(connection);
            let _ = within(self.connector.timeout(), delete).await;
        }
    }
}

/// `command`'s answer, or a timeout error once `budget` has passed.
async fn within<T>(
    budget: Duration,
    command: impl Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    tokio::time::timeout(budget, command)
        .await
        .unwrap_or_else(|_| {
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer within {}s", budget.as_secs_f64()),
            )
            .into())
        })
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
