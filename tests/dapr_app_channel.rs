//! Dapr's app channel end to end (daprd's `--app-port`/`--app-protocol`): layotto-rs in the test
//! process on `in-memory` and a real `redis`, events published with Dapr's `PublishEvent`, and
//! the test's own apps on real sockets — a tonic server of Dapr's `AppCallback` (`app_protocol`
//! `grpc`: `ListTopicSubscriptions`, then `OnTopicEvent` in Dapr's shape with the route as
//! `path`) and a hyper HTTP server (`http`, Dapr's default: `GET /dapr/subscribe`, CloudEvents
//! POSTed to each route) — with SUCCESS / RETRY / DROP, 404 and failures honoured, an app that
//! starts after layotto-rs still subscribed, and redis entries acknowledged once finished; and
//! Dapr HTTP configuration pushes going to an HTTP app channel's port.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use common::{redis::RedisServer, *};
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use layotto_proto::dapr::common::{InvokeRequest, InvokeResponse};
use layotto_proto::dapr::runtime::{
    BulkSubscribeConfig, GetMetadataRequest, InvokeServiceRequest, JobEventRequest,
    JobEventResponse, ListTopicSubscriptionsResponse, PublishEventRequest, PubsubSubscriptionType,
    TopicEventBulkRequest, TopicEventBulkResponse, TopicEventBulkResponseEntry, TopicEventRequest,
    TopicEventResponse, TopicRoutes, TopicRule, TopicSubscription,
    app_callback_alpha_server::{AppCallbackAlpha, AppCallbackAlphaServer},
    app_callback_server::{AppCallback, AppCallbackServer},
    dapr_client::DaprClient,
    topic_event_bulk_request_entry::Event,
    topic_event_response::TopicEventResponseStatus,
};
use prost_types::value::Kind;
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::mpsc};
use tonic::transport::Channel;

const PUBSUB: &str = "ps";
const APP_ID: &str = "app1";
/// The CEL rule of the gRPC app's `orders` subscription.
const ROUTED_RULE: &str = r#"event.data.text == "routed" && event.type == "com.dapr.event.sent""#;
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// The brokers every test runs on; the redis server lives as long as the returned value.
fn brokers() -> Vec<(Value, Option<RedisServer>)> {
    let redis = RedisServer::start();
    vec![
        (json!({"type": "in-memory"}), None),
        (
            json!({"type": "redis", "metadata": {"redisHost": redis.endpoint(), "consumerID": "g1"}}),
            Some(redis),
        ),
    ]
}

/// layotto-rs with `broker` as `ps` and the app's Dapr channel at `app_port` over `protocol`.
fn start_layotto(broker: &Value, app_port: u16, protocol: &str) -> Layotto {
    Layotto::start(&grpc_config(
        json!({
            "pub_subs": {PUBSUB: broker},
            "app": {"app_id": APP_ID, "app_port": app_port, "app_protocol": protocol}
        }),
        json!({}),
    ))
}

async fn dapr_client(address: SocketAddr) -> DaprClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to layotto");
    DaprClient::new(channel)
}

/// Publishes `data` as JSON on `topic`, with a W3C trace parent in the metadata.
async fn publish(client: &mut DaprClient<Channel>, topic: &str, data: &str) {
    client
        .publish_event(PublishEventRequest {
            pubsub_name: PUBSUB.into(),
            topic: topic.into(),
            data: Bytes::from(json!({"text": data}).to_string()),
            data_content_type: "application/json".into(),
            metadata: HashMap::from([("traceparent".into(), TRACEPARENT.into())]),
        })
        .await
        .unwrap();
}

/// Asserts what Dapr's `GetMetadata` says of the app channel: its port and protocol, and
/// `topic` delivered (a PROGRAMMATIC subscription) by `rules` (`match`, path), with its
/// dead-letter topic.
async fn assert_metadata_lists(
    client: &mut DaprClient<Channel>,
    (port, protocol): (u16, &str),
    (topic, dead_letter_topic): (&str, &str),
    rules: &[(&str, &str)],
) {
    let metadata = client
        .get_metadata(GetMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    let app = metadata.app_connection_properties.expect("the app channel");
    assert_eq!(
        (
            app.port,
            app.protocol.as_str(),
            app.channel_address.as_str()
        ),
        (i32::from(port), protocol, "127.0.0.1")
    );
    let subscription = metadata
        .subscriptions
        .iter()
        .find(|s| s.topic == topic)
        .unwrap_or_else(|| panic!("{topic} is not listed: {:?}", metadata.subscriptions));
    assert_eq!(subscription.pubsub_name, PUBSUB);
    assert_eq!(subscription.r#type(), PubsubSubscriptionType::Programmatic);
    assert_eq!(subscription.dead_letter_topic, dead_letter_topic);
    let listed: Vec<(&str, &str)> = subscription
        .rules
        .iter()
        .flat_map(|rules| {
            rules
                .rules
                .iter()
                .map(|rule| (rule.r#match.as_str(), rule.path.as_str()))
        })
        .collect();
    assert_eq!(listed, rules);
}

/// What an app saw of one delivery attempt: the event's text and id, and the whole event.
#[derive(Debug, Clone)]
struct Seen<E> {
    text: String,
    id: String,
    event: E,
}

/// Waits until events published on `topic` now reach the app: publishes `probe` events until
/// one is delivered (an event published before the subscription is in place is not).
async fn wait_until_subscribed<E>(
    publisher: &mut DaprClient<Channel>,
    topic: &str,
    seen: &mut mpsc::UnboundedReceiver<Seen<E>>,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        publish(publisher, topic, "probe").await;
        // Bounded polling of the app's subscription, which the test cannot be told of.
        if let Ok(delivery) = tokio::time::timeout(Duration::from_millis(200), seen.recv()).await {
            assert_eq!(delivery.unwrap().text, "probe");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no event reached the app"
        );
    }
}

/// The next delivery attempt that is not a probe.
async fn next<E>(seen: &mut mpsc::UnboundedReceiver<Seen<E>>) -> Seen<E> {
    loop {
        let delivery = tokio::time::timeout(WAIT, seen.recv())
            .await
            .expect("a delivery in time")
            .expect("the app is running");
        if delivery.text != "probe" {
            return delivery;
        }
    }
}

/// Waits until group `g1` has no unacknowledged entry of `topic` (bounded polling of redis).
fn wait_until_acknowledged(redis: &RedisServer, topic: &str) {
    wait_until(&format!("every entry of {topic} acknowledged"), || {
        let summary: ::redis::streams::StreamPendingReply = ::redis::cmd("XPENDING")
            .arg(topic)
            .arg("g1")
            .query(&mut redis.client())
            .unwrap();
        summary.count() == 0
    });
}

/// How the test's apps answer each attempt, by the event's text: `poison` is dropped,
/// `retry-me` is retried once, `fail` fails once (an error status), anything else succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Success,
    Retry,
    Drop,
    Fail,
}

/// The verdict on an attempt at `text`, the `previous` attempts of its id having been made.
fn verdict(text: &str, previous: usize) -> Verdict {
    match (text, previous) {
        ("poison", _) => Verdict::Drop,
        ("retry-me", 0) => Verdict::Retry,
        ("fail", 0) => Verdict::Fail,
        _ => Verdict::Success,
    }
}

/// Every attempt an app saw, by event id, to count earlier attempts.
#[derive(Default, Clone)]
struct Attempts(Arc<Mutex<HashMap<String, usize>>>);

impl Attempts {
    /// Records an attempt at `id`; answers how many came before it.
    fn record(&self, id: &str) -> usize {
        let mut attempts = self.0.lock().unwrap();
        let count = attempts.entry(id.to_owned()).or_default();
        *count += 1;
        *count - 1
    }
}

/// The test's Dapr gRPC app: subscribes to `orders` (a CEL rule routing `{"text": "routed"}` to
/// `/routed`, the rest to `/orders`; dead letters to `orders-dead`), `plain` (no route) and
/// `orders-dead` (whose events it sends to `dead`), and `bulk-orders` in bulk (batches of at
/// most [`BULK_MAX`], answered entry by entry by [`verdict`] and sent to `batches`).
#[derive(Clone)]
struct GrpcApp {
    attempts: Attempts,
    seen: mpsc::UnboundedSender<Seen<(TopicEventRequest, Option<String>)>>,
    dead: mpsc::UnboundedSender<TopicEventRequest>,
    batches: mpsc::UnboundedSender<TopicEventBulkRequest>,
}

/// The gRPC app's bulk topic and its largest batch.
const BULK_TOPIC: &str = "bulk-orders";
const BULK_MAX: usize = 3;

#[tonic::async_trait]
impl AppCallbackAlpha for GrpcApp {
    async fn on_bulk_topic_event_alpha1(
        &self,
        request: tonic::Request<TopicEventBulkRequest>,
    ) -> Result<tonic::Response<TopicEventBulkResponse>, tonic::Status> {
        let batch = request.into_inner();
        let statuses = batch
            .entries
            .iter()
            .map(|entry| {
                let Some(Event::CloudEvent(event)) = &entry.event else {
                    panic!("not a CloudEvent entry: {entry:?}");
                };
                let data: Value = serde_json::from_slice(&event.data).unwrap();
                let previous = self.attempts.record(&entry.entry_id);
                let status = match verdict(data["text"].as_str().unwrap(), previous) {
                    Verdict::Success => TopicEventResponseStatus::Success,
                    Verdict::Retry | Verdict::Fail => TopicEventResponseStatus::Retry,
                    Verdict::Drop => TopicEventResponseStatus::Drop,
                };
                TopicEventBulkResponseEntry {
                    entry_id: entry.entry_id.clone(),
                    status: status as i32,
                }
            })
            .collect();
        let _ = self.batches.send(batch);
        Ok(tonic::Response::new(TopicEventBulkResponse { statuses }))
    }

    async fn on_job_event_alpha1(
        &self,
        _: tonic::Request<JobEventRequest>,
    ) -> Result<tonic::Response<JobEventResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("no jobs"))
    }
}

/// The dead-letter topic of the gRPC app's `orders`.
const DEAD_LETTERS: &str = "orders-dead";
/// The gRPC app's `rawPayload` subscription.
const RAW_TOPIC: &str = "raw-orders";

#[tonic::async_trait]
impl AppCallback for GrpcApp {
    async fn list_topic_subscriptions(
        &self,
        _: tonic::Request<()>,
    ) -> Result<tonic::Response<ListTopicSubscriptionsResponse>, tonic::Status> {
        let orders = TopicSubscription {
            pubsub_name: PUBSUB.into(),
            topic: "orders".into(),
            routes: Some(TopicRoutes {
                rules: vec![TopicRule {
                    r#match: ROUTED_RULE.into(),
                    path: "/routed".into(),
                }],
                default: "/orders".into(),
            }),
            dead_letter_topic: DEAD_LETTERS.into(),
            ..Default::default()
        };
        // A subscription of `topic` whose events all go to `path`.
        let to = |topic: &str, path: &str| TopicSubscription {
            pubsub_name: PUBSUB.into(),
            topic: topic.into(),
            routes: Some(TopicRoutes {
                rules: Vec::new(),
                default: path.into(),
            }),
            ..Default::default()
        };
        let dead = to(DEAD_LETTERS, "/dead");
        let plain = TopicSubscription {
            pubsub_name: PUBSUB.into(),
            topic: "plain".into(),
            ..Default::default()
        };
        let raw = TopicSubscription {
            metadata: HashMap::from([("rawPayload".into(), "true".into())]),
            ..to(RAW_TOPIC, "/raw")
        };
        let bulk = TopicSubscription {
            bulk_subscribe: Some(BulkSubscribeConfig {
                enabled: true,
                max_messages_count: BULK_MAX as i32,
                max_await_duration_ms: 1000,
            }),
            ..to(BULK_TOPIC, "/bulk")
        };
        Ok(tonic::Response::new(ListTopicSubscriptionsResponse {
            // The dead-letter and bulk topics first: they are followed before `orders` is.
            subscriptions: vec![dead, bulk, orders, plain, raw],
        }))
    }

    /// `greet` answers the verb, the query, the body and two of the metadata it got; `missing`
    /// fails with NOT_FOUND.
    async fn on_invoke(
        &self,
        request: tonic::Request<InvokeRequest>,
    ) -> Result<tonic::Response<InvokeResponse>, tonic::Status> {
        let header = |name: &str| {
            request
                .metadata()
                .get(name)
                .map(|value| value.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        let (tenant, caller) = (header("x-tenant"), header("dapr-caller-app-id"));
        let message = request.into_inner();
        if message.method == "missing" {
            return Err(tonic::Status::not_found("no such order"));
        }
        let extension = message.http_extension.unwrap_or_default();
        let body = String::from_utf8(message.data.unwrap_or_default().value).unwrap();
        let answer = format!(
            "{} {} {} {body} ({}) tenant={tenant} caller={caller}",
            message.method, extension.verb, extension.querystring, message.content_type
        );
        Ok(tonic::Response::new(InvokeResponse {
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: answer.into_bytes(),
            }),
            content_type: "text/plain".into(),
        }))
    }

    async fn on_topic_event(
        &self,
        request: tonic::Request<TopicEventRequest>,
    ) -> Result<tonic::Response<TopicEventResponse>, tonic::Status> {
        let pubsub_header = request
            .metadata()
            .get("pubsubname")
            .map(|value| value.to_str().unwrap().to_owned());
        let event = request.into_inner();
        if event.topic == DEAD_LETTERS {
            let _ = self.dead.send(event);
            return Ok(tonic::Response::new(TopicEventResponse {
                status: TopicEventResponseStatus::Success as i32,
            }));
        }
        let data: Value = serde_json::from_slice(&event.data).unwrap();
        // A raw-payload subscription gets what the broker holds: the published CloudEvent.
        let text = match event.topic.as_str() {
            RAW_TOPIC => &data["data"]["text"],
            _ => &data["text"],
        };
        let text = text.as_str().unwrap().to_owned();
        let previous = self.attempts.record(&event.id);
        let _ = self.seen.send(Seen {
            text: text.clone(),
            id: event.id.clone(),
            event: (event, pubsub_header),
        });
        let status = match verdict(&text, previous) {
            Verdict::Success => TopicEventResponseStatus::Success,
            Verdict::Retry => TopicEventResponseStatus::Retry,
            Verdict::Drop => TopicEventResponseStatus::Drop,
            Verdict::Fail => return Err(tonic::Status::internal("the app failed")),
        };
        Ok(tonic::Response::new(TopicEventResponse {
            status: status as i32,
        }))
    }
}

type GrpcSeen = mpsc::UnboundedReceiver<Seen<(TopicEventRequest, Option<String>)>>;
type DeadSeen = mpsc::UnboundedReceiver<TopicEventRequest>;
type BatchesSeen = mpsc::UnboundedReceiver<TopicEventBulkRequest>;

/// What the gRPC app sees: events, dead letters and bulk batches apart, and how many
/// connections it accepted.
struct GrpcAppSeen {
    seen: GrpcSeen,
    dead: DeadSeen,
    batches: BatchesSeen,
    connections: Arc<AtomicUsize>,
}

/// Serves the gRPC app on `listener`.
fn serve_grpc_app(listener: TcpListener) -> GrpcAppSeen {
    let (seen, received) = mpsc::unbounded_channel();
    let (dead, dead_letters) = mpsc::unbounded_channel();
    let (batches, batches_seen) = mpsc::unbounded_channel();
    let app = GrpcApp {
        attempts: Attempts::default(),
        seen,
        dead,
        batches,
    };
    let connections = Arc::new(AtomicUsize::new(0));
    let incoming = futures_util::stream::unfold(
        (listener, connections.clone()),
        |(listener, connections)| async move {
            let accepted = listener.accept().await.map(|(stream, _)| stream);
            connections.fetch_add(1, Ordering::SeqCst);
            Some((accepted, (listener, connections)))
        },
    );
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AppCallbackServer::new(app.clone()))
            .add_service(AppCallbackAlphaServer::new(app))
            .serve_with_incoming(incoming),
    );
    GrpcAppSeen {
        seen: received,
        dead: dead_letters,
        batches: batches_seen,
        connections,
    }
}

/// The gRPC app on a port of its own and layotto-rs on `broker` delivering to it: what the app
/// sees, its port, layotto-rs, and a Dapr client of layotto-rs.
async fn grpc_app_beside_layotto(
    broker: &Value,
) -> (GrpcAppSeen, u16, Layotto, DaprClient<Channel>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = serve_grpc_app(listener);
    let layotto = start_layotto(broker, port, "grpc");
    let publisher = dapr_client(layotto.address("grpc")).await;
    (app, port, layotto, publisher)
}

/// The string extension `key` of a Dapr event.
fn extension(event: &TopicEventRequest, key: &str) -> Option<String> {
    let value = event.extensions.as_ref()?.fields.get(key)?;
    match &value.kind {
        Some(Kind::StringValue(text)) => Some(text.clone()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dapr_grpc_app_gets_every_event_in_daprs_shape_with_retry_and_drop_honoured() {
    for (broker, redis) in brokers() {
        let kind = broker["type"].as_str().unwrap().to_owned();
        let (
            GrpcAppSeen {
                mut seen,
                mut dead,
                connections,
                ..
            },
            port,
            _layotto,
            mut publisher,
        ) = grpc_app_beside_layotto(&broker).await;
        wait_until_subscribed(&mut publisher, "orders", &mut seen).await;
        // Invoking the app's own id goes over the connection the events come on, as daprd's
        // one app channel.
        let invoked = publisher
            .invoke_service(InvokeServiceRequest {
                id: APP_ID.into(),
                message: Some(InvokeRequest {
                    method: "greet".into(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(invoked.data.is_some(), "{kind}");
        assert_eq!(connections.load(Ordering::SeqCst), 1, "{kind}");
        let rules = [(ROUTED_RULE, "/routed"), ("", "/orders")];
        assert_metadata_lists(
            &mut publisher,
            (port, "grpc"),
            ("orders", DEAD_LETTERS),
            &rules,
        )
        .await;

        publish(&mut publisher, "orders", "good").await;
        let good = next(&mut seen).await;
        let (event, pubsub_header) = &good.event;
        assert!(!event.id.is_empty(), "{kind}");
        assert_eq!(
            (event.source.as_str(), event.r#type.as_str()),
            (APP_ID, "com.dapr.event.sent"),
            "{kind}"
        );
        assert_eq!(
            (
                event.spec_version.as_str(),
                event.data_content_type.as_str()
            ),
            ("1.0", "application/json"),
            "{kind}"
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&event.data).unwrap(),
            json!({"text": "good"})
        );
        assert_eq!(
            (event.topic.as_str(), event.pubsub_name.as_str()),
            ("orders", PUBSUB),
            "{kind}"
        );
        assert_eq!(event.path, "/orders", "{kind}: the default route");
        for (key, value) in [
            ("traceparent", TRACEPARENT),
            ("traceid", TRACEPARENT),
            ("topic", "orders"),
            ("pubsubname", PUBSUB),
        ] {
            assert_eq!(
                extension(event, key).as_deref(),
                Some(value),
                "{kind}: {key}"
            );
        }
        assert!(extension(event, "time").unwrap().ends_with('Z'), "{kind}");
        assert_eq!(pubsub_header.as_deref(), Some(PUBSUB), "{kind}");

        // The CEL rule picks the route of the events it matches.
        publish(&mut publisher, "orders", "routed").await;
        let routed = next(&mut seen).await;
        assert_eq!(
            (routed.text.as_str(), routed.event.0.path.as_str()),
            ("routed", "/routed"),
            "{kind}"
        );

        // RETRY and a failed call are delivered again; DROP is not; order is kept.
        for text in ["retry-me", "fail", "poison", "marker"] {
            publish(&mut publisher, "orders", text).await;
        }
        let retried = next(&mut seen).await;
        let again = next(&mut seen).await;
        assert_eq!(retried.text, "retry-me", "{kind}");
        assert_eq!(again.id, retried.id, "{kind}: RETRY is redelivered");
        let failed = next(&mut seen).await;
        let again = next(&mut seen).await;
        assert_eq!(failed.text, "fail", "{kind}");
        assert_eq!(again.id, failed.id, "{kind}: a failed call is redelivered");
        let poison = next(&mut seen).await;
        assert_eq!(poison.text, "poison", "{kind}");
        assert_eq!(
            next(&mut seen).await.text,
            "marker",
            "{kind}: DROP is not redelivered"
        );
        // The dropped event moved to the dead-letter topic, where the app gets it once.
        let moved = tokio::time::timeout(WAIT, dead.recv())
            .await
            .expect("the dead letter arrives")
            .unwrap();
        assert_eq!(
            (moved.id.as_str(), moved.topic.as_str(), moved.path.as_str()),
            (poison.id.as_str(), DEAD_LETTERS, "/dead"),
            "{kind}"
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&moved.data).unwrap(),
            json!({"text": "poison"})
        );

        // A subscription without routes gets an empty path.
        wait_until_subscribed(&mut publisher, "plain", &mut seen).await;
        publish(&mut publisher, "plain", "unrouted").await;
        let unrouted = next(&mut seen).await;
        assert_eq!(
            (unrouted.text.as_str(), unrouted.event.0.path.as_str()),
            ("unrouted", ""),
            "{kind}"
        );
        // A rawPayload subscription gets the broker's bytes, the CloudEvent as published, as
        // daprd's FromRawPayload wraps them.
        wait_until_subscribed(&mut publisher, RAW_TOPIC, &mut seen).await;
        publish(&mut publisher, RAW_TOPIC, "raw").await;
        let raw = next(&mut seen).await;
        let (event, _) = &raw.event;
        assert_eq!(
            (
                event.data_content_type.as_str(),
                event.source.as_str(),
                event.r#type.as_str(),
                event.path.as_str()
            ),
            (
                "application/octet-stream",
                "Dapr",
                "com.dapr.event.sent",
                "/raw"
            ),
            "{kind}"
        );
        let published: Value = serde_json::from_slice(&event.data).unwrap();
        assert_eq!(
            (
                &published["data"],
                &published["topic"],
                &published["source"]
            ),
            (&json!({"text": "raw"}), &json!(RAW_TOPIC), &json!(APP_ID)),
            "{kind}: {published}"
        );
        assert_eq!(event.topic, RAW_TOPIC, "{kind}");
        let extensions = &event.extensions.as_ref().unwrap().fields;
        assert!(
            !extensions.contains_key("rawPayload"),
            "{kind}: {extensions:?}"
        );
        if let Some(redis) = &redis {
            wait_until_acknowledged(redis, "orders");
            wait_until_acknowledged(redis, "plain");
            wait_until_acknowledged(redis, RAW_TOPIC);
            wait_until_acknowledged(redis, DEAD_LETTERS);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dapr_grpc_apps_bulk_subscription_gets_batches_answered_entry_by_entry() {
    for (broker, redis) in brokers() {
        let kind = broker["type"].as_str().unwrap().to_owned();
        let (
            GrpcAppSeen {
                mut seen,
                mut batches,
                ..
            },
            _,
            _layotto,
            mut publisher,
        ) = grpc_app_beside_layotto(&broker).await;
        // `orders` is followed after the bulk topic: once it delivers, both are subscribed.
        wait_until_subscribed(&mut publisher, "orders", &mut seen).await;
        let texts = ["b1", "retry-me", "b3", "poison", "b5"];
        for text in texts {
            publish(&mut publisher, BULK_TOPIC, text).await;
        }
        // Every entry arrives in batches of at most BULK_MAX, in order; RETRY comes again,
        // SUCCESS and DROP do not.
        let mut attempts: Vec<String> = Vec::new();
        let mut largest = 0;
        while !(texts.iter().all(|text| attempts.iter().any(|a| a == text))
            && attempts.iter().filter(|a| *a == "retry-me").count() == 2)
        {
            let batch = tokio::time::timeout(WAIT, batches.recv())
                .await
                .expect("a batch")
                .unwrap();
            assert!(
                (1..=BULK_MAX).contains(&batch.entries.len()),
                "{kind}: {batch:?}"
            );
            largest = largest.max(batch.entries.len());
            assert_eq!(
                (batch.topic.as_str(), batch.pubsub_name.as_str()),
                (BULK_TOPIC, PUBSUB)
            );
            assert_eq!(
                (batch.path.as_str(), batch.r#type.as_str()),
                ("/bulk", "com.dapr.event.sent.bulk")
            );
            for entry in &batch.entries {
                let Some(Event::CloudEvent(event)) = &entry.event else {
                    panic!("{kind}: not a CloudEvent entry");
                };
                assert_eq!(entry.entry_id, event.id, "{kind}");
                let data: Value = serde_json::from_slice(&event.data).unwrap();
                attempts.push(data["text"].as_str().unwrap().to_owned());
            }
        }
        let firsts: Vec<&String> = attempts
            .iter()
            .enumerate()
            .filter(|(n, text)| !attempts[..*n].contains(text))
            .map(|(_, text)| text)
            .collect();
        assert_eq!(firsts, texts, "{kind}: in order");
        assert_eq!(attempts.len(), texts.len() + 1, "{kind}: {attempts:?}");
        // Events published together travel together.
        assert!(largest > 1, "{kind}: every batch held one event");
        if let Some(redis) = &redis {
            wait_until_acknowledged(redis, BULK_TOPIC);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dapr_grpc_app_that_starts_after_layotto_is_subscribed() {
    // The app's port, where nothing answers at first: layotto-rs's first call is cut off.
    let early = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = early.local_addr().unwrap().port();
    let layotto = start_layotto(&json!({"type": "in-memory"}), port, "grpc");
    let mut publisher = dapr_client(layotto.address("grpc")).await;
    let (cut, _) = tokio::time::timeout(WAIT, early.accept())
        .await
        .expect("layotto-rs calls the app")
        .unwrap();
    drop((cut, early));
    // The app starts now, after layotto-rs asked.
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let GrpcAppSeen { mut seen, .. } = serve_grpc_app(listener);
    wait_until_subscribed(&mut publisher, "orders", &mut seen).await;
    publish(&mut publisher, "orders", "after").await;
    assert_eq!(next(&mut seen).await.text, "after");
}

/// The test's HTTP app: `/dapr/subscribe` lists `bulk` (a bulk subscription at `/bulk`, every
/// entry answered SUCCESS and seen on its own), `orders` at `/orders` (v1alpha1's `route`) and
/// `gone` at `/gone` (v2alpha1's `routes.default`), which answers 404; `/orders` answers by
/// [`verdict`] — `{"status": "DROP"}`, `{"status": "RETRY"}`, 500, or 200 with an empty body;
/// `/greet` is a method to invoke, answering 201 with the verb, the query and the body.
#[derive(Clone)]
struct HttpApp {
    attempts: Attempts,
    seen: mpsc::UnboundedSender<Seen<HttpRequest>>,
}

/// A request the HTTP app got: its path, headers and JSON body.
type HttpRequest = (String, HashMap<String, String>, Value);

type HttpSeen = mpsc::UnboundedReceiver<Seen<HttpRequest>>;

impl HttpApp {
    async fn answer(self, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let path = request.uri().path().to_owned();
        let request_query = request.uri().query().map(str::to_owned);
        let method = request.method().clone();
        let headers: HashMap<String, String> = request
            .headers()
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
            .collect();
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let reply = |status: StatusCode, body: &str| {
            let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
            *response.status_mut() = status;
            Ok(response)
        };
        if method == hyper::Method::GET && path == "/dapr/subscribe" {
            assert_eq!(headers.get("dapr-app-id").map(String::as_str), Some(APP_ID));
            let subscriptions = json!([
                {"pubsubname": PUBSUB, "topic": "bulk", "routes": {"default": "/bulk"},
                 "bulkSubscribe": {"enabled": true, "maxMessagesCount": 2, "maxAwaitDurationMs": 300}},
                {"pubsubname": PUBSUB, "topic": "orders", "route": "/orders", "metadata": {}},
                {"pubsubname": PUBSUB, "topic": "gone", "routes": {"rules": [], "default": "/gone"}}
            ]);
            return reply(StatusCode::OK, &subscriptions.to_string());
        }
        if path == "/greet" {
            let query = request_query.unwrap_or_default();
            let text = String::from_utf8_lossy(&body);
            return reply(StatusCode::CREATED, &format!("{method} {query} {text}"));
        }
        assert_eq!(method, hyper::Method::POST, "{path}");
        if path == "/bulk" {
            let envelope: Value = serde_json::from_slice(&body).unwrap();
            let mut statuses = Vec::new();
            for entry in envelope["entries"].as_array().unwrap() {
                let id = entry["entryId"].as_str().unwrap().to_owned();
                statuses.push(json!({"entryId": id, "status": "SUCCESS"}));
                let _ = self.seen.send(Seen {
                    text: entry["event"]["data"]["text"].as_str().unwrap().to_owned(),
                    id,
                    event: (path.clone(), headers.clone(), envelope.clone()),
                });
            }
            return reply(StatusCode::OK, &json!({"statuses": statuses}).to_string());
        }
        let event: Value = serde_json::from_slice(&body).unwrap();
        let text = event["data"]["text"].as_str().unwrap().to_owned();
        let id = event["id"].as_str().unwrap().to_owned();
        let previous = self.attempts.record(&id);
        let _ = self.seen.send(Seen {
            text: text.clone(),
            id,
            event: (path.clone(), headers, event),
        });
        if path == "/gone" {
            return reply(StatusCode::NOT_FOUND, "no such route");
        }
        match verdict(&text, previous) {
            Verdict::Success => reply(StatusCode::OK, ""),
            Verdict::Retry => reply(StatusCode::OK, r#"{"status": "RETRY"}"#),
            Verdict::Drop => reply(StatusCode::OK, r#"{"status": "DROP"}"#),
            Verdict::Fail => reply(StatusCode::INTERNAL_SERVER_ERROR, "the app failed"),
        }
    }
}

/// Starts the HTTP app on a port of its own; answers the port and what it sees.
async fn start_http_app() -> (u16, HttpSeen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen, received) = mpsc::unbounded_channel();
    let app = HttpApp {
        attempts: Attempts::default(),
        seen,
    };
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let app = app.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| app.clone().answer(request));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_app_gets_cloud_events_at_its_routes_with_daprs_answers() {
    for (broker, redis) in brokers() {
        let kind = broker["type"].as_str().unwrap().to_owned();
        let (port, mut seen) = start_http_app().await;
        let layotto = start_layotto(&broker, port, "http");
        let mut publisher = dapr_client(layotto.address("grpc")).await;
        wait_until_subscribed(&mut publisher, "orders", &mut seen).await;
        assert_metadata_lists(
            &mut publisher,
            (port, "http"),
            ("orders", ""),
            &[("", "/orders")],
        )
        .await;

        publish(&mut publisher, "orders", "good").await;
        let good = next(&mut seen).await;
        let (path, headers, event) = &good.event;
        assert_eq!(path, "/orders", "{kind}");
        assert_eq!(
            headers.get("content-type").map(String::as_str),
            Some("application/cloudevents+json"),
            "{kind}"
        );
        assert_eq!(
            headers.get("pubsubname").map(String::as_str),
            Some(PUBSUB),
            "{kind}"
        );
        assert_eq!(
            headers.get("traceparent").map(String::as_str),
            Some(TRACEPARENT),
            "{kind}"
        );
        for (key, value) in [
            ("source", APP_ID),
            ("type", "com.dapr.event.sent"),
            ("specversion", "1.0"),
            ("datacontenttype", "application/json"),
            ("topic", "orders"),
            ("pubsubname", PUBSUB),
        ] {
            assert_eq!(event[key], json!(value), "{kind}: {key}");
        }
        assert_eq!(event["data"], json!({"text": "good"}), "{kind}");

        for text in ["retry-me", "fail", "poison", "marker"] {
            publish(&mut publisher, "orders", text).await;
        }
        let retried = next(&mut seen).await;
        let again = next(&mut seen).await;
        assert_eq!(retried.text, "retry-me", "{kind}");
        assert_eq!(
            again.id, retried.id,
            "{kind}: {{\"status\": \"RETRY\"}} is redelivered"
        );
        let failed = next(&mut seen).await;
        let again = next(&mut seen).await;
        assert_eq!(failed.text, "fail", "{kind}");
        assert_eq!(again.id, failed.id, "{kind}: a 500 is redelivered");
        assert_eq!(next(&mut seen).await.text, "poison", "{kind}");
        assert_eq!(
            next(&mut seen).await.text,
            "marker",
            "{kind}: DROP is not redelivered"
        );

        // 404 drops: each event comes once, and the next one follows.
        wait_until_subscribed(&mut publisher, "gone", &mut seen).await;
        publish(&mut publisher, "gone", "first").await;
        publish(&mut publisher, "gone", "second").await;
        let first = next(&mut seen).await;
        assert_eq!(
            (first.text.as_str(), first.event.0.as_str()),
            ("first", "/gone"),
            "{kind}"
        );
        assert_eq!(
            next(&mut seen).await.text,
            "second",
            "{kind}: 404 is not redelivered"
        );

        // A bulk subscription gets daprd's bulk envelope, at most 2 entries at a time, in order.
        for text in ["x1", "x2", "x3"] {
            publish(&mut publisher, "bulk", text).await;
        }
        for text in ["x1", "x2", "x3"] {
            let entry = next(&mut seen).await;
            let (path, headers, envelope) = &entry.event;
            assert_eq!(
                (entry.text.as_str(), path.as_str()),
                (text, "/bulk"),
                "{kind}"
            );
            assert_eq!(envelope["type"], "com.dapr.event.sent.bulk");
            assert_eq!(
                (&envelope["topic"], &envelope["pubsubname"]),
                (&json!("bulk"), &json!(PUBSUB))
            );
            assert!((1..=2).contains(&envelope["entries"].as_array().unwrap().len()));
            assert_eq!(headers.get("pubsubname").map(String::as_str), Some(PUBSUB));
        }
        if let Some(redis) = &redis {
            wait_until_acknowledged(redis, "orders");
            wait_until_acknowledged(redis, "gone");
            wait_until_acknowledged(redis, "bulk");
        }
    }
}

#[test]
fn configuration_changes_go_to_the_app_channel_when_it_speaks_http() {
    let status_of_subscribe = |protocol: &str| {
        let app = dead_address();
        let config = with_dapr_http(
            json!({
                "config_store": {"config": {"type": "in-memory"}},
                "app": {"app_id": APP_ID, "app_port": app.port(), "app_protocol": protocol}
            }),
            "dapr",
        );
        let layotto = Layotto::start(&config);
        let (status, body) = http_get(
            layotto.address("dapr"),
            "/v1.0/configuration/config/subscribe?key=color",
        )
        .expect("the Dapr HTTP API answers");
        (status, body)
    };
    // The filter names no app_port: the app block's HTTP channel is where changes go.
    let (status, body) = status_of_subscribe("http");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"id\""), "{body}");
    // A gRPC app has no HTTP port to push to, as daprd's HTTP API without an HTTP app channel.
    let (status, body) = status_of_subscribe("grpc");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("ERR_APP_CHANNEL_NIL"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoking_the_apps_own_id_calls_it_over_its_http_channel_on_both_apis() {
    let (port, _seen) = start_http_app().await;
    let layotto = Layotto::start(&with_dapr_http(
        json!({"app": {"app_id": APP_ID, "app_port": port}}),
        "dapr_http",
    ));
    let http = layotto.address("dapr_http");
    let get = move |path: &'static str| {
        tokio::task::spawn_blocking(move || http_get(http, path).expect("an answer"))
    };
    assert_eq!(
        get("/v1.0/invoke/app1/method/greet?who=x").await.unwrap(),
        (201, "GET who=x ".to_owned())
    );
    let mut client = dapr_client(layotto.address("grpc")).await;
    let answer = client
        .invoke_service(InvokeServiceRequest {
            id: APP_ID.into(),
            message: Some(InvokeRequest {
                method: "greet".into(),
                data: Some(prost_types::Any {
                    type_url: String::new(),
                    value: b"hi".to_vec(),
                }),
                content_type: "text/plain".into(),
                http_extension: None,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.data.unwrap().value, b"POST  hi");
    // Another app id has no channel here and no rpcs component serves it.
    let (status, body) = get("/v1.0/invoke/app2/method/greet").await.unwrap();
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("ERR_DIRECT_INVOKE"), "{body}");
}

/// An HTTP/1.0 POST of `body` with `headers`: the status, the `Content-Type` and the body.
fn http_post(
    address: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.0\r\nHost: {address}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    write!(stream, "{head}\r\n{body}").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoking_the_apps_own_id_calls_on_invoke_of_a_grpc_app_on_both_apis() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _app = serve_grpc_app(listener);
    let layotto = Layotto::start(&with_dapr_http(
        json!({"app": {"app_id": APP_ID, "app_port": port, "app_protocol": "grpc"}}),
        "dapr_http",
    ));
    let http = layotto.address("dapr_http");
    let post = move |path: &'static str| {
        tokio::task::spawn_blocking(move || {
            http_post(
                http,
                path,
                &[("Content-Type", "application/json"), ("X-Tenant", "t1")],
                "{}",
            )
        })
    };
    // HTTP: the verb (POST = 3), the query, the body and the caller's headers reach OnInvoke;
    // its data and content type come back with 200.
    assert_eq!(
        post("/v1.0/invoke/app1/method/greet?who=x").await.unwrap(),
        (
            200,
            "text/plain".to_owned(),
            "greet 3 who=x {} (application/json) tenant=t1 caller=app1".to_owned()
        )
    );
    // The app's NOT_FOUND is daprd's 404 with the status as JSON.
    let (status, content_type, body) = post("/v1.0/invoke/app1/method/missing").await.unwrap();
    assert_eq!((status, content_type.as_str()), (404, "application/json"));
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({"code": 5, "message": "no such order", "details": []})
    );
    // gRPC: the message goes as it came; the app's status is the call's, without an HTTP status.
    let mut client = dapr_client(layotto.address("grpc")).await;
    let call = |method: &str| InvokeServiceRequest {
        id: APP_ID.into(),
        message: Some(InvokeRequest {
            method: method.into(),
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: b"hi".to_vec(),
            }),
            content_type: "text/plain".into(),
            http_extension: None,
        }),
    };
    let answer = client.invoke_service(call("greet")).await.unwrap();
    assert!(answer.metadata().get("dapr-http-status").is_none());
    let answer = answer.into_inner();
    assert_eq!(answer.content_type, "text/plain");
    assert_eq!(
        String::from_utf8(answer.data.unwrap().value).unwrap(),
        "greet 0  hi (text/plain) tenant= caller=app1"
    );
    let failed = client.invoke_service(call("missing")).await.unwrap_err();
    assert_eq!(
        (failed.code(), failed.message()),
        (tonic::Code::NotFound, "no such order")
    );
}
