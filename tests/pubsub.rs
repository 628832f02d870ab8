//! End-to-end tests of pub/sub on `in-memory` and a real `redis` (streams): layotto-rs in the
//! test process (the binary where a subscriber is killed and restarted), events published with
//! `PublishEvent` and received both by a `SubscribeTopicEvents` stream and by a real
//! `AppCallback` gRPC server of the test's, with SUCCESS / RETRY / DROP honoured; redis entries
//! in Dapr's layout both ways, and every event delivered at least once through cut connections,
//! a redis restart and subscriber restarts.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{redis::RedisServer, *};
use futures_util::StreamExt;
use layotto_proto::runtime::{
    ListTopicSubscriptionsResponse, PublishEventRequest, SubscribeTopicEventsRequest,
    SubscribeTopicEventsRequestInitial, SubscribeTopicEventsRequestProcessed,
    SubscribeTopicEventsResponse, TopicEventRequest, TopicEventResponse, TopicSubscription,
    app_callback_server::{AppCallback, AppCallbackServer},
    runtime_client::RuntimeClient,
    subscribe_topic_events_request::SubscribeTopicEventsRequestType,
    subscribe_topic_events_response::SubscribeTopicEventsResponseType,
    topic_event_response::TopicEventResponseStatus,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tonic::transport::Channel;

const PUBSUB: &str = "pub_subs_demo";

/// The brokers to run every test on; the redis server lives as long as the returned value.
fn brokers() -> Vec<(Value, Option<RedisServer>)> {
    let redis = RedisServer::start();
    vec![
        (
            json!({"type": "in-memory", "metadata": {"consumerID": "1"}}),
            None,
        ),
        (
            json!({"type": "redis", "metadata": {"redisHost": redis.endpoint(), "consumerID": "group1"}}),
            Some(redis),
        ),
    ]
}

async fn publish(client: &mut RuntimeClient<Channel>, topic: &str, data: &str) {
    client
        .publish_event(PublishEventRequest {
            pubsub_name: PUBSUB.into(),
            topic: topic.into(),
            data: data.as_bytes().to_vec().into(),
            data_content_type: "text/plain".into(),
            metadata: HashMap::new(),
        })
        .await
        .unwrap();
}

/// A `SubscribeTopicEvents` stream on `topic`: the sender of the client's messages (the
/// initial request is sent) and the stream of the server's.
async fn subscribe_stream(
    address: SocketAddr,
    topic: &str,
) -> (
    mpsc::UnboundedSender<SubscribeTopicEventsRequest>,
    tonic::Streaming<SubscribeTopicEventsResponse>,
) {
    let mut subscriber = runtime_client(address).await;
    let (answers, answer_stream) = mpsc::unbounded_channel();
    answers
        .send(SubscribeTopicEventsRequest {
            subscribe_topic_events_request_type: Some(
                SubscribeTopicEventsRequestType::InitialRequest(
                    SubscribeTopicEventsRequestInitial {
                        pubsub_name: PUBSUB.into(),
                        topic: topic.into(),
                        ..Default::default()
                    },
                ),
            ),
        })
        .unwrap();
    let answer_stream = futures_util::stream::unfold(answer_stream, |mut s| async move {
        s.recv().await.map(|m| (m, s))
    });
    let events = subscriber
        .subscribe_topic_events(answer_stream)
        .await
        .unwrap()
        .into_inner();
    (answers, events)
}

fn processed(id: &str, status: TopicEventResponseStatus) -> SubscribeTopicEventsRequest {
    SubscribeTopicEventsRequest {
        subscribe_topic_events_request_type: Some(SubscribeTopicEventsRequestType::EventProcessed(
            SubscribeTopicEventsRequestProcessed {
                id: id.into(),
                status: Some(TopicEventResponse {
                    status: status as i32,
                }),
            },
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_subscriber_gets_cloud_events_and_retries_are_redelivered() {
    for (broker, _redis) in brokers() {
        let kind = broker["type"].as_str().unwrap().to_owned();
        let config = grpc_config(
            json!({"pub_subs": {PUBSUB: broker}, "app": {"app_id": "app1"}}),
            json!({}),
        );
        let layotto = Layotto::with_shards(&config, 2);
        let address = layotto.address("grpc");
        let (answers, mut events) = subscribe_stream(address, "orders").await;
        let mut next = async || {
            tokio::time::timeout(WAIT, events.message())
                .await
                .expect("an event in time")
                .unwrap()
                .unwrap()
                .subscribe_topic_events_response_type
                .unwrap()
        };
        assert!(
            matches!(
                next().await,
                SubscribeTopicEventsResponseType::InitialResponse(_)
            ),
            "{kind}"
        );

        let mut publisher = runtime_client(address).await;
        for data in ["first", "second", "third"] {
            publish(&mut publisher, "orders", data).await;
        }
        publish(&mut publisher, "other-topic", "not for us").await;
        let event = |message| match message {
            SubscribeTopicEventsResponseType::EventMessage(event) => event,
            other => panic!("expected an event, got {other:?}"),
        };
        let first = event(next().await);
        assert_eq!(&first.data[..], b"first", "{kind}");
        assert_eq!(
            (
                first.source.as_str(),
                first.topic.as_str(),
                first.pubsub_name.as_str(),
                first.spec_version.as_str()
            ),
            ("app1", "orders", PUBSUB, "1.0"),
            "{kind}"
        );
        assert_eq!(first.data_content_type, "text/plain");
        answers
            .send(processed(&first.id, TopicEventResponseStatus::Success))
            .unwrap();
        let second = event(next().await);
        assert_eq!(&second.data[..], b"second", "{kind}");
        answers
            .send(processed(&second.id, TopicEventResponseStatus::Retry))
            .unwrap();
        let again = event(next().await);
        assert_eq!(
            again.id, second.id,
            "{kind}: RETRY sends the same event again"
        );
        answers
            .send(processed(&again.id, TopicEventResponseStatus::Success))
            .unwrap();
        let third = event(next().await);
        assert_eq!(&third.data[..], b"third", "{kind}");
        assert_ne!(third.id, first.id);
        answers
            .send(processed(&third.id, TopicEventResponseStatus::Drop))
            .unwrap();
        // Nothing else comes before the next event of `orders`: "other-topic" is not followed,
        // dropped events are not resent.
        publish(&mut publisher, "orders", "last").await;
        assert_eq!(&event(next().await).data[..], b"last", "{kind}");
    }
}

/// The app's AppCallback server: subscribes to `orders`, answers RETRY to the first attempt of
/// each event, SUCCESS to the second, and DROP to events whose data is `poison`. Every delivery
/// is also handed to the test.
#[derive(Clone)]
struct App {
    seen: Arc<Mutex<Vec<TopicEventRequest>>>,
    deliveries: mpsc::UnboundedSender<TopicEventRequest>,
}

#[tonic::async_trait]
impl AppCallback for App {
    async fn list_topic_subscriptions(
        &self,
        _: tonic::Request<()>,
    ) -> Result<tonic::Response<ListTopicSubscriptionsResponse>, tonic::Status> {
        Ok(tonic::Response::new(ListTopicSubscriptionsResponse {
            subscriptions: vec![TopicSubscription {
                pubsub_name: PUBSUB.into(),
                topic: "orders".into(),
                metadata: HashMap::new(),
            }],
        }))
    }

    async fn on_topic_event(
        &self,
        request: tonic::Request<TopicEventRequest>,
    ) -> Result<tonic::Response<TopicEventResponse>, tonic::Status> {
        let event = request.into_inner();
        let mut seen = self.seen.lock().unwrap();
        let before = seen.iter().filter(|e| e.id == event.id).count();
        let status = if &event.data[..] == b"poison" {
            TopicEventResponseStatus::Drop
        } else if before == 0 {
            TopicEventResponseStatus::Retry
        } else {
            TopicEventResponseStatus::Success
        };
        seen.push(event.clone());
        let _ = self.deliveries.send(event);
        Ok(tonic::Response::new(TopicEventResponse {
            status: status as i32,
        }))
    }
}

/// Starts the app's server; answers its address and the deliveries it gets, in order.
async fn start_app() -> (SocketAddr, mpsc::UnboundedReceiver<TopicEventRequest>) {
    start_app_on("127.0.0.1").await
}

/// The test's AppCallback server on `ip` (a port of its own).
async fn start_app_on(ip: &str) -> (SocketAddr, mpsc::UnboundedReceiver<TopicEventRequest>) {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let address = listener.local_addr().unwrap();
    let (deliveries, delivered) = mpsc::unbounded_channel();
    let app = App {
        seen: Arc::default(),
        deliveries,
    };
    let service = AppCallbackServer::new(app);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (address, delivered)
}

/// Waits until events published now reach the app: publishes `probe` events (to `orders`) until
/// one is delivered. Probes are delivered, in order, before anything published afterwards.
async fn wait_until_the_app_is_subscribed(
    publisher: &mut RuntimeClient<Channel>,
    delivered: &mut mpsc::UnboundedReceiver<TopicEventRequest>,
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        publish(publisher, "orders", "probe").await;
        // Bounded polling: an event published before the subscription is in place is not
        // delivered, so another one is published after a while.
        if let Ok(event) = tokio::time::timeout(Duration::from_millis(100), delivered.recv()).await
        {
            assert_eq!(&event.unwrap().data[..], b"probe");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no event reached the app"
        );
    }
}

/// The next delivery to the app that is not a probe.
async fn next_delivery(
    delivered: &mut mpsc::UnboundedReceiver<TopicEventRequest>,
) -> TopicEventRequest {
    loop {
        let event = tokio::time::timeout(WAIT, delivered.recv())
            .await
            .expect("a delivery in time")
            .expect("the app is running");
        if &event.data[..] != b"probe" {
            return event;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_callback_gets_every_event_with_retry_and_drop_honoured() {
    for (broker, _redis) in brokers() {
        let kind = broker["type"].as_str().unwrap().to_owned();
        let (app_address, mut delivered) = start_app().await;
        let config = grpc_config(
            json!({
                "pub_subs": {PUBSUB: broker},
                "app": {"app_id": "app1", "grpc_callback_port": app_address.port()}
            }),
            json!({}),
        );
        let layotto = Layotto::start(&config);
        let mut publisher = runtime_client(layotto.address("grpc")).await;
        wait_until_the_app_is_subscribed(&mut publisher, &mut delivered).await;
        publish(&mut publisher, "orders", "poison").await;
        publish(&mut publisher, "orders", "good").await;
        let poison = next_delivery(&mut delivered).await;
        assert_eq!(&poison.data[..], b"poison", "{kind}");
        let good = next_delivery(&mut delivered).await;
        assert_eq!(
            (&good.data[..], good.source.as_str()),
            (&b"good"[..], "app1"),
            "{kind}: DROP is not redelivered"
        );
        let again = next_delivery(&mut delivered).await;
        assert_eq!(
            again.id, good.id,
            "{kind}: the RETRY was answered by redelivery"
        );
        // Deliveries are in order: the next event comes only once `good` is finished.
        publish(&mut publisher, "orders", "marker").await;
        let next = next_delivery(&mut delivered).await;
        assert_eq!(
            &next.data[..],
            b"marker",
            "{kind}: SUCCESS ends the deliveries"
        );
    }
}

/// The entry Dapr's `pubsub.redis` writes for a JSON event published by app `checkout`.
fn dapr_entry() -> Value {
    json!({
        "id": "dapr-1", "specversion": "1.0", "datacontenttype": "application/json",
        "source": "checkout", "type": "com.dapr.event.sent", "topic": "orders",
        "pubsubname": "dapr-pubsub", "traceid": "", "traceparent": "", "tracestate": "",
        "time": "2026-12-01T10:00:00Z", "data": {"orderId": 1}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_entries_are_in_daprs_layout_both_ways() {
    let redis = RedisServer::start();
    let broker = json!({"type": "redis", "metadata": {"redisHost": redis.endpoint(), "consumerID": "group1"}});
    let config = grpc_config(
        json!({"pub_subs": {PUBSUB: broker}, "app": {"app_id": "app1"}}),
        json!({}),
    );
    let layotto = LayottoBinary::start(&config, &[], 1);
    let (answers, mut events) = subscribe_stream(layotto.address("grpc"), "orders").await;
    assert!(matches!(
        events
            .message()
            .await
            .unwrap()
            .unwrap()
            .subscribe_topic_events_response_type,
        Some(SubscribeTopicEventsResponseType::InitialResponse(_))
    ));
    let mut next = async || match tokio::time::timeout(WAIT, events.message())
        .await
        .expect("an event in time")
        .unwrap()
        .unwrap()
        .subscribe_topic_events_response_type
        .unwrap()
    {
        SubscribeTopicEventsResponseType::EventMessage(event) => event,
        other => panic!("expected an event, got {other:?}"),
    };

    // Written as a Dapr sidecar writes them: the CloudEvent JSON in `data` (with the publish
    // metadata as JSON in `metadata`), and a raw payload (Dapr's `rawPayload`).
    let mut dapr = redis.client();
    let cloud_event_id: String = ::redis::cmd("XADD")
        .arg("orders")
        .arg("*")
        .arg("data")
        .arg(serde_json::to_vec(&dapr_entry()).unwrap())
        .arg("metadata")
        .arg(r#"{"priority":"high"}"#)
        .query(&mut dapr)
        .unwrap();
    let raw_id: String = ::redis::cmd("XADD")
        .arg("orders")
        .arg("*")
        .arg("data")
        .arg(&b"raw \xff bytes"[..])
        .query(&mut dapr)
        .unwrap();
    let event = next().await;
    assert_eq!(
        (
            event.id.as_str(),
            event.source.as_str(),
            event.r#type.as_str()
        ),
        ("dapr-1", "checkout", "com.dapr.event.sent")
    );
    assert_eq!(
        (
            event.spec_version.as_str(),
            event.data_content_type.as_str()
        ),
        ("1.0", "application/json")
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&event.data).unwrap(),
        json!({"orderId": 1})
    );
    assert_eq!(
        (event.topic.as_str(), event.pubsub_name.as_str()),
        ("orders", PUBSUB),
        "delivered as an event of the subscriber's component"
    );
    assert_eq!(event.metadata["priority"], "high");
    answers
        .send(processed(&event.id, TopicEventResponseStatus::Success))
        .unwrap();
    let raw = next().await;
    assert_eq!(&raw.data[..], b"raw \xff bytes");
    assert_eq!(
        (raw.id.as_str(), raw.data_content_type.as_str()),
        (raw_id.as_str(), "application/octet-stream")
    );
    assert_ne!(raw_id, cloud_event_id);
    answers
        .send(processed(&raw.id, TopicEventResponseStatus::Success))
        .unwrap();

    // Published through layotto-rs, read back as a Dapr sidecar reads it.
    let mut publisher = runtime_client(layotto.address("grpc")).await;
    for (content_type, data) in [
        ("application/json", &br#"{"a": [1, 2]}"#[..]),
        ("text/plain", b"hello"),
        ("application/octet-stream", &[0, 1, 255]),
    ] {
        publisher
            .publish_event(PublishEventRequest {
                pubsub_name: PUBSUB.into(),
                topic: "published".into(),
                data: data.to_vec().into(),
                data_content_type: content_type.into(),
                metadata: HashMap::from([("k".to_owned(), "v".to_owned())]),
            })
            .await
            .unwrap();
    }
    let entries: ::redis::streams::StreamRangeReply = ::redis::cmd("XRANGE")
        .arg("published")
        .arg("-")
        .arg("+")
        .query(&mut dapr)
        .unwrap();
    let cloud_events: Vec<Value> = entries
        .ids
        .iter()
        .map(|entry| {
            let metadata: Vec<u8> = entry.get("metadata").unwrap();
            assert_eq!(
                serde_json::from_slice::<Value>(&metadata).unwrap(),
                json!({"k": "v"})
            );
            serde_json::from_slice(&entry.get::<Vec<u8>>("data").unwrap()).unwrap()
        })
        .collect();
    assert_eq!(cloud_events.len(), 3);
    for cloud_event in &cloud_events {
        assert!(!cloud_event["id"].as_str().unwrap().is_empty());
        assert_eq!(
            (&cloud_event["source"], &cloud_event["type"]),
            (&json!("app1"), &json!("com.dapr.event.sent"))
        );
        assert_eq!(
            (&cloud_event["specversion"], &cloud_event["topic"]),
            (&json!("1.0"), &json!("published"))
        );
        assert_eq!(cloud_event["pubsubname"], json!(PUBSUB));
    }
    assert_eq!(
        cloud_events[0]["datacontenttype"],
        json!("application/json")
    );
    assert_eq!(cloud_events[0]["data"], json!({"a": [1, 2]}));
    assert_eq!(cloud_events[1]["data"], json!("hello"));
    assert_eq!(cloud_events[2]["data_base64"], json!("AAH/"));
}

/// An AppCallback server subscribed to `orders` that answers SUCCESS and counts the distinct
/// event data it got (the test's own ids) and all deliveries.
#[derive(Clone)]
struct CountingApp {
    seen: Arc<Mutex<HashSet<Vec<u8>>>>,
    distinct: tokio::sync::watch::Sender<usize>,
    deliveries: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl AppCallback for CountingApp {
    async fn list_topic_subscriptions(
        &self,
        _: tonic::Request<()>,
    ) -> Result<tonic::Response<ListTopicSubscriptionsResponse>, tonic::Status> {
        Ok(tonic::Response::new(ListTopicSubscriptionsResponse {
            subscriptions: vec![TopicSubscription {
                pubsub_name: PUBSUB.into(),
                topic: "orders".into(),
                metadata: HashMap::new(),
            }],
        }))
    }

    async fn on_topic_event(
        &self,
        request: tonic::Request<TopicEventRequest>,
    ) -> Result<tonic::Response<TopicEventResponse>, tonic::Status> {
        self.deliveries.fetch_add(1, Ordering::Relaxed);
        let mut seen = self.seen.lock().unwrap();
        seen.insert(request.into_inner().data.to_vec());
        self.distinct.send_replace(seen.len());
        Ok(tonic::Response::new(TopicEventResponse {
            status: TopicEventResponseStatus::Success as i32,
        }))
    }
}

/// Publishes event `n` on `orders`, again after a failure (redis unreachable): at least once.
async fn publish_until_accepted(mut publisher: RuntimeClient<Channel>, n: usize) {
    let deadline = Instant::now() + WAIT;
    while let Err(status) = publisher
        .publish_event(PublishEventRequest {
            pubsub_name: PUBSUB.into(),
            topic: "orders".into(),
            data: n.to_string().into_bytes().into(),
            data_content_type: "text/plain".into(),
            metadata: HashMap::new(),
        })
        .await
    {
        assert!(Instant::now() < deadline, "publishing {n}: {status}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The number of entries of `group` on `topic` delivered and not acknowledged.
fn pending(redis: &RedisServer, topic: &str, group: &str) -> i64 {
    let summary: Vec<::redis::Value> = ::redis::cmd("XPENDING")
        .arg(topic)
        .arg(group)
        .query(&mut redis.client())
        .unwrap();
    match summary.first() {
        Some(::redis::Value::Int(count)) => *count,
        other => panic!("unexpected XPENDING summary {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_delivers_every_event_through_cut_connections_and_restarts() {
    const EVENTS: usize = 10_000;
    let started = Instant::now();
    let mut redis = RedisServer::start_persistent();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_port = listener.local_addr().unwrap().port();
    let (distinct, mut distinct_seen) = tokio::sync::watch::channel(0);
    let app = CountingApp {
        seen: Arc::default(),
        distinct,
        deliveries: Arc::default(),
    };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AppCallbackServer::new(app.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let broker = |redis: &RedisServer| {
        json!({"type": "redis", "metadata": {
            "redisHost": redis.endpoint(), "consumerID": "group1",
            "processingTimeout": "1000", "redeliverInterval": "200ms"
        }})
    };
    let subscriber_config = grpc_config(
        json!({
            "pub_subs": {PUBSUB: broker(&redis)},
            "app": {"app_id": "subscriber", "grpc_callback_port": app_port}
        }),
        json!({}),
    );
    let start_subscriber = || {
        let subscriber = LayottoBinary::start(&subscriber_config, &["--shards", "1"], 1);
        subscriber.wait_for_line("delivering to the app");
        subscriber
    };
    let mut subscriber = start_subscriber();
    let publisher_config = grpc_config(
        json!({"pub_subs": {PUBSUB: broker(&redis)}, "app": {"app_id": "publisher"}}),
        json!({}),
    );
    let publisher_sidecar = LayottoBinary::start(&publisher_config, &["--shards", "1"], 1);
    let publisher = runtime_client(publisher_sidecar.address("grpc")).await;

    let cut_connections = |redis: &RedisServer| {
        let killed: i64 = ::redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .query(&mut redis.client())
            .unwrap();
        assert!(killed >= 2, "both sidecars' connections cut ({killed})");
    };
    // In chunks of concurrent publishes, the faults between chunks.
    const CHUNK: usize = 500;
    for first in (0..EVENTS).step_by(CHUNK) {
        match first {
            1_500 | 8_000 => cut_connections(&redis),
            3_000 => {
                // A clean restart of the subscriber's sidecar.
                subscriber.terminate();
                subscriber.wait_exit();
                subscriber = start_subscriber();
            }
            5_000 => redis.restart(),
            6_500 => {
                // A crash: what it was handed and had not acknowledged stays pending.
                drop(subscriber);
                subscriber = start_subscriber();
            }
            _ => {}
        }
        futures_util::stream::iter(first..first + CHUNK)
            .for_each_concurrent(32, |n| publish_until_accepted(publisher.clone(), n))
            .await;
    }
    // Every event arrives, however long that takes, as long as deliveries keep coming.
    let mut stalled = false;
    while *distinct_seen.borrow_and_update() < EVENTS && !stalled {
        stalled = tokio::time::timeout(WAIT, distinct_seen.changed())
            .await
            .is_err();
    }
    let seen = app.seen.lock().unwrap().clone();
    let missing: Vec<usize> = (0..EVENTS)
        .filter(|n| !seen.contains(n.to_string().as_bytes()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {EVENTS} events never arrived, e.g. {:?}; subscriber log:\n{}",
        missing.len(),
        &missing[..missing.len().min(20)],
        subscriber.output()
    );
    // The last acknowledgements may still be on their way.
    let deadline = Instant::now() + WAIT;
    while pending(&redis, "orders", "group1") != 0 {
        assert!(
            Instant::now() < deadline,
            "{} events left pending",
            pending(&redis, "orders", "group1")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deliveries = app.deliveries.load(Ordering::Relaxed);
    println!(
        "{EVENTS} events, {deliveries} deliveries ({} again), {:?}",
        deliveries - EVENTS,
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_is_called_at_its_grpc_callback_host() {
    // Another loopback address: only a sidecar that honours grpc_callback_host reaches it.
    let (app_address, mut delivered) = start_app_on("127.0.0.2").await;
    let config = grpc_config(
        json!({
            "pub_subs": {PUBSUB: {"type": "in-memory", "metadata": {"consumerID": "1"}}},
            "app": {
                "app_id": "app1",
                "grpc_callback_host": "127.0.0.2",
                "grpc_callback_port": app_address.port()
            }
        }),
        json!({}),
    );
    let layotto = Layotto::start(&config);
    let mut publisher = runtime_client(layotto.address("grpc")).await;
    wait_until_the_app_is_subscribed(&mut publisher, &mut delivered).await;
}
