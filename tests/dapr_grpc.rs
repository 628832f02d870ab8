//! Dapr's gRPC API (`dapr.proto.runtime.v1.Dapr`) end to end: a tonic client generated from our
//! copy of Dapr's protos calls layotto-rs over real sockets, on the same listener as LayOtto's
//! `Runtime` service, with in-memory components and a real redis started here. Each rpc's happy
//! path and its main errors (missing component, etag mismatch, bad argument) with Dapr's codes,
//! Dapr's key prefixes seen through LayOtto's API, every event of a streaming subscription, the
//! configuration subscription id, `dapr-api-token` (config and `DAPR_API_TOKEN`), `Shutdown`.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read, Write},
    net::SocketAddr,
    process::Command,
    time::Duration,
};

use common::{redis::RedisServer, *};
use futures_util::{Stream, StreamExt};
use layotto_proto::dapr::runtime as dapr;
use layotto_proto::{
    dapr::{
        common::{
            Etag, HttpExtension, InvokeRequest, StateItem, StateOptions, http_extension::Verb,
            state_options::StateConcurrency,
        },
        runtime::{
            BulkPublishRequest, BulkPublishRequestEntry, DeleteBulkStateRequest,
            DeleteStateRequest, ExecuteStateTransactionRequest, GetBulkSecretRequest,
            GetBulkStateRequest, GetConfigurationRequest, GetMetadataRequest, GetSecretRequest,
            GetStateRequest, InvokeBindingRequest, InvokeServiceRequest, PublishEventRequest,
            QueryStateRequest, SaveStateRequest, SetMetadataRequest, ShutdownRequest,
            SubscribeConfigurationRequest, SubscribeTopicEventsRequestAlpha1,
            SubscribeTopicEventsRequestInitialAlpha1, SubscribeTopicEventsRequestProcessedAlpha1,
            SubscribeTopicEventsResponseAlpha1, TopicEventResponse, TransactionalStateOperation,
            TryLockRequest, UnlockRequest, UnsubscribeConfigurationRequest,
            dapr_client::DaprClient, subscribe_topic_events_request_alpha1 as request_type,
            subscribe_topic_events_response_alpha1 as response_type,
            topic_event_response::TopicEventResponseStatus, unlock_response,
        },
    },
    runtime as layotto,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tonic::{Code, Request, transport::Channel};

const APP: &str = "app1";

/// The messages sent on `receive`, as a request stream.
fn stream_of<T: Send + 'static>(receive: mpsc::Receiver<T>) -> impl Stream<Item = T> + Send {
    futures_util::stream::unfold(
        receive,
        |mut s| async move { s.recv().await.map(|m| (m, s)) },
    )
}

/// A Dapr client over a new HTTP/2 connection to `address`.
async fn dapr_client(address: SocketAddr) -> DaprClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to layotto");
    DaprClient::new(channel)
}

/// The components of most tests, with `state`, `pub_subs` and `lock` of the backend given.
fn components(state: Value, pubsub: Value, lock: Value) -> Value {
    json!({
        "app": {"app_id": APP},
        "state": {"store": state},
        "pub_subs": {"ps": pubsub},
        "lock": {"locks": lock},
        "config_store": {"config": {"type": "in-memory"}}
    })
}

/// Each backend the tests run on: in-memory, and a real redis (kept alive with the config).
fn backends() -> Vec<(&'static str, Value, Option<RedisServer>)> {
    let redis = RedisServer::start();
    let meta = json!({"redisHost": redis.endpoint()});
    vec![
        (
            "in-memory",
            components(
                json!({"type": "in-memory"}),
                json!({"type": "in-memory"}),
                json!({"type": "in-memory"}),
            ),
            None,
        ),
        (
            "redis",
            components(
                json!({"type": "redis", "metadata": meta}),
                json!({"type": "redis", "metadata": {"redisHost": redis.endpoint(), "consumerID": "g1"}}),
                json!({"type": "redis", "metadata": meta}),
            ),
            Some(redis),
        ),
    ]
}

fn item(key: &str, value: &str) -> StateItem {
    StateItem {
        key: key.into(),
        value: value.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

fn with_etag(mut item: StateItem, etag: &str) -> StateItem {
    item.etag = Some(Etag { value: etag.into() });
    item
}

async fn save(
    client: &mut DaprClient<Channel>,
    items: Vec<StateItem>,
) -> Result<(), tonic::Status> {
    client
        .save_state(SaveStateRequest {
            store_name: "store".into(),
            states: items,
        })
        .await
        .map(|_| ())
}

async fn get(client: &mut DaprClient<Channel>, key: &str) -> (String, String) {
    let got = client
        .get_state(GetStateRequest {
            store_name: "store".into(),
            key: key.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (String::from_utf8(got.data.to_vec()).unwrap(), got.etag)
}

fn assert_status(err: &tonic::Status, code: Code, message: &str) {
    assert_eq!(err.code(), code, "{err:?}");
    assert!(
        err.message().contains(message),
        "\"{}\" does not contain \"{message}\"",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_rpcs_keep_daprs_etags_prefixes_and_errors_on_every_store() {
    for (backend, grpc, _redis) in backends() {
        let layotto = Layotto::start(&grpc_config(grpc, json!({})));
        let address = layotto.address("grpc");
        let mut client = dapr_client(address).await;

        save(&mut client, vec![item("k1", "v1"), item("k2", "v2")])
            .await
            .unwrap();
        let (value, etag) = get(&mut client, "k1").await;
        assert_eq!(value, "v1", "{backend}");
        assert!(!etag.is_empty(), "{backend}");
        assert_eq!(
            get(&mut client, "absent").await,
            (String::new(), String::new())
        );

        // Dapr's key prefix: LayOtto's API on the same store sees `app1||k1`.
        let mut layotto_client = runtime_client(address).await;
        let seen = layotto_client
            .get_state(layotto::GetStateRequest {
                store_name: "store".into(),
                key: format!("{APP}||k1"),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(&seen.data[..], b"v1", "{backend}");

        // Etags: a stale one is ABORTED with Dapr's message; the right one writes.
        let stale = save(&mut client, vec![with_etag(item("k1", "x"), "999999")])
            .await
            .unwrap_err();
        assert_status(
            &stale,
            Code::Aborted,
            "failed saving state in state store store: possible etag mismatch",
        );
        save(&mut client, vec![with_etag(item("k1", "v1b"), &etag)])
            .await
            .unwrap();
        let (value, new_etag) = get(&mut client, "k1").await;
        assert_eq!(value, "v1b");
        assert_ne!(new_etag, etag);
        // First-write without an etag: the key must not exist yet.
        let mut first = item("k1", "again");
        first.options = Some(StateOptions {
            concurrency: StateConcurrency::ConcurrencyFirstWrite as i32,
            consistency: 0,
        });
        assert_eq!(
            save(&mut client, vec![first]).await.unwrap_err().code(),
            Code::Aborted
        );

        let bulk = client
            .get_bulk_state(GetBulkStateRequest {
                store_name: "store".into(),
                keys: vec!["k1".into(), "absent".into(), "k2".into()],
                parallelism: 2,
                metadata: HashMap::new(),
            })
            .await
            .unwrap()
            .into_inner();
        let found: Vec<(&str, &[u8])> = bulk
            .items
            .iter()
            .map(|i| (i.key.as_str(), &i.data[..]))
            .collect();
        assert_eq!(
            found,
            [("k1", &b"v1b"[..]), ("absent", b""), ("k2", b"v2")],
            "{backend}"
        );

        // Delete with a stale etag fails, with the right one succeeds.
        let err = client
            .delete_state(DeleteStateRequest {
                store_name: "store".into(),
                key: "k1".into(),
                etag: Some(Etag {
                    value: "999999".into(),
                }),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_status(&err, Code::Aborted, "failed deleting state with key k1");
        client
            .delete_state(DeleteStateRequest {
                store_name: "store".into(),
                key: "k1".into(),
                etag: Some(Etag { value: new_etag }),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(get(&mut client, "k1").await.0, "");

        // Transactions: all or nothing; a stale etag inside is INTERNAL, as daprd answers.
        let op = |kind: &str, item: StateItem| TransactionalStateOperation {
            operation_type: kind.into(),
            request: Some(item),
        };
        let transaction = |operations| ExecuteStateTransactionRequest {
            store_name: "store".into(),
            operations,
            metadata: HashMap::new(),
        };
        client
            .execute_state_transaction(transaction(vec![
                op("upsert", item("t1", "a")),
                op("delete", item("k2", "")),
            ]))
            .await
            .unwrap();
        assert_eq!(get(&mut client, "t1").await.0, "a");
        assert_eq!(get(&mut client, "k2").await.0, "");
        let err = client
            .execute_state_transaction(transaction(vec![
                op("upsert", item("t2", "b")),
                op("upsert", with_etag(item("t1", "c"), "999999")),
            ]))
            .await
            .unwrap_err();
        assert_status(
            &err,
            Code::Internal,
            "error while executing state transaction",
        );
        assert_eq!(
            get(&mut client, "t2").await.0,
            "",
            "{backend}: nothing applied"
        );
        let err = client
            .execute_state_transaction(transaction(vec![op("merge", item("t1", "c"))]))
            .await
            .unwrap_err();
        assert_status(
            &err,
            Code::Unimplemented,
            "operation type merge not supported",
        );

        client
            .delete_bulk_state(DeleteBulkStateRequest {
                store_name: "store".into(),
                states: vec![item("t1", ""), item("absent", "")],
            })
            .await
            .unwrap();
        assert_eq!(get(&mut client, "t1").await.0, "");

        // Missing store and bad keys.
        let missing = client
            .get_state(GetStateRequest {
                store_name: "nope".into(),
                key: "k".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_status(
            &missing,
            Code::InvalidArgument,
            "state store nope is not found",
        );
        let bad = save(&mut client, vec![item("a||b", "x")])
            .await
            .unwrap_err();
        assert_status(&bad, Code::InvalidArgument, "can't contain '||'");
        let empty = save(&mut client, vec![item("", "x")]).await.unwrap_err();
        assert_status(&empty, Code::InvalidArgument, "state key cannot be empty");
        let ttl = StateItem {
            metadata: HashMap::from([("ttlInSeconds".to_owned(), "soon".to_owned())]),
            ..item("k", "v")
        };
        assert_eq!(
            save(&mut client, vec![ttl]).await.unwrap_err().code(),
            Code::InvalidArgument
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_state_filters_sorts_and_pages_the_apps_keys() {
    let redis = RedisServer::start();
    let config = grpc_config(
        json!({
            "app": {"app_id": APP},
            "state": {
                "store": {"type": "in-memory"},
                "redis": {"type": "redis", "metadata": {"redisHost": redis.endpoint()}}
            }
        }),
        json!({}),
    );
    let layotto = Layotto::start(&config);
    let mut client = dapr_client(layotto.address("grpc")).await;
    let people = [
        (
            "1",
            json!({"person": {"org": "Dev Ops", "id": 1036}, "state": "WA"}),
        ),
        (
            "2",
            json!({"person": {"org": "Hardware", "id": 1028}, "state": "OR"}),
        ),
        (
            "3",
            json!({"person": {"org": "Finance", "id": 1071}, "state": "CA"}),
        ),
        (
            "4",
            json!({"person": {"org": "Dev Ops", "id": 1042}, "state": "WA"}),
        ),
    ];
    save(
        &mut client,
        people
            .iter()
            .map(|(key, value)| item(key, &value.to_string()))
            .collect(),
    )
    .await
    .unwrap();
    // Another app's key in the same store is not this app's to query.
    let mut layotto_client = runtime_client(layotto.address("grpc")).await;
    layotto_client
        .save_state(layotto::SaveStateRequest {
            store_name: "store".into(),
            states: vec![common::item("other||5", r#"{"state":"WA"}"#)],
        })
        .await
        .unwrap();

    let query = |query: Value| QueryStateRequest {
        store_name: "store".into(),
        query: query.to_string(),
        metadata: HashMap::new(),
    };
    let found = client
        .query_state_alpha1(query(json!({
            "filter": {"EQ": {"state": "WA"}},
            "sort": [{"key": "person.id", "order": "DESC"}]
        })))
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<&str> = found.results.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["4", "1"]);
    let value: Value = serde_json::from_slice(&found.results[0].data).unwrap();
    assert_eq!(value["person"]["id"], 1042);
    assert!(!found.results[0].etag.is_empty());

    let page = client
        .query_state_alpha1(query(
            json!({"sort": [{"key": "person.id"}], "page": {"limit": 3}}),
        ))
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<&str> = page.results.iter().map(|r| r.key.as_str()).collect();
    assert_eq!((keys, page.token.as_str()), (vec!["2", "1", "4"], "3"));
    let rest = client
        .query_state_alpha1(query(
            json!({"sort": [{"key": "person.id"}], "page": {"limit": 3, "token": page.token}}),
        ))
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<&str> = rest.results.iter().map(|r| r.key.as_str()).collect();
    assert_eq!((keys, rest.token.as_str()), (vec!["3"], ""));

    let bad = client
        .query_state_alpha1(query(json!({"filter": {"LIKE": {"state": "W%"}}})))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    let mut on_redis = query(json!({}));
    on_redis.store_name = "redis".into();
    let unsupported = client.query_state_alpha1(on_redis).await.unwrap_err();
    assert_status(
        &unsupported,
        Code::Internal,
        "state store redis doesn't support query",
    );
}

/// A streaming subscription of `topic` on `ps` with `metadata`, after its `initial_response`:
/// the responses, and the sender of the app's messages.
async fn subscribe(
    client: &mut DaprClient<Channel>,
    topic: &str,
    metadata: HashMap<String, String>,
) -> (
    tonic::Streaming<SubscribeTopicEventsResponseAlpha1>,
    mpsc::Sender<SubscribeTopicEventsRequestAlpha1>,
) {
    let (send, receive) = mpsc::channel(16);
    let initial = request_type::SubscribeTopicEventsRequestType::InitialRequest(
        SubscribeTopicEventsRequestInitialAlpha1 {
            pubsub_name: "ps".into(),
            topic: topic.into(),
            metadata,
            dead_letter_topic: Some("dead".into()),
        },
    );
    send.send(SubscribeTopicEventsRequestAlpha1 {
        subscribe_topic_events_request_type: Some(initial),
    })
    .await
    .unwrap();
    let mut responses = client
        .subscribe_topic_events_alpha1(stream_of(receive))
        .await
        .unwrap()
        .into_inner();
    let first = responses.next().await.unwrap().unwrap();
    assert!(matches!(
        first.subscribe_topic_events_response_type,
        Some(response_type::SubscribeTopicEventsResponseType::InitialResponse(_))
    ));
    (responses, send)
}

/// The next event on `responses`, as (id, data, content type, source).
async fn next_event(
    responses: &mut tonic::Streaming<SubscribeTopicEventsResponseAlpha1>,
) -> layotto_proto::dapr::runtime::TopicEventRequest {
    let message = tokio::time::timeout(Duration::from_secs(10), responses.next())
        .await
        .expect("an event within 10 s")
        .unwrap()
        .unwrap();
    match message.subscribe_topic_events_response_type {
        Some(response_type::SubscribeTopicEventsResponseType::EventMessage(event)) => event,
        other => panic!("not an event: {other:?}"),
    }
}

async fn answer(
    send: &mpsc::Sender<SubscribeTopicEventsRequestAlpha1>,
    id: &str,
    status: TopicEventResponseStatus,
) {
    let processed = request_type::SubscribeTopicEventsRequestType::EventProcessed(
        SubscribeTopicEventsRequestProcessedAlpha1 {
            id: id.into(),
            status: Some(TopicEventResponse {
                status: status as i32,
            }),
        },
    );
    send.send(SubscribeTopicEventsRequestAlpha1 {
        subscribe_topic_events_request_type: Some(processed),
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_reach_a_streaming_subscriber_every_one() {
    for (backend, grpc, _redis) in backends() {
        let layotto = Layotto::start(&grpc_config(grpc, json!({})));
        let mut client = dapr_client(layotto.address("grpc")).await;
        let (mut responses, send) = subscribe(&mut client, "orders", HashMap::new()).await;

        let listed = client
            .get_metadata(GetMetadataRequest {})
            .await
            .unwrap()
            .into_inner()
            .subscriptions;
        assert_eq!(listed.len(), 1, "{backend}: {listed:?}");
        assert_eq!(
            (listed[0].pubsub_name.as_str(), listed[0].topic.as_str()),
            ("ps", "orders")
        );
        assert_eq!(listed[0].dead_letter_topic, "dead");
        let (mut dead_letters, dead_send) = subscribe(&mut client, "dead", HashMap::new()).await;

        for n in 0..3 {
            client
                .publish_event(PublishEventRequest {
                    pubsub_name: "ps".into(),
                    topic: "orders".into(),
                    data: format!(r#"{{"n":{n}}}"#).into_bytes().into(),
                    data_content_type: "application/json".into(),
                    metadata: HashMap::from([("trace".to_owned(), format!("t{n}"))]),
                })
                .await
                .unwrap();
        }
        let entries = (3..6)
            .map(|n| BulkPublishRequestEntry {
                entry_id: format!("e{n}"),
                event: format!(r#"{{"n":{n}}}"#).into_bytes().into(),
                content_type: "application/json".into(),
                metadata: HashMap::new(),
            })
            .collect::<Vec<_>>();
        let bulk = BulkPublishRequest {
            pubsub_name: "ps".into(),
            topic: "orders".into(),
            entries: entries[..2].to_vec(),
            metadata: HashMap::new(),
        };
        let failed = client.bulk_publish_event(bulk).await.unwrap().into_inner();
        assert!(failed.failed_entries.is_empty(), "{failed:?}");
        let alpha = BulkPublishRequest {
            pubsub_name: "ps".into(),
            topic: "orders".into(),
            entries: entries[2..].to_vec(),
            metadata: HashMap::new(),
        };
        #[expect(deprecated, reason = "Dapr's deprecated name is served too")]
        client.bulk_publish_event_alpha1(alpha).await.unwrap();

        let mut seen = Vec::new();
        for n in 0..6 {
            let event = next_event(&mut responses).await;
            assert_eq!(event.source, APP, "{backend}");
            assert_eq!(event.topic, "orders");
            assert_eq!(event.pubsub_name, "ps");
            assert_eq!(event.data_content_type, "application/json");
            let data: Value = serde_json::from_slice(&event.data).unwrap();
            seen.push(data["n"].as_i64().unwrap());
            if n == 0 {
                let extensions = event.extensions.clone().unwrap();
                assert!(extensions.fields.contains_key("trace"), "{extensions:?}");
                // RETRY: the same event comes again before the next one.
                answer(&send, &event.id, TopicEventResponseStatus::Retry).await;
                let again = next_event(&mut responses).await;
                assert_eq!(again.id, event.id, "{backend}");
            }
            // The last is dropped: it moves to the dead-letter topic.
            let status = if n == 5 {
                TopicEventResponseStatus::Drop
            } else {
                TopicEventResponseStatus::Success
            };
            answer(&send, &event.id, status).await;
            if n == 5 {
                let moved = next_event(&mut dead_letters).await;
                assert_eq!(
                    (moved.id.as_str(), moved.topic.as_str()),
                    (event.id.as_str(), "dead")
                );
                assert_eq!(moved.data, event.data, "{backend}");
                answer(&dead_send, &moved.id, TopicEventResponseStatus::Success).await;
            }
        }
        assert_eq!(seen, [0, 1, 2, 3, 4, 5], "{backend}");

        // A rawPayload subscription gets what the broker holds, the CloudEvent as published,
        // wrapped as daprd's FromRawPayload wraps it; dropped, the dead-letter topic gets that
        // CloudEvent back as it was.
        let raw = HashMap::from([("rawPayload".to_owned(), "true".to_owned())]);
        let (mut raw_events, raw_send) = subscribe(&mut client, "raw-orders", raw).await;
        client
            .publish_event(PublishEventRequest {
                pubsub_name: "ps".into(),
                topic: "raw-orders".into(),
                data: br#"{"n":7}"#.to_vec().into(),
                data_content_type: "application/json".into(),
                metadata: HashMap::new(),
            })
            .await
            .unwrap();
        let event = next_event(&mut raw_events).await;
        assert_eq!(
            (
                event.data_content_type.as_str(),
                event.source.as_str(),
                event.topic.as_str()
            ),
            ("application/octet-stream", "Dapr", "raw-orders"),
            "{backend}"
        );
        let extensions = &event.extensions.as_ref().unwrap().fields;
        assert!(
            !extensions.contains_key("rawPayload"),
            "{backend}: the wrapping adds no metadata, as daprd's: {extensions:?}"
        );
        let held: Value = serde_json::from_slice(&event.data).unwrap();
        assert_eq!(
            (&held["data"], &held["source"], &held["id"]),
            (&json!({"n": 7}), &json!(APP), &json!(event.id)),
            "{backend}: {held}"
        );
        answer(&raw_send, &event.id, TopicEventResponseStatus::Drop).await;
        let moved = next_event(&mut dead_letters).await;
        assert_eq!(
            (
                moved.id.as_str(),
                moved.data_content_type.as_str(),
                moved.source.as_str()
            ),
            (event.id.as_str(), "application/json", APP),
            "{backend}"
        );
        assert_eq!(
            serde_json::from_slice::<Value>(&moved.data).unwrap(),
            json!({"n": 7}),
            "{backend}"
        );
        answer(&dead_send, &moved.id, TopicEventResponseStatus::Success).await;
        drop((raw_send, raw_events));

        // Errors: missing pub/sub, empty topic, duplicate bulk ids, bad first message.
        let missing = client
            .publish_event(PublishEventRequest {
                pubsub_name: "nope".into(),
                topic: "orders".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_status(&missing, Code::InvalidArgument, "pubsub nope is not found");
        let no_topic = client
            .publish_event(PublishEventRequest {
                pubsub_name: "ps".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_status(
            &no_topic,
            Code::InvalidArgument,
            "topic is empty in pubsub ps",
        );
        let twice = BulkPublishRequest {
            pubsub_name: "ps".into(),
            topic: "orders".into(),
            entries: vec![entries[0].clone(), entries[0].clone()],
            metadata: HashMap::new(),
        };
        let err = client.bulk_publish_event(twice).await.unwrap_err();
        assert_status(&err, Code::InvalidArgument, "entryId e3 is duplicated");
        drop((send, dead_send));
        drop((responses, dead_letters));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_needs_an_initial_request_and_a_known_pubsub() {
    let layotto = Layotto::start(&grpc_config(
        components(
            json!({"type": "in-memory"}),
            json!({"type": "in-memory"}),
            json!({"type": "in-memory"}),
        ),
        json!({}),
    ));
    let mut client = dapr_client(layotto.address("grpc")).await;
    let processed = SubscribeTopicEventsRequestAlpha1 {
        subscribe_topic_events_request_type: Some(
            request_type::SubscribeTopicEventsRequestType::EventProcessed(Default::default()),
        ),
    };
    let err = match client
        .subscribe_topic_events_alpha1(futures_util::stream::iter([processed]))
        .await
    {
        Err(err) => err,
        Ok(response) => response.into_inner().next().await.unwrap().unwrap_err(),
    };
    assert_status(&err, Code::InvalidArgument, "initial request is required");
    let initial = SubscribeTopicEventsRequestAlpha1 {
        subscribe_topic_events_request_type: Some(
            request_type::SubscribeTopicEventsRequestType::InitialRequest(
                SubscribeTopicEventsRequestInitialAlpha1 {
                    pubsub_name: "nope".into(),
                    topic: "t".into(),
                    ..Default::default()
                },
            ),
        ),
    };
    let err = match client
        .subscribe_topic_events_alpha1(futures_util::stream::iter([initial]))
        .await
    {
        Err(err) => err,
        Ok(response) => response.into_inner().next().await.unwrap().unwrap_err(),
    };
    assert_status(&err, Code::InvalidArgument, "pubsub nope is not found");
}

/// An HTTP/1.1 server answering "METHOD PATH BODY", `404` for paths under `/missing` and
/// `200` otherwise, with the request's `x-tenant` and `dapr-caller-app-id` as `x-tenant` and
/// `x-caller` headers.
fn http_echo() -> SocketAddr {
    server(|stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut request_line = String::new();
        reader.read_line(&mut request_line).unwrap();
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_owned(), value.trim().to_owned());
            }
        }
        let length = headers
            .get("content-length")
            .map_or(0, |l| l.parse().unwrap());
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap(), parts.next().unwrap());
        let reply = format!("{method} {path} {}", String::from_utf8_lossy(&body));
        let status = if path.starts_with("/missing") {
            "404 Not Found"
        } else {
            "200 OK"
        };
        let header = |name: &str| headers.get(name).cloned().unwrap_or_default();
        let mut stream = stream;
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\nx-tenant: {}\r\nx-caller: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
            header("x-tenant"),
            header("dapr-caller-app-id"),
            reply.len()
        );
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_bindings_and_secrets_answer_as_daprd() {
    let app = http_echo();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, r#"{"db": {"password": "pw"}, "token": "t0k"}"#).unwrap();
    let config = grpc_config(
        json!({
            "app": {"app_id": APP},
            "rpcs": {"http": {"type": "http", "metadata": {"targets": format!("app2={app}")}}},
            "bindings": {"web": {"type": "http", "metadata": {"url": format!("http://{app}/api")}}},
            "secret_store": {"secrets": {"type": "local.file",
                "metadata": {"secretsFile": secrets, "nestedSeparator": ":"}}}
        }),
        json!({}),
    );
    let layotto = Layotto::start(&config);
    let mut client = dapr_client(layotto.address("grpc")).await;

    let call = |method: &str| {
        let mut request = tonic::Request::new(InvokeServiceRequest {
            id: "app2".into(),
            message: Some(InvokeRequest {
                method: method.into(),
                data: Some(prost_types::Any {
                    type_url: String::new(),
                    value: b"o-1".to_vec(),
                }),
                content_type: "text/plain".into(),
                http_extension: Some(HttpExtension {
                    verb: Verb::Put as i32,
                    querystring: "a=1".into(),
                }),
            }),
        });
        request
            .metadata_mut()
            .insert("x-tenant", "t1".parse().unwrap());
        request
    };
    let invoked = client.invoke_service(call("orders")).await.unwrap();
    // daprd's response metadata of an HTTP app: its headers (IANA's permanent names prefixed
    // `dapr-`) and its status; the call's metadata reached the app with the caller's id.
    let metadata = invoked.metadata();
    assert_eq!(metadata.get("dapr-http-status").unwrap(), "200");
    assert_eq!(metadata.get("dapr-content-type").unwrap(), "text/plain");
    assert_eq!(metadata.get("x-tenant").unwrap(), "t1");
    assert_eq!(metadata.get("x-caller").unwrap(), APP);
    let invoked = invoked.into_inner();
    assert_eq!(invoked.data.unwrap().value, b"PUT /orders?a=1 o-1");
    assert_eq!(invoked.content_type, "text/plain");
    // An app's error status is the call's error, as daprd maps it (404: NOT_FOUND "Not Found").
    let missing = client.invoke_service(call("missing/1")).await.unwrap_err();
    assert_status(&missing, Code::NotFound, "Not Found");
    assert_eq!(missing.metadata().get("dapr-http-status").unwrap(), "404");
    let no_message = client
        .invoke_service(InvokeServiceRequest {
            id: "app2".into(),
            message: None,
        })
        .await
        .unwrap_err();
    assert_eq!(no_message.code(), Code::InvalidArgument);

    let bound = client
        .invoke_binding(InvokeBindingRequest {
            name: "web".into(),
            data: b"b-1".to_vec().into(),
            metadata: HashMap::from([("path".to_owned(), "things".to_owned())]),
            operation: "post".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&bound.data[..], b"POST /api/things b-1");
    assert_eq!(bound.metadata["statusCode"], "200");
    let missing = client
        .invoke_binding(InvokeBindingRequest {
            name: "nope".into(),
            operation: "get".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(
        &missing,
        Code::Internal,
        "couldn't find output binding nope",
    );

    let secret = client
        .get_secret(GetSecretRequest {
            store_name: "secrets".into(),
            key: "db:password".into(),
            metadata: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(secret.data["db:password"], "pw");
    let bulk = client
        .get_bulk_secret(GetBulkSecretRequest {
            store_name: "secrets".into(),
            metadata: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bulk.data["token"].secrets["token"], "t0k");
    assert_eq!(bulk.data.len(), 2);
    let absent = client
        .get_secret(GetSecretRequest {
            store_name: "secrets".into(),
            key: "nothing".into(),
            metadata: HashMap::new(),
        })
        .await
        .unwrap_err();
    assert_status(
        &absent,
        Code::Internal,
        "failed getting secret with key nothing from secret store secrets",
    );
    let no_store = client
        .get_secret(GetSecretRequest {
            store_name: "vault".into(),
            key: "x".into(),
            metadata: HashMap::new(),
        })
        .await
        .unwrap_err();
    assert_status(
        &no_store,
        Code::InvalidArgument,
        "secret store vault is not found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_get_subscribe_and_unsubscribe_by_id() {
    let config = grpc_config(
        components(
            json!({"type": "in-memory"}),
            json!({"type": "in-memory"}),
            json!({"type": "in-memory"}),
        ),
        json!({}),
    );
    let layotto = Layotto::start(&config);
    let address = layotto.address("grpc");
    let mut client = dapr_client(address).await;
    let mut layotto_client = runtime_client(address).await;
    let save = |key: &str, content: &str| layotto::SaveConfigurationRequest {
        store_name: "config".into(),
        app_id: APP.into(),
        items: vec![layotto::ConfigurationItem {
            key: key.into(),
            content: content.into(),
            ..Default::default()
        }],
        metadata: HashMap::new(),
    };
    layotto_client
        .save_configuration(save("color", "red"))
        .await
        .unwrap();
    layotto_client
        .save_configuration(save("size", "L"))
        .await
        .unwrap();

    for rpc in ["stable", "alpha"] {
        let request = GetConfigurationRequest {
            store_name: "config".into(),
            keys: vec!["color".into()],
            metadata: HashMap::new(),
        };
        let got = if rpc == "stable" {
            client.get_configuration(request).await
        } else {
            client.get_configuration_alpha1(request).await
        }
        .unwrap()
        .into_inner();
        assert_eq!(got.items.len(), 1, "{rpc}");
        assert_eq!(got.items["color"].value, "red", "{rpc}");
    }
    let all = client
        .get_configuration(GetConfigurationRequest {
            store_name: "config".into(),
            keys: vec![],
            metadata: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut keys: Vec<&String> = all.items.keys().collect();
    keys.sort();
    assert_eq!(keys, ["color", "size"]);
    let missing = client
        .get_configuration(GetConfigurationRequest {
            store_name: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(
        &missing,
        Code::InvalidArgument,
        "configuration store nope is not found",
    );

    // The first message carries the id only; then changes of the selected keys follow.
    let mut updates = client
        .subscribe_configuration_alpha1(SubscribeConfigurationRequest {
            store_name: "config".into(),
            keys: vec!["color".into()],
            metadata: HashMap::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = updates.next().await.unwrap().unwrap();
    assert!(!first.id.is_empty());
    assert!(first.items.is_empty());
    layotto_client
        .save_configuration(save("size", "XL"))
        .await
        .unwrap();
    layotto_client
        .save_configuration(save("color", "blue"))
        .await
        .unwrap();
    let change = tokio::time::timeout(Duration::from_secs(10), updates.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(change.id, first.id);
    assert_eq!(change.items.len(), 1, "only the selected key: {change:?}");
    assert_eq!(change.items["color"].value, "blue");

    // Unsubscribing by id, from another connection, ends the stream.
    let mut other = dapr_client(address).await;
    let unsubscribed = other
        .unsubscribe_configuration(UnsubscribeConfigurationRequest {
            store_name: "config".into(),
            id: first.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(unsubscribed.ok, "{unsubscribed:?}");
    let end = tokio::time::timeout(Duration::from_secs(10), updates.next())
        .await
        .unwrap();
    assert!(end.is_none(), "the stream ended: {end:?}");
    let again = other
        .unsubscribe_configuration_alpha1(UnsubscribeConfigurationRequest {
            store_name: "config".into(),
            id: first.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.ok);
    assert!(
        again.message.contains("subscription does not exist"),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_exclude_other_owners_under_daprs_key_on_every_store() {
    for (backend, grpc, _redis) in backends() {
        let layotto = Layotto::start(&grpc_config(grpc, json!({})));
        let address = layotto.address("grpc");
        let mut client = dapr_client(address).await;
        let try_lock = |owner: &str, expiry: i32| TryLockRequest {
            store_name: "locks".into(),
            resource_id: "res".into(),
            lock_owner: owner.into(),
            expiry_in_seconds: expiry,
        };
        let unlock = |owner: &str| UnlockRequest {
            store_name: "locks".into(),
            resource_id: "res".into(),
            lock_owner: owner.into(),
        };
        assert!(
            client
                .try_lock_alpha1(try_lock("a", 30))
                .await
                .unwrap()
                .into_inner()
                .success
        );
        assert!(
            !client
                .try_lock_alpha1(try_lock("b", 30))
                .await
                .unwrap()
                .into_inner()
                .success
        );
        // LayOtto's API sees the lock under Dapr's key `lock||app1||res`.
        let mut layotto_client = runtime_client(address).await;
        let taken = layotto_client
            .try_lock(layotto::TryLockRequest {
                store_name: "locks".into(),
                resource_id: format!("lock||{APP}||res"),
                lock_owner: "c".into(),
                expire: 30,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!taken.success, "{backend}");

        let status = |r: layotto_proto::dapr::runtime::UnlockResponse| r.status();
        let others = client
            .unlock_alpha1(unlock("b"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status(others), unlock_response::Status::LockBelongsToOthers);
        let mine = client
            .unlock_alpha1(unlock("a"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status(mine), unlock_response::Status::Success);
        let gone = client
            .unlock_alpha1(unlock("a"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            status(gone),
            unlock_response::Status::LockDoesNotExist,
            "{backend}"
        );

        let err = client.try_lock_alpha1(try_lock("a", 0)).await.unwrap_err();
        assert_status(
            &err,
            Code::InvalidArgument,
            "ExpiryInSeconds is not positive in lock store locks",
        );
        let err = client.try_lock_alpha1(try_lock("", 5)).await.unwrap_err();
        assert_status(
            &err,
            Code::InvalidArgument,
            "LockOwner is empty in lock store locks",
        );
        let mut elsewhere = try_lock("a", 5);
        elsewhere.store_name = "nope".into();
        let err = client.try_lock_alpha1(elsewhere).await.unwrap_err();
        assert_status(&err, Code::InvalidArgument, "lock store nope is not found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_lists_components_with_dapr_types_and_keeps_extended_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets.json");
    std::fs::write(&secrets, "{}").unwrap();
    let mut grpc = components(
        json!({"type": "in-memory"}),
        json!({"type": "in-memory"}),
        json!({"type": "in-memory"}),
    );
    grpc["secret_store"] = json!({"env": {"type": "local.env"}});
    let second = json!({"name": "second", "address": "127.0.0.1:0", "bind_port": true,
        "filter_chains": [{"filters": [{"type": "grpc", "config": {"grpc_config": {}}}]}]});
    let mut config = grpc_config(grpc, json!({}));
    config["servers"][0]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(second);
    let layotto = Layotto::start(&config);
    let mut client = dapr_client(layotto.address("grpc")).await;
    let metadata = client
        .get_metadata(GetMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(metadata.id, APP);
    assert!(metadata.runtime_version.starts_with("layotto-rs "));
    let mut components: Vec<(String, String)> = metadata
        .registered_components
        .iter()
        .map(|c| (c.name.clone(), c.r#type.clone()))
        .collect();
    components.sort();
    assert_eq!(
        components,
        [
            ("config", "configuration.in-memory"),
            ("env", "secretstores.local.env"),
            ("locks", "lock.in-memory"),
            ("ps", "pubsub.in-memory"),
            ("store", "state.in-memory"),
        ]
        .map(|(n, t)| (n.to_owned(), t.to_owned()))
    );
    let store = metadata
        .registered_components
        .iter()
        .find(|c| c.name == "store")
        .unwrap();
    assert_eq!(store.version, "v1");
    assert!(store.capabilities.contains(&"ETAG".to_owned()));

    client
        .set_metadata(SetMetadataRequest {
            key: "owner".into(),
            value: "team-a".into(),
        })
        .await
        .unwrap();
    // Extended metadata is the process's: the other listener shows it too.
    let mut second = dapr_client(layotto.address("second")).await;
    let extended = second
        .get_metadata(GetMetadataRequest {})
        .await
        .unwrap()
        .into_inner()
        .extended_metadata;
    assert_eq!(extended["owner"], "team-a");
    let err = client
        .set_metadata(SetMetadataRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actors_workflows_jobs_crypto_and_conversation_are_unimplemented_saying_so() {
    let layotto = Layotto::start(&grpc_config(json!({}), json!({})));
    let mut client = dapr_client(layotto.address("grpc")).await;
    let errors = [
        client
            .invoke_actor(dapr::InvokeActorRequest::default())
            .await
            .unwrap_err(),
        client
            .start_workflow_beta1(dapr::StartWorkflowRequest::default())
            .await
            .unwrap_err(),
        client
            .schedule_job(dapr::ScheduleJobRequest::default())
            .await
            .unwrap_err(),
        client
            .subtle_get_key_alpha1(dapr::SubtleGetKeyRequest::default())
            .await
            .unwrap_err(),
        client
            .converse_alpha2(dapr::ConversationRequestAlpha2::default())
            .await
            .unwrap_err(),
    ];
    for (err, area) in
        errors
            .iter()
            .zip(["actors", "workflow", "jobs", "cryptography", "conversation"])
    {
        assert_status(
            err,
            Code::Unimplemented,
            &format!("layotto-rs does not serve Dapr's {area} API"),
        );
    }
    let streamed = match client
        .encrypt_alpha1(futures_util::stream::iter(
            [dapr::EncryptRequest::default()],
        ))
        .await
    {
        Err(err) => err,
        Ok(response) => response.into_inner().next().await.unwrap().unwrap_err(),
    };
    assert_status(
        &streamed,
        Code::Unimplemented,
        "cryptography API (EncryptAlpha1)",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_is_required_on_every_dapr_rpc_only() {
    let config = grpc_config(
        json!({"app": {"app_id": APP}, "state": {"store": {"type": "in-memory"}}}),
        json!({"dapr_api_token": "s3cret"}),
    );
    let layotto = Layotto::start(&config);
    let address = layotto.address("grpc");
    let mut client = dapr_client(address).await;
    let request = |token: Option<&str>| {
        let mut request = Request::new(GetMetadataRequest {});
        if let Some(token) = token {
            request
                .metadata_mut()
                .insert("dapr-api-token", token.parse().unwrap());
        }
        request
    };
    let missing = client.get_metadata(request(None)).await.unwrap_err();
    assert_status(&missing, Code::Unauthenticated, "missing api token");
    let wrong = client
        .get_metadata(request(Some("guess")))
        .await
        .unwrap_err();
    assert_status(&wrong, Code::Unauthenticated, "api token mismatch");
    let answered = client.get_metadata(request(Some("s3cret"))).await.unwrap();
    assert_eq!(answered.into_inner().id, APP);
    // Streams too, before the first message is read.
    let (_send, receive) = mpsc::channel::<SubscribeTopicEventsRequestAlpha1>(1);
    let err = match client
        .subscribe_topic_events_alpha1(stream_of(receive))
        .await
    {
        Err(err) => err,
        Ok(response) => response.into_inner().next().await.unwrap().unwrap_err(),
    };
    assert_eq!(err.code(), Code::Unauthenticated);
    // LayOtto's service on the same listener takes no Dapr token.
    let mut layotto_client = runtime_client(address).await;
    layotto_client
        .get_state(layotto::GetStateRequest {
            store_name: "store".into(),
            key: "k".into(),
            ..Default::default()
        })
        .await
        .unwrap();
}

/// A config for the binary with one gRPC listener on a free port.
fn binary_config() -> Value {
    grpc_config(
        json!({"app": {"app_id": APP}, "state": {"store": {"type": "in-memory"}}}),
        json!({}),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dapr_api_token_from_the_environment_and_shutdown_stop_the_binary_cleanly() {
    let mut command = Command::new(binary());
    command.env("DAPR_API_TOKEN", "from-env");
    let mut layotto = LayottoBinary::start_with(command, &binary_config(), &[], 1);
    let mut client = dapr_client(layotto.address("grpc")).await;
    let err = client
        .get_metadata(GetMetadataRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut shutdown = Request::new(ShutdownRequest {});
    shutdown
        .metadata_mut()
        .insert("dapr-api-token", "from-env".parse().unwrap());
    client.shutdown(shutdown).await.unwrap();
    let status = layotto.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", layotto.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_serves_daprs_api_on_50001_over_the_same_components() {
    let mut layotto = LayottoBinary::start_default();
    assert_eq!(
        layotto.address("dapr-grpc"),
        "127.0.0.1:50001".parse().unwrap()
    );
    let mut client = dapr_client(layotto.address("dapr-grpc")).await;
    client
        .save_state(SaveStateRequest {
            store_name: "state_demo".into(),
            states: vec![item("greeting", "hello")],
        })
        .await
        .unwrap();
    // The LayOtto listener serves the same store: the Dapr key is `layotto||greeting`, the
    // default app id being `layotto`.
    let mut layotto_client = runtime_client(layotto.address("grpc")).await;
    let seen = layotto_client
        .get_state(layotto::GetStateRequest {
            store_name: "state_demo".into(),
            key: "layotto||greeting".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&seen.data[..], b"hello");
    drop((client, layotto_client));
    layotto.stop_and_summary("dapr-grpc");
}
