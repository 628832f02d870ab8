//! End-to-end tests of MOSN's HTTP `proxy` listener and LayOtto's `mosn` rpc invoker handing
//! `InvokeService` to it: layotto-rs in the test process, called by tonic (and by plain HTTP on
//! the proxy's own listener), routing to real HTTP/1.1 servers of the test's that record every
//! request and count their connections. LayOtto's `demo/rpc/http/example.json` runs unchanged
//! but for its ports.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use layotto_proto::runtime::{
    CommonInvokeRequest, HttpExtension, InvokeServiceRequest, http_extension::Verb,
};
use serde_json::{Value, json};
use tonic::Code;

/// One request an upstream received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A keep-alive HTTP/1.1 upstream answering 200 with `<name> <path>` and `x-reply: <name>`
/// (after 2 s for `/slow`), recording requests and counting connections.
struct Upstream {
    address: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    connections: Arc<AtomicUsize>,
}

impl Upstream {
    fn start(name: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let connections = Arc::new(AtomicUsize::new(0));
        let (log, count) = (seen.clone(), connections.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let log = log.clone();
                std::thread::spawn(move || serve_connection(name, stream, &log));
            }
        });
        Self {
            address,
            seen,
            connections,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

fn serve_connection(name: &str, stream: TcpStream, log: &Mutex<Vec<Seen>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("").to_owned(),
        );
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        if path == "/slow" {
            std::thread::sleep(Duration::from_secs(2));
        }
        let reply = format!("{name} {path}");
        log.lock().unwrap().push(Seen {
            method,
            path,
            headers,
            body,
        });
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nx-reply: {name}\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// An `InvokeService` request for app `id`, method `method`, with `metadata`.
fn invoke(
    id: &str,
    method: &str,
    data: &[u8],
    metadata: &[(&'static str, &'static str)],
) -> tonic::Request<InvokeServiceRequest> {
    let mut request = tonic::Request::new(InvokeServiceRequest {
        id: id.into(),
        message: Some(CommonInvokeRequest {
            method: method.into(),
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: data.to_vec(),
            }),
            ..Default::default()
        }),
    });
    for (key, value) in metadata {
        request.metadata_mut().insert(*key, value.parse().unwrap());
    }
    request
}

/// LayOtto's demo config with its fixed ports free and its upstream at `upstream`.
fn demo_config(upstream: SocketAddr) -> Value {
    let mut text = std::fs::read_to_string("configs/rpc_http_example.json").unwrap();
    for (from, to) in [
        ("127.0.0.1:34904", "127.0.0.1:0".to_owned()),
        ("0.0.0.0:12221", "127.0.0.1:0".to_owned()),
        ("127.0.0.1:8889", upstream.to_string()),
    ] {
        assert!(text.contains(from), "the demo has no {from}");
        text = text.replace(from, &to);
    }
    serde_json::from_str(&text).unwrap()
}

/// A plain HTTP/1.1 request with `headers` to the proxy at `address`: status line and body.
fn http_request(address: SocketAddr, path: &str, headers: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: example\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layotto_demo_invokes_over_the_http_proxy_as_layotto_s_channel() {
    let upstream = Upstream::start("demo");
    let layotto = Layotto::with_shards(&demo_config(upstream.address), 2);
    let mut client = runtime_client(layotto.address("grpc")).await;

    let response = client
        .invoke_service(invoke(
            "HelloService:1.0",
            "hello",
            b"hi there",
            &[("x-trace", "t1")],
        ))
        .await
        .unwrap();
    assert_eq!(
        response.metadata().get("x-reply").unwrap(),
        "demo",
        "the answer's headers come back as metadata"
    );
    let answer = response.into_inner();
    assert_eq!(answer.data.unwrap().value, b"demo /hello");
    assert_eq!(answer.content_type, "text/plain");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "GET", "no http_extension: GET, as LayOtto");
    assert_eq!(request.path, "/hello");
    assert_eq!(request.headers["id"], "HelloService:1.0");
    assert_eq!(
        request.headers["x-trace"], "t1",
        "gRPC metadata becomes headers"
    );
    assert_eq!(request.headers["host"], "localhost");
    assert!(!request.headers.contains_key("grpc-timeout"));
    assert_eq!(request.body, b"hi there");

    // The verb and query string of an http_extension.
    let mut with_verb = invoke("HelloService:1.0", "/items", b"{}", &[]);
    let message = with_verb.get_mut().message.as_mut().unwrap();
    message.content_type = "application/json".into();
    message.http_extension = Some(HttpExtension {
        verb: Verb::Post.into(),
        querystring: "a=1&b=2".into(),
    });
    client.invoke_service(with_verb).await.unwrap();
    let request = upstream.seen().pop().unwrap();
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/items?a=1&b=2")
    );
    assert_eq!(request.headers["content-type"], "application/json");

    // No route for another id: the proxy's 404 is LayOtto's UNAVAILABLE.
    let err = client
        .invoke_service(invoke("Other:1.0", "hello", b"", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message()
            .starts_with("http response code 404, body: no route"),
        "{err:?}"
    );
    assert_eq!(upstream.count(), 2, "nothing was sent upstream");

    // The proxy listener serves HTTP clients itself.
    let proxy = layotto.address("egress_runtime_http");
    let (status, body) = http_request(proxy, "/direct", "id: HelloService:1.0\r\n");
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "demo /direct")
    );
    let (status, body) = http_request(proxy, "/direct", "");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert!(body.starts_with("no route for example /direct"), "{body}");
}

/// A config with a `grpc` listener whose `mosn` invoker hands calls to the `proxy` listener
/// `egress`, routed by `virtual_hosts` over `clusters`.
fn proxy_config(virtual_hosts: Value, clusters: Value) -> Value {
    json!({
        "servers": [{
            "routers": [{"router_config_name": "r", "virtual_hosts": virtual_hosts}],
            "listeners": [
                {"name": "grpc", "address": "127.0.0.1:0", "bind_port": true,
                 "filter_chains": [{"filters": [{"type": "grpc", "config": {"grpc_config": {
                     "rpcs": {"mosn": {"config": {"channel": [
                         {"size": 16, "protocol": "http", "listener": "egress"}]}}}}}}]}]},
                {"name": "egress", "address": "127.0.0.1:0", "bind_port": true,
                 "filter_chains": [{"filters": [{"type": "proxy", "config": {
                     "downstream_protocol": "Http1", "upstream_protocol": "Http1",
                     "router_config_name": "r"}}]}]}
            ]
        }],
        "cluster_manager": {"clusters": clusters}
    })
}

fn cluster(name: &str, lb: &str, hosts: &[(SocketAddr, u32)]) -> Value {
    json!({"name": name, "type": "SIMPLE", "lb_type": lb, "connect_timeout": "1s",
           "hosts": hosts.iter().map(|(address, weight)|
               json!({"address": address.to_string(), "weight": weight})).collect::<Vec<_>>()})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_path_and_header_and_balances_by_weight_over_kept_connections() {
    let (a1, a2) = (Upstream::start("a1"), Upstream::start("a2"));
    let gold = Upstream::start("gold");
    let (r1, r2) = (Upstream::start("r1"), Upstream::start("r2"));
    let config = proxy_config(
        json!([{"name": "all", "domains": ["*"], "routers": [
            {"match": {"headers": [{"name": "x-tier", "value": "^gold$", "regex": true}]},
             "route": {"cluster_name": "gold"}},
            {"match": {"prefix": "/a/"}, "route": {"cluster_name": "weighted_rr"}},
            {"match": {"prefix": "/r/"}, "route": {"cluster_name": "weighted_random"}}
        ]}]),
        json!([
            cluster(
                "weighted_rr",
                "LB_ROUNDROBIN",
                &[(a1.address, 3), (a2.address, 1)]
            ),
            cluster("gold", "LB_ROUNDROBIN", &[(gold.address, 1)]),
            cluster(
                "weighted_random",
                "LB_RANDOM",
                &[(r1.address, 1), (r2.address, 3)]
            ),
        ]),
    );
    // One shard: one balancer and one pool see every call.
    let layotto = Layotto::with_shards(&config, 1);
    let mut client = runtime_client(layotto.address("grpc")).await;

    for _ in 0..8 {
        client
            .invoke_service(invoke("app", "a/x", b"", &[]))
            .await
            .unwrap();
    }
    assert_eq!((a1.count(), a2.count()), (6, 2), "weights 3:1, round robin");
    assert_eq!(
        (a1.connections(), a2.connections()),
        (1, 1),
        "one kept connection per host"
    );

    let answer = client
        .invoke_service(invoke("app", "a/x", b"", &[("x-tier", "gold")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        answer.data.unwrap().value,
        b"gold /a/x",
        "the header route comes first"
    );
    assert_eq!(gold.count(), 1);

    for _ in 0..200 {
        client
            .invoke_service(invoke("app", "r/x", b"", &[]))
            .await
            .unwrap();
    }
    // Expected 150 of 200 on r2 (weight 3 of 4); the standard deviation is about 6.
    assert_eq!(r1.count() + r2.count(), 200);
    assert!(
        (120..=180).contains(&r2.count()),
        "{} vs {}",
        r1.count(),
        r2.count()
    );
    assert_eq!((r1.connections(), r2.connections()), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_host_and_a_late_answer_are_unavailable() {
    let slow = Upstream::start("slow");
    let config = proxy_config(
        json!([{"domains": ["*"], "routers": [
            {"match": {"prefix": "/dead"}, "route": {"cluster_name": "dead"}},
            {"match": {"prefix": "/"}, "route": {"cluster_name": "slow"}}
        ]}]),
        json!([
            cluster("dead", "LB_ROUNDROBIN", &[(dead_address(), 1)]),
            cluster("slow", "LB_ROUNDROBIN", &[(slow.address, 1)]),
        ]),
    );
    let layotto = Layotto::start(&config);
    let mut client = runtime_client(layotto.address("grpc")).await;

    let err = client
        .invoke_service(invoke("app", "dead", b"", &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message()
            .starts_with("http response code 503, body: upstream connect error"),
        "{err:?}"
    );

    let started = Instant::now();
    let err = client
        .invoke_service(invoke(
            "app",
            "slow",
            b"",
            &[("rpc_request_timeout", "300")],
        ))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("no answer within 300 ms"), "{err:?}");
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(1500),
        "{waited:?}"
    );
}

#[test]
fn configuration_problems_are_reported_with_their_paths() {
    let mut config = proxy_config(
        json!([{"domains": ["*"], "routers": [
            {"match": {"prefix": "/"}, "route": {"cluster_name": "nowhere"}}
        ]}]),
        json!([]),
    );
    config["servers"][0]["listeners"][0]["filter_chains"][0]["filters"][0]["config"]["grpc_config"]
        ["rpcs"]["mosn"]["config"]["channel"][0]["listener"] = json!("grpc");
    config["servers"][0]["listeners"][1]["filter_chains"][0]["filters"][0]["config"]["downstream_protocol"] =
        json!("Http2");
    let mut problems = config_problems(&config);
    config["servers"][0]["routers"][0]["virtual_hosts"][0]["routers"][0]["match"] =
        json!({"regex": "("});
    problems.extend(config_problems(&config));
    for expected in [
        r#"servers[0].listeners[1].filter_chains[0].filters[0].config.downstream_protocol: protocol "Http2" is not served"#,
        r#"servers[0].routers[0].virtual_hosts[0].routers[0].match.regex: invalid regex "(""#,
        r#"servers[0].routers[0].virtual_hosts[0].routers[0].route.cluster_name: no cluster named "nowhere""#,
        r#"servers[0].listeners[0].filter_chains[0].filters[0].config.grpc_config.rpcs.mosn.config.channel[0].listener: no listener "grpc" whose terminal filter is the HTTP proxy"#,
    ] {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected} missing from {problems:#?}"
        );
    }
}
