//! etcd components on a 3-member etcd cluster on loopback (started here): calls fail over to
//! the healthy members when the leader is killed or frozen, the sequencer stays increasing and
//! a configuration subscription keeps flowing. layotto-rs in the test process, called by tonic.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{
    future::Future,
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::{etcd::EtcdCluster, *};
use futures_util::{StreamExt, stream};
use layotto_proto::runtime::{
    ConfigurationItem, GetConfigurationRequest, GetNextIdRequest, SaveConfigurationRequest,
    SubscribeConfigurationRequest, SubscribeConfigurationResponse, TryLockRequest, UnlockRequest,
    unlock_response,
};
use serde_json::json;

/// Every component's call timeout (seconds).
const TIMEOUT: u64 = 5;

/// layotto-rs with etcd config store, lock and sequencer on `cluster`, its leader their first
/// choice.
fn start_on(cluster: &mut EtcdCluster) -> Layotto {
    let endpoints = cluster.endpoints_leader_first();
    let list: Vec<&str> = endpoints.split(',').collect();
    let metadata = json!({"endpoints": endpoints, "dialTimeout": TIMEOUT.to_string()});
    Layotto::start(&grpc_config(
        json!({
            "config_store": {"config_demo": {"type": "etcd", "address": list, "timeout": TIMEOUT.to_string()}},
            "lock": {"lock_demo": {"type": "etcd", "metadata": metadata}},
            "sequencer": {"sequencer_demo": {"type": "etcd", "metadata": metadata}}
        }),
        json!({}),
    ))
}

fn item(key: &str, content: &str) -> ConfigurationItem {
    ConfigurationItem {
        key: key.into(),
        content: content.into(),
        group: "g".into(),
        label: "l".into(),
        ..Default::default()
    }
}

/// Awaits call `name` of `round`, which must succeed within the components' timeout.
async fn in_time<T>(
    round: usize,
    name: &str,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> T {
    let started = Instant::now();
    let answer = call
        .await
        .unwrap_or_else(|err| panic!("round {round}: {name}: {err:?}"));
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(TIMEOUT),
        "round {round}: {name} took {took:?}"
    );
    answer.into_inner()
}

/// One round of every kind of call, each of which must succeed within the components' timeout;
/// returns the sequencer's id.
async fn every_call(address: SocketAddr, round: usize) -> i64 {
    let mut client = runtime_client(address).await;
    let key = format!("k{round}");
    let save = client.save_configuration(SaveConfigurationRequest {
        store_name: "config_demo".into(),
        app_id: "app".into(),
        items: vec![item(&key, "v")],
        ..Default::default()
    });
    in_time(round, "SaveConfiguration", save).await;
    let get = client.get_configuration(GetConfigurationRequest {
        store_name: "config_demo".into(),
        app_id: "app".into(),
        group: "g".into(),
        label: "l".into(),
        keys: vec![key.clone()],
        ..Default::default()
    });
    let items = in_time(round, "GetConfiguration", get).await.items;
    assert_eq!(items.len(), 1, "round {round}: {items:?}");
    let lock = client.try_lock(TryLockRequest {
        store_name: "lock_demo".into(),
        resource_id: key.clone(),
        lock_owner: "owner".into(),
        expire: 30,
    });
    assert!(
        in_time(round, "TryLock", lock).await.success,
        "round {round}: the lock was taken"
    );
    let unlock = client.unlock(UnlockRequest {
        store_name: "lock_demo".into(),
        resource_id: key.clone(),
        lock_owner: "owner".into(),
    });
    let unlocked = in_time(round, "Unlock", unlock).await;
    assert_eq!(unlocked.status(), unlock_response::Status::Success);
    let next = client.get_next_id(GetNextIdRequest {
        store_name: "sequencer_demo".into(),
        key: "ids".into(),
        ..Default::default()
    });
    in_time(round, "GetNextId", next).await.next_id
}

/// Runs the rounds of every call in `range`, checking the ids keep increasing past `last_id`;
/// returns the last id.
async fn rounds(address: SocketAddr, range: std::ops::Range<usize>, mut last_id: i64) -> i64 {
    for round in range {
        let id = every_call(address, round).await;
        assert!(id > last_id, "round {round}: id {id} after {last_id}");
        last_id = id;
    }
    last_id
}

/// A subscription to group `g`, label `l` of `config_demo`, kept open.
async fn subscribe(address: SocketAddr) -> tonic::Streaming<SubscribeConfigurationResponse> {
    runtime_client(address)
        .await
        // The request stream stays open (a half-close would end the subscription).
        .subscribe_configuration(
            stream::iter([SubscribeConfigurationRequest {
                store_name: "config_demo".into(),
                app_id: "app".into(),
                group: "g".into(),
                label: "l".into(),
                ..Default::default()
            }])
            .chain(stream::pending()),
        )
        .await
        .unwrap()
        .into_inner()
}

/// Waits until `subscriber` has seen the saves of rounds `0..rounds`, in order.
async fn saw_every_save(
    subscriber: &mut tonic::Streaming<SubscribeConfigurationResponse>,
    rounds: usize,
) {
    let mut seen = Vec::new();
    while seen.len() < rounds {
        let change = tokio::time::timeout(WAIT, subscriber.next())
            .await
            .expect("a change did not arrive in time")
            .expect("the subscription ended")
            .unwrap();
        seen.extend(change.items.into_iter().map(|item| item.key));
    }
    let expected: Vec<String> = (0..rounds).map(|round| format!("k{round}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_over_when_the_leader_is_killed() {
    let mut cluster = EtcdCluster::start(3);
    let layotto = start_on(&mut cluster);
    let address = layotto.address("grpc");
    let mut subscriber = subscribe(address).await;
    let last = rounds(address, 0..5, 0).await;

    cluster.leader().stop();
    cluster.leader(); // the survivors elected a new one
    let last = rounds(address, 5..25, last).await;
    assert!(last >= 25);
    saw_every_save(&mut subscriber, 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_over_when_the_leader_is_frozen() {
    let mut cluster = EtcdCluster::start(3);
    let layotto = start_on(&mut cluster);
    let address = layotto.address("grpc");
    let mut subscriber = subscribe(address).await;
    let last = rounds(address, 0..5, 0).await;

    cluster.leader().pause(); // connections stay open, nothing is answered
    cluster.leader(); // the others elected a new one
    rounds(address, 5..25, last).await;
    saw_every_save(&mut subscriber, 25).await;
}
