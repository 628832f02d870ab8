//! The example configurations in `configs/` start and serve what they describe. Each is run as
//! written, with only its fixed ports moved to free ones (and etcd, redis, zookeeper and
//! upstreams to the test's): in the test process, and by the real binary `config_tcp_proxy.json`
//! (its dumps go under `$HOME`, which only a process of its own can be given) and LayOtto's
//! `config.json` and `config_standalone.json` (their `https://mosn.io` binding goes to the test's
//! HTTPS server, trusted through `SSL_CERT_FILE`, the system store's override, and the
//! standalone one reads its secrets file relative to LayOtto's `cmd/layotto`).
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{net::SocketAddr, process::Command};

use common::{
    etcd::EtcdServer, https::HttpsServer, redis::RedisServer, zookeeper::ZookeeperServer, *,
};
use layotto_proto::runtime::{
    FileRequest, GetFileMetaRequest, GetNextIdRequest, GetSecretRequest, InvokeBindingRequest,
    PublishEventRequest, SayHelloRequest, TryLockRequest, sequencer_options::AutoIncrement,
};
use serde_json::Value;
use tonic::Code;

/// `configs/<name>` with each `(from, to)` replaced, as a config value.
fn example(name: &str, replacements: &[(&str, String)]) -> Value {
    let mut text = std::fs::read_to_string(format!("configs/{name}")).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "{name} has no {from}");
        text = text.replace(from, to);
    }
    serde_json::from_str(&text).unwrap()
}

/// Port 0 for each fixed address of the examples.
fn free_ports() -> Vec<(&'static str, String)> {
    vec![
        ("127.0.0.1:34904", "127.0.0.1:0".into()),
        ("127.0.0.1:34999", "127.0.0.1:0".into()),
        ("\"port\": 34903", "\"port\": 0".into()),
    ]
}

async fn say_hello(address: SocketAddr, component: &str) -> Result<String, tonic::Status> {
    let mut client = runtime_client(address).await;
    client
        .say_hello(SayHelloRequest {
            service_name: component.into(),
            name: "example".into(),
            ..Default::default()
        })
        .await
        .map(|reply| reply.into_inner().hello)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_serves_grpc_actuator_and_metrics() {
    let layotto = Layotto::start(&example("config_in_memory.json", &free_ports()));
    assert_eq!(
        say_hello(layotto.address("grpc"), "quick_start_demo")
            .await
            .unwrap(),
        "greeting, example"
    );
    let (status, body) =
        http_get(layotto.address("actuator"), "/actuator/health/readiness").unwrap();
    assert_eq!(status, 200, "{body}");
    let mut client = runtime_client(layotto.address("grpc")).await;
    let secret = client
        .get_secret(layotto_proto::runtime::GetSecretRequest {
            store_name: "secret_demo".into(),
            key: "database:user".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(secret.data["database:user"], "app");
    let meta = client
        .get_file_meta(layotto_proto::runtime::GetFileMetaRequest {
            request: Some(layotto_proto::runtime::FileRequest {
                store_name: "file_demo".into(),
                name: "no-such-file".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(meta.code(), Code::NotFound);
    let (status, metrics) = http_get(layotto.address("prometheus"), "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(metrics.contains("layotto_grpc_requests_total{listener=\"grpc\",method=\"/spec.proto.runtime.v1.Runtime/SayHello\"} 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_config_limits_say_hello_and_serves_etcd_configuration() {
    let etcd = EtcdServer::start();
    let replacements = [
        ("0.0.0.0:34904", "127.0.0.1:0".to_owned()),
        ("127.0.0.1:2379", etcd.endpoint()),
    ];
    let layotto = Layotto::start(&example("runtime_config.json", &replacements));
    let address = layotto.address("grpc");
    // 5 per second: of 20 quick calls (spanning at most two windows) at most 10 pass.
    let mut passed = 0;
    for _ in 0..20 {
        match say_hello(address, "helloworld").await {
            Ok(_) => passed += 1,
            // As LayOtto's flow-control quickstart shows: `code = Unknown desc = current
            // request is limited`.
            Err(status) => assert_eq!(
                (status.code(), status.message()),
                (Code::Unknown, "current request is limited")
            ),
        }
    }
    assert!((5..=10).contains(&passed), "{passed} passed");
    let mut client = runtime_client(address).await;
    let lock = TryLockRequest {
        store_name: "lock_demo".into(),
        resource_id: "runtime-config".into(),
        lock_owner: "me".into(),
        expire: 10,
    };
    assert!(client.try_lock(lock).await.unwrap().into_inner().success);
    let next = GetNextIdRequest {
        store_name: "sequencer_demo".into(),
        key: "runtime-config".into(),
        ..Default::default()
    };
    assert_eq!(
        client.get_next_id(next).await.unwrap().into_inner().next_id,
        1
    );
    let items = client
        .get_configuration(layotto_proto::runtime::GetConfigurationRequest {
            store_name: "config_demo".into(),
            app_id: "app".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(items.is_empty());
}

#[test]
fn tcp_proxy_example_proxies_copies_and_reports() {
    let home = tempfile::tempdir().unwrap();
    let (first, second) = (echo_server(), echo_server());
    let config = example(
        "config_tcp_proxy.json",
        &[
            ("127.0.0.1:34905", "127.0.0.1:0".into()),
            ("127.0.0.1:8080", first.to_string()),
            ("127.0.0.1:8081", second.to_string()),
            ("\"port\": 34903", "\"port\": 0".into()),
        ],
    );
    let mut command = Command::new(binary());
    // tcpcopy dumps under $HOME/logs/mosn by default: keep that in the test's own directory.
    command.env("HOME", home.path());
    let layotto = LayottoBinary::start_with(command, &config, &[], 2);
    let data = pattern(100_000, 3);
    for _ in 0..4 {
        assert_eq!(round_trip(layotto.address("tcp_proxy"), &data), data);
    }
    let (_, metrics) = http_get(layotto.address("prometheus"), "/metrics").unwrap();
    for series in [
        "layotto_listener_connections_total{listener=\"tcp_proxy\"} 4",
        "layotto_listener_handled_connections_total{listener=\"tcp_proxy\"} 4",
        "layotto_listener_bytes_from_downstream_total{listener=\"tcp_proxy\"} 400000",
        "layotto_listener_refused_over_max_connections_total{listener=\"tcp_proxy\"} 0",
    ] {
        assert!(metrics.contains(series), "no {series} in\n{metrics}");
    }
    // Dumping itself depends on the machine's load (its fuse is at 80% CPU and memory): the
    // copied and dropped bytes are reported either way.
    assert!(
        metrics.contains("layotto_listener_tcpcopy_copied_bytes_total{listener=\"tcp_proxy\"}")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_example_serves_state_pubsub_locks_and_sequences() {
    let redis = RedisServer::start();
    let config = example(
        "config_redis.json",
        &[
            ("127.0.0.1:34904", "127.0.0.1:0".into()),
            ("127.0.0.1:6379", redis.endpoint()),
        ],
    );
    let layotto = Layotto::start(&config);
    let mut client = runtime_client(layotto.address("grpc")).await;
    let lock = TryLockRequest {
        store_name: "lock_demo".into(),
        resource_id: "example".into(),
        lock_owner: "me".into(),
        expire: 10,
    };
    assert!(
        client
            .try_lock(lock.clone())
            .await
            .unwrap()
            .into_inner()
            .success
    );
    assert!(!client.try_lock(lock).await.unwrap().into_inner().success);
    let next = GetNextIdRequest {
        store_name: "sequencer_demo".into(),
        key: "example".into(),
        ..Default::default()
    };
    let first = client
        .get_next_id(next.clone())
        .await
        .unwrap()
        .into_inner()
        .next_id;
    let second = client.get_next_id(next).await.unwrap().into_inner().next_id;
    assert!(second > first);
}

/// LayOtto's fixed listener ports (`grpc`, `actuator`) moved to free ones, and the app's
/// callback port to one nothing listens on.
fn layotto_ports() -> Vec<(&'static str, String)> {
    vec![
        ("127.0.0.1:34904", "127.0.0.1:0".into()),
        ("127.0.0.1:34999", "127.0.0.1:0".into()),
        (
            "\"grpc_callback_port\": 9999",
            format!("\"grpc_callback_port\": {}", dead_address().port()),
        ),
    ]
}

/// The actuator's readiness: 200, every component up.
fn assert_ready(layotto: &Layotto) {
    let (status, body) =
        http_get(layotto.address("actuator"), "/actuator/health/readiness").unwrap();
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_example_serves_locks_and_sequences() {
    let zookeeper = ZookeeperServer::shared();
    let mut replacements = layotto_ports();
    replacements.push((
        "\"zookeeperHosts\": \"127.0.0.1\"",
        format!("\"zookeeperHosts\": \"{}\"", zookeeper.endpoint()),
    ));
    let layotto = Layotto::start(&example("config_zookeeper.json", &replacements));
    assert_eq!(
        say_hello(layotto.address("grpc"), "helloworld")
            .await
            .unwrap(),
        "greeting, example"
    );
    let mut client = runtime_client(layotto.address("grpc")).await;
    assert!(try_lock(&mut client, "zookeeper-example", "me", 10).await);
    assert!(!try_lock(&mut client, "zookeeper-example", "you", 10).await);
    let first = next_id(
        &mut client,
        "sequencer_demo",
        "zookeeper-example",
        AutoIncrement::Strong,
    )
    .await;
    let second = next_id(
        &mut client,
        "sequencer_demo",
        "zookeeper-example",
        AutoIncrement::Strong,
    )
    .await;
    assert_eq!(second, first + 1);
    assert_ready(&layotto);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrate_test_example_serves_every_component_it_declares() {
    let (redis, etcd, zookeeper) = (
        RedisServer::start(),
        EtcdServer::start(),
        ZookeeperServer::shared(),
    );
    let mut replacements = layotto_ports();
    replacements.extend([
        ("127.0.0.1:2379", etcd.endpoint()),
        ("localhost:2379", etcd.endpoint()),
        ("localhost:6380", redis.endpoint()),
        ("127.0.0.1:6380", redis.endpoint()),
        (
            "\"zookeeperHosts\": \"127.0.0.1\"",
            format!("\"zookeeperHosts\": \"{}\"", zookeeper.endpoint()),
        ),
        (
            "\"servers\": \"127.0.0.1\"",
            format!("\"servers\": \"{}\"", zookeeper.endpoint()),
        ),
    ]);
    let layotto = Layotto::start(&example("config_integrate_test.json", &replacements));
    let address = layotto.address("grpc");
    assert_eq!(
        say_hello(address, "quick_start_demo").await.unwrap(),
        "greeting, example"
    );
    let mut client = runtime_client(address).await;
    let items = client
        .get_configuration(layotto_proto::runtime::GetConfigurationRequest {
            store_name: "etcd_config_demo".into(),
            app_id: "app1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(items.is_empty());
    for store in ["redis_state_demo", "zookeeper_state_demo"] {
        let read = save_and_read_back(&mut client, store, "integrate", store).await;
        assert_eq!(read, store.as_bytes(), "{store}");
    }
    for store in ["redis_lock_demo", "etcd_lock_demo", "zookeeper_lock_demo"] {
        let lock = TryLockRequest {
            store_name: store.into(),
            resource_id: "integrate-lock".into(),
            lock_owner: "me".into(),
            expire: 10,
        };
        assert!(
            client
                .try_lock(lock.clone())
                .await
                .unwrap()
                .into_inner()
                .success,
            "{store}"
        );
        assert!(
            !client.try_lock(lock).await.unwrap().into_inner().success,
            "{store}"
        );
    }
    for store in [
        "redis_sequencer_demo",
        "etcd_sequencer_demo",
        "zookeeper_sequencer_demo",
    ] {
        let first = next_id(&mut client, store, "integrate-ids", AutoIncrement::Strong).await;
        let second = next_id(&mut client, store, "integrate-ids", AutoIncrement::Strong).await;
        assert_eq!(second, first + 1, "{store}");
    }
    client
        .publish_event(PublishEventRequest {
            pubsub_name: "redis_pub_subs_demo".into(),
            topic: "integrate-events".into(),
            data: b"event".to_vec().into(),
            data_content_type: "text/plain".into(),
            metadata: Default::default(),
        })
        .await
        .unwrap();
    let secret = client
        .get_secret(layotto_proto::runtime::GetSecretRequest {
            store_name: "local_file_secret_demo".into(),
            key: "db-user-pass:username".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(secret.data["db-user-pass:username"], "admin");
    assert_ready(&layotto);
}

/// Starts LayOtto's `configs/<name>` with the real binary, run from `<dir>/cmd/layotto` as
/// LayOtto's is (so `../../configs/secret/...` is `<dir>/configs/secret/...`, a copy of ours),
/// its fixed ports moved to free ones, its `https://mosn.io` binding sent to `server` (whose CA
/// the process trusts through `SSL_CERT_FILE`) and `SECRET_DEMO` in its environment.
fn start_layotto_default(name: &str, server: &HttpsServer, dir: &std::path::Path) -> LayottoBinary {
    let cwd = dir.join("cmd/layotto");
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::create_dir_all(dir.join("configs/secret")).unwrap();
    std::fs::copy(
        "configs/secret/config_secret_local_file.json",
        dir.join("configs/secret/config_secret_local_file.json"),
    )
    .unwrap();
    let mut replacements = layotto_ports();
    replacements.extend([
        ("\"port\": 34903", "\"port\": 0".to_owned()),
        ("https://mosn.io", server.url()),
    ]);
    if name == "config.json" {
        replacements.push(("0.0.0.0:34904", "127.0.0.1:0".to_owned()));
        replacements.retain(|(from, _)| *from != "127.0.0.1:34904");
    }
    let mut command = Command::new(binary());
    command
        .current_dir(&cwd)
        .env("SSL_CERT_FILE", &server.ca_file)
        .env("SECRET_DEMO", "from-env");
    LayottoBinary::start_with(command, &example(name, &replacements), &[], 3)
}

/// What LayOtto's `config.json` and `config_standalone.json` both declare is served: hello,
/// in-memory state, lock, sequencer and pub/sub, the `local.env` secret store (`secret_demo`
/// or `secret_demo1`), the HTTPS binding, the actuator and Prometheus.
async fn assert_serves_layotto_defaults(layotto: &LayottoBinary, env_store: &str) {
    let address = layotto.address("grpc");
    assert_eq!(
        say_hello(address, "helloworld").await.unwrap(),
        "greeting, example"
    );
    let mut client = runtime_client(address).await;
    let read = save_and_read_back(&mut client, "state_demo", "layotto-default", "v").await;
    assert_eq!(read, b"v".as_slice());
    assert!(try_lock(&mut client, "layotto-default", "me", 10).await);
    assert!(!try_lock(&mut client, "layotto-default", "you", 10).await);
    let first = next_id(&mut client, "sequencer_demo", "ids", AutoIncrement::Strong).await;
    assert_eq!(
        next_id(&mut client, "sequencer_demo", "ids", AutoIncrement::Strong).await,
        first + 1
    );
    client
        .publish_event(PublishEventRequest {
            pubsub_name: "pub_subs_demo".into(),
            topic: "layotto-default".into(),
            data: b"event".to_vec().into(),
            data_content_type: "text/plain".into(),
            metadata: Default::default(),
        })
        .await
        .unwrap();
    let secret = client
        .get_secret(GetSecretRequest {
            store_name: env_store.into(),
            key: "SECRET_DEMO".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(secret.data["SECRET_DEMO"], "from-env");
    let fetched = client
        .invoke_binding(InvokeBindingRequest {
            name: "bindings_demo".into(),
            operation: "get".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&fetched.data[..], b"GET /layotto ");
    let (status, body) =
        http_get(layotto.address("actuator"), "/actuator/health/readiness").unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, _) = http_get(layotto.address("prometheus"), "/metrics").unwrap();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layotto_config_json_serves_what_it_declares() {
    let (server, dir) = (HttpsServer::start(), tempfile::tempdir().unwrap());
    let layotto = start_layotto_default("config.json", &server, dir.path());
    assert_serves_layotto_defaults(&layotto, "secret_demo").await;
    // LayOtto's Go extension point has nothing to run here: said so, not refused.
    assert!(layotto.output().contains("custom_component"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layotto_config_standalone_json_serves_what_it_declares() {
    let (server, dir) = (HttpsServer::start(), tempfile::tempdir().unwrap());
    let layotto = start_layotto_default("config_standalone.json", &server, dir.path());
    assert_serves_layotto_defaults(&layotto, "secret_demo1").await;
    let mut client = runtime_client(layotto.address("grpc")).await;
    let secret = client
        .get_secret(GetSecretRequest {
            store_name: "secret_demo".into(),
            key: "db-user-pass:password".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(secret.data["db-user-pass:password"], "redis123");
    // A `local` file store without rootPath takes names as paths, as LayOtto's.
    let path = dir
        .path()
        .join("configs/secret/config_secret_local_file.json");
    let meta = client
        .get_file_meta(GetFileMetaRequest {
            request: Some(FileRequest {
                store_name: "file_demo".into(),
                name: path.to_str().unwrap().into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.size, std::fs::metadata(&path).unwrap().len() as i64);
}

/// LayOtto's `config_ref_example.json` with its servers moved to the test's and its secrets
/// file (relative to LayOtto's `cmd/layotto`) to `secrets`.
fn ref_example(etcd: &EtcdServer, redis: &RedisServer, secrets: &std::path::Path) -> Value {
    let mut replacements = layotto_ports();
    replacements.extend([
        ("127.0.0.1:2379", etcd.endpoint()),
        ("127.0.0.1:6380", redis.endpoint()),
        (
            "../../configs/secret/config_secret_local_file.json",
            secrets.to_str().unwrap().to_owned(),
        ),
    ]);
    example("config_ref_example.json", &replacements)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ref_example_fills_the_redis_password_from_the_secret_store() {
    let (etcd, redis) = (EtcdServer::start(), RedisServer::start());
    // The password LayOtto's secrets file holds: without it the sequencer cannot connect.
    ::redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("redis123")
        .query::<()>(&mut redis.client())
        .unwrap();
    let secrets = std::fs::canonicalize("configs/secret/config_secret_local_file.json").unwrap();
    let layotto = Layotto::start(&ref_example(&etcd, &redis, &secrets));
    let address = layotto.address("grpc");
    assert_eq!(
        say_hello(address, "helloworld").await.unwrap(),
        "greeting, example"
    );
    let mut client = runtime_client(address).await;
    let first = next_id(&mut client, "redis", "ref-example", AutoIncrement::Strong).await;
    assert_eq!(
        next_id(&mut client, "redis", "ref-example", AutoIncrement::Strong).await,
        first + 1
    );
    let secret = client
        .get_secret(GetSecretRequest {
            store_name: "local.file".into(),
            key: "db-user-pass:password".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(secret.data["db-user-pass:password"], "redis123");
    assert_ready(&layotto);

    // The control: another password in the store, and the sequencer is refused by redis.
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("secrets.json");
    std::fs::write(&wrong, r#"{"db-user-pass": {"password": "not-it"}}"#).unwrap();
    let err = start_error(&ref_example(&etcd, &redis, &wrong)).to_string();
    assert!(err.contains("sequencer \"redis\""), "{err}");
}
