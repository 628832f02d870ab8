//! Listeners on Unix domain sockets (`network` `unix`, `address` the socket's path), as LayOtto's
//! `configs/config_uds.json`: the gRPC API served over the socket to a tonic client with a Unix
//! socket connector, every shard accepting on the one socket, a stale socket file replaced, and
//! a path another process serves — or a second layotto-rs — refused.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use layotto_proto::runtime::{SayHelloRequest, runtime_client::RuntimeClient};
use serde_json::Value;
use tonic::transport::{Channel, Endpoint, Uri};

/// LayOtto's `configs/config_uds.json` as written, with its socket moved to `socket`.
fn config_uds(socket: &Path) -> Value {
    let text = std::fs::read_to_string("configs/config_uds.json").unwrap();
    assert!(text.contains("\"/tmp/client-proxy.sock\""));
    let text = text.replace("/tmp/client-proxy.sock", socket.to_str().unwrap());
    serde_json::from_str(&text).unwrap()
}

/// A gRPC channel over the Unix socket at `path` (one connection).
async fn unix_channel(path: PathBuf) -> Channel {
    Endpoint::from_static("http://layotto.uds")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .expect("connect over the unix socket")
}

async fn say_hello(path: &Path) -> String {
    RuntimeClient::new(unix_channel(path.to_path_buf()).await)
        .say_hello(SayHelloRequest {
            service_name: "helloworld".into(),
            name: "uds".into(),
            data: None,
        })
        .await
        .unwrap()
        .into_inner()
        .hello
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layottos_config_uds_serves_the_grpc_api_over_its_socket_on_every_shard() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("client-proxy.sock");
    let mut layotto = Layotto::with_shards(&config_uds(&socket), 2);
    assert_eq!(layotto.unix_path("grpc"), socket);
    for _ in 0..8 {
        assert_eq!(say_hello(&socket).await, "greeting, uds");
    }
    let report = layotto.stop_and_summary("grpc");
    assert_eq!(report.accepted_per_shard.len(), 2);
    assert_eq!(report.accepted_per_shard.iter().sum::<u64>(), 8);
    assert!(!socket.exists(), "the socket file is removed at the end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("stale.sock");
    // A server that ended without removing its socket file.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists());
    let _layotto = Layotto::start(&config_uds(&socket));
    assert_eq!(say_hello(&socket).await, "greeting, uds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_another_process_serves_is_not_taken() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("taken.sock");
    let _other = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let err = start_error(&config_uds(&socket)).to_string();
    assert!(
        err.contains("address in use: another process serves it")
            && err.contains(socket.to_str().unwrap()),
        "{err}"
    );

    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, b"keep me").unwrap();
    let err = start_error(&config_uds(&file)).to_string();
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_layotto_on_the_same_socket_fails_and_leaves_the_first_serving() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("one.sock");
    let _first = Layotto::start(&config_uds(&socket));
    // The same file by another spelling is the same socket.
    let other_spelling = dir.path().join(".").join("one.sock");
    let err = start_error(&config_uds(&other_spelling)).to_string();
    assert!(
        err.contains("address in use: another layotto-rs process serves it"),
        "{err}"
    );
    assert_eq!(say_hello(&socket).await, "greeting, uds");
}

#[test]
fn unix_listeners_are_checked_in_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config_uds(&dir.path().join("a.sock"));
    let listener = config["servers"][0]["listeners"][0].clone();
    config["servers"][0]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(listener);
    config["servers"][0]["listeners"][1]["name"] = "grpc2".into();
    let mut bad_network = config["servers"][0]["listeners"][0].clone();
    bad_network["name"] = "bad".into();
    bad_network["network"] = "udp".into();
    config["servers"][0]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(bad_network);
    let problems = config_problems(&config);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("servers[0].listeners[1].address: socket")
                && p.contains("is already used by servers[0].listeners[0]")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p
            == "servers[0].listeners[2].network: network \"udp\" is not supported (tcp or unix)"),
        "{problems:?}"
    );
}
