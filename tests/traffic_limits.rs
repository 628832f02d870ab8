//! End-to-end tests of the limits: `flowControlFilter` on the gRPC listener (process-wide, across
//! two shards, unary and streaming) and `connection_limit` on a tcp_proxy listener.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use common::*;
use futures_util::{StreamExt, stream};
use layotto_proto::runtime::{
    GetStateRequest, SaveStateRequest, SayHelloRequest, StateItem, SubscribeConfigurationRequest,
};
use serde_json::{Value, json};
use tonic::Code;

const SAY_HELLO: &str = "/spec.proto.runtime.v1.Runtime/SayHello";

/// A gRPC listener with hello, state and config components, limited by `rules`.
fn limited(rules: Value) -> Value {
    let mut components = hello_and_state();
    components["config_store"] = json!({"config_demo": {"type": "in-memory"}});
    let mut config = grpc_config(components, json!({}));
    config["servers"][0]["listeners"][0]["stream_filters"] = json!([{
        "type": "flowControlFilter",
        "config": {"global_switch": true, "limit_key_type": "PATH", "rules": rules}
    }]);
    config
}

/// Sleeps until 100 ms past a wall-clock second, where 1 s windows start (the windows are the
/// thing tested: they follow the wall clock).
async fn early_in_a_second() {
    loop {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_millis();
        if (100..400).contains(&millis) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(u64::from((1100 - millis) % 1000))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_calls_against_five_per_second_pass_exactly_five_across_shards() {
    let layotto = Layotto::with_shards(
        &limited(json!([{"resource": SAY_HELLO, "grade": 1, "threshold": 5}])),
        2,
    );
    let address = layotto.address("grpc");
    // Ten connections, so SO_REUSEPORT spreads the calls over both shards.
    let mut clients = Vec::new();
    for _ in 0..10 {
        clients.push(runtime_client(address).await);
    }
    for second in 0..3 {
        early_in_a_second().await;
        let calls = clients.iter().cloned().map(|mut client| {
            tokio::spawn(async move {
                client
                    .say_hello(SayHelloRequest {
                        service_name: "quick_start_demo".into(),
                        ..Default::default()
                    })
                    .await
            })
        });
        let mut passed = 0;
        for call in calls.collect::<Vec<_>>() {
            match call.await.unwrap() {
                Ok(_) => passed += 1,
                Err(status) => {
                    // LayOtto's answer (its flow-control quickstart): MOSN's default action.
                    assert_eq!(status.code(), Code::Unknown, "{status:?}");
                    assert_eq!(status.message(), "current request is limited");
                }
            }
        }
        assert_eq!(passed, 5, "second {second}");
        // Into the next window: the time is the thing tested.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    drop(clients);
    let mut layotto = layotto;
    let summary = layotto.stop_and_summary("grpc");
    assert_eq!(summary.accepted_per_shard.iter().sum::<u64>(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_status_in_the_action_maps_to_its_grpc_code() {
    let mut config = limited(json!([{"resource": SAY_HELLO, "grade": 3600, "threshold": 1}]));
    // An HTTP status maps as the gRPC spec maps HTTP statuses: 429 is UNAVAILABLE.
    config["servers"][0]["listeners"][0]["stream_filters"][0]["config"]["action"] =
        json!({"status": 429});
    let layotto = Layotto::start(&config);
    let mut client = runtime_client(layotto.address("grpc")).await;
    let hello = || SayHelloRequest {
        service_name: "quick_start_demo".into(),
        ..Default::default()
    };
    client.say_hello(hello()).await.unwrap();
    let refused = client.say_hello(hello()).await.unwrap_err();
    assert_eq!(
        (refused.code(), refused.message()),
        (Code::Unavailable, "current request is limited"),
        "the body keeps MOSN's default"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_calls_never_reach_the_component_and_streams_are_limited_too() {
    let mut config = limited(json!([
        {"resource": "/spec.proto.runtime.v1.Runtime/SaveState", "grade": 60, "threshold": 2},
        {"resource": "/spec.proto.runtime.v1.Runtime/SubscribeConfiguration", "grade": 60, "threshold": 1}
    ]));
    // MOSN's `action`: a status of 1-16 is that gRPC code (8: RESOURCE_EXHAUSTED), the body
    // the message.
    config["servers"][0]["listeners"][0]["stream_filters"][0]["config"]["action"] =
        json!({"status": 8, "body": "slow down"});
    let layotto = Layotto::start(&config);
    let mut client = runtime_client(layotto.address("grpc")).await;
    let save = |key: &str| SaveStateRequest {
        store_name: "state_demo".into(),
        states: vec![StateItem {
            key: key.into(),
            value: Bytes::from_static(b"v"),
            ..Default::default()
        }],
    };
    client.save_state(save("a")).await.unwrap();
    client.save_state(save("b")).await.unwrap();
    let refused = client.save_state(save("c")).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert_eq!(refused.message(), "slow down");
    let stored = client
        .get_state(GetStateRequest {
            store_name: "state_demo".into(),
            key: "c".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stored.data.is_empty(), "the refused save reached the store");

    let subscribe = || {
        let request = SubscribeConfigurationRequest {
            store_name: "config_demo".into(),
            app_id: "app".into(),
            ..Default::default()
        };
        stream::iter([request]).chain(stream::pending())
    };
    // Answered (response headers) once its watch is in place; it sends only changes.
    let _first = client
        .subscribe_configuration(subscribe())
        .await
        .expect("first subscription answered");
    let second = client
        .subscribe_configuration(subscribe())
        .await
        .unwrap_err();
    assert_eq!(
        (second.code(), second.message()),
        (Code::ResourceExhausted, "slow down")
    );
    // Other rpcs are not limited.
    for _ in 0..20 {
        client
            .say_hello(SayHelloRequest {
                service_name: "quick_start_demo".into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
}

/// Opens a connection through the proxy and checks it echoes, or that it was closed unanswered.
fn echoes(address: std::net::SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let _ = stream.write_all(b"ping");
    let mut reply = [0u8; 4];
    match stream.read_exact(&mut reply) {
        Ok(()) => {
            assert_eq!(&reply, b"ping");
            Some(stream)
        }
        Err(_) => None,
    }
}

#[test]
fn connection_limit_caps_open_connections_and_the_connection_rate() {
    let upstream = echo_server();
    let mut config = proxy_config(
        &[
            ("capped", &[upstream], json!({})),
            ("rated", &[upstream], json!({})),
        ],
        json!({}),
    );
    let limits = [
        json!({"max_connections": 2}),
        // Windows start on wall-clock boundaries: an hour-long one will not roll over mid-test.
        json!({"rate": {"threshold": 3, "grade": 3600}}),
    ];
    for (listener, limit) in limits.into_iter().enumerate() {
        let filters =
            &mut config["servers"][0]["listeners"][listener]["filter_chains"][0]["filters"];
        let proxy = filters[0].take();
        *filters = json!([{"type": "connection_limit", "config": limit}, proxy]);
    }
    let mut layotto = Layotto::with_shards(&config, 2);

    let capped = layotto.address("capped");
    let first = echoes(capped).expect("first connection");
    let second = echoes(capped).expect("second connection");
    assert!(
        echoes(capped).is_none(),
        "a third open connection is refused"
    );
    drop(first);
    // The place is given back once the proxy has seen the close.
    layotto.wait_metric(
        r#"layotto_listener_open_connections{listener="capped"}"#,
        1.0,
    );
    assert!(echoes(capped).is_some(), "the freed place is taken again");

    let rated = layotto.address("rated");
    for i in 0..3 {
        assert!(echoes(rated).is_some(), "connection {i} is within the rate");
    }
    assert!(
        echoes(rated).is_none(),
        "the fourth new connection is over the rate"
    );
    assert!(echoes(rated).is_none(), "and so is the fifth");

    drop(second);
    let report = layotto.stop();
    let (capped, rated) = (
        report.listener("capped").unwrap(),
        report.listener("rated").unwrap(),
    );
    assert_eq!(
        counter(capped, "refused_over_max_connections"),
        1,
        "{capped:?}"
    );
    assert_eq!(
        counter(rated, "refused_over_connection_rate"),
        2,
        "{rated:?}"
    );
    assert_eq!(
        counter(rated, "refused_over_max_connections"),
        0,
        "{rated:?}"
    );
}
