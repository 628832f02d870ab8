//! One runtime per process: the components declared under any `grpc` filter are built once and
//! served by every `grpc` listener, so a write through one listener is read through another —
//! for an in-memory store (one map per process) and a redis one (one connection per process);
//! and two filters may each declare components as long as their names do not clash.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use common::{redis::RedisServer, *};
use layotto_proto::runtime::{GetStateRequest, SaveStateRequest, SayHelloRequest};
use serde_json::{Value, json};

/// A `grpc` listener called `name` on a free loopback port serving `grpc_config`.
fn grpc_listener(name: &str, grpc_config: Value) -> Value {
    json!({
        "name": name,
        "address": "127.0.0.1:0",
        "bind_port": true,
        "filter_chains": [{"filters": [{"type": "grpc", "config": {
            "server_name": "runtime", "grpc_config": grpc_config
        }}]}]
    })
}

fn two_listeners(first: Value, second: Value) -> Value {
    json!({"servers": [{
        "default_log_path": "stdout",
        "listeners": [grpc_listener("first", first), grpc_listener("second", second)]
    }]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_grpc_listeners_serve_the_same_components() {
    let redis = RedisServer::start();
    // The first filter declares the stores, the second one a greeting: both listeners serve all.
    let config = two_listeners(
        json!({
            "state": {
                "mem": {"type": "in-memory"},
                "red": {"type": "redis", "metadata": {"redisHost": redis.endpoint()}}
            }
        }),
        json!({"hellos": {"hi": {"type": "helloworld", "hello": "hello"}}}),
    );
    let layotto = Layotto::start(&config, &["--shards", "2"], 2);
    let mut first = runtime_client(layotto.address("first")).await;
    let second = runtime_client(layotto.address("second")).await;
    for store in ["mem", "red"] {
        let directions = [
            (first.clone(), second.clone()),
            (second.clone(), first.clone()),
        ];
        for (i, (mut writer, mut reader)) in directions.into_iter().enumerate() {
            let key = format!("k{i}");
            let value = format!("{store}-{i}");
            writer
                .save_state(SaveStateRequest {
                    store_name: store.into(),
                    states: vec![item(&key, &value)],
                })
                .await
                .unwrap();
            let read = reader
                .get_state(GetStateRequest {
                    store_name: store.into(),
                    key,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                read.data,
                value.as_bytes(),
                "{store}: written through one listener"
            );
        }
    }
    let hello = first
        .say_hello(SayHelloRequest {
            service_name: "hi".into(),
            name: "first".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hello.hello, "hello, first");
}

#[test]
fn component_names_clash_across_grpc_filters() {
    let config = two_listeners(
        json!({"state": {"demo": {"type": "in-memory"}}}),
        json!({"state": {"demo": {"type": "in-memory"}}}),
    );
    let (code, output) = run_to_exit(&serde_json::to_string(&config).unwrap());
    assert_eq!(code, Some(2), "{output}");
    assert!(
        output.contains(
            "servers[0].listeners[1].filter_chains[0].filters[0].config.grpc_config.state.demo: \
             state component \"demo\" is declared twice: also at \
             servers[0].listeners[0].filter_chains[0].filters[0].config.grpc_config.state.demo"
        ),
        "{output}"
    );
}
