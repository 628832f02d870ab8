//! The state API's semantics on every store — `in-memory`, and real `redis`, `etcd` and
//! `zookeeper` servers started here: etags, first- and last-write, bulk reads and deletes,
//! atomic transactions, TTL (refused by zookeeper, which keeps no expiry).
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::time::{Duration, Instant};

use common::{etcd::EtcdServer, redis::RedisServer, zookeeper::ZookeeperServer, *};
use layotto_proto::runtime::{
    DeleteBulkStateRequest, ExecuteStateTransactionRequest, GetBulkStateRequest, GetStateRequest,
    SaveStateRequest, StateItem, TransactionalStateOperation, runtime_client::RuntimeClient,
    state_options::StateConcurrency,
};
use serde_json::json;
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

async fn get(client: &mut RuntimeClient<Channel>, key: &str) -> (String, String) {
    let reply = client
        .get_state(GetStateRequest {
            store_name: STORE.into(),
            key: key.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    (String::from_utf8(reply.data.to_vec()).unwrap(), reply.etag)
}

/// The same checks for every store.
async fn semantics(client: &mut RuntimeClient<Channel>, store: &str) {
    save(client, vec![item("a", "1")]).await.unwrap();
    let (value, etag) = get(client, "a").await;
    assert_eq!(value, "1", "{store}");
    assert!(!etag.is_empty(), "{store}");
    // The right etag writes and changes the etag; the old one is then stale.
    save(client, vec![with_etag(item("a", "2"), &etag)])
        .await
        .unwrap();
    let (value, newer) = get(client, "a").await;
    assert_eq!(value, "2", "{store}");
    assert_ne!(newer, etag, "{store}: etags change on every write");
    let stale = save(client, vec![with_etag(item("a", "3"), &etag)])
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "{store}");
    // First write only creates; last write ignores etags.
    let first = with_concurrency(item("a", "x"), StateConcurrency::ConcurrencyFirstWrite);
    assert_eq!(
        save(client, vec![first]).await.unwrap_err().code(),
        Code::Aborted,
        "{store}"
    );
    let fresh = with_concurrency(item("b", "b1"), StateConcurrency::ConcurrencyFirstWrite);
    save(client, vec![fresh]).await.unwrap();
    let last = with_concurrency(
        with_etag(item("a", "4"), "bogus"),
        StateConcurrency::ConcurrencyLastWrite,
    );
    save(client, vec![last]).await.unwrap();
    assert_eq!(get(client, "a").await.0, "4", "{store}");

    // Bulk reads keep the order asked, with empty items for missing keys.
    let bulk = client
        .get_bulk_state(GetBulkStateRequest {
            store_name: STORE.into(),
            keys: vec!["b".into(), "missing".into(), "a".into()],
            parallelism: 2,
            metadata: Default::default(),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    let values: Vec<(&str, &[u8])> = bulk.iter().map(|i| (i.key.as_str(), &i.data[..])).collect();
    assert_eq!(
        values,
        [("b", &b"b1"[..]), ("missing", b""), ("a", b"4")],
        "{store}"
    );

    // A transaction whose second operation fails changes nothing.
    let (_, etag_b) = get(client, "b").await;
    let operation = |kind: &str, item: StateItem| TransactionalStateOperation {
        operation_type: kind.into(),
        request: Some(item),
    };
    let failing = ExecuteStateTransactionRequest {
        store_name: STORE.into(),
        operations: vec![
            operation("upsert", item("c", "new")),
            operation("delete", with_etag(item("b", ""), "stale")),
        ],
        metadata: Default::default(),
    };
    let err = client.execute_state_transaction(failing).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{store}");
    assert_eq!(
        get(client, "c").await.0,
        "",
        "{store}: nothing of the failed transaction"
    );
    let passing = ExecuteStateTransactionRequest {
        store_name: STORE.into(),
        operations: vec![
            operation("upsert", item("c", "new")),
            operation("delete", with_etag(item("b", ""), &etag_b)),
        ],
        metadata: Default::default(),
    };
    client.execute_state_transaction(passing).await.unwrap();
    assert_eq!(get(client, "c").await.0, "new", "{store}");
    assert_eq!(get(client, "b").await.0, "", "{store}");

    // Bulk delete, then TTL.
    client
        .delete_bulk_state(DeleteBulkStateRequest {
            store_name: STORE.into(),
            states: vec![item("a", ""), item("c", "")],
        })
        .await
        .unwrap();
    assert_eq!(get(client, "a").await.0, "", "{store}");
    let mut expiring = item("ttl", "soon gone");
    expiring.metadata.insert("ttlInSeconds".into(), "1".into());
    if store == "zookeeper" {
        let refused = save(client, vec![expiring]).await.unwrap_err();
        assert_eq!(
            refused.code(),
            Code::InvalidArgument,
            "{store}: {refused:?}"
        );
        assert_eq!(get(client, "ttl").await.0, "", "{store}: nothing saved");
        return;
    }
    save(client, vec![expiring]).await.unwrap();
    assert_eq!(get(client, "ttl").await.0, "soon gone", "{store}");
    let saved = Instant::now();
    while !get(client, "ttl").await.0.is_empty() {
        assert!(
            saved.elapsed() < Duration::from_secs(10),
            "{store}: never expired"
        );
        // Waiting for the TTL to pass is the thing tested.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_semantics_hold_on_every_store() {
    let redis = RedisServer::start();
    let etcd = EtcdServer::start();
    let zookeeper = ZookeeperServer::start();
    let stores = [
        json!({"type": "in-memory"}),
        json!({"type": "redis", "metadata": {"redisHost": redis.endpoint()}}),
        json!({"type": "etcd", "metadata": {"endpoints": etcd.endpoint()}}),
        // Dapr's keys; the prefix znode is created at start-up.
        json!({"type": "zookeeper", "metadata": {
            "servers": zookeeper.endpoint(),
            "sessionTimeout": "3s",
            "keyPrefixPath": "/layotto/state"
        }}),
    ];
    for store in stores {
        let kind = store["type"].as_str().unwrap().to_owned();
        let config = grpc_config(json!({"state": {STORE: store}}), json!({}));
        let layotto = Layotto::with_shards(&config, 2);
        let mut client = runtime_client(layotto.address("grpc")).await;
        semantics(&mut client, &kind).await;
    }
}
