//! The zookeeper lock, sequencer and state stores against a real zookeeper started here, beyond
//! the semantics every store shares (`tests/lock_sequencer.rs`, `tests/state_backends.rs`): what
//! they keep in zookeeper is the layout of LayOtto's zookeeper components and Dapr's
//! `state.zookeeper` for the ids they are given (read and written here with a zookeeper client,
//! as such a sidecar would), a lock ends with the session of the layotto-rs that took it, calls
//! fail UNAVAILABLE while zookeeper is down and recover by themselves once it is back, and an
//! unreachable zookeeper stops start-up naming it.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::time::{Duration, Instant};

use common::{
    zookeeper::{MAX_SESSION_TIMEOUT, ZookeeperServer},
    *,
};
use layotto_proto::runtime::{
    GetNextIdRequest, GetStateRequest, LockKeepAliveRequest, SaveStateRequest, TryLockRequest,
    lock_keep_alive_response, runtime_client::RuntimeClient, sequencer_options::AutoIncrement,
    unlock_response,
};
use serde_json::{Value, json};
use tonic::{Code, transport::Channel};
use zookeeper_client::{Acls, Client, CreateMode};

/// Lock `lock_demo`, sequencer `sequencer_demo` (LayOtto's keys) and state `state_demo` (Dapr's
/// keys) on `zookeeper`, each with `extra` metadata.
fn config(zookeeper: &ZookeeperServer, extra: Value) -> Value {
    let with = |mut metadata: Value| {
        let object = metadata.as_object_mut().unwrap();
        object.extend(extra.as_object().cloned().unwrap_or_default());
        json!({"type": "zookeeper", "metadata": metadata})
    };
    let layotto = json!({
        "zookeeperHosts": zookeeper.endpoint(),
        "zookeeperPassword": "",
        "sessionTimeout": "3",
        "logInfo": "false"
    });
    grpc_config(
        json!({
            "lock": {"lock_demo": with(layotto.clone())},
            "sequencer": {"sequencer_demo": with(layotto)},
            "state": {"state_demo": with(json!({
                "servers": zookeeper.endpoint(),
                "sessionTimeout": "3s",
                "keyPrefixPath": "/"
            }))}
        }),
        json!({}),
    )
}

async fn save_state(client: &mut RuntimeClient<Channel>, key: &str, value: &str) {
    client
        .save_state(SaveStateRequest {
            store_name: "state_demo".into(),
            states: vec![item(key, value)],
        })
        .await
        .unwrap();
}

async fn get_state(
    client: &mut RuntimeClient<Channel>,
    key: &str,
) -> Result<(String, String), tonic::Status> {
    let reply = client
        .get_state(GetStateRequest {
            store_name: "state_demo".into(),
            key: key.into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok((String::from_utf8(reply.data.to_vec()).unwrap(), reply.etag))
}

async fn zookeeper_client(zookeeper: &ZookeeperServer) -> Client {
    Client::connect(&zookeeper.endpoint()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn znodes_are_laid_out_as_layottos_components_do() {
    let zookeeper = ZookeeperServer::shared();
    let layotto = LayottoBinary::start(&config(zookeeper, json!({})), &[], 1);
    let mut client = runtime_client(layotto.address("grpc")).await;
    let zk = zookeeper_client(zookeeper).await;

    // A lock is the ephemeral znode /<resource> holding the owner.
    assert!(try_lock(&mut client, "layout-lock", "alice", 30).await);
    let (owner, stat) = zk.get_data("/layout-lock").await.unwrap();
    assert_eq!(owner, b"alice");
    assert_ne!(stat.ephemeral_owner, 0, "ephemeral");
    // One taken by another sidecar the same way is respected, and its owner may release it.
    let ephemeral = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
    zk.create("/foreign-lock", b"bob", &ephemeral)
        .await
        .unwrap();
    assert!(!try_lock(&mut client, "foreign-lock", "alice", 30).await);
    assert_eq!(
        unlock(&mut client, "foreign-lock", "alice").await,
        unlock_response::Status::LockBelongToOthers
    );
    assert_eq!(
        unlock(&mut client, "foreign-lock", "bob").await,
        unlock_response::Status::Success
    );
    assert_eq!(zk.check_stat("/foreign-lock").await.unwrap(), None);

    // Ids are the versions of the persistent znode /<key>.
    for expected in 1..=3 {
        let id = next_id(
            &mut client,
            "sequencer_demo",
            "layout-ids",
            AutoIncrement::Strong,
        )
        .await;
        assert_eq!(id, expected);
    }
    let stat = zk.check_stat("/layout-ids").await.unwrap().unwrap();
    assert_eq!((stat.version, stat.ephemeral_owner), (3, 0));
    zk.set_data("/layout-ids", b"", None).await.unwrap();
    assert_eq!(
        next_id(
            &mut client,
            "sequencer_demo",
            "layout-ids",
            AutoIncrement::Strong
        )
        .await,
        5,
        "another sidecar's id 4 is not handed out again"
    );

    // A state value is the data of /<key>, its etag the data version, both ways.
    save_state(&mut client, "layout-state", "v1").await;
    let (value, stat) = zk.get_data("/layout-state").await.unwrap();
    assert_eq!(value, b"v1");
    assert_eq!(
        get_state(&mut client, "layout-state").await.unwrap(),
        ("v1".to_owned(), stat.version.to_string())
    );
    let stat = zk.set_data("/layout-state", b"v2", None).await.unwrap();
    assert_eq!(
        get_state(&mut client, "layout-state").await.unwrap(),
        ("v2".to_owned(), stat.version.to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_ends_with_the_session_of_the_layotto_that_took_it() {
    let zookeeper = ZookeeperServer::shared();
    let config = config(zookeeper, json!({}));
    let taker = LayottoBinary::start(&config, &[], 1);
    let other = LayottoBinary::start(&config, &[], 1);
    let mut a = runtime_client(taker.address("grpc")).await;
    let mut b = runtime_client(other.address("grpc")).await;

    assert!(try_lock(&mut a, "crash", "alice", 60).await);
    assert!(!try_lock(&mut b, "crash", "bob", 60).await);
    assert_eq!(
        keep_alive(&mut a, "crash", "alice", 60).await,
        lock_keep_alive_response::Status::Success
    );
    // Only the sidecar whose session holds the lock can keep it alive.
    let refused = b
        .lock_keep_alive(LockKeepAliveRequest {
            store_name: "lock_demo".into(),
            resource_id: "crash".into(),
            lock_owner: "alice".into(),
            expire: 60,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");

    // SIGKILL: no chance to close anything. Zookeeper expires the session, and the lock with it.
    drop(taker);
    let killed = Instant::now();
    assert!(
        !try_lock(&mut b, "crash", "bob", 60).await,
        "held until the session expires"
    );
    while !try_lock(&mut b, "crash", "bob", 60).await {
        assert!(
            killed.elapsed() < MAX_SESSION_TIMEOUT + Duration::from_secs(5),
            "the lock outlived its session"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        unlock(&mut b, "crash", "bob").await,
        unlock_response::Status::Success
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_fail_unavailable_while_zookeeper_is_down_and_recover_by_themselves() {
    let mut zookeeper = ZookeeperServer::start();
    // Calls wait at most 1 s; the session lasts 1 s without zookeeper, so it ends in the outage.
    let layotto = LayottoBinary::start(
        &config(&zookeeper, json!({"timeout": "1", "sessionTimeout": "1"})),
        &[],
        1,
    );
    let mut client = runtime_client(layotto.address("grpc")).await;
    save_state(&mut client, "kept", "before").await;
    let first = next_id(
        &mut client,
        "sequencer_demo",
        "outage",
        AutoIncrement::Strong,
    )
    .await;

    zookeeper.stop();
    let started = Instant::now();
    let state = get_state(&mut client, "kept").await.unwrap_err();
    let id = client
        .get_next_id(GetNextIdRequest {
            store_name: "sequencer_demo".into(),
            key: "outage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let lock = client
        .try_lock(TryLockRequest {
            store_name: "lock_demo".into(),
            resource_id: "outage-lock".into(),
            lock_owner: "alice".into(),
            expire: 10,
        })
        .await
        .unwrap_err();
    for status in [&state, &id, &lock] {
        assert_eq!(status.code(), Code::Unavailable, "{status:?}");
        assert!(status.message().contains("zookeeper at"), "{status:?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "each failed within its timeout"
    );

    zookeeper.restart();
    let back = Instant::now();
    while get_state(&mut client, "kept").await.is_err() {
        assert!(back.elapsed() < WAIT, "never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    layotto.wait_for_line("the session had ended; opened a new one");
    assert_eq!(get_state(&mut client, "kept").await.unwrap().0, "before");
    assert_eq!(
        next_id(
            &mut client,
            "sequencer_demo",
            "outage",
            AutoIncrement::Strong
        )
        .await,
        first + 1
    );
    assert!(try_lock(&mut client, "outage-lock", "alice", 10).await);
}

#[test]
fn an_unreachable_zookeeper_stops_start_up_naming_it() {
    let dead = dead_address().to_string();
    let config = grpc_config(
        json!({"lock": {"lock_demo": {"type": "zookeeper", "metadata": {"zookeeperHosts": dead}}}}),
        json!({}),
    );
    let (code, stderr) = run_to_exit(&config.to_string());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("lock \"lock_demo\"") && stderr.contains(&dead),
        "{stderr}"
    );
}
