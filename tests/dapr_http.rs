//! End-to-end tests of Dapr's HTTP API (`dapr_http` listeners) over real sockets, with a plain
//! HTTP/1.1 client of the test's own (so keep-alive reuse and a slow head are visible as they
//! are on the wire): every route's answer and its errors, on in-memory components and on real
//! redis, in the test process.
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
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use common::*;
use serde_json::{Value, json};

/// A response as read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("{err}: {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// Asserts a Dapr error answer: `status` with `{"errorCode": code, "message": ...}`.
    fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?} {}", self.text());
        assert_eq!(self.json()["errorCode"], code, "{}", self.text());
        assert!(self.json()["message"].is_string(), "{}", self.text());
    }
}

/// One keep-alive HTTP/1.1 connection.
struct Client {
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(address: SocketAddr) -> Self {
        let stream = TcpStream::connect(address).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Self {
            reader: BufReader::new(stream),
        }
    }

    fn stream(&mut self) -> &mut TcpStream {
        self.reader.get_mut()
    }

    fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: layotto\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let stream = self.stream();
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        self.read_answer()
    }

    fn read_answer(&mut self) -> Answer {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        let status = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("no status line: {line:?}"))
            .parse()
            .unwrap();
        let mut headers = HashMap::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap();
            headers.insert(name.to_ascii_lowercase(), value.trim().to_owned());
        }
        let length: usize = headers
            .get("content-length")
            .map_or(0, |l| l.parse().unwrap());
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).unwrap();
        Answer {
            status,
            headers,
            body,
        }
    }

    fn get(&mut self, path: &str) -> Answer {
        self.send("GET", path, &[], b"")
    }

    fn post_json(&mut self, path: &str, body: Value) -> Answer {
        self.send(
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// Whether the server closed the connection (reads end).
    fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(self.reader.read(&mut byte), Ok(0))
    }
}

/// A config with a `grpc` listener serving `grpc_config` and a `dapr_http` listener with
/// `dapr_config` (its filter's `config`), both on port 0.
fn config(grpc_config: Value, dapr_config: Value) -> Value {
    let mut config = common::grpc_config(grpc_config, json!({}));
    config["servers"][0]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "name": "dapr",
            "address": "127.0.0.1:0",
            "bind_port": true,
            "filter_chains": [{"filters": [{"type": "dapr_http", "config": dapr_config}]}]
        }));
    config
}

/// In-memory components of every Dapr block, for app `app1`.
fn in_memory() -> Value {
    json!({
        "state": {"store": {"type": "in-memory"}},
        "lock": {"locks": {"type": "in-memory"}},
        "config_store": {"config": {"type": "in-memory"}},
        "pub_subs": {"events": {"type": "in-memory"}},
        "app": {"app_id": "app1"}
    })
}

#[test]
fn health_routes_answer_204_and_metadata_lists_the_components() {
    let layotto = Layotto::start(&config(in_memory(), json!({})));
    let mut client = Client::connect(layotto.address("dapr"));
    let healthz = client.get("/v1.0/healthz");
    assert_eq!((healthz.status, healthz.body.len()), (204, 0));
    assert_eq!(client.get("/v1.0/healthz/outbound").status, 204);
    assert_eq!(client.get("/v1.0/healthz?appid=app1").status, 204);
    client
        .get("/v1.0/healthz?appid=other")
        .assert_error(500, "ERR_HEALTH_APPID_NOT_MATCH");

    let metadata = client.get("/v1.0/metadata");
    assert_eq!(metadata.status, 200);
    assert_eq!(metadata.header("content-type"), Some("application/json"));
    let metadata = metadata.json();
    assert_eq!(metadata["id"], "app1");
    assert!(metadata["runtimeVersion"].is_string());
    let components = metadata["components"].as_array().unwrap();
    let store = components.iter().find(|c| c["name"] == "store").unwrap();
    assert_eq!(store["type"], "state.in-memory");
    assert_eq!(store["version"], "v1");
    assert!(
        components
            .iter()
            .any(|c| c["name"] == "locks" && c["type"] == "lock.in-memory")
    );

    let put = client.send("PUT", "/v1.0/metadata/owner", &[], b"team a");
    assert_eq!(put.status, 204);
    assert_eq!(
        client.get("/v1.0/metadata").json()["extended"]["owner"],
        "team a"
    );

    client
        .get("/v1.0/nothing/here")
        .assert_error(404, "ERR_NOT_FOUND");
}

#[test]
fn an_api_token_guards_every_route_but_healthz() {
    let layotto = Layotto::start(&config(in_memory(), json!({"api_token": "s3cret"})));
    let mut client = Client::connect(layotto.address("dapr"));
    assert_eq!(client.get("/v1.0/healthz").status, 204);
    assert_eq!(client.get("/v1.0/healthz/outbound").status, 204);
    let refused = client.get("/v1.0/metadata");
    assert_eq!(refused.status, 401);
    assert_eq!(refused.text(), "invalid api token\n");
    let wrong = client.send("GET", "/v1.0/metadata", &[("dapr-api-token", "guess")], b"");
    assert_eq!(wrong.status, 401);
    let right = client.send(
        "GET",
        "/v1.0/metadata",
        &[("dapr-api-token", "s3cret")],
        b"",
    );
    assert_eq!(right.status, 200);
}

#[test]
fn connections_are_kept_alive_bodies_are_capped_and_slow_heads_cut() {
    let layotto = Layotto::start(&config(
        in_memory(),
        json!({"max_body_size": 16, "head_timeout": "300ms"}),
    ));
    let address = layotto.address("dapr");
    let mut client = Client::connect(address);
    let local = client.stream().local_addr().unwrap();
    for _ in 0..3 {
        assert_eq!(client.get("/v1.0/healthz").status, 204);
    }
    assert_eq!(
        client.stream().local_addr().unwrap(),
        local,
        "one connection served every request"
    );
    let traced = client.send(
        "GET",
        "/v1.0/healthz",
        &[(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )],
        b"",
    );
    assert_eq!(
        traced.header("traceparent"),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );

    let fits = client.send("PUT", "/v1.0/metadata/k", &[], &[b'x'; 16]);
    assert_eq!(fits.status, 204);
    let too_big = client.send("PUT", "/v1.0/metadata/k", &[], &[b'x'; 17]);
    too_big.assert_error(413, "ERR_BODY_READ");

    // A head that does not complete within the timeout: the connection is closed.
    let mut slow = Client::connect(address);
    slow.stream()
        .write_all(b"GET /v1.0/healthz HTTP/1.1\r\nHost: a\r\n")
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.reader.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    // An idle keep-alive connection goes the same way.
    let mut idle = Client::connect(address);
    assert_eq!(idle.get("/v1.0/healthz").status, 204);
    let started = Instant::now();
    assert!(idle.is_closed());
    assert!(started.elapsed() < Duration::from_secs(5));
}
