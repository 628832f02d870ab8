//! End-to-end tests of what layotto-rs reports about itself: Prometheus `/metrics` (per listener
//! and per rpc, with latency quantiles merged across shards) and the actuator's health and info
//! endpoints, scraped over HTTP, with readiness following a real etcd going down and up.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use common::{etcd::EtcdServer, *};
use layotto_proto::runtime::{GetConfigurationRequest, SayHelloRequest};
use serde_json::{Value, json};
use tonic::Code;

const SAY_HELLO: &str = "/spec.proto.runtime.v1.Runtime/SayHello";

/// A grpc listener (hello, config store on `etcd`), LayOtto's actuator listener and a
/// Prometheus sink on a free port (port 0: the kernel picks it).
fn config(etcd: &EtcdServer) -> Value {
    let mut config = grpc_config(
        json!({
            "hellos": {"quick_start_demo": {"type": "helloworld", "hello": "greeting"}},
            "config_store": {"config_demo": {"type": "etcd", "address": [etcd.endpoint()], "timeout": "2"}}
        }),
        json!({}),
    );
    let listeners = config["servers"][0]["listeners"].as_array_mut().unwrap();
    listeners[0]["stream_filters"] = json!([{"type": "grpc_metric"}]);
    listeners.push(json!({
        "name": "actuator",
        "address": "127.0.0.1:0",
        "bind_port": true,
        "filter_chains": [{"filters": [{"type": "proxy", "config": {
            "downstream_protocol": "Http1", "upstream_protocol": "Http1",
            "router_config_name": "actuator_dont_need_router"}}]}],
        "stream_filters": [{"type": "actuator_filter"}]
    }));
    config["metrics"] = json!({"sinks": [{"type": "prometheus", "config": {"port": 0}}]});
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_per_rpc_and_status_across_shards() {
    let etcd = EtcdServer::start();
    let layotto = Layotto::with_shards(&config(&etcd), 2);
    let prometheus = layotto.address("prometheus");
    assert_eq!(
        prometheus.ip().to_string(),
        "127.0.0.1",
        "admin ports bind to loopback"
    );
    let grpc = layotto.address("grpc");

    // Calls over several connections, so both shards serve some.
    for i in 0..6 {
        let mut client = runtime_client(grpc).await;
        let service = if i == 5 { "nope" } else { "quick_start_demo" };
        let answer = client
            .say_hello(SayHelloRequest {
                service_name: service.into(),
                ..Default::default()
            })
            .await;
        match answer {
            Ok(_) => assert!(i < 5),
            Err(status) => assert_eq!(status.code(), Code::InvalidArgument),
        }
    }
    let mut client = runtime_client(grpc).await;
    client
        .get_configuration(GetConfigurationRequest {
            store_name: "config_demo".into(),
            app_id: "app".into(),
            ..Default::default()
        })
        .await
        .unwrap();

    let (status, metrics) = http_get(prometheus, "/metrics").expect("scrape");
    assert_eq!(status, 200);
    let hello = format!(r#"listener="grpc",method="{SAY_HELLO}""#);
    assert_eq!(
        sample(&metrics, &format!("layotto_grpc_requests_total{{{hello}}}")),
        6.0
    );
    assert_eq!(
        sample(
            &metrics,
            &format!(r#"layotto_grpc_responses_total{{{hello},code="Ok"}}"#)
        ),
        5.0
    );
    assert_eq!(
        sample(
            &metrics,
            &format!(r#"layotto_grpc_responses_total{{{hello},code="InvalidArgument"}}"#)
        ),
        1.0
    );
    assert_eq!(
        sample(
            &metrics,
            &format!("layotto_grpc_request_duration_seconds_count{{{hello}}}")
        ),
        6.0
    );
    for quantile in ["0.5", "0.9", "0.99", "0.999"] {
        let seconds = sample(
            &metrics,
            &format!(r#"layotto_grpc_request_duration_seconds{{{hello},quantile="{quantile}"}}"#),
        );
        assert!(seconds > 0.0 && seconds < 1.0, "p{quantile} = {seconds}");
    }
    assert!(metrics.contains(
        r#"layotto_grpc_requests_total{listener="grpc",method="/spec.proto.runtime.v1.Runtime/GetConfiguration"} 1"#
    ));
    assert_eq!(
        sample(
            &metrics,
            r#"layotto_listener_connections_total{listener="grpc"}"#
        ),
        7.0
    );
    assert!(
        sample(
            &metrics,
            r#"layotto_listener_bytes_received_total{listener="grpc"}"#
        ) > 0.0
    );
    assert!(
        sample(
            &metrics,
            r#"layotto_listener_bytes_sent_total{listener="grpc"}"#
        ) > 0.0
    );
    assert_eq!(sample(&metrics, "layotto_backend_calls_in_flight"), 0.0);
    assert!(metrics.contains("# TYPE layotto_grpc_request_duration_seconds summary"));

    let (status, _) = http_get(prometheus, "/elsewhere").unwrap();
    assert_eq!(status, 404);
}

#[test]
fn actuator_reports_liveness_info_and_readiness_of_components() {
    let mut etcd = EtcdServer::start();
    let layotto = Layotto::start(&config(&etcd));
    let actuator = layotto.address("actuator");

    let (status, body) = http_get(actuator, "/actuator/health/liveness").unwrap();
    assert_eq!((status, body.as_str()), (200, r#"{"status":"UP"}"#));
    let (status, body) = http_get(actuator, "/actuator/info").unwrap();
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["app"]["version"], env!("CARGO_PKG_VERSION"));

    let readiness = || {
        let (status, body) = http_get(actuator, "/actuator/health/readiness").unwrap();
        (status, serde_json::from_str::<Value>(&body).unwrap())
    };
    let (status, body) = readiness();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["components"]["config_store.config_demo"]["status"],
        "UP"
    );

    etcd.stop();
    let (status, body) = readiness();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "DOWN");
    let reason = body["components"]["config_store.config_demo"]["details"]["reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains(&etcd.endpoint()), "{reason}");
    // Liveness does not depend on components.
    assert_eq!(
        http_get(actuator, "/actuator/health/liveness").unwrap().0,
        200
    );

    etcd.restart();
    wait_until("readiness after etcd is back", || readiness().0 == 200);
}
