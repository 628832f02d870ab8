//! End-to-end tests of the configuration API: layotto-rs (in the test process) with an
//! `in-memory` store and with an `etcd` store backed by a real etcd server started here, called
//! by tonic; the binary for the exit code of a start-up failure. etcd is also read and written
//! directly (etcd-client) to check LayOtto's key layout (`/{app}/{group}/{label}/{key}` and
//! `/{app}/{group}/{label}/{key}/{tag}`) both ways and changes made behind our back.
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

fn tags(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

/// An item with one tag.
fn item(group: &str, label: &str, key: &str, content: &str) -> ConfigurationItem {
    ConfigurationItem {
        tags: tags(&[("release", "1.0")]),
        ..plain(group, label, key, content)
    }
}

/// An item without tags.
fn plain(group: &str, label: &str, key: &str, content: &str) -> ConfigurationItem {
    ConfigurationItem {
        key: key.into(),
        content: content.into(),
        group: group.into(),
        label: label.into(),
        tags: HashMap::new(),
        metadata: HashMap::new(),
    }
}

/// What a subscriber receives for a deleted item.
fn deleted(group: &str, label: &str, key: &str) -> ConfigurationItem {
    ConfigurationItem {
        metadata: tags(&[("deleted", "true")]),
        ..plain(group, label, key, "")
    }
}

fn get_request(group: &str, label: &str, keys: &[&str]) -> GetConfigurationRequest {
    GetConfigurationRequest {
        store_name: STORE.into(),
        app_id: APP.into(),
        group: group.into(),
        label: label.into(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
        ..Default::default()
    }
}

fn delete_request(group: &str, label: &str, keys: &[&str]) -> DeleteConfigurationRequest {
    DeleteConfigurationRequest {
        store_name: STORE.into(),
        app_id: APP.into(),
        group: group.into(),
        label: label.into(),
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

fn subscription(group: &str, label: &str, keys: &[&str]) -> SubscribeConfigurationRequest {
    SubscribeConfigurationRequest {
        store_name: STORE.into(),
        app_id: APP.into(),
        group: group.into(),
        label: label.into(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
        ..Default::default()
    }
}

async fn get(
    address: SocketAddr,
    group: &str,
    label: &str,
    keys: &[&str],
) -> Vec<ConfigurationItem> {
    let mut client = runtime_client(address).await;
    client
        .get_configuration(get_request(group, label, keys))
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

/// Sends `requests` on one `SubscribeConfiguration` stream of a connection of its own. The call
/// returns once the response headers arrive, which the server sends once the first request's
/// watch is in place: what changes after this returns is delivered to it.
async fn subscribe(
    address: SocketAddr,
    requests: Vec<SubscribeConfigurationRequest>,
) -> Subscriber {
    let mut client = runtime_client(address).await;
    let (requests_open, closed) = oneshot::channel::<()>();
    let requests =
        stream::iter(requests).chain(stream::once(closed).filter_map(|_| async { None }));
    let responses = client
        .subscribe_configuration(requests)
        .await
        .unwrap()
        .into_inner();
    Subscriber {
        responses,
        _requests_open: requests_open,
    }
}

/// Subscribes to one group and label (each may be `*`), all keys.
async fn subscribe_to(address: SocketAddr, group: &str, label: &str) -> Subscriber {
    subscribe(address, vec![subscription(group, label, &[])]).await
}

/// The next response; every one is a change, so it has items.
async fn next_items(subscriber: &mut Subscriber) -> Vec<ConfigurationItem> {
    let change = tokio::time::timeout(WAIT, subscriber.responses.message())
        .await
        .expect("no change arrived in time")
        .unwrap()
        .expect("the subscription ended");
    assert_eq!(
        (change.store_name.as_str(), change.app_id.as_str()),
        (STORE, APP)
    );
    assert!(!change.items.is_empty(), "a response without items");
    change.items
}

async fn etcd_client(etcd: &EtcdServer) -> etcd_client::Client {
    etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap()
}

/// Every key under `prefix` with its value, in key order.
async fn etcd_listing(etcd: &EtcdServer, prefix: &str) -> Vec<(String, String)> {
    let options = etcd_client::GetOptions::new().with_prefix();
    let response = etcd_client(etcd)
        .await
        .get(prefix, Some(options))
        .await
        .unwrap();
    response
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().unwrap().to_owned(),
                kv.value_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn listing(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// Save, get and delete with every way of selecting items; the answers are the same whichever
/// store serves them, so both stores run the same checks.
async fn round_trip(address: SocketAddr) {
    let mut client = runtime_client(address).await;
    let items = vec![
        item("g", "l", "a", "alpha"),
        plain("g", "l", "b", "beta"),
        item("h", "l", "a", "other group"),
        // No group or label: the store's defaults.
        item("", " ", "a", "defaults"),
    ];
    client
        .save_configuration(save_request(items))
        .await
        .unwrap();
    let defaults = item("default", "default", "a", "defaults");
    let (g_a, g_b, h_a) = (
        item("g", "l", "a", "alpha"),
        plain("g", "l", "b", "beta"),
        item("h", "l", "a", "other group"),
    );
    // An empty group and label mean the defaults; `*` means any.
    assert_eq!(get(address, "", "", &[]).await, vec![defaults.clone()]);
    assert_eq!(
        get(address, "*", "*", &[]).await,
        vec![defaults.clone(), g_a.clone(), g_b.clone(), h_a.clone()]
    );
    assert_eq!(
        get(address, "g", "l", &[]).await,
        vec![g_a.clone(), g_b.clone()]
    );
    assert_eq!(
        get(address, "*", "l", &["a"]).await,
        vec![g_a.clone(), h_a.clone()]
    );
    // Items come in the order of the keys asked for.
    assert_eq!(
        get(address, "g", "l", &["b", "a", "nope"]).await,
        vec![g_b.clone(), g_a.clone()]
    );
    let mut other_app = get_request("*", "*", &[]);
    other_app.app_id = "other".into();
    let answer = client.get_configuration(other_app).await.unwrap();
    assert_eq!(answer.into_inner().items, vec![]);

    // Replacing an item drops tags it no longer has; item metadata is not stored.
    let replaced = ConfigurationItem {
        metadata: tags(&[("owner", "ops")]),
        ..plain("g", "l", "a", "alpha 2")
    };
    client
        .save_configuration(save_request(vec![replaced]))
        .await
        .unwrap();
    let g_a = plain("g", "l", "a", "alpha 2");
    assert_eq!(get(address, "g", "l", &["a"]).await, vec![g_a.clone()]);

    // A delete with only keys deletes them in the default group and label, nowhere else.
    client
        .delete_configuration(delete_request("", "", &["a"]))
        .await
        .unwrap();
    assert_eq!(
        get(address, "*", "*", &[]).await,
        vec![g_a.clone(), g_b.clone(), h_a.clone()]
    );
    client
        .delete_configuration(delete_request("g", "l", &["a"]))
        .await
        .unwrap();
    // Without keys a delete deletes nothing, and `*` is a name like any other there.
    client
        .delete_configuration(delete_request("g", "l", &[]))
        .await
        .unwrap();
    client
        .delete_configuration(delete_request("*", "*", &["b"]))
        .await
        .unwrap();
    assert_eq!(
        get(address, "*", "*", &[]).await,
        vec![g_b.clone(), h_a.clone()]
    );
    client
        .delete_configuration(delete_request("g", "l", &["b"]))
        .await
        .unwrap();
    client
        .delete_configuration(delete_request("h", "l", &["a"]))
        .await
        .unwrap();
    assert_eq!(get(address, "*", "*", &[]).await, vec![]);
}

/// Requests that cannot be served get INVALID_ARGUMENT and the server keeps serving.
async fn bad_requests(address: SocketAddr) {
    let mut client = runtime_client(address).await;
    let mut unknown_store = get_request("", "", &[]);
    unknown_store.store_name = "nope".into();
    let err = client.get_configuration(unknown_store).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("config_demo"), "{}", err.message());
    let mut no_app = get_request("", "", &[]);
    no_app.app_id = String::new();
    let err = client.get_configuration(no_app).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "app_id is empty");
    // A `/` anywhere would break the layout: in a group, a key, a tag name.
    let slash_in_key = ConfigurationItem {
        key: "a/b".into(),
        ..plain("g", "l", "", "v")
    };
    let slash_in_tag = ConfigurationItem {
        tags: tags(&[("a/b", "v")]),
        ..plain("g", "l", "k", "v")
    };
    let empty_tag = ConfigurationItem {
        tags: tags(&[("", "v")]),
        ..plain("g", "l", "k", "v")
    };
    for bad in [
        vec![item("a/b", "", "k", "v")],
        vec![slash_in_key],
        vec![slash_in_tag],
        vec![empty_tag],
        vec![],
    ] {
        let err = client
            .save_configuration(save_request(bad.clone()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{bad:?}");
    }
    let err = client
        .delete_configuration(delete_request("", "", &["a/b"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(get(address, "*", "*", &[]).await, vec![], "still serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_store_round_trips_and_rejects_bad_requests() {
    let layotto = start_in_memory();
    round_trip(layotto.address("grpc")).await;
    bad_requests(layotto.address("grpc")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_memory_subscribers_get_only_changes() {
    let layotto = start_in_memory();
    let address = layotto.address("grpc");
    let mut all = subscribe_to(address, "*", "*").await;
    let mut group_h = subscribe_to(address, "h", "*").await;
    let mut defaults = subscribe(address, vec![subscription("", "", &["a"])]).await;
    let mut client = runtime_client(address).await;
    for saved in [item("g", "l", "a", "1"), item("h", "l", "a", "2")] {
        client
            .save_configuration(save_request(vec![saved]))
            .await
            .unwrap();
    }
    client
        .save_configuration(save_request(vec![plain("", "", "a", "3")]))
        .await
        .unwrap();
    client
        .delete_configuration(delete_request("g", "l", &["a"]))
        .await
        .unwrap();
    // The first response is the first change.
    assert_eq!(next_items(&mut all).await, vec![item("g", "l", "a", "1")]);
    assert_eq!(next_items(&mut all).await, vec![item("h", "l", "a", "2")]);
    assert_eq!(
        next_items(&mut all).await,
        vec![plain("default", "default", "a", "3")]
    );
    assert_eq!(next_items(&mut all).await, vec![deleted("g", "l", "a")]);
    // The others see only what they selected.
    assert_eq!(
        next_items(&mut group_h).await,
        vec![item("h", "l", "a", "2")]
    );
    assert_eq!(
        next_items(&mut defaults).await,
        vec![plain("default", "default", "a", "3")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_round_trips_and_rejects_bad_requests() {
    let etcd = EtcdServer::start();
    let layotto = start_on_etcd(&etcd);
    round_trip(layotto.address("grpc")).await;
    bad_requests(layotto.address("grpc")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_writes_layottos_layout() {
    let etcd = EtcdServer::start();
    let layotto = start_on_etcd(&etcd);
    let mut client = runtime_client(layotto.address("grpc")).await;
    // No group or label: LayOtto's defaults, never `/app///k`.
    let saved = ConfigurationItem {
        tags: tags(&[("release", "1.0"), ("env", "prod")]),
        ..plain("", "", "k", "v1")
    };
    client
        .save_configuration(save_request(vec![saved]))
        .await
        .unwrap();
    assert_eq!(
        etcd_listing(&etcd, "/").await,
        listing(&[
            ("/app/default/default/k", "v1"),
            ("/app/default/default/k/env", "prod"),
            ("/app/default/default/k/release", "1.0"),
        ]),
        "the content at the item's key, each tag at a child key, nothing else"
    );
    let replaced = ConfigurationItem {
        tags: tags(&[("env", "dev")]),
        ..plain("default", "default", "k", "v2")
    };
    client
        .save_configuration(save_request(vec![replaced]))
        .await
        .unwrap();
    assert_eq!(
        etcd_listing(&etcd, "/").await,
        listing(&[
            ("/app/default/default/k", "v2"),
            ("/app/default/default/k/env", "dev"),
        ])
    );
    // A delete takes the item's tags with it, and only this item: not `k2`, which shares its
    // prefix (LayOtto deletes by prefix and would take it too).
    let mut direct = etcd_client(&etcd).await;
    direct
        .put("/app/default/default/k2", "kept", None)
        .await
        .unwrap();
    client
        .delete_configuration(delete_request("", "", &["k"]))
        .await
        .unwrap();
    assert_eq!(
        etcd_listing(&etcd, "/").await,
        listing(&[("/app/default/default/k2", "kept")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_delete_with_only_keys_deletes_them_in_the_default_group_and_label() {
    let etcd = EtcdServer::start();
    let layotto = start_on_etcd(&etcd);
    let mut direct = etcd_client(&etcd).await;
    for key in [
        "/app/default/default/k",
        "/app/other/x/k",
        "/app/default/x/k",
    ] {
        direct.put(key, "v", None).await.unwrap();
    }
    let mut client = runtime_client(layotto.address("grpc")).await;
    client
        .delete_configuration(delete_request("", "", &["k"]))
        .await
        .unwrap();
    assert_eq!(
        etcd_listing(&etcd, "/").await,
        listing(&[("/app/default/x/k", "v"), ("/app/other/x/k", "v")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_store_reads_what_layotto_wrote() {
    let etcd = EtcdServer::start();
    let layotto = start_on_etcd(&etcd);
    let address = layotto.address("grpc");
    // The keys of LayOtto's own etcd store test (components/configstores/etcdv3), app `app`.
    let mut direct = etcd_client(&etcd).await;
    for (key, value) in [
        ("/app/group1/label1/sofa", "value1"),
        ("/app/group1/label1/sofa/tag1", "tag1"),
        ("/app/group1/label1/sofa/tag2", "tag2"),
        ("/app/group1/label2/sofa", "value1"),
        ("/app/group1/label2/sofa/tag2", "tag2"),
        // A tag whose item is gone is no item.
        ("/app/group1/label1/gone/tag1", "tag1"),
    ] {
        direct.put(key, value, None).await.unwrap();
    }
    let sofa = |label: &str, tag_names: &[&str]| ConfigurationItem {
        tags: tag_names
            .iter()
            .map(|t| (t.to_string(), t.to_string()))
            .collect(),
        ..plain("group1", label, "sofa", "value1")
    };
    assert_eq!(
        get(address, "group1", "label1", &["sofa"]).await,
        vec![sofa("label1", &["tag1", "tag2"])]
    );
    assert_eq!(
        get(address, "*", "*", &[]).await,
        vec![sofa("label1", &["tag1", "tag2"]), sofa("label2", &["tag2"])]
    );
    assert_eq!(get(address, "group1", "label1", &["gone"]).await, vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_subscription_is_in_place_once_answered_and_sends_only_changes() {
    let etcd = EtcdServer::start();
    let layotto = start_on_etcd(&etcd);
    let address = layotto.address("grpc");
    let mut direct = etcd_client(&etcd).await;
    // While etcd cannot set the watch up, the call is not answered.
    etcd.pause();
    let subscribing = tokio::spawn(async move { subscribe_to(address, "g", "l").await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !subscribing.is_finished(),
        "answered before the watch was in place"
    );
    etcd.resume();
    let mut subscriber = subscribing.await.unwrap();
    // Written the moment the call is answered: the watch is already in place.
    direct.put("/app/g/l/k", "first", None).await.unwrap();
    assert_eq!(
        next_items(&mut subscriber).await,
        vec![plain("g", "l", "k", "first")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_subscribers_share_one_watch_and_see_changes_from_anywhere() {
    let etcd = EtcdServer::start();
    let layotto = start_on_etcd(&etcd);
    let address = layotto.address("grpc");
    let mut first = subscribe_to(address, "*", "*").await;
    let mut second = subscribe_to(address, "g", "l").await;
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

    // Written behind our back, as LayOtto's store writes: one key at a time, tags as child keys.
    let mut direct = etcd_client(&etcd).await;
    direct.put("/app/g/l/b", "via etcd", None).await.unwrap();
    direct.put("/app/g/l/b/env", "prod", None).await.unwrap();
    direct.delete("/app/g/l/a/release", None).await.unwrap();
    direct.delete("/app/g/l/a", None).await.unwrap();
    let b_tagged = ConfigurationItem {
        tags: tags(&[("env", "prod")]),
        ..plain("g", "l", "b", "via etcd")
    };
    for subscriber in [&mut first, &mut second] {
        assert_eq!(
            next_items(subscriber).await,
            vec![plain("g", "l", "b", "via etcd")]
        );
        assert_eq!(next_items(subscriber).await, vec![b_tagged.clone()]);
        assert_eq!(
            next_items(subscriber).await,
            vec![plain("g", "l", "a", "via api")],
            "a tag removed"
        );
        assert_eq!(next_items(subscriber).await, vec![deleted("g", "l", "a")]);
    }
    assert_eq!(get(address, "g", "l", &[]).await, vec![b_tagged]);

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
    let _third = subscribe_to(address, "*", "*").await;
    etcd.wait_metric(WATCHERS, 1.0);
}

/// LayOtto's configuration demo (`demo/configuration/common`, `testSubscribeWithGrpc`): two
/// subscriptions on one stream, then saves of `heihei`; it reads `items[0]` of every response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layottos_demo_subscriber_gets_a_change_in_every_response() {
    let etcd = EtcdServer::start();
    let layotto = start_on_etcd(&etcd);
    let address = layotto.address("grpc");
    let mut subscriber = subscribe(
        address,
        vec![
            subscription("application", "prod", &["haha", "key1"]),
            subscription("application", "prod", &["heihei"]),
        ],
    )
    .await;
    let mut client = runtime_client(address).await;
    let heihei = |n: u32| plain("application", "prod", "heihei", &format!("heihei{n}"));
    // Only the first request's watch is known to be in place (the call was answered); nothing
    // signals the second's, so save until its first change arrives (bounded).
    let mut saved = 0;
    let first = loop {
        saved += 1;
        assert!(saved <= 100, "no change of heihei arrived");
        client
            .save_configuration(save_request(vec![heihei(saved)]))
            .await
            .unwrap();
        let wait = Duration::from_millis(100);
        if let Ok(message) = tokio::time::timeout(wait, subscriber.responses.message()).await {
            break message.unwrap().expect("the subscription ended");
        }
    };
    let first_seen: u32 = first.items[0].content["heihei".len()..].parse().unwrap();
    assert!(first_seen <= saved);
    // From now on every save arrives, in order, one change per response.
    let last = saved + 3;
    for n in saved + 1..=last {
        client
            .save_configuration(save_request(vec![heihei(n)]))
            .await
            .unwrap();
    }
    for n in first_seen + 1..=last {
        assert_eq!(next_items(&mut subscriber).await, vec![heihei(n)]);
    }
    // An unsubscribed key sends nothing; the first request's keys still arrive.
    let haha = plain("application", "prod", "haha", "hehe");
    client
        .save_configuration(save_request(vec![plain(
            "application",
            "prod",
            "other",
            "x",
        )]))
        .await
        .unwrap();
    client
        .save_configuration(save_request(vec![haha.clone()]))
        .await
        .unwrap();
    assert_eq!(next_items(&mut subscriber).await, vec![haha]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_restart_gives_unavailable_then_the_watch_resumes() {
    let mut etcd = EtcdServer::start();
    let layotto = start_on_etcd(&etcd);
    let address = layotto.address("grpc");
    let mut subscriber = subscribe_to(address, "g", "l").await;

    etcd.stop();
    let mut client = runtime_client(address).await;
    let started = Instant::now();
    let err = client
        .get_configuration(get_request("", "", &[]))
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
            let answer = client.get_configuration(get_request("", "", &[])).await;
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
    assert_eq!(get(address, "*", "*", &[]).await, vec![]);
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
