//! The library entry point itself (`layotto::prepare`/`start`, `Running`), in the test process:
//! problems come back as values with their paths, port 0 resolves to the port served, runtimes
//! in one process are independent, and stopping (before start, by `stop`, by dropping) drains.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::net::TcpStream;

use common::*;
use layotto::{Options, StartError};
use layotto_proto::runtime::GetStateRequest;
use serde_json::json;

#[test]
fn invalid_configs_come_back_as_problems_with_their_paths() {
    let mut config = proxy_config(&[("proxy", &[dead_address()], json!({}))], json!({}));
    config["servers"][0]["listeners"][0]["address"] = json!("1.2.3:x");
    config["servers"][0]["graceful_timeout"] = json!("soon");
    let StartError::InvalidConfig(problems) = start_error(&config) else {
        panic!("expected an invalid configuration");
    };
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "servers[0].graceful_timeout",
            "servers[0].listeners[0].address"
        ],
        "{problems:?}"
    );
    assert!(
        problems[1].message.contains("invalid socket address"),
        "{problems:?}"
    );
}

#[test]
fn port_0_resolves_to_the_port_every_shard_serves_and_stop_drains() {
    let echo = echo_server();
    let config = proxy_config(&[("proxy", &[echo], json!({}))], json!({}));
    let mut layotto = Layotto::with_shards(&config, 2);
    let proxy = layotto.address("proxy");
    assert_ne!(proxy.port(), 0);
    for i in 0..16 {
        assert_eq!(round_trip(proxy, &pattern(100, i)), pattern(100, i));
    }
    let report = layotto.stop_and_summary("proxy");
    assert_eq!(report.accepted_per_shard.len(), 2);
    assert_eq!(report.accepted_per_shard.iter().sum::<u64>(), 16);
    assert_eq!(counter(&report, "connections"), 16);
    assert!(TcpStream::connect(proxy).is_err(), "stopped, yet accepting");
}

#[test]
fn a_stop_requested_before_start_drains_as_soon_as_it_runs() {
    let config = proxy_config(&[("proxy", &[dead_address()], json!({}))], json!({}));
    let prepared = layotto::prepare(
        &config.to_string(),
        Options {
            shards: Some(1),
            ..Options::default()
        },
    )
    .unwrap_or_else(|err| panic!("{err}"));
    prepared.stop_handle().stop();
    let running = prepared.start().unwrap_or_else(|err| panic!("{err}"));
    let report = running.join().unwrap();
    assert_eq!(report.listener("proxy").unwrap().accepted_per_shard, [0]);
}

#[test]
fn a_dropped_runtime_stops_serving() {
    let config = proxy_config(&[("proxy", &[echo_server()], json!({}))], json!({}));
    let layotto = Layotto::start(&config);
    let proxy = layotto.address("proxy");
    assert_eq!(round_trip(proxy, b"x"), b"x");
    drop(layotto); // stops without waiting for the drain
    wait_until("the dropped runtime to stop accepting", || {
        TcpStream::connect(proxy).is_err()
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runtimes_in_one_process_are_independent() {
    let config = grpc_config(hello_and_state(), json!({}));
    let (first, second) = (Layotto::start(&config), Layotto::start(&config));
    assert_ne!(first.address("grpc"), second.address("grpc"));
    let mut client = runtime_client(first.address("grpc")).await;
    client
        .save_state(layotto_proto::runtime::SaveStateRequest {
            store_name: "state_demo".into(),
            states: vec![item("only-in-first", "1")],
        })
        .await
        .unwrap();
    let get = || GetStateRequest {
        store_name: "state_demo".into(),
        key: "only-in-first".into(),
        ..Default::default()
    };
    let read = |address| async move {
        runtime_client(address)
            .await
            .get_state(get())
            .await
            .unwrap()
            .into_inner()
            .data
    };
    assert_eq!(read(first.address("grpc")).await, "1");
    assert!(read(second.address("grpc")).await.is_empty());
}
