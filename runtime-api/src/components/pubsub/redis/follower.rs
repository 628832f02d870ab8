//! One subscription's reader on the backend pool: reads its topic as one consumer of the group
//! on a connection of its own, hands each read's entries (up to [`BATCH`]) to the subscriber at
//! once, acknowledges them once the subscriber is finished with all of them, and delivers again
//! what was left pending (see the parent module).

#[allow(
    clippy::wildcard_imports,
    reason = "the broker's constants, settings and helpers"
)]
use super::*;

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
pub(super) struct Follower {
    pub(super) connector: DedicatedConnector,
    pub(super) topic: String,
    pub(super) settings: StreamSettings,
    pub(super) consumer: String,
    pub(super) describe: String,
    pub(super) subscriber: mpsc::UnboundedSender<Delivery>,
    /// Whether entries other consumers left pending are claimed (settings, and redis ≥ 6.2).
    pub(super) claims: bool,
}

impl Follower {
    /// Follows the topic until the subscriber goes away, reconnecting after failures.
    pub(super) async fn run(mut self) {
        // Ids delivered whose acknowledgement redis has not confirmed.
        let mut unacked = Vec::new();
        let mut pause = FIRST_RETRY;
        loop {
            let followed = match self.connector.connect(&self.topic).await {
                Ok(mut connection) => self.follow(&mut connection, &mut unacked, &mut pause).await,
                Err(err) => Err(err),
            };
            match followed {
                Ok(()) => return,
                Err(_) if self.subscriber.is_closed() => return,
                Err(err) => {
                    warn!(
                        "{}: reading {} failed: {}; reconnecting in {pause:?}",
                        self.describe,
                        self.topic,
                        crate::error::chain(&err)
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
            // The whole batch is handed over at once (a bulk subscriber gathers it), then each
            // entry is acknowledged once the subscriber finished it, in order.
            let mut handed = Vec::with_capacity(entries.len());
            let mut gone = false;
            for entry in entries {
                let id = entry.id.clone();
                match self.hand_over(entry) {
                    HandOver::Skipped => unacked.push(id),
                    HandOver::Handed(finished) => handed.push((id, finished)),
                    HandOver::Gone => {
                        gone = true;
                        break;
                    }
                }
            }
            for (id, finished) in handed {
                if finished.await.is_err() {
                    gone = true;
                    break;
                }
                unacked.push(id);
            }
            if gone {
                // The rest stays pending, claimed once idle for processingTimeout.
                let _ = self.acknowledge(connection, unacked).await;
                self.leave(connection).await;
                return Ok(());
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

    /// Hands `entry` to the subscriber, with what tells when it is finished with it. An entry
    /// with no `data` (not an event, or trimmed from the stream since it was handed out) is
    /// skipped.
    fn hand_over(&self, entry: StreamId) -> HandOver {
        let Some(payload) = entry.get::<Vec<u8>>(DATA) else {
            warn!(
                "{}: entry {} of {} has no \"data\" field; acknowledged without delivery",
                self.describe, entry.id, self.topic
            );
            return HandOver::Skipped;
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
        let delivery = Delivery::new(event, Some(done));
        match self.subscriber.send(delivery) {
            Ok(()) => HandOver::Handed(finished),
            Err(_) => HandOver::Gone,
        }
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

/// What became of an entry handed to the subscriber.
enum HandOver {
    /// Not an event: acknowledged without delivery.
    Skipped,
    /// Delivered; resolves when the subscriber has finished with it (an error if it went away
    /// first, the entry staying pending).
    Handed(oneshot::Receiver<()>),
    /// The subscriber is gone: the entry stays pending.
    Gone,
}
