//! End-to-end tests of what layotto-rs reports about itself: Prometheus `/metrics` (per listener
//! and per rpc, with latency quantiles merged across shards, ours and LayOtto's names) and the
//! actuator's health, info and logger endpoints over HTTP, as LayOtto's answer: readiness
//! following a real etcd going down and up, `runtime_startup` going DOWN on shutdown, and a
//! component's log level changed at run time.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
};

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

    // The same calls under MOSN's grpc_metric names, which LayOtto serves (label `service`, the
    // full method path): counted when they finish, OK as success, any other code as failure.
    let service = format!(r#"{{service="{SAY_HELLO}"}}"#);
    assert_eq!(
        sample(&metrics, &format!("grpc_request_total{service}")),
        6.0
    );
    assert_eq!(
        sample(&metrics, &format!("grpc_response_succ_total{service}")),
        5.0
    );
    assert_eq!(
        sample(&metrics, &format!("grpc_response_fail_total{service}")),
        1.0
    );
    assert!(metrics.contains("# TYPE grpc_request_total counter"));

    let (status, _) = http_get(prometheus, "/elsewhere").unwrap();
    assert_eq!(status, 404);
}

#[test]
fn actuator_reports_liveness_info_and_readiness_of_components() {
    let mut etcd = EtcdServer::start();
    let layotto = Layotto::start(&config(&etcd));
    let actuator = layotto.address("actuator");

    // LayOtto's shapes: the runtime_startup indicator, the `app` info contributor.
    let (status, body) = http_get(actuator, "/actuator/health/liveness").unwrap();
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            r#"{"status":"UP","components":{"runtime_startup":{"status":"UP","details":{"reason":""}}}}"#
        )
    );
    let (status, body) = http_get(actuator, "/actuator/info").unwrap();
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["app"]["name"], "layotto-rs");
    assert_eq!(info["app"]["version"], env!("CARGO_PKG_VERSION"));
    let compiled = info["app"]["compiled"].as_str().unwrap();
    assert!(
        compiled.starts_with("20") && compiled.contains('T') && compiled.ends_with('Z'),
        "{compiled}"
    );

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
    assert_eq!(body["components"]["runtime_startup"]["status"], "UP");

    etcd.stop();
    let (status, body) = readiness();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "DOWN");
    let reason = body["components"]["config_store.config_demo"]["details"]["reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains(&etcd.endpoint()), "{reason}");
    assert_eq!(body["components"]["runtime_startup"]["status"], "UP");
    // Liveness does not depend on components.
    assert_eq!(
        http_get(actuator, "/actuator/health/liveness").unwrap().0,
        200
    );

    etcd.restart();
    wait_until("readiness after etcd is back", || readiness().0 == 200);
}

/// One request on a kept-alive connection: the status and the body.
fn exchange(
    stream: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    write!(
        stream.get_mut(),
        "{method} {path} HTTP/1.1\r\nHost: actuator\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut status_line = String::new();
    stream.read_line(&mut status_line).unwrap();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut length = 0;
    loop {
        let mut header = String::new();
        stream.read_line(&mut header).unwrap();
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some(value) = header.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
    }
    let mut answer = vec![0; length];
    stream.read_exact(&mut answer).unwrap();
    (status, String::from_utf8(answer).unwrap())
}

fn keep_alive(address: SocketAddr) -> BufReader<TcpStream> {
    let stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    BufReader::new(stream)
}

/// A grpc listener with a hello component and the actuator listener.
fn hello_and_actuator() -> Value {
    let mut config = grpc_config(
        json!({"hellos": {"quick_start_demo": {"type": "helloworld", "hello": "greeting"}}}),
        json!({}),
    );
    config["servers"][0]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "name": "actuator",
            "address": "127.0.0.1:0",
            "bind_port": true,
            "filter_chains": [{"filters": [{"type": "proxy", "config": {
                "downstream_protocol": "Http1", "upstream_protocol": "Http1",
                "router_config_name": "actuator_dont_need_router"}}]}],
            "stream_filters": [{"type": "actuator_filter"}]
        }));
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actuator_logger_changes_a_component_log_level_at_run_time() {
    let layotto = LayottoBinary::start(&hello_and_actuator(), &[], 2);
    let mut actuator = keep_alive(layotto.address("actuator"));
    let mut client = runtime_client(layotto.address("grpc")).await;
    // A failed call is logged at DEBUG by the gRPC server, which runs at INFO.
    let fail_a_call =
        async |client: &mut layotto_proto::runtime::runtime_client::RuntimeClient<_>| {
            let refused = client
                .say_hello(SayHelloRequest {
                    service_name: "nope".into(),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert_eq!(refused.code(), Code::InvalidArgument);
        };
    fail_a_call(&mut client).await;

    // LayOtto's body; the answer is LayOtto's `{}`.
    let change = json!({"component": "layotto_runtime_api::grpc::server", "level": "debug"});
    let answer = exchange(
        &mut actuator,
        "POST",
        "/actuator/logger",
        &change.to_string(),
    );
    assert_eq!(answer, (200, "{}".to_owned()));
    let changed = layotto.wait_for_line("log level changed");
    let before = layotto.output();
    let before = &before[..before.find(&changed).unwrap()];
    assert!(!before.contains("call failed"), "logged at INFO:\n{before}");
    fail_a_call(&mut client).await;
    let logged = layotto.wait_for_line("call failed");
    assert!(logged.contains("DEBUG"), "{logged}");

    // LayOtto's component names are accepted too.
    let layotto_name = json!({"component": "configstore/etcdv3", "level": "WARN"});
    let answer = exchange(
        &mut actuator,
        "POST",
        "/actuator/logger",
        &layotto_name.to_string(),
    );
    assert_eq!(answer.0, 200, "{answer:?}");
    // What cannot be applied is refused, saying why.
    for (body, reason) in [
        (
            json!({"component": "mongo", "level": "debug"}).to_string(),
            "no component logger",
        ),
        (
            json!({"component": "lock/redis", "level": "loud"}).to_string(),
            "unknown log level",
        ),
        ("not json".to_owned(), "invalid request body"),
    ] {
        let (status, answer) = exchange(&mut actuator, "POST", "/actuator/logger", &body);
        assert_eq!(status, 400, "{body}");
        assert!(answer.contains(reason), "{answer}");
    }
    assert_eq!(
        exchange(&mut actuator, "GET", "/actuator/logger", "").0,
        405
    );
}

#[test]
fn runtime_startup_goes_down_once_the_process_is_stopping() {
    let mut layotto = LayottoBinary::start(&hello_and_actuator(), &[], 2);
    let mut actuator = keep_alive(layotto.address("actuator"));
    let (status, _) = exchange(&mut actuator, "GET", "/actuator/health/readiness", "");
    assert_eq!(status, 200);

    layotto.terminate();
    layotto.wait_for_line("stopped accepting");
    // The kept-alive connection is still served while the process drains.
    for path in ["/actuator/health/liveness", "/actuator/health/readiness"] {
        let (status, body) = exchange(&mut actuator, "GET", path, "");
        assert_eq!(status, 503, "{path}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["status"], "DOWN");
        assert_eq!(
            body["components"]["runtime_startup"],
            json!({"status": "DOWN", "details": {"reason": "shutdown"}})
        );
    }
    drop(actuator);
    assert!(layotto.wait_exit().success());
}
