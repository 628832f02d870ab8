//! Dapr's component files (`--resources-path`): a directory of Dapr component YAML started in the
//! test process beside a LayOtto config, each component called over LayOtto's gRPC API against
//! the real servers it names (redis with a password read through `secretKeyRef`, the test's
//! HTTPS server); and a bad file refused by the real binary with exit code 2, naming the file
//! and the path.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{path::Path, process::Command};

use common::{https::HttpsServer, redis::RedisServer, *};
use layotto_proto::runtime::{
    GetSecretRequest, InvokeBindingRequest, PublishEventRequest, TryLockRequest,
};
use serde_json::json;

/// Writes `name` with `text` into `dir`.
fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dapr_component_files_are_served_over_layottos_api() {
    let (redis, server) = (RedisServer::start(), HttpsServer::start());
    ::redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("s3cret")
        .query::<()>(&mut redis.client())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    write(dir, "secrets.json", r#"{"redis-password": "s3cret"}"#);
    let secrets = dir.join("secrets.json");
    write(
        dir,
        "secretstore.yaml",
        &format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: localsecrets\n\
             spec:\n  type: secretstores.local.file\n  version: v1\n  metadata:\n\
             \x20 - name: secretsFile\n    value: {}\n",
            secrets.display()
        ),
    );
    // Declared before the store its password comes from (files are read in name order).
    write(
        dir,
        "a-statestore.yaml",
        &format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\n\
             spec:\n  type: state.redis\n  version: v1\n  metadata:\n\
             \x20 - name: redisHost\n    value: {}\n\
             \x20 - name: redisPassword\n    secretKeyRef:\n      name: redis-password\n      key: redis-password\n\
             auth:\n  secretStore: localsecrets\n\
             ---\n\
             apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: lockstore\n\
             spec:\n  type: lock.redis\n  metadata:\n\
             \x20 - name: redisHost\n    value: {}\n\
             \x20 - name: redisPassword\n    secretKeyRef: {{name: redis-password}}\n\
             auth:\n  secretStore: localsecrets\n",
            redis.endpoint(),
            redis.endpoint()
        ),
    );
    write(
        dir,
        "pubsub.yml",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\n\
         spec:\n  type: pubsub.in-memory\n  version: v1\n",
    );
    write(
        dir,
        "binding.yaml",
        &format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: httpbinding\n\
             spec:\n  type: bindings.http\n  metadata:\n\
             \x20 - name: url\n    value: {}/api\n\
             \x20 - name: MTLSRootCA\n    value: {}\n",
            server.url(),
            server.ca_file.display()
        ),
    );
    write(
        dir,
        "subscription.yaml",
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: orders\n\
         spec:\n  topic: orders\n  routes:\n    default: /orders\n  pubsubname: pubsub\n",
    );
    write(dir, "README.md", "not a component file");

    let layotto = Layotto::with_resources(&grpc_config(json!({}), json!({})), dir);
    let mut client = runtime_client(layotto.address("grpc")).await;
    let read = save_and_read_back(&mut client, "statestore", "dapr", "from a component file").await;
    assert_eq!(read, b"from a component file".as_slice());
    let lock = TryLockRequest {
        store_name: "lockstore".into(),
        resource_id: "dapr-lock".into(),
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
    client
        .publish_event(PublishEventRequest {
            pubsub_name: "pubsub".into(),
            topic: "orders".into(),
            data: b"event".to_vec().into(),
            data_content_type: "text/plain".into(),
            metadata: Default::default(),
        })
        .await
        .unwrap();
    let secret = client
        .get_secret(GetSecretRequest {
            store_name: "localsecrets".into(),
            key: "redis-password".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(secret.data["redis-password"], "s3cret");
    let answer = client
        .invoke_binding(InvokeBindingRequest {
            name: "httpbinding".into(),
            operation: "post".into(),
            data: b"hi".to_vec().into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&answer.data[..], b"POST /api hi");
}

#[test]
fn a_bad_component_file_exits_2_naming_the_file_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let resources = dir.path().join("components");
    std::fs::create_dir(&resources).unwrap();
    write(
        &resources,
        "statestore.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: statestore\n\
         spec:\n  type: state.redis\n  metadata:\n  - name: redisHost\n",
    );
    write(&resources, "broken.yaml", "kind: Component\nspec: [\n");
    let config = dir.path().join("config.json");
    std::fs::write(&config, grpc_config(json!({}), json!({})).to_string()).unwrap();
    let output = Command::new(binary())
        .args(["start", "-c"])
        .arg(&config)
        .arg("--resources-path")
        .arg(&resources)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let file = |name: &str| resources.join(name).display().to_string();
    assert!(
        stderr.contains(&format!(
            "{}: spec.metadata[0]: needs either a value or a secretKeyRef",
            file("statestore.yaml")
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}: invalid YAML: ", file("broken.yaml"))),
        "{stderr}"
    );
}
