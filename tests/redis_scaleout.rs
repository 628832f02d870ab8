//! Redis beyond one node, against real servers started here: a master found through Sentinel
//! (acknowledged, replicated state survives killing the master, and layotto-rs follows the
//! promoted replica, pub/sub included), and a 3-master Redis Cluster (state over many slots,
//! lock, sequencer, pub/sub streams on every master).
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::time::Instant;

use common::{
    redis_topology::{MASTER_NAME, RedisCluster, SentinelSetup},
    *,
};
use layotto_proto::runtime::{
    DeleteStateRequest, GetStateRequest, PublishEventRequest, SaveStateRequest, StateItem,
    SubscribeTopicEventsRequest, SubscribeTopicEventsRequestInitial,
    SubscribeTopicEventsRequestProcessed, TopicEventResponse, TryLockRequest,
    runtime_client::RuntimeClient, sequencer_options::AutoIncrement,
    subscribe_topic_events_request::SubscribeTopicEventsRequestType,
    subscribe_topic_events_response::SubscribeTopicEventsResponseType,
    topic_event_response::TopicEventResponseStatus,
};
use serde_json::json;
use tokio::sync::mpsc;
use tonic::{Code, transport::Channel};

const STORE: &str = "state_demo";

async fn save(
    client: &mut RuntimeClient<Channel>,
    items: Vec<StateItem>,
) -> Result<(), tonic::Status> {
    client
        .save_state(SaveStateRequest {
            store_name: STORE.into(),
            states: items,
        })
        .await
        .map(drop)
}

async fn get(client: &mut RuntimeClient<Channel>, key: &str) -> Result<String, tonic::Status> {
    let reply = client
        .get_state(GetStateRequest {
            store_name: STORE.into(),
            key: key.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(String::from_utf8(reply.data.to_vec()).unwrap())
}

async fn delete(client: &mut RuntimeClient<Channel>, key: &str) {
    client
        .delete_state(DeleteStateRequest {
            store_name: STORE.into(),
            key: key.into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_keeps_replicated_writes_and_follows_the_new_master() {
    let mut servers = SentinelSetup::start();
    let metadata = json!({
        "redisHost": servers.sentinel.endpoint(),
        "failover": "true",
        "sentinelMasterName": MASTER_NAME,
        "timeout": "2",
    });
    let config = grpc_config(
        json!({
            "state": {STORE: {"type": "redis", "metadata": metadata}},
            "lock": {"lock_demo": {"type": "redis", "metadata": metadata}},
        }),
        json!({}),
    );
    let layotto = Layotto::start(&config);
    let mut client = runtime_client(layotto.address("grpc")).await;

    for i in 0..50 {
        save(&mut client, vec![item(&format!("k{i}"), &format!("v{i}"))])
            .await
            .unwrap();
    }
    // The writes went to the master the sentinel named, and reached its replica.
    let on_master: Option<Vec<u8>> = servers
        .master
        .query(::redis::cmd("HGET").arg("k49").arg("data"))
        .unwrap();
    assert_eq!(on_master.as_deref(), Some(&b"v49"[..]));
    servers.wait_replicated();

    servers.fail_over();

    // The first calls after the kill may fail (the old master is gone); the next ones go to
    // the promoted replica.
    let started = Instant::now();
    while save(&mut client, vec![item("after", "failover")])
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < WAIT,
            "writes never reached the new master"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(get(&mut client, "after").await.unwrap(), "failover");
    for i in 0..50 {
        assert_eq!(
            get(&mut client, &format!("k{i}")).await.unwrap(),
            format!("v{i}"),
            "replicated write k{i} lost in the failover"
        );
    }
    let on_new_master: Option<Vec<u8>> = servers
        .replica
        .query(::redis::cmd("HGET").arg("after").arg("data"))
        .unwrap();
    assert_eq!(on_new_master.as_deref(), Some(&b"failover"[..]));
    // Each component re-resolves on its own first failure after the failover.
    let started = Instant::now();
    loop {
        let locked = client
            .try_lock(TryLockRequest {
                store_name: "lock_demo".into(),
                resource_id: "after-failover".into(),
                lock_owner: "alice".into(),
                expire: 60,
            })
            .await;
        match locked {
            Ok(reply) => {
                assert!(reply.into_inner().success);
                break;
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(
                    started.elapsed() < WAIT,
                    "the lock never reached the new master"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    let holder: Option<String> = servers
        .replica
        .query(::redis::cmd("GET").arg("after-failover"))
        .unwrap();
    assert_eq!(holder.as_deref(), Some("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_serves_state_lock_and_sequencer() {
    let cluster = RedisCluster::start();
    let metadata = json!({"redisHost": cluster.endpoints(), "redisType": "cluster"});
    let config = grpc_config(
        json!({
            "state": {STORE: {"type": "redis", "metadata": metadata}},
            "lock": {"lock_demo": {"type": "redis", "metadata": metadata}},
            "sequencer": {"sequencer_demo": {"type": "redis", "metadata": metadata}},
        }),
        json!({}),
    );
    let layotto = Layotto::start(&config);
    let mut client = runtime_client(layotto.address("grpc")).await;

    // Many keys, spread over the slots of all three masters (MOVED handled by the client).
    for i in 0..200 {
        save(
            &mut client,
            vec![item(&format!("key-{i}"), &format!("value-{i}"))],
        )
        .await
        .unwrap();
    }
    let per_node = cluster.keys_per_node();
    assert!(
        per_node.iter().all(|&keys| keys > 0),
        "keys not spread over the masters: {per_node:?}"
    );
    assert_eq!(per_node.iter().sum::<i64>(), 200);
    for i in 0..200 {
        assert_eq!(
            get(&mut client, &format!("key-{i}")).await.unwrap(),
            format!("value-{i}")
        );
    }
    for i in 0..100 {
        delete(&mut client, &format!("key-{i}")).await;
    }
    assert_eq!(get(&mut client, "key-0").await.unwrap(), "");
    assert_eq!(get(&mut client, "key-150").await.unwrap(), "value-150");
    assert_eq!(cluster.keys_per_node().iter().sum::<i64>(), 100);

    // A batch in one hash slot is atomic; one across slots is refused, and changes nothing.
    save(
        &mut client,
        vec![item("{order}.a", "1"), item("{order}.b", "2")],
    )
    .await
    .unwrap();
    assert_eq!(get(&mut client, "{order}.b").await.unwrap(), "2");
    let crossed = save(
        &mut client,
        vec![item("x-crossed", "1"), item("y-crossed", "2")],
    )
    .await
    .unwrap_err();
    assert_eq!(crossed.code(), Code::InvalidArgument, "{crossed:?}");
    assert!(crossed.message().contains("hash slot"), "{crossed:?}");
    assert_eq!(get(&mut client, "x-crossed").await.unwrap(), "");

    // Locks on resources of different slots.
    for resource in ["r1", "r2", "r3", "r4"] {
        assert!(
            try_lock(&mut client, resource, "alice", 60).await,
            "{resource}"
        );
        assert!(
            !try_lock(&mut client, resource, "bob", 60).await,
            "{resource}"
        );
        assert_eq!(
            unlock(&mut client, resource, "alice").await,
            layotto_proto::runtime::unlock_response::Status::Success
        );
    }
    // Sequencer keys over slots.
    for key in ["a", "b", "c", "d"] {
        let first = next_id(&mut client, "sequencer_demo", key, AutoIncrement::Strong).await;
        let second = next_id(&mut client, "sequencer_demo", key, AutoIncrement::Strong).await;
        assert!(second > first, "{key}: {first} then {second}");
    }
}

#[test]
fn redis_mode_keys_are_checked_naming_their_path() {
    let problems = |metadata: serde_json::Value| {
        config_problems(&grpc_config(
            json!({"state": {STORE: {"type": "redis", "metadata": metadata}}}),
            json!({}),
        ))
        .join("\n")
    };
    let missing_name = problems(json!({"redisHost": "127.0.0.1:1", "failover": "true"}));
    assert!(
        missing_name.contains("sentinelMasterName"),
        "{missing_name}"
    );
    let bad_type = problems(json!({"redisHost": "127.0.0.1:1", "redisType": "ring"}));
    assert!(bad_type.contains("redisType"), "{bad_type}");
    let many_nodes = problems(json!({"redisHost": "127.0.0.1:1,127.0.0.1:2"}));
    assert!(many_nodes.contains("redisHost"), "{many_nodes}");
    let both = problems(json!({
        "redisHost": "127.0.0.1:1", "redisType": "cluster", "failover": "true"
    }));
    assert!(both.contains("failover"), "{both}");
}

async fn publish(
    client: &mut RuntimeClient<Channel>,
    topic: &str,
    data: &str,
) -> Result<(), tonic::Status> {
    client
        .publish_event(PublishEventRequest {
            pubsub_name: "ps".into(),
            topic: topic.into(),
            data: data.as_bytes().to_vec().into(),
            data_content_type: "text/plain".into(),
            metadata: Default::default(),
        })
        .await
        .map(drop)
}

/// A `SubscribeTopicEvents` stream on pub/sub `ps`, topic `topic`, past its initial response.
struct Subscription {
    answers: mpsc::UnboundedSender<SubscribeTopicEventsRequest>,
    events: tonic::Streaming<layotto_proto::runtime::SubscribeTopicEventsResponse>,
}

impl Subscription {
    async fn start(address: std::net::SocketAddr, topic: &str) -> Self {
        let mut subscriber = runtime_client(address).await;
        let (answers, answer_stream) = mpsc::unbounded_channel();
        answers
            .send(SubscribeTopicEventsRequest {
                subscribe_topic_events_request_type: Some(
                    SubscribeTopicEventsRequestType::InitialRequest(
                        SubscribeTopicEventsRequestInitial {
                            pubsub_name: "ps".into(),
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
        let mut subscription = Self { answers, events };
        assert!(matches!(
            subscription.next().await,
            SubscribeTopicEventsResponseType::InitialResponse(_)
        ));
        subscription
    }

    async fn next(&mut self) -> SubscribeTopicEventsResponseType {
        tokio::time::timeout(WAIT, self.events.message())
            .await
            .expect("an event in time")
            .unwrap()
            .unwrap()
            .subscribe_topic_events_response_type
            .unwrap()
    }

    /// The next event's data, acknowledged with SUCCESS.
    async fn received(&mut self) -> String {
        let SubscribeTopicEventsResponseType::EventMessage(event) = self.next().await else {
            panic!("expected an event");
        };
        self.answers
            .send(SubscribeTopicEventsRequest {
                subscribe_topic_events_request_type: Some(
                    SubscribeTopicEventsRequestType::EventProcessed(
                        SubscribeTopicEventsRequestProcessed {
                            id: event.id.clone(),
                            status: Some(TopicEventResponse {
                                status: TopicEventResponseStatus::Success as i32,
                            }),
                        },
                    ),
                ),
            })
            .unwrap();
        String::from_utf8(event.data.to_vec()).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_through_sentinel_delivers_after_a_failover() {
    let mut servers = SentinelSetup::start();
    let config = grpc_config(
        json!({
            "pub_subs": {"ps": {"type": "redis", "metadata": {
                "redisHost": servers.sentinel.endpoint(),
                "failover": "true",
                "sentinelMasterName": MASTER_NAME,
                "consumerID": "group1",
                "timeout": "2",
            }}},
            "app": {"app_id": "app1"},
        }),
        json!({}),
    );
    let layotto = Layotto::start(&config);
    let address = layotto.address("grpc");
    let mut subscription = Subscription::start(address, "orders").await;
    let mut publisher = runtime_client(address).await;
    publish(&mut publisher, "orders", "before").await.unwrap();
    assert_eq!(subscription.received().await, "before");
    servers.wait_replicated();

    servers.fail_over();

    let started = Instant::now();
    while publish(&mut publisher, "orders", "after").await.is_err() {
        assert!(
            started.elapsed() < WAIT,
            "publishes never reached the new master"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The stream reader reconnects to the master the sentinels name now.
    assert_eq!(subscription.received().await, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_on_a_redis_cluster_reads_each_stream_on_its_node() {
    let cluster = RedisCluster::start();
    let config = grpc_config(
        json!({
            "pub_subs": {"ps": {"type": "redis", "metadata": {
                "redisHost": cluster.endpoints(),
                "redisType": "cluster",
                "consumerID": "group1",
            }}},
            "app": {"app_id": "app1"},
        }),
        json!({}),
    );
    let layotto = Layotto::start(&config);
    let address = layotto.address("grpc");
    // Topics whose streams land on every master.
    let topics: Vec<String> = (0..12).map(|i| format!("topic-{i}")).collect();
    let mut subscriptions = Vec::new();
    for topic in &topics {
        subscriptions.push(Subscription::start(address, topic).await);
    }
    let streams_per_node = cluster.keys_per_node();
    assert!(
        streams_per_node.iter().all(|&keys| keys > 0),
        "streams not spread over the masters: {streams_per_node:?}"
    );
    let mut publisher = runtime_client(address).await;
    for topic in &topics {
        publish(&mut publisher, topic, &format!("to {topic}"))
            .await
            .unwrap();
    }
    for (topic, subscription) in topics.iter().zip(&mut subscriptions) {
        assert_eq!(subscription.received().await, format!("to {topic}"));
    }
}
