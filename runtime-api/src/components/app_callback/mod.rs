//! Delivery of subscribed events to the application, over each channel it has: LayOtto's
//! `AppCallback` gRPC server (`app.grpc_callback_host`:`app.grpc_callback_port`, [`layotto`]),
//! and Dapr's app channel at `app.app_channel_address`:`app.app_port` (daprd's `--app-port`)
//! — Dapr's `AppCallback` for `app_protocol` `grpc` ([`dapr_grpc`]), HTTP (`/dapr/subscribe`
//! and CloudEvents POSTed to each route) for `http`, Dapr's default ([`http_app`]). Dapr's
//! channel is one [`AppConnection`] per process, which the invocations of the app's own id
//! share, as daprd's one app channel.
//!
//! One loop serves every channel ([`follow`], [`forward`]): after start-up it asks the app for
//! its subscriptions (again every second until the app answers), subscribes to each topic on its
//! broker, and hands every event to the app in order at the path its routing rules choose
//! ([`routing`], CEL `match` rules as daprd's), one attempt at a time through the
//! channel's [`AppChannel::deliver`], honouring SUCCESS / RETRY / DROP with the bounded rule of
//! [`Retries`]; the broker's delivery is finished (acknowledged, for redis) only after SUCCESS,
//! or once an event the app does not take is given up (first moved to the subscription's
//! dead-letter topic when it has one, [`DeadLetter`]). Runs on the backend pool (tonic and hyper clients). What is
//! being delivered is recorded in [`AppSubscriptions`], which Dapr's metadata lists.

mod dapr_grpc;
mod http_app;
mod layotto;
mod routing;

use std::{
    fmt,
    sync::{Arc, OnceLock},
    time::Duration,
};

use async_trait::async_trait;
use layotto_core::{backend::BackendHandle, config::Findings};
use layotto_proto::runtime::{TopicEventRequest, topic_event_response::TopicEventResponseStatus};
use serde::Deserialize;
use serde_json::Value;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use super::{
    Block,
    http_client::HttpClient,
    invoke::{self, Invoker},
    pubsub::{Answer, DeadLetter, Deliveries, Delivery, PubSub, Retries},
};
use crate::error::{ApiError, chain};

/// A subscription the app asked for and that is being delivered, as Dapr's metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveAppSubscription {
    /// The pub/sub component.
    pub pubsub: String,
    /// The topic.
    pub topic: String,
    /// Its routing rules, (`match`, path) in order, the default last without a match (one
    /// empty rule for LayOtto's callback).
    pub rules: Vec<(String, String)>,
    /// Its dead-letter topic (empty: none).
    pub dead_letter_topic: String,
}

/// The app's subscriptions being delivered, for the whole process. Written by the delivery loop
/// on the backend pool, read by metadata calls on the shards.
#[expect(
    clippy::disallowed_types,
    reason = "written once per subscription at start-up, read by metadata calls; never held across an await"
)]
#[derive(Debug, Default)]
pub struct AppSubscriptions(std::sync::Mutex<Vec<ActiveAppSubscription>>);

impl AppSubscriptions {
    /// Every subscription being delivered, in the order they were made.
    pub fn list(&self) -> Vec<ActiveAppSubscription> {
        self.lock().clone()
    }

    fn add(&self, subscription: ActiveAppSubscription) {
        self.lock().push(subscription);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ActiveAppSubscription>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Pause between attempts to reach an app that is not up yet.
const APP_RETRY: Duration = Duration::from_secs(1);

/// Where an app listens when nothing says otherwise (LayOtto's callback host, daprd's
/// `--app-channel-address` default).
const LOOPBACK: &str = "127.0.0.1";

/// The application this sidecar serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSettings {
    /// `app.app_id` (daprd's `--app-id`): the `source` of the events it publishes.
    pub app_id: String,
    /// `app.grpc_callback_port`: where its LayOtto `AppCallback` server listens, if it has one.
    pub grpc_callback_port: Option<u16>,
    /// `app.grpc_callback_host`: the host of that server (LayOtto's default: `127.0.0.1`; a pod
    /// address on Kubernetes).
    pub grpc_callback_host: String,
    /// `app.app_port` (daprd's `--app-port`): the port of the app's Dapr channel, if it has one.
    pub app_port: Option<u16>,
    /// `app.app_protocol` (daprd's `--app-protocol`): how the Dapr channel is spoken.
    pub app_protocol: AppProtocol,
    /// `app.app_channel_address` (daprd's `--app-channel-address`): the host of the Dapr channel.
    pub app_channel_address: String,
}

/// How Dapr's app channel is spoken (daprd's `--app-protocol`; its `https`, `grpcs` and `h2c`
/// are not served).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppProtocol {
    /// HTTP/1.1: `GET /dapr/subscribe`, CloudEvents POSTed to each route (daprd's default).
    #[default]
    Http,
    /// Dapr's `AppCallback` gRPC service.
    Grpc,
}

impl AppProtocol {
    /// daprd's name of the protocol (`http`, `grpc`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Grpc => "grpc",
        }
    }

    /// Reads daprd's `--app-protocol` values `http` and `grpc` (any case).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "http" => Ok(Self::Http),
            "grpc" => Ok(Self::Grpc),
            "https" | "grpcs" | "h2c" => Err(format!(
                "app protocol \"{text}\" is not supported by layotto-rs (http or grpc)"
            )),
            _ => Err(format!("unknown app protocol \"{text}\" (http or grpc)")),
        }
    }
}

/// The app settings given on the command line (daprd's flags), over the config's `app` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppFlags {
    /// `--app-id`.
    pub app_id: Option<String>,
    /// `--app-port`.
    pub app_port: Option<u16>,
    /// `--app-protocol`.
    pub app_protocol: Option<AppProtocol>,
    /// `--app-channel-address`.
    pub app_channel_address: Option<String>,
}

impl AppFlags {
    /// Whether no flag was given.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `app` (the config's, if any) with these flags over it; `None` when neither says anything.
    /// Without an id anywhere the app is `layotto`, the id the APIs use then.
    pub fn apply(&self, app: Option<AppSettings>) -> Option<AppSettings> {
        if self.is_empty() {
            return app;
        }
        let mut app = app.unwrap_or_else(|| AppSettings {
            app_id: "layotto".into(),
            grpc_callback_port: None,
            grpc_callback_host: LOOPBACK.into(),
            app_port: None,
            app_protocol: AppProtocol::default(),
            app_channel_address: LOOPBACK.into(),
        });
        if let Some(id) = &self.app_id {
            app.app_id.clone_from(id);
        }
        app.app_port = self.app_port.or(app.app_port);
        app.app_protocol = self.app_protocol.unwrap_or(app.app_protocol);
        if let Some(address) = &self.app_channel_address {
            app.app_channel_address.clone_from(address);
        }
        Some(app)
    }
}

/// LayOtto's `app` block, with daprd's app-channel settings beside LayOtto's.
#[derive(Deserialize)]
struct AppConfig {
    app_id: String,
    grpc_callback_port: Option<u16>,
    grpc_callback_host: Option<String>,
    app_port: Option<u16>,
    app_protocol: Option<AppProtocol>,
    app_channel_address: Option<String>,
}

impl AppSettings {
    /// The app block at `path`, recording problems in `findings`.
    pub fn decode(value: &Value, path: &str, findings: &mut Findings) -> Option<Self> {
        let app: AppConfig = findings.decode(value, path, &[])?;
        let host = |host: Option<String>| {
            host.filter(|host| !host.trim().is_empty())
                .unwrap_or_else(|| LOOPBACK.into())
        };
        Some(Self {
            app_id: app.app_id,
            grpc_callback_port: app.grpc_callback_port,
            grpc_callback_host: host(app.grpc_callback_host),
            app_port: app.app_port,
            app_protocol: app.app_protocol.unwrap_or_default(),
            app_channel_address: host(app.app_channel_address),
        })
    }
}

/// One subscription the app asked for.
struct AppSubscription {
    pubsub: String,
    topic: String,
    /// Where its events go: Dapr's routes (HTTP paths, or the gRPC event's `path`); one empty
    /// path for LayOtto's callback.
    routes: routing::Routes,
    /// Dapr's `deadLetterTopic`: where the events the app does not take are published.
    dead_letter_topic: Option<String>,
    /// Dapr's `bulkSubscribe`, when enabled: events go to the app in batches.
    bulk: Option<Bulk>,
    /// Dapr's `rawPayload` metadata: the app gets each event as a raw payload, the bytes the
    /// broker holds for it wrapped as daprd's `FromRawPayload` wraps them.
    raw_payload: bool,
}

/// daprd's `type` of a bulk delivery.
const BULK_EVENT_TYPE: &str = "com.dapr.event.sent.bulk";

/// How a bulk subscription batches its events (daprd's `bulkSubscribe`): a batch is sent when
/// it holds `max_messages` events or `max_await` after its first one, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bulk {
    max_messages: usize,
    max_await: Duration,
}

impl Bulk {
    /// daprd's defaults for what the app leaves out (zero or less): 100 messages, 1 s.
    fn new(max_messages: i64, max_await_ms: i64) -> Self {
        let max_messages = usize::try_from(max_messages).ok().filter(|&n| n > 0);
        let max_await_ms = u64::try_from(max_await_ms).ok().filter(|&ms| ms > 0);
        Self {
            max_messages: max_messages.unwrap_or(100),
            max_await: Duration::from_millis(max_await_ms.unwrap_or(1000)),
        }
    }
}

/// What the app asked to be subscribed to, as a channel reads it.
enum Listed {
    /// The subscriptions (possibly none).
    Subscriptions(Vec<AppSubscription>),
    /// The app did not answer (yet): ask again.
    NoAnswer(String),
}

/// One way to reach the app: how to ask for its subscriptions and how to deliver one event.
#[async_trait]
trait AppChannel: fmt::Display + Send + Sync + 'static {
    /// Asks the app for its subscriptions.
    async fn subscriptions(&self) -> Listed;
    /// One attempt to deliver `event` to the app at `route`: its answer, or why it failed (a
    /// failure is retried).
    async fn deliver(&self, event: &TopicEventRequest, route: &str) -> Answer;
    /// One attempt to deliver `events` to the app at `route` together (Dapr's bulk subscribe):
    /// each one's answer, in order, or why the whole attempt failed. A channel without a bulk
    /// form delivers them one by one.
    async fn deliver_bulk(
        &self,
        events: &[&TopicEventRequest],
        route: &str,
    ) -> Result<Vec<Answer>, String> {
        let mut answers = Vec::with_capacity(events.len());
        for event in events {
            answers.push(self.deliver(event, route).await);
        }
        Ok(answers)
    }
}

/// The connection to the app's Dapr channel (daprd's `--app-port`), made once per process:
/// the invocations of the app's own id and the events delivered to it share it, as they share
/// daprd's one app channel.
pub struct AppConnection(Connection);

/// What an [`AppConnection`] is, by the app's protocol.
enum Connection {
    /// `app_protocol` `http`: the client (its connection pool) and the app's base URL.
    Http {
        client: Box<HttpClient>,
        base: String,
    },
    /// `app_protocol` `grpc`: the channel to its `AppCallback` server, and the pool its calls
    /// run on.
    Grpc {
        server: Arc<LazyChannel>,
        backend: BackendHandle,
    },
}

impl AppConnection {
    /// `app`'s connection; `None` when it has no app port.
    pub(crate) fn new(
        app: &AppSettings,
        backend: &BackendHandle,
    ) -> Result<Option<Self>, ApiError> {
        let Some(port) = app.app_port else {
            return Ok(None);
        };
        let host = &app.app_channel_address;
        Ok(Some(Self(match app.app_protocol {
            AppProtocol::Http => Connection::Http {
                client: Box::new(
                    HttpClient::new(
                        &format!("app {}", app.app_id),
                        http_app::APP_TIMEOUT,
                        backend,
                    )
                    .map_err(|err| ApiError::internal_because("the app's HTTP client", err))?,
                ),
                base: format!("http://{host}:{port}"),
            },
            AppProtocol::Grpc => Connection::Grpc {
                server: Arc::new(LazyChannel::new(host, port)?),
                backend: backend.clone(),
            },
        })))
    }

    /// The invoker of the app's own id `app_id` over this connection.
    pub(crate) fn invoker(&self, app_id: &str) -> Arc<dyn Invoker> {
        match &self.0 {
            Connection::Http { client, base } => invoke::app_channel(app_id, base, client),
            Connection::Grpc { server, backend } => Arc::new(dapr_grpc::GrpcAppInvoker::new(
                app_id,
                server.clone(),
                backend,
            )),
        }
    }

    /// The channel that delivers the app's events over this connection.
    fn delivery(&self, app_id: &str) -> Arc<dyn AppChannel> {
        match &self.0 {
            Connection::Http { client, base } => Arc::new(http_app::HttpApp::new(
                app_id,
                base.clone(),
                (**client).clone(),
            )),
            Connection::Grpc { server, .. } => {
                Arc::new(dapr_grpc::DaprCallback::new(server.clone()))
            }
        }
    }
}

/// Starts delivering to each of the app's channels it has (Dapr's over `connection`, made with
/// [`AppConnection::new`]), recording what is delivered in `active`.
pub fn start(
    app: &AppSettings,
    connection: Option<&AppConnection>,
    brokers: &Block<dyn PubSub>,
    backend: &BackendHandle,
    active: &Arc<AppSubscriptions>,
) -> Result<(), ApiError> {
    let mut channels: Vec<Arc<dyn AppChannel>> = Vec::new();
    if let Some(port) = app.grpc_callback_port {
        let server = LazyChannel::new(&app.grpc_callback_host, port)?;
        channels.push(Arc::new(layotto::LayOttoCallback::new(server)));
    }
    if let Some(connection) = connection {
        channels.push(connection.delivery(&app.app_id));
    }
    let brokers: Vec<(String, Arc<dyn PubSub>)> = brokers
        .iter()
        .map(|(name, broker)| (name.to_owned(), broker.clone()))
        .collect();
    for channel in channels {
        backend.spawn(follow(
            channel,
            brokers.clone(),
            backend.clone(),
            active.clone(),
        ))?;
    }
    Ok(())
}

/// Asks the app behind `channel` for its subscriptions (until it answers) and starts
/// delivering each one's events.
async fn follow(
    channel: Arc<dyn AppChannel>,
    brokers: Vec<(String, Arc<dyn PubSub>)>,
    backend: BackendHandle,
    active: Arc<AppSubscriptions>,
) {
    let mut warned = false;
    let subscriptions = loop {
        match channel.subscriptions().await {
            Listed::Subscriptions(subscriptions) => break subscriptions,
            Listed::NoAnswer(why) if !warned => {
                warn!(app = %channel, "the app does not answer yet ({why}); asking again every {APP_RETRY:?}");
                warned = true;
            }
            Listed::NoAnswer(why) => debug!(app = %channel, "the app does not answer yet: {why}"),
        }
        tokio::time::sleep(APP_RETRY).await;
    };
    if subscriptions.is_empty() {
        info!(app = %channel, "the app subscribes to no topic");
    }
    for subscription in subscriptions {
        let Some((_, broker)) = brokers
            .iter()
            .find(|(name, _)| *name == subscription.pubsub)
        else {
            warn!(app = %channel, pubsub = %subscription.pubsub, "the app subscribes to a pub/sub that is not configured");
            continue;
        };
        match broker.subscribe(&subscription.topic).await {
            Ok(events) => {
                info!(app = %channel, pubsub = %subscription.pubsub, topic = %subscription.topic, routes = %subscription.routes.describe(), "delivering to the app");
                let rules = subscription.routes.listed();
                let dead_letter_topic = subscription.dead_letter_topic.clone().unwrap_or_default();
                let dead_letter = subscription
                    .dead_letter_topic
                    .map(|topic| DeadLetter::new(broker.clone(), topic));
                let events = Deliveries::new(events, subscription.raw_payload);
                let delivered = match subscription.bulk {
                    None => backend.spawn(forward(
                        events,
                        channel.clone(),
                        subscription.routes,
                        dead_letter,
                    )),
                    Some(bulk) => backend.spawn(forward_bulk(
                        events,
                        channel.clone(),
                        (subscription.routes, bulk),
                        dead_letter,
                    )),
                };
                match delivered {
                    Ok(()) => active.add(ActiveAppSubscription {
                        pubsub: subscription.pubsub,
                        topic: subscription.topic,
                        rules,
                        dead_letter_topic,
                    }),
                    Err(err) => {
                        warn!(app = %channel, topic = %subscription.topic, "cannot deliver: {}", chain(&err));
                    }
                }
            }
            Err(err) => {
                warn!(app = %channel, topic = %subscription.topic, "cannot subscribe: {}", chain(&err));
            }
        }
    }
}

/// Hands each event of one subscription to the app at the path `routes` choose for it, in
/// order: the next one only once this one is finished. An event the app does not take (no rule
/// matches it, its route cannot be chosen, or its delivery ended other than SUCCESS) goes to
/// `dead_letter` when there is one, as daprd moves it, and is finished once the broker took it
/// (left unacknowledged when it did not); without one, an unmatched event is skipped (as daprd
/// skips it) and the others are dropped (logged).
async fn forward(
    mut events: Deliveries,
    channel: Arc<dyn AppChannel>,
    routes: routing::Routes,
    dead_letter: Option<DeadLetter>,
) {
    while let Some(delivery) = events.recv().await {
        let Some((route, delivery)) =
            routed(&routes, delivery, &*channel, dead_letter.as_ref()).await
        else {
            continue;
        };
        let mut retries = Retries::default();
        let status = loop {
            let answer = channel.deliver(&delivery.event, route).await;
            if let Err(why) = &answer {
                debug!(app = %channel, id = %delivery.event.id, "delivery failed: {why}");
            }
            if let Some(status) = retries.settle(&answer, tokio::time::sleep).await {
                break status;
            }
        };
        if status == TopicEventResponseStatus::Success {
            delivery.finish();
        } else {
            warn!(app = %channel, id = %delivery.event.id, topic = %delivery.event.topic, ?status, "the app did not take the event");
            DeadLetter::give_up(dead_letter.as_ref(), delivery).await;
        }
    }
}

/// `delivery` with the path `routes` choose for it; `None` once an event no rule matches, or
/// whose route cannot be chosen (logged), has been given up.
async fn routed<'r>(
    routes: &'r routing::Routes,
    delivery: Delivery,
    channel: &dyn AppChannel,
    dead_letter: Option<&DeadLetter>,
) -> Option<(&'r str, Delivery)> {
    match routes.route_of(&delivery.event) {
        Ok(Some(route)) => return Some((route, delivery)),
        Ok(None) => {
            debug!(app = %channel, id = %delivery.event.id, topic = %delivery.event.topic, "no route matches the event: not delivered");
        }
        Err(why) => {
            warn!(app = %channel, id = %delivery.event.id, topic = %delivery.event.topic, "event not delivered: {why}");
        }
    }
    DeadLetter::give_up(dead_letter, delivery).await;
    None
}

/// Each event's answer in a bulk delivery's `statuses` (entry id → status, an event's id being
/// its entry id), read by `read`; an event the app gave no status fails.
fn answers_by_entry<S>(
    events: &[&TopicEventRequest],
    statuses: impl IntoIterator<Item = (String, S)>,
    read: impl Fn(&S) -> Answer,
) -> Vec<Answer> {
    let statuses: std::collections::HashMap<String, S> = statuses.into_iter().collect();
    events
        .iter()
        .map(|event| match statuses.get(&event.id) {
            Some(status) => read(status),
            None => Err(format!("no status for entry {}", event.id)),
        })
        .collect()
}

/// [`forward`] for a bulk subscription: events are gathered into batches as `bulk` says, each
/// batch split by route (in the order the routes first come), and each part delivered with
/// [`deliver_part`].
async fn forward_bulk(
    mut events: Deliveries,
    channel: Arc<dyn AppChannel>,
    (routes, bulk): (routing::Routes, Bulk),
    dead_letter: Option<DeadLetter>,
) {
    while let Some(first) = events.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + bulk.max_await;
        while batch.len() < bulk.max_messages {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(delivery)) => batch.push(delivery),
                Ok(None) | Err(_) => break,
            }
        }
        let mut parts: Vec<(&str, Vec<Delivery>)> = Vec::new();
        for delivery in batch {
            let Some((route, delivery)) =
                routed(&routes, delivery, &*channel, dead_letter.as_ref()).await
            else {
                continue;
            };
            match parts.iter_mut().find(|(path, _)| *path == route) {
                Some((_, part)) => part.push(delivery),
                None => parts.push((route, vec![delivery])),
            }
        }
        for (route, part) in parts {
            deliver_part(&*channel, route, part, dead_letter.as_ref()).await;
        }
    }
}

/// Delivers `pending` (one route's part of a batch) in bulk attempts until each event is
/// taken or given up: SUCCESS finishes it, DROP gives it up, RETRY and failed attempts send it
/// again with the others left, bounded by one [`Retries`] for the part.
async fn deliver_part(
    channel: &dyn AppChannel,
    route: &str,
    mut pending: Vec<Delivery>,
    dead_letter: Option<&DeadLetter>,
) {
    let mut retries = Retries::default();
    while !pending.is_empty() {
        let answers = {
            let events: Vec<&TopicEventRequest> = pending.iter().map(|d| &d.event).collect();
            match channel.deliver_bulk(&events, route).await {
                Ok(answers) if answers.len() == events.len() => answers,
                Ok(_) => {
                    vec![Err("the app's answer does not match the batch".into()); events.len()]
                }
                Err(why) => {
                    debug!(app = %channel, route, "bulk delivery failed: {why}");
                    vec![Err(why); events.len()]
                }
            }
        };
        let mut again = Vec::new();
        for (delivery, answer) in pending.into_iter().zip(answers) {
            match answer {
                Ok(TopicEventResponseStatus::Success) => delivery.finish(),
                Ok(TopicEventResponseStatus::Drop) => {
                    warn!(app = %channel, id = %delivery.event.id, topic = %delivery.event.topic, "the app dropped the event");
                    DeadLetter::give_up(dead_letter, delivery).await;
                }
                _ => again.push(delivery),
            }
        }
        let retry: Answer = Ok(TopicEventResponseStatus::Retry);
        if !again.is_empty() && retries.settle(&retry, tokio::time::sleep).await.is_some() {
            for delivery in again {
                warn!(app = %channel, id = %delivery.event.id, topic = %delivery.event.topic, "the app did not take the event");
                DeadLetter::give_up(dead_letter, delivery).await;
            }
            return;
        }
        pending = again;
    }
}

/// The routes of a Dapr subscription of `topic` (logged); `None` (logged) when its rules do not
/// compile or give no route, so the subscription is not made and the broker keeps its events.
fn subscription_routes<'a>(
    topic: &str,
    rules: impl IntoIterator<Item = (&'a str, &'a str)>,
    default: Option<&str>,
) -> Option<routing::Routes> {
    match routing::Routes::compile(rules, default) {
        Ok(routes) if routes.is_empty() => {
            warn!(topic, "the subscription has no route: not subscribed");
            None
        }
        Ok(routes) => {
            info!(topic, routes = %routes.describe(), "the app subscribes");
            Some(routes)
        }
        Err(why) => {
            warn!(
                topic,
                "the subscription's routing rules are refused ({why}): not subscribed"
            );
            None
        }
    }
}

/// A gRPC channel to an app's server, made on first use (on the backend pool, whose runtime
/// tonic's channel needs).
struct LazyChannel {
    endpoint: Endpoint,
    channel: OnceLock<Channel>,
    address: String,
}

impl LazyChannel {
    fn new(host: &str, port: u16) -> Result<Self, ApiError> {
        let address = format!("{host}:{port}");
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|err| ApiError::InvalidArgument(format!("app address {address}: {err}")))?
            .tcp_nodelay(true);
        Ok(Self {
            endpoint,
            channel: OnceLock::new(),
            address,
        })
    }

    /// The channel (cheap to clone; connects, and reconnects, when called).
    fn get(&self) -> Channel {
        self.channel
            .get_or_init(|| self.endpoint.connect_lazy())
            .clone()
    }
}

impl fmt::Display for LazyChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(value: Value) -> (Option<AppSettings>, Vec<String>) {
        let mut findings = Findings::default();
        let app = AppSettings::decode(&value, "app", &mut findings);
        let errors = findings.errors.iter().map(ToString::to_string).collect();
        (app, errors)
    }

    #[test]
    fn the_app_block_takes_daprs_channel_beside_layottos() {
        let (app, errors) = decode(serde_json::json!({"app_id": "a", "grpc_callback_port": 9999}));
        assert!(errors.is_empty(), "{errors:?}");
        let app = app.unwrap();
        assert_eq!(
            (
                app.app_port,
                app.app_protocol,
                app.app_channel_address.as_str()
            ),
            (None, AppProtocol::Http, LOOPBACK)
        );
        let (app, _) = decode(serde_json::json!({"app_id": "a", "app_port": 3000,
            "app_protocol": "grpc", "app_channel_address": "10.0.0.5"}));
        let app = app.unwrap();
        assert_eq!(
            (
                app.app_port,
                app.app_protocol,
                app.app_channel_address.as_str()
            ),
            (Some(3000), AppProtocol::Grpc, "10.0.0.5")
        );
        let (_, errors) = decode(serde_json::json!({"app_id": "a", "app_protocol": "https"}));
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("app.app_protocol: unknown variant `https`"),
            "{errors:?}"
        );
        let (_, errors) = decode(serde_json::json!({"app_id": "a", "app_port": 70000}));
        assert!(errors[0].starts_with("app.app_port: "), "{errors:?}");
    }

    #[test]
    fn flags_override_the_config() {
        let (config, _) = decode(serde_json::json!({"app_id": "a", "app_port": 3000}));
        assert_eq!(AppFlags::default().apply(config.clone()), config);
        assert_eq!(AppFlags::default().apply(None), None);
        let flags = AppFlags {
            app_id: Some("b".into()),
            app_protocol: Some(AppProtocol::Grpc),
            ..AppFlags::default()
        };
        let app = flags.apply(config).unwrap();
        assert_eq!(
            (app.app_id.as_str(), app.app_port, app.app_protocol),
            ("b", Some(3000), AppProtocol::Grpc)
        );
        let port_only = AppFlags {
            app_port: Some(6000),
            ..AppFlags::default()
        };
        let app = port_only.apply(None).unwrap();
        assert_eq!(
            (app.app_id.as_str(), app.app_port, app.app_protocol),
            ("layotto", Some(6000), AppProtocol::Http)
        );
        assert_eq!(app.grpc_callback_port, None);
    }

    #[test]
    fn app_protocols_are_daprs_names() {
        assert_eq!(AppProtocol::parse("GRPC"), Ok(AppProtocol::Grpc));
        assert_eq!(AppProtocol::parse("http"), Ok(AppProtocol::Http));
        assert!(
            AppProtocol::parse("grpcs")
                .unwrap_err()
                .contains("not supported")
        );
        assert!(AppProtocol::parse("ftp").unwrap_err().contains("unknown"));
    }

    #[test]
    fn bulk_settings_take_daprs_defaults_for_what_is_left_out() {
        let defaults = Bulk {
            max_messages: 100,
            max_await: Duration::from_secs(1),
        };
        assert_eq!(Bulk::new(0, 0), defaults);
        assert_eq!(Bulk::new(-1, -5), defaults);
        assert_eq!(
            Bulk::new(3, 40),
            Bulk {
                max_messages: 3,
                max_await: Duration::from_millis(40)
            }
        );
    }

    #[test]
    fn a_subscription_is_made_only_with_a_route_and_rules_that_compile() {
        let describe = |routes: Option<routing::Routes>| routes.map(|r| r.describe());
        assert_eq!(
            describe(subscription_routes("t", [], Some("/d"))),
            Some("/d".into())
        );
        assert_eq!(
            describe(subscription_routes(
                "t",
                [("event.type == 'x'", "/x")],
                None
            )),
            Some("/x".into())
        );
        assert!(subscription_routes("t", [], None).is_none());
        assert!(subscription_routes("t", [("event.type ==", "/x")], Some("/d")).is_none());
    }
}
