//! End-to-end tests of the lock and sequencer building blocks on every store: `in-memory`, and
//! real `redis`, `etcd` and `zookeeper` servers started here. layotto-rs in the test process,
//! called by tonic.
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
    GetNextIdRequest, TryLockRequest, lock_keep_alive_response, sequencer_options::AutoIncrement,
    unlock_response,
};
use serde_json::{Value, json};
use tonic::Code;

/// The servers a store type needs, kept alive for the test.
enum Backend {
    InMemory,
    Redis(RedisServer),
    /// LayOtto's `redis_cluster` lock: Redlock over independent masters (locks only).
    RedisCluster([RedisServer; 3]),
    Etcd(EtcdServer),
    Zookeeper(&'static ZookeeperServer),
}

impl Backend {
    fn all() -> Vec<Backend> {
        vec![
            Backend::InMemory,
            Backend::Redis(RedisServer::start()),
            Backend::RedisCluster([(); 3].map(|()| RedisServer::start())),
            Backend::Etcd(EtcdServer::start()),
            Backend::Zookeeper(ZookeeperServer::shared()),
        ]
    }

    /// A component of this backend, with LayOtto's metadata keys.
    fn component(&self, extra: Value) -> Value {
        let mut metadata = match self {
            Backend::InMemory => json!({}),
            Backend::Redis(redis) => json!({"redisHost": redis.endpoint(), "redisPassword": ""}),
            Backend::RedisCluster(hosts) => json!({
                "redisHosts": hosts.iter().map(RedisServer::endpoint).collect::<Vec<_>>().join(","),
                "redisPassword": "",
                "timeout": "1"
            }),
            Backend::Etcd(etcd) => json!({"endpoints": etcd.endpoint(), "dialTimeout": "5"}),
            Backend::Zookeeper(zookeeper) => json!({
                "zookeeperHosts": zookeeper.endpoint(),
                "zookeeperPassword": "",
                "sessionTimeout": "3",
                "logInfo": "false"
            }),
        };
        metadata
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().cloned().unwrap_or_default());
        json!({"type": self.name(), "metadata": metadata})
    }

    fn name(&self) -> &'static str {
        match self {
            Backend::InMemory => "in-memory",
            Backend::Redis(_) => "redis",
            Backend::RedisCluster(_) => "redis_cluster",
            Backend::Etcd(_) => "etcd",
            Backend::Zookeeper(_) => "zookeeper",
        }
    }

    /// Whether the type is also a sequencer.
    fn has_sequencer(&self) -> bool {
        !matches!(self, Backend::RedisCluster(_))
    }

    fn config(&self) -> Value {
        let mut components = json!({"lock": {"lock_demo": self.component(json!({}))}});
        if self.has_sequencer() {
            components["sequencer"] = json!({
                "sequencer_demo": self.component(json!({})),
                "segmented": self.component(json!({"segmentCacheEnable": "true", "segmentStep": "5"}))
            });
        }
        grpc_config(components, json!({}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_are_exclusive_owned_kept_alive_and_expire_on_every_store() {
    use lock_keep_alive_response::Status as Kept;
    use unlock_response::Status as Unlocked;
    for backend in Backend::all() {
        let store = backend.name();
        let layotto = Layotto::with_shards(&backend.config(), 2);
        let address = layotto.address("grpc");
        let (mut a, mut b) = (runtime_client(address).await, runtime_client(address).await);

        assert!(try_lock(&mut a, "order-1", "alice", 60).await, "{store}");
        assert!(
            !try_lock(&mut b, "order-1", "bob", 60).await,
            "{store}: taken"
        );
        assert_eq!(
            unlock(&mut b, "order-1", "bob").await,
            Unlocked::LockBelongToOthers,
            "{store}"
        );
        assert_eq!(
            keep_alive(&mut b, "order-1", "bob", 60).await,
            Kept::LockBelongToOthers,
            "{store}"
        );
        assert_eq!(
            unlock(&mut b, "order-2", "bob").await,
            Unlocked::LockUnexist,
            "{store}"
        );
        assert_eq!(
            keep_alive(&mut b, "order-2", "bob", 60).await,
            Kept::LockUnexist,
            "{store}"
        );
        assert_eq!(
            unlock(&mut a, "order-1", "alice").await,
            Unlocked::Success,
            "{store}"
        );
        assert!(
            try_lock(&mut b, "order-1", "bob", 60).await,
            "{store}: free again"
        );

        // A short hold expires by itself.
        assert!(try_lock(&mut a, "short", "alice", 1).await, "{store}");
        let taken = Instant::now();
        while !try_lock(&mut b, "short", "bob", 60).await {
            assert!(
                taken.elapsed() < Duration::from_secs(10),
                "{store}: never expired"
            );
            // Waiting for the hold to expire is the thing tested.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            taken.elapsed() >= Duration::from_millis(900),
            "{store}: expired early"
        );

        // A hold kept alive outlives its first expiry.
        assert!(try_lock(&mut a, "kept", "alice", 2).await, "{store}");
        for _ in 0..4 {
            // Time passing beyond the first expiry is the thing tested.
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!(
                keep_alive(&mut a, "kept", "alice", 2).await,
                Kept::Success,
                "{store}"
            );
        }
        assert!(
            !try_lock(&mut b, "kept", "bob", 60).await,
            "{store}: still held after 4 s"
        );
        assert_eq!(
            unlock(&mut a, "kept", "alice").await,
            Unlocked::Success,
            "{store}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_only_grow_strong_ones_by_one_and_survive_restarts() {
    for backend in Backend::all().into_iter().filter(Backend::has_sequencer) {
        let store = backend.name();
        let mut layotto = Layotto::start(&backend.config());
        let mut client = runtime_client(layotto.address("grpc")).await;
        let first = next_id(
            &mut client,
            "sequencer_demo",
            "orders",
            AutoIncrement::Strong,
        )
        .await;
        for step in 1..=3 {
            let id = next_id(
                &mut client,
                "sequencer_demo",
                "orders",
                AutoIncrement::Strong,
            )
            .await;
            assert_eq!(id, first + step, "{store}: strong ids go up by one");
        }
        let mut last_weak = 0;
        for _ in 0..12 {
            let id = next_id(&mut client, "segmented", "weak", AutoIncrement::Weak).await;
            assert!(id > last_weak, "{store}: weak ids grow");
            last_weak = id;
        }
        assert_eq!(
            next_id(
                &mut client,
                "sequencer_demo",
                "other",
                AutoIncrement::Strong
            )
            .await,
            1
        );
        layotto.stop();
        if matches!(backend, Backend::InMemory) {
            continue; // in-memory ids start over with the process
        }
        let layotto = Layotto::start(&backend.config());
        let mut client = runtime_client(layotto.address("grpc")).await;
        let after = next_id(
            &mut client,
            "sequencer_demo",
            "orders",
            AutoIncrement::Strong,
        )
        .await;
        assert_eq!(
            after,
            first + 4,
            "{store}: strong ids continue after a restart"
        );
        let weak = next_id(&mut client, "segmented", "weak", AutoIncrement::Weak).await;
        assert!(
            weak > last_weak,
            "{store}: weak ids grow across restarts ({weak} after {last_weak})"
        );
    }
}

/// Who holds `resource` on each of `hosts` (read directly).
fn holders(hosts: &[RedisServer], resource: &str) -> Vec<Option<String>> {
    hosts
        .iter()
        .map(|host| {
            ::redis::cmd("GET")
                .arg(resource)
                .query(&mut host.client())
                .unwrap()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_lock_is_held_by_a_majority_of_its_hosts() {
    let backend = Backend::RedisCluster([(); 3].map(|()| RedisServer::start()));
    let Backend::RedisCluster(hosts) = &backend else {
        unreachable!()
    };
    let layotto = Layotto::start(&backend.config());
    let mut client = runtime_client(layotto.address("grpc")).await;
    let alice = || Some("alice".to_owned());

    assert!(try_lock(&mut client, "r1", "alice", 60).await);
    assert_eq!(holders(hosts, "r1"), [alice(), alice(), alice()]);

    // Someone else holds it on one host: the majority still grants it.
    let _: () = ::redis::cmd("SET")
        .arg("r2")
        .arg("mallory")
        .query(&mut hosts[0].client())
        .unwrap();
    assert!(try_lock(&mut client, "r2", "alice", 60).await);
    // ... on two: refused, and what alice got on the third is given back.
    for host in &hosts[..2] {
        let _: () = ::redis::cmd("SET")
            .arg("r3")
            .arg("mallory")
            .query(&mut host.client())
            .unwrap();
    }
    assert!(!try_lock(&mut client, "r3", "alice", 60).await);
    assert_eq!(holders(hosts, "r3")[2], None);

    // One host frozen: a majority is still there, for taking and releasing.
    hosts[0].pause();
    assert!(try_lock(&mut client, "r4", "alice", 60).await);
    assert_eq!(
        unlock(&mut client, "r4", "alice").await,
        unlock_response::Status::Success
    );
    // Two frozen: no majority can answer, and the caller is told.
    hosts[1].pause();
    let err = client
        .try_lock(TryLockRequest {
            store_name: "lock_demo".into(),
            resource_id: "r5".into(),
            lock_owner: "alice".into(),
            expire: 60,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    hosts[0].resume();
    hosts[1].resume();
    assert!(try_lock(&mut client, "r5", "alice", 60).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lock_and_sequencer_requests_are_invalid_arguments() {
    let layotto = Layotto::start(&Backend::InMemory.config());
    let mut client = runtime_client(layotto.address("grpc")).await;
    let cases = [
        TryLockRequest {
            store_name: "lock_demo".into(),
            resource_id: "".into(),
            lock_owner: "a".into(),
            expire: 5,
        },
        TryLockRequest {
            store_name: "lock_demo".into(),
            resource_id: "r".into(),
            lock_owner: "".into(),
            expire: 5,
        },
        TryLockRequest {
            store_name: "lock_demo".into(),
            resource_id: "r".into(),
            lock_owner: "a".into(),
            expire: 0,
        },
        TryLockRequest {
            store_name: "nope".into(),
            resource_id: "r".into(),
            lock_owner: "a".into(),
            expire: 5,
        },
    ];
    for case in cases {
        let err = client.try_lock(case.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{case:?}: {err:?}");
    }
    let err = client
        .get_next_id(GetNextIdRequest {
            store_name: "sequencer_demo".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(try_lock(&mut client, "r", "a", 5).await, "still serving");
}

#[test]
fn an_unreachable_lock_store_stops_start_up_naming_it() {
    let dead = dead_address().to_string();
    let config = grpc_config(
        json!({"lock": {"lock_demo": {"type": "redis", "metadata": {"redisHost": dead}}}}),
        json!({}),
    );
    let err = start_error(&config).to_string();
    assert!(
        err.contains("lock \"lock_demo\"") && err.contains(&dead),
        "{err}"
    );
}
