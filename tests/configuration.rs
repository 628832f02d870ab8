//! End-to-end tests of the configuration API: layotto-rs (in the test process) with an
//! `in-memory` store and with an `etcd` store backed by a real etcd server started here, called
//! by tonic; the binary for the exit code of a start-up failure. etcd is also read
//! and written directly (etcd-client) to check the key layout and changes made behind our back.
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
    time::{Duration, Instant},
};

use common::{etcd::EtcdServer, *};
use futures_util::{StreamExt, stream};
use layotto_proto::runtime::{
    ConfigurationItem, DeleteConfigurationRequest, GetConfigurationRequest,
    SaveConfigurationRequest, SayHelloRequest, SubscribeConfigurationRequest,
    SubscribeConfigurationResponse,
};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tonic::{Code, Streaming};

const STORE: &str = "config_demo";
const APP: &str = "app";
/// The etcd store's `timeout` in these tests (seconds).
const ETCD_TIMEOUT: u64 = 2;

/// Watchers etcd has open, as its `/metrics` reports them.
const WATCHERS: &str = "etcd_debugging_mvcc_watcher_total";

/// layotto-rs on `configs/config_etcd.json`, pointed at `etcd` and a free port.
fn start_on_etcd(etcd: &EtcdServer) -> Layotto {
    let text = std::fs::read_to_string("configs/config_etcd.json")
        .unwrap()
        .replace("127.0.0.1:2379", &etcd.endpoint())
        .replace("127.0.0.1:34904", "127.0.0.1:0")
        .replace("\"10\"", &format!("\"{ETCD_TIMEOUT}\""));
    let config: Value = serde_json::from_str(&text).unwrap();
    Layotto::start(&config)
}

fn start_in_memory() -> Layotto {
    let components = json!({"config_store": {STORE: {"type": "in-memory"}}});
    Layotto::start(&grpc_config(components, json!({})))
}

fn item(group: &str, label: &str, key: &str, content: &str) -> ConfigurationItem {
    ConfigurationItem {
        key: key.into(),
        content: content.into(),
        group: group.into(),
        label: label.into(),
        tags: HashMap::from([("release".into(), "1.0".into())]),
        metadata: HashMap::from([("owner".into(), "ops".into())]),
    }
}

fn plain(group: &str, label: &str, key: &str, content: &str) -> ConfigurationItem {
    ConfigurationItem {
        tags: HashMap::new(),
        metadata: HashMap::new(),
        ..item(group, label, key, content)
    }
}

fn deleted(group: &str, label: &str, key: &str) -> ConfigurationItem {
    ConfigurationItem {
        metadata: HashMap::from([("deleted".into(), "true".into())]),
        ..plain(group, label, key, "")
    }
}

fn get_request(group: &str, keys: &[&str]) -> GetConfigurationRequest {
    GetConfigurationRequest {
        store_name: STORE.into(),
        app_id: APP.into(),
        group: group.into(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
        ..Default::default()
    }
}

fn delete_request(group: &str, keys: &[&str]) -> DeleteConfigurationRequest {
    DeleteConfigurationRequest {
        store_name: STORE.into(),
        app_id: APP.into(),
        group: group.into(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
        ..Default::default()
    }
}

fn save_request(items: Vec<ConfigurationItem>) -> SaveConfigurationRequest {
    SaveConfigurationRequest {
        store_name: STORE.into(),
        app_id: APP.into(),
        items,
        metadata: HashMap::new(),
    }
}

async fn get(address: SocketAddr, request: GetConfigurationRequest) -> Vec<ConfigurationItem> {
    let mut client = runtime_client(address).await;
    client
        .get_configuration(request)
        .await
        .unwrap()
        .into_inner()
        .items
}

/// A subscription as an SDK holds it: dropping it cancels the call.
struct Subscriber {
    responses: Streaming<SubscribeConfigurationResponse>,
    /// Ends the request stream when dropped, so the client resets the call.
    _requests_open: oneshot::Sender<()>,
}

/// Subscribes to `app` (`group`, or all groups) on a connection of its own and waits for the
/// acknowledgement.
async fn subscribe(address: SocketAddr, group: &str) -> Subscriber {
    let mut client = runtime_client(address).await;
    let request = SubscribeConfigurationRequest {
        store_name: STORE.into(),
        app_id: APP.into(),
        group: group.into(),
        ..Default::default()
    };
    let (requests_open, closed) = oneshot::channel::<()>();
    let requests =
        stream::iter([request]).chain(stream::once(closed).filter_map(|_| async { None }));
    let mut responses = client
        .subscribe_configuration(requests)
        .await
        .unwrap()
        .into_inner();
    let ack = next_change(&mut responses).await;
    assert_eq!((ack.store_name.as_str(), ack.app_id.as_str()), (STORE, APP));
    assert!(ack.items.is_empty(), "the acknowledgement carries no items");
    Subscriber {
        responses,
        _requests_open: requests_open,
    }
}

async fn next_change(
    responses: &mut Streaming<SubscribeConfigurationResponse>,
) -> SubscribeConfigurationResponse {
    tokio::time::timeout(WAIT, responses.message())
        .await
        .expect("no change arrived in time")
        .unwrap()
        .expect("the subscription ended")
}

async fn next_items(subscriber: &mut Subscriber) -> Vec<ConfigurationItem> {
    let change = next_change(&mut subscriber.responses).await;
    assert_eq!(
        (change.store_name.as_str(), change.app_id.as_str()),
        (STORE, APP)
    );
    change.items
}

async fn etcd_client(etcd: &EtcdServer) -> etcd_client::Client {
    etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap()
}

async fn etcd_value(etcd: &EtcdServer, key: &str) -> Option<String> {
    let response = etcd_client(etcd).await.get(key, None).await.unwrap();
    response
        .kvs()
        .first()
        .map(|kv| kv.value_str().unwrap().to_owned())
}

/// Save, get and delete with every way of selecting items; the answers are the same whichever
/// store serves them, so both stores run the same checks.
async fn round_trip(address: SocketAddr) {
    let mut client = runtime_client(address).await;
    let items = vec![
        item("g", "l", "a", "alpha"),
        plain("g", "l", "b", "beta"),
        item("h", "", "a", "other group"),
    ];
    client
        .save_configuration(save_request(items.clone()))
        .await
        .unwrap();
    assert_eq!(get(address, get_request("", &[])).await, items);
    assert_eq!(get(address, get_request("g", &[])).await, items[..2]);
    assert_eq!(
        get(address, get_request("", &["a"])).await,
        vec![items[0].clone(), items[2].clone()]
    );
    let other_app = GetConfigurationRequest {
        app_id: "other".into(),
        ..get_request("", &[])
    };
    assert_eq!(get(address, other_app).await, vec![]);

    // Replacing an item drops tags it no longer has.
    let replaced = plain("g", "l", "a", "alpha 2");
    client
        .save_configuration(save_request(vec![replaced.clone()]))
        .await
        .unwrap();
    assert_eq!(get(address, get_request("g", &["a"])).await, vec![replaced]);

    client
        .delete_configuration(delete_request("g", &["a"]))
        .await
        .unwrap();
    assert_eq!(
        get(address, get_request("", &[])).await,
        vec![items[1].clone(), items[2].clone()]
    );
    client
        .delete_configuration(delete_request("", &[]))
        .await
        .unwrap();
    assert_eq!(get(address, get_request("", &[])).await, vec![]);
}

/// Requests that cannot be served get INVALID_ARGUMENT and the server keeps serving.
async fn bad_requests(address: SocketAddr) {
    let mut client = runtime_client(address).await;
    let unknown_store = GetConfigurationRequest {
        store_name: "nope".into(),
        ..get_request("", &[])
    };
    let err = client.get_configuration(unknown_store).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("config_demo"), "{}", err.message());
    let no_app = GetConfigurationRequest {
        app_id: String::new(),
        ..get_request("", &[])
    };
    let err = client.get_configuration(no_app).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "app_id is empty");
    let slash = save_request(vec![item("a/b", "", "k", "v")]);
    let err = client.save_configuration(slash).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .save_configuration(save_request(vec![]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        get(address, get_request("", &[])).await,
        vec![],
        "still serving"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_store_round_trips_and_rejects_bad_requests() {
    let layotto = start_in_memory();
    round_trip(layotto.address("grpc")).await;
    bad_requests(layotto.address("grpc")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_subscribers_see_saves_and_deletes() {
    let layotto = start_in_memory();
    let address = layotto.address("grpc");
    let mut all = subscribe(address, "").await;
    let mut group_h = subscribe(address, "h").await;
    let mut client = runtime_client(address).await;
    client
        .save_configuration(save_request(vec![item("g", "l", "a", "1")]))
        .await
        .unwrap();
    client
        .save_configuration(save_request(vec![item("h", "l", "a", "2")]))
        .await
        .unwrap();
    client
        .delete_configuration(delete_request("", &["a"]))
        .await
        .unwrap();
    assert_eq!(next_items(&mut all).await, vec![item("g", "l", "a", "1")]);
    assert_eq!(next_items(&mut all).await, vec![item("h", "l", "a", "2")]);
    assert_eq!(
        next_items(&mut all).await,
        vec![deleted("g", "l", "a"), deleted("h", "l", "a")]
    );
    // The group subscriber sees only its group.
    assert_eq!(
        next_items(&mut group_h).await,
        vec![item("h", "l", "a", "2")]
    );
    assert_eq!(next_items(&mut group_h).await, vec![deleted("h", "l", "a")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_round_trips_at_layottos_keys() {
    let etcd = EtcdServer::start();
    let layotto = start_on_etcd(&etcd);
    let address = layotto.address("grpc");
    let mut client = runtime_client(address).await;
    client
        .save_configuration(save_request(vec![item("g", "l", "k", "v1")]))
        .await
        .unwrap();
    // LayOtto's layout: the raw content at /{app}/{group}/{label}/{key}.
    assert_eq!(etcd_value(&etcd, "/app/g/l/k").await.as_deref(), Some("v1"));
    client
        .delete_configuration(delete_request("g", &["k"]))
        .await
        .unwrap();
    assert_eq!(etcd_value(&etcd, "/app/g/l/k").await, None);
    round_trip(address).await;
    bad_requests(address).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_subscribers_share_one_watch_and_see_changes_from_anywhere() {
    let etcd = EtcdServer::start();
    let layotto = start_on_etcd(&etcd);
    let address = layotto.address("grpc");
    let mut first = subscribe(address, "").await;
    let mut second = subscribe(address, "").await;
    etcd.wait_metric(WATCHERS, 1.0);

    let mut client = runtime_client(address).await;
    client
        .save_configuration(save_request(vec![item("g", "l", "a", "via api")]))
        .await
        .unwrap();
    for subscriber in [&mut first, &mut second] {
        assert_eq!(
            next_items(subscriber).await,
            vec![item("g", "l", "a", "via api")]
        );
    }

    let mut direct = etcd_client(&etcd).await;
    direct.put("/app/g/l/b", "via etcd", None).await.unwrap();
    direct.delete("/app/g/l/a", None).await.unwrap();
    for subscriber in [&mut first, &mut second] {
        assert_eq!(
            next_items(subscriber).await,
            vec![plain("g", "l", "b", "via etcd")]
        );
        assert_eq!(next_items(subscriber).await, vec![deleted("g", "l", "a")]);
    }
    assert_eq!(
        get(address, get_request("", &[])).await,
        vec![plain("g", "l", "b", "via etcd")]
    );

    // A subscriber that goes away releases the watch once it was the last one. Its connection
    // closing (leaving the second subscriber's and `client`'s) says layotto-rs has seen it go.
    drop(first);
    layotto.wait_metric(r#"layotto_listener_open_connections{listener="grpc"}"#, 2.0);
    assert_eq!(
        etcd.metric(WATCHERS),
        1.0,
        "the second subscriber still follows"
    );
    client
        .save_configuration(save_request(vec![item("g", "l", "c", "after one left")]))
        .await
        .unwrap();
    assert_eq!(
        next_items(&mut second).await,
        vec![item("g", "l", "c", "after one left")]
    );
    drop(second);
    etcd.wait_metric(WATCHERS, 0.0);
    // A new subscriber starts a new watch.
    let _third = subscribe(address, "").await;
    etcd.wait_metric(WATCHERS, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restart_gives_unavailable_then_the_watch_resumes() {
    let mut etcd = EtcdServer::start();
    let layotto = start_on_etcd(&etcd);
    let address = layotto.address("grpc");
    let mut subscriber = subscribe(address, "").await;

    etcd.stop();
    let mut client = runtime_client(address).await;
    let started = Instant::now();
    let err = client
        .get_configuration(get_request("", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains(&etcd.endpoint()),
        "{}",
        err.message()
    );
    assert!(
        started.elapsed() <= Duration::from_secs(ETCD_TIMEOUT) + Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );
    let err = client
        .save_configuration(save_request(vec![item("g", "l", "x", "lost")]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");

    // Written the moment etcd is back, before the watch can have been re-established: the
    // resumed watch replays it from the last revision it saw.
    etcd.restart();
    let mut direct = etcd_client(&etcd).await;
    direct
        .put("/app/g/l/k", "after restart", None)
        .await
        .unwrap();
    assert_eq!(
        next_items(&mut subscriber).await,
        vec![plain("g", "l", "k", "after restart")]
    );
    client
        .save_configuration(save_request(vec![item("g", "l", "k", "via api again")]))
        .await
        .unwrap();
    assert_eq!(
        next_items(&mut subscriber).await,
        vec![item("g", "l", "k", "via api again")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_etcd_times_out_without_blocking_other_calls() {
    let etcd = EtcdServer::start();
    let layotto = start_on_etcd(&etcd);
    let address = layotto.address("grpc");
    let mut client = runtime_client(address).await;
    etcd.pause();
    let slow_call = {
        let mut client = client.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = client.get_configuration(get_request("", &[])).await;
            (answer, started.elapsed())
        })
    };
    // Meanwhile (once the call waits on etcd) the shards keep answering what does not need it.
    layotto.wait_metric("layotto_backend_calls_in_flight", 1.0);
    let started = Instant::now();
    client
        .say_hello(SayHelloRequest {
            service_name: "quick_start_demo".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );

    let (answer, took) = slow_call.await.unwrap();
    let err = answer.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains("no answer within 2s"),
        "{}",
        err.message()
    );
    assert!(
        took >= Duration::from_secs(ETCD_TIMEOUT) - Duration::from_millis(100),
        "{took:?}"
    );
    assert!(took < Duration::from_secs(ETCD_TIMEOUT + 1), "{took:?}");
    etcd.resume();
    assert_eq!(get(address, get_request("", &[])).await, vec![]);
}

#[test]
fn etcd_down_at_start_fails_fast_naming_the_component_and_address() {
    let dead = dead_address().to_string();
    let text = std::fs::read_to_string("configs/config_etcd.json")
        .unwrap()
        .replace("127.0.0.1:2379", &dead)
        .replace("127.0.0.1:34904", "127.0.0.1:0");
    let started = Instant::now();
    let (code, stderr) = run_to_exit(&text);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("config_store \"config_demo\"") && stderr.contains(&dead),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
