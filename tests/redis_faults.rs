//! Redis faults against the real binary: a stalled redis (SIGSTOP) fails calls after the
//! component's configured `timeout` and no earlier, a stall shorter than it is ridden out (calls
//! and pub/sub's blocking reads alike), and a redis that refuses connections stops start-up at
//! once with that cause.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use common::{redis::RedisServer, *};
use layotto_proto::runtime::{
    GetStateRequest, PublishEventRequest, SaveStateRequest, SubscribeTopicEventsRequest,
    SubscribeTopicEventsRequestInitial,
    subscribe_topic_events_request::SubscribeTopicEventsRequestType,
    subscribe_topic_events_response::SubscribeTopicEventsResponseType,
};
use serde_json::json;
use tokio::sync::mpsc;
use tonic::Code;

/// How long each stall that should be ridden out lasts: longer than the redis crate's default
/// response timeout (500 ms) and than pub/sub's blocking read (1 s).
const STALL: Duration = Duration::from_millis(1_500);

fn get(key: &str) -> GetStateRequest {
    GetStateRequest {
        store_name: "redis_state".into(),
        key: key.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_fails_calls_after_the_configured_timeout_and_not_before() {
    let redis = RedisServer::start();
    let timeout = Duration::from_secs(3);
    let config = grpc_config(
        json!({"state": {"redis_state": {"type": "redis", "metadata": {
            "redisHost": redis.endpoint(), "timeout": timeout.as_secs().to_string()
        }}}}),
        json!({}),
    );
    let layotto = LayottoBinary::start(&config, &[], 1);
    let mut client = runtime_client(layotto.address("grpc")).await;
    client
        .save_state(SaveStateRequest {
            store_name: "redis_state".into(),
            states: vec![item("k", "v")],
        })
        .await
        .unwrap();

    // A stall shorter than the timeout: the call waits it out.
    redis.pause();
    let started = Instant::now();
    let mut waiting = client.clone();
    let call = tokio::spawn(async move { waiting.get_state(get("k")).await });
    tokio::time::sleep(STALL).await;
    redis.resume();
    let answer = call
        .await
        .unwrap()
        .expect("a call outlasting a short stall");
    assert_eq!(&answer.into_inner().data[..], b"v");
    assert!(started.elapsed() >= STALL);

    // A stall longer than the timeout: UNAVAILABLE once the timeout has passed.
    redis.pause();
    let started = Instant::now();
    let failed = client.get_state(get("k")).await.unwrap_err();
    let took = started.elapsed();
    redis.resume();
    assert_eq!(failed.code(), Code::Unavailable, "{failed:?}");
    assert!(
        failed.message().contains("no answer within 3s"),
        "{failed:?}"
    );
    assert!(
        took >= timeout && took < timeout + Duration::from_millis(1_500),
        "failed after {took:?}, the timeout is {timeout:?}"
    );
    let answer = client.get_state(get("k")).await.expect("redis is back");
    assert_eq!(&answer.into_inner().data[..], b"v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_sub_rides_out_a_stall_without_reconnecting() {
    let redis = RedisServer::start();
    let config = grpc_config(
        json!({"pub_subs": {"ps": {"type": "redis", "metadata": {
            "redisHost": redis.endpoint(), "consumerID": "group1"
        }}}, "app": {"app_id": "app1"}}),
        json!({}),
    );
    let layotto = LayottoBinary::start(&config, &[], 1);
    let mut subscriber = runtime_client(layotto.address("grpc")).await;
    let (requests, request_stream) = mpsc::unbounded_channel();
    requests
        .send(SubscribeTopicEventsRequest {
            subscribe_topic_events_request_type: Some(
                SubscribeTopicEventsRequestType::InitialRequest(
                    SubscribeTopicEventsRequestInitial {
                        pubsub_name: "ps".into(),
                        topic: "orders".into(),
                        ..Default::default()
                    },
                ),
            ),
        })
        .unwrap();
    let request_stream = futures_util::stream::unfold(request_stream, |mut s| async move {
        s.recv().await.map(|m| (m, s))
    });
    let mut events = subscriber
        .subscribe_topic_events(request_stream)
        .await
        .unwrap()
        .into_inner();
    let mut next = async || {
        tokio::time::timeout(WAIT, events.message())
            .await
            .expect("a message in time")
            .unwrap()
            .unwrap()
            .subscribe_topic_events_response_type
            .unwrap()
    };
    assert!(matches!(
        next().await,
        SubscribeTopicEventsResponseType::InitialResponse(_)
    ));

    // The subscription's blocking read is in flight while redis stalls.
    redis.pause();
    tokio::time::sleep(STALL).await;
    redis.resume();
    let mut publisher = runtime_client(layotto.address("grpc")).await;
    publisher
        .publish_event(PublishEventRequest {
            pubsub_name: "ps".into(),
            topic: "orders".into(),
            data: b"after the stall".to_vec().into(),
            data_content_type: "text/plain".into(),
            metadata: HashMap::new(),
        })
        .await
        .unwrap();
    match next().await {
        SubscribeTopicEventsResponseType::EventMessage(event) => {
            assert_eq!(&event.data[..], b"after the stall")
        }
        other => panic!("expected the event, got {other:?}"),
    }
    assert!(
        !layotto.output().contains("reading orders failed"),
        "the read must not time out during a stall:\n{}",
        layotto.output()
    );
}

#[test]
fn a_redis_that_refuses_connections_stops_start_up_at_once_saying_so() {
    for (block, component) in [
        (
            "state",
            json!({"type": "redis", "metadata": {"redisHost": dead_address().to_string()}}),
        ),
        (
            "pub_subs",
            json!({"type": "redis", "metadata": {"redisHost": dead_address().to_string(), "consumerID": "g"}}),
        ),
    ] {
        let config = grpc_config(json!({block: {"demo": component}}), json!({}));
        let started = Instant::now();
        let (code, stderr) = run_to_exit(&config.to_string());
        assert_eq!(code, Some(1), "{block}: {stderr}");
        assert!(
            stderr.to_lowercase().contains("connection refused"),
            "{block}: {stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{block}: took {:?} with a 5 s timeout",
            started.elapsed()
        );
    }
}
