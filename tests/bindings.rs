//! End-to-end tests of the calls layotto-rs makes over HTTP — the `http` output binding and
//! `InvokeService` through the `rpcs` `http` component: layotto-rs in the test process, called by tonic, sending
//! to a real HTTP server of the test's that records what it received.
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
    net::TcpListener,
    sync::{Arc, Mutex},
};

use common::*;
use layotto_proto::runtime::{
    CommonInvokeRequest, HttpExtension, InvokeBindingRequest, InvokeServiceRequest,
    http_extension::Verb,
};
use serde_json::json;
use tonic::Code;

/// What the server received: method, path, headers (lower-cased names), body.
type Received = Arc<Mutex<Vec<(String, String, HashMap<String, String>, Vec<u8>)>>>;

/// An HTTP/1.1 server answering 404 on `/api/missing`, 201 to POST and 200 otherwise, each with
/// a body naming the request and a header `x-reply: yes`.
fn http_server() -> (std::net::SocketAddr, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let received: Received = Arc::default();
    let log = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut parts = request_line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_owned(),
                parts.next().unwrap_or("").to_owned(),
            );
            let mut headers = HashMap::new();
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
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
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).unwrap();
            let (status, reply) = match (method.as_str(), path.as_str()) {
                (_, "/api/missing") => ("404 Not Found", "no such thing".to_owned()),
                ("POST", _) => (
                    "201 Created",
                    format!("created {}", String::from_utf8_lossy(&body)),
                ),
                _ => ("200 OK", format!("{method} {path}")),
            };
            log.lock().unwrap().push((method, path, headers, body));
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nx-reply: yes\r\nx-reply: again\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (address, received)
}

fn request(operation: &str, path: &str, data: &str) -> InvokeBindingRequest {
    InvokeBindingRequest {
        name: "bindings_demo".into(),
        data: data.as_bytes().to_vec().into(),
        metadata: HashMap::from([
            ("path".to_owned(), path.to_owned()),
            ("x-trace".to_owned(), "t-1".to_owned()),
        ]),
        operation: operation.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_binding_sends_the_operation_path_headers_and_body() {
    let (server, received) = http_server();
    let dead = dead_address();
    let config = grpc_config(
        json!({"bindings": {
            "bindings_demo": {"type": "http", "metadata": {"url": format!("http://{server}/api")}},
            "dead": {"type": "http", "metadata": {"url": format!("http://{dead}/"), "timeout": "2"}}
        }}),
        json!({}),
    );
    let layotto = Layotto::start(&config);
    let mut client = runtime_client(layotto.address("grpc")).await;

    let created = client
        .invoke_binding(request("create", "orders", "o-42"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&created.data[..], b"created o-42");
    // Dapr's http binding keys (what LayOtto returns): statusCode, status, Go-canonical headers.
    assert_eq!(created.metadata["statusCode"], "201");
    assert_eq!(created.metadata["status"], "201 Created");
    assert_eq!(created.metadata["X-Reply"], "yes, again");
    assert_eq!(created.metadata["Content-Type"], "text/plain");
    assert!(!created.metadata.contains_key("x-reply"));
    let fetched = client
        .invoke_binding(request("get", "/orders/42", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&fetched.data[..], b"GET /api/orders/42");
    {
        let received = received.lock().unwrap();
        let (method, path, headers, body) = &received[0];
        assert_eq!((method.as_str(), path.as_str()), ("POST", "/api/orders"));
        assert_eq!(headers["x-trace"], "t-1");
        assert!(
            !headers.contains_key("path"),
            "path is not sent as a header"
        );
        assert_eq!(body, b"o-42");
    }

    let missing = client
        .invoke_binding(request("get", "missing", ""))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.message().contains("404"), "{}", missing.message());
    let bad = client
        .invoke_binding(request("teleport", "x", ""))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let mut unreachable = request("get", "x", "");
    unreachable.name = "dead".into();
    let err = client.invoke_binding(unreachable).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().contains(&dead.to_string()),
        "{}",
        err.message()
    );
    let unknown = InvokeBindingRequest {
        name: "nope".into(),
        ..request("get", "x", "")
    };
    assert_eq!(
        client.invoke_binding(unknown).await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

fn invoke(id: &str, method: &str, verb: Verb, query: &str, data: &str) -> InvokeServiceRequest {
    InvokeServiceRequest {
        id: id.into(),
        message: Some(CommonInvokeRequest {
            method: method.into(),
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: data.as_bytes().to_vec(),
            }),
            content_type: "application/json".into(),
            http_extension: Some(HttpExtension {
                verb: verb as i32,
                querystring: query.into(),
            }),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_service_forwards_to_the_target_app_over_http() {
    let (server, received) = http_server();
    let dead = dead_address();
    let config = grpc_config(
        json!({"rpcs": {"http": {"type": "http", "metadata": {
            "targets": format!("app2={server};gone={dead}"), "timeout": "2"}}}}),
        json!({}),
    );
    let layotto = Layotto::start(&config);
    let mut client = runtime_client(layotto.address("grpc")).await;

    let mut call = tonic::Request::new(invoke("app2", "api/orders/42", Verb::Get, "expand=1", ""));
    call.metadata_mut()
        .insert("x-tenant", "t1".parse().unwrap());
    let reply = client.invoke_service(call).await.unwrap();
    // The app's headers come back as header metadata (not the framing ones).
    let replied: Vec<_> = reply.metadata().get_all("x-reply").iter().collect();
    assert_eq!(replied, ["yes", "again"]);
    assert!(reply.metadata().get("content-length").is_none());
    let reply = reply.into_inner();
    assert_eq!(
        &reply.data.unwrap().value[..],
        b"GET /api/orders/42?expand=1"
    );
    assert_eq!(reply.content_type, "text/plain");
    {
        // The call's metadata reached the app as headers, but not the gRPC call's own.
        let received = received.lock().unwrap();
        let (_, _, headers, _) = &received[0];
        assert_eq!(headers["x-tenant"], "t1");
        assert!(
            !headers.contains_key("te") && !headers.contains_key("grpc-timeout"),
            "{headers:?}"
        );
    }
    let created = client
        .invoke_service(invoke("app2", "api/orders", Verb::None, "", r#"{"n":1}"#))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&created.data.unwrap().value[..], br#"created {"n":1}"#);
    {
        let received = received.lock().unwrap();
        let (method, path, headers, body) = &received[1];
        assert_eq!(
            (method.as_str(), path.as_str()),
            ("POST", "/api/orders"),
            "no verb is POST"
        );
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(body, br#"{"n":1}"#);
    }
    let missing = client
        .invoke_service(invoke("app2", "api/missing", Verb::Get, "", ""))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let unknown = client
        .invoke_service(invoke("app9", "x", Verb::Get, "", ""))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(unknown.message().contains("app2"), "{}", unknown.message());
    let down = client
        .invoke_service(invoke("gone", "x", Verb::Get, "", ""))
        .await
        .unwrap_err();
    assert_eq!(down.code(), Code::Unavailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_bindings_and_invocations_verify_the_server_against_the_configured_ca() {
    let server = https::HttpsServer::start();
    let config = grpc_config(
        json!({
            "bindings": {
                // Dapr's MTLSRootCA: a file path or the PEM itself.
                "bindings_demo": {"type": "http", "metadata": {
                    "url": format!("{}/api", server.url()),
                    "MTLSRootCA": server.ca_file.to_str().unwrap()}},
                "pem": {"type": "http", "metadata": {
                    "url": server.url(), "MTLSRootCA": server.ca_pem}},
                "untrusted": {"type": "http", "metadata": {"url": server.url(), "timeout": "5"}}
            },
            "rpcs": {"http": {"type": "http", "metadata": {
                "targets": format!("secure={};bare={}", server.url(), server.address),
                "MTLSRootCA": server.ca_pem, "timeout": "5"}}}
        }),
        json!({}),
    );
    let layotto = Layotto::start(&config);
    let mut client = runtime_client(layotto.address("grpc")).await;

    let created = client
        .invoke_binding(request("create", "orders", "o-7"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&created.data[..], b"POST /api/orders o-7");
    assert_eq!(created.metadata["statusCode"], "200");
    let mut pem = request("get", "x", "");
    pem.name = "pem".into();
    let fetched = client.invoke_binding(pem).await.unwrap().into_inner();
    assert_eq!(&fetched.data[..], b"GET /x ");

    // The test CA is in no system store: refused, naming the URL and why.
    let mut untrusted = request("get", "x", "");
    untrusted.name = "untrusted".into();
    let err = client.invoke_binding(untrusted).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    let url = format!("{}/x", server.url());
    assert!(
        err.message().contains(&format!("TLS with {url} failed"))
            && err.message().contains("invalid peer certificate"),
        "{}",
        err.message()
    );

    let reply = client
        .invoke_service(invoke("secure", "api/orders/7", Verb::Get, "v=1", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(&reply.data.unwrap().value[..], b"GET /api/orders/7?v=1 ");
    assert_eq!(reply.content_type, "text/plain");
    // A target without a scheme is plain HTTP: the TLS server does not answer it as HTTP.
    let plain = client
        .invoke_service(invoke("bare", "x", Verb::Get, "", ""))
        .await
        .unwrap_err();
    assert!(
        plain
            .message()
            .contains(&format!("http://{}/x", server.address)),
        "{}",
        plain.message()
    );
}
