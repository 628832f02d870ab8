//! End-to-end tests of pub/sub on `in-memory` and a real `redis` (streams): layotto-rs in the
//! test process, events published with `PublishEvent` and received both by a `SubscribeTopicEvents` stream and
//! by a real `AppCallback` gRPC server of the test's, with SUCCESS / RETRY / DROP honoured.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{redis::RedisServer, *};
use layotto_proto::runtime::{
    ListTopicSubscriptionsResponse, PublishEventRequest, SubscribeTopicEventsRequest,
    SubscribeTopicEventsRequestInitial, SubscribeTopicEventsRequestProcessed, TopicEventRequest,
    TopicEventResponse, TopicSubscription,
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
        let mut subscriber = runtime_client(address).await;
        let (answers, answer_stream) = mpsc::unbounded_channel();
        answers
            .send(SubscribeTopicEventsRequest {
                subscribe_topic_events_request_type: Some(
                    SubscribeTopicEventsRequestType::InitialRequest(
                        SubscribeTopicEventsRequestInitial {
                            pubsub_name: PUBSUB.into(),
                            topic: "orders".into(),
                            ..Default::default()
                        },
                    ),
                ),
            })
            .unwrap();
        let answer_stream = futures_util::stream::unfold(answer_stream, |mut s| async move {
            s.recv().await.map(|m| (m, s))
        });
        let mut events = subscriber
            .subscribe_topic_events(answer_stream)
            .await
            .unwrap()
            .into_inner();
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
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
