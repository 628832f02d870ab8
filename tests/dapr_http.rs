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

use common::{redis::RedisServer, *};
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
    let layotto = Layotto::start(&config(in_memory(), json!({"dapr_api_token": "s3cret"})));
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
    // One key for the token in both filters' configs, `dapr_api_token`; the old name is refused.
    let problems = config_problems(&config(in_memory(), json!({"api_token": "s3cret"})));
    assert!(
        problems.iter().any(|p| p.contains("api_token")),
        "{problems:?}"
    );
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

/// What an app server received: method, target (path and query), headers, body.
type Received =
    std::sync::Arc<std::sync::Mutex<Vec<(String, String, HashMap<String, String>, Vec<u8>)>>>;

/// An HTTP/1.1 app: answers `404` on `/missing`, `201 created <body>` to POST and `200 <method>
/// <target>` otherwise (`text/plain`, header `x-reply: yes`), one request per connection.
fn app_server() -> (SocketAddr, Received) {
    let received: Received = Received::default();
    let log = received.clone();
    let address = server(move |stream| {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
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
            .map_or(0, |l| l.parse().unwrap());
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let (status, reply) = match (method.as_str(), target.as_str()) {
            (_, "/missing") => ("404 Not Found", "no such thing".to_owned()),
            ("POST", _) => (
                "201 Created",
                format!("created {}", String::from_utf8_lossy(&body)),
            ),
            _ => ("200 OK", format!("{method} {target}")),
        };
        log.lock().unwrap().push((method, target, headers, body));
        let mut stream = stream;
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nx-reply: yes\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
            reply.len()
        );
    });
    (address, received)
}

/// Runs `future` on a runtime of its own (for the gRPC client calls of a test).
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// Save, get, etags, delete, bulk get and transactions of `store`, as daprd answers them.
fn state_round_trip(layotto: &Layotto, client: &mut Client) {
    let saved = client.post_json(
        "/v1.0/state/store",
        json!([{"key": "a", "value": {"n": 1}}, {"key": "b", "value": "text"}]),
    );
    assert_eq!(saved.status, 204, "{}", saved.text());
    let a = client.get("/v1.0/state/store/a");
    assert_eq!(a.status, 200);
    assert_eq!(a.body, br#"{"n":1}"#);
    let etag = a.header("etag").unwrap().to_owned();
    assert_eq!(client.get("/v1.0/state/store/b").body, br#""text""#);
    let absent = client.get("/v1.0/state/store/never");
    assert_eq!((absent.status, absent.body.len()), (204, 0));

    // The key is stored as daprd stores it: `{app_id}||{key}`, visible to LayOtto's API.
    let stored = block_on(async {
        let mut grpc = runtime_client(layotto.address("grpc")).await;
        grpc.get_state(layotto_proto::runtime::GetStateRequest {
            store_name: "store".into(),
            key: "app1||a".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
    });
    assert_eq!(
        (&stored.data[..], stored.etag.as_str()),
        (&br#"{"n":1}"#[..], etag.as_str())
    );

    // Etags: a stale one is 409, the current one writes and changes it.
    let stale = client.post_json(
        "/v1.0/state/store",
        json!([{"key": "a", "value": 2, "etag": "not-it"}]),
    );
    stale.assert_error(409, "ERR_STATE_SAVE");
    assert_eq!(
        stale.json()["message"],
        "etag mismatch for key \"app1||a\"",
        "the message names the key"
    );
    client
        .post_json(
            "/v1.0/state/store",
            json!([{"key": "a", "value": 1, "options": {"concurrency": "first-write"}}]),
        )
        .assert_error(409, "ERR_STATE_SAVE");
    let updated = client.post_json(
        "/v1.0/state/store",
        json!([{"key": "a", "value": 2, "etag": etag, "options": {"concurrency": "first-write", "consistency": "strong"}}]),
    );
    assert_eq!(updated.status, 204, "{}", updated.text());
    let a = client.get("/v1.0/state/store/a");
    assert_eq!(a.body, b"2");
    let etag = a.header("etag").unwrap().to_owned();
    client
        .send(
            "DELETE",
            "/v1.0/state/store/a",
            &[("If-Match", "not-it")],
            b"",
        )
        .assert_error(409, "ERR_STATE_DELETE");
    let deleted = client.send("DELETE", "/v1.0/state/store/a", &[("If-Match", &etag)], b"");
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    assert_eq!(client.get("/v1.0/state/store/a").status, 204);

    // Bulk get, in the order asked; an absent key has neither data nor etag.
    let bulk = client.post_json(
        "/v1.0/state/store/bulk",
        json!({"keys": ["b", "a"], "parallelism": 2}),
    );
    assert_eq!(bulk.status, 200);
    let bulk = bulk.json();
    assert_eq!(bulk[0]["key"], "b");
    assert_eq!(bulk[0]["data"], "text");
    assert!(bulk[0]["etag"].is_string());
    assert_eq!(bulk[1], json!({"key": "a"}));

    // A transaction applies every operation or none.
    let applied = client.post_json(
        "/v1.0/state/store/transaction",
        json!({"operations": [
            {"operation": "upsert", "request": {"key": "c", "value": {"x": [1, 2]}}},
            {"operation": "delete", "request": {"key": "b"}}
        ]}),
    );
    assert_eq!(applied.status, 204, "{}", applied.text());
    assert_eq!(client.get("/v1.0/state/store/c").body, br#"{"x":[1,2]}"#);
    assert_eq!(client.get("/v1.0/state/store/b").status, 204);
    client
        .post_json(
            "/v1.0/state/store/transaction",
            json!({"operations": [
                {"operation": "upsert", "request": {"key": "d", "value": 1}},
                {"operation": "delete", "request": {"key": "c", "etag": "not-it"}}
            ]}),
        )
        .assert_error(409, "ERR_STATE_TRANSACTION");
    assert_eq!(
        client.get("/v1.0/state/store/d").status,
        204,
        "nothing applied"
    );
    client
        .post_json(
            "/v1.0/state/store/transaction",
            json!({"operations": [{"operation": "merge", "request": {"key": "c"}}]}),
        )
        .assert_error(400, "ERR_NOT_SUPPORTED_STATE_OPERATION");

    // Errors: unknown store, malformed body, illegal keys, bad TTL.
    client
        .post_json("/v1.0/state/nope", json!([{"key": "a", "value": 1}]))
        .assert_error(400, "ERR_STATE_STORE_NOT_FOUND");
    client
        .get("/v1.0/state/nope/a")
        .assert_error(400, "ERR_STATE_STORE_NOT_FOUND");
    client
        .send("POST", "/v1.0/state/store", &[], b"[{\"key\": ")
        .assert_error(400, "ERR_MALFORMED_REQUEST");
    client
        .post_json("/v1.0/state/store", json!([{"value": 1}]))
        .assert_error(400, "ERR_MALFORMED_REQUEST");
    client
        .post_json("/v1.0/state/store", json!([{"key": "x||y", "value": 1}]))
        .assert_error(400, "ERR_MALFORMED_REQUEST");
    client
        .post_json(
            "/v1.0/state/store?metadata.ttlInSeconds=soon",
            json!([{"key": "t", "value": 1}]),
        )
        .assert_error(400, "ERR_STATE_SAVE");
    let empty = client.post_json("/v1.0/state/store", json!([]));
    assert_eq!(empty.status, 204);
}

#[test]
fn state_on_the_in_memory_store() {
    let layotto = Layotto::start(&config(in_memory(), json!({})));
    let mut client = Client::connect(layotto.address("dapr"));
    state_round_trip(&layotto, &mut client);
}

#[test]
fn state_locks_and_events_on_redis_in_daprs_layout() {
    let redis = RedisServer::start();
    let metadata = json!({"redisHost": redis.endpoint()});
    let layotto = Layotto::start(&config(
        json!({
            "state": {"store": {"type": "redis", "metadata": metadata}},
            "lock": {"locks": {"type": "redis", "metadata": metadata}},
            "pub_subs": {"events": {"type": "redis", "metadata": metadata}},
            "app": {"app_id": "app1"}
        }),
        json!({}),
    ));
    let mut client = Client::connect(layotto.address("dapr"));
    state_round_trip(&layotto, &mut client);
    let mut redis_client = redis.client();
    let data: String = ::redis::cmd("HGET")
        .arg("app1||c")
        .arg("data")
        .query(&mut redis_client)
        .unwrap();
    assert_eq!(data, r#"{"x":[1,2]}"#);

    lock_round_trip(&mut client);
    let held = client.post_json(
        "/v1.0-alpha1/lock/locks",
        json!({"resourceId": "held", "lockOwner": "o1", "expiryInSeconds": 30}),
    );
    assert_eq!(held.json(), json!({"success": true}));
    let owner: String = ::redis::cmd("GET")
        .arg("lock||app1||held")
        .query(&mut redis_client)
        .unwrap();
    assert_eq!(owner, "o1");

    // Publishing: a CloudEvent in Dapr's stream layout, or the body alone with rawPayload.
    let published = client.send(
        "POST",
        "/v1.0/publish/events/orders?metadata.priority=high",
        &[("Content-Type", "application/json")],
        br#"{"orderId": 7}"#,
    );
    assert_eq!(published.status, 204, "{}", published.text());
    let raw = client.send(
        "POST",
        "/v1.0/publish/events/orders?metadata.rawPayload=true",
        &[("Content-Type", "application/json")],
        br#"{"orderId": 8}"#,
    );
    assert_eq!(raw.status, 204);
    let entries: Vec<(String, Vec<(String, String)>)> = ::redis::cmd("XRANGE")
        .arg("orders")
        .arg("-")
        .arg("+")
        .query(&mut redis_client)
        .unwrap();
    assert_eq!(entries.len(), 2);
    let field = |fields: &[(String, String)], name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let event: Value = serde_json::from_str(&field(&entries[0].1, "data").unwrap()).unwrap();
    assert_eq!(event["data"], json!({"orderId": 7}));
    assert_eq!(event["datacontenttype"], "application/json");
    assert_eq!(event["source"], "app1");
    assert_eq!(event["topic"], "orders");
    assert_eq!(event["pubsubname"], "events");
    assert_eq!(event["type"], "com.dapr.event.sent");
    let metadata: Value = serde_json::from_str(&field(&entries[0].1, "metadata").unwrap()).unwrap();
    assert_eq!(metadata["priority"], "high");
    assert_eq!(field(&entries[1].1, "data").unwrap(), r#"{"orderId": 8}"#);
    client
        .send("POST", "/v1.0/publish/nope/orders", &[], b"x")
        .assert_error(404, "ERR_PUBSUB_NOT_FOUND");

    // Bulk publishing: each entry an event as a single publish makes it, in entry order.
    let bulk = client.post_json(
        "/v1.0-alpha1/publish/bulk/events/orders?metadata.priority=low",
        json!([
            {"entryId": "a", "event": {"orderId": 9}, "contentType": "application/json"},
            {"entryId": "b", "event": "plain words", "contentType": "text/plain",
             "metadata": {"priority": "urgent"}},
            // Go reads `entryID` (the JavaScript SDK's spelling) as `entryId`.
            {"entryID": "c", "event": "AAEC", "contentType": "application/octet-stream"}
        ]),
    );
    assert_eq!(bulk.status, 204, "{}", bulk.text());
    let entries: Vec<(String, Vec<(String, String)>)> = ::redis::cmd("XRANGE")
        .arg("orders")
        .arg("-")
        .arg("+")
        .query(&mut redis_client)
        .unwrap();
    assert_eq!(entries.len(), 5);
    let event = |index: usize| -> Value {
        serde_json::from_str(&field(&entries[index].1, "data").unwrap()).unwrap()
    };
    let priority = |index: usize| -> Value {
        serde_json::from_str::<Value>(&field(&entries[index].1, "metadata").unwrap()).unwrap()
            ["priority"]
            .clone()
    };
    assert_eq!(event(2)["data"], json!({"orderId": 9}));
    assert_eq!(event(2)["source"], "app1");
    assert_eq!(priority(2), "low", "the request's metadata");
    assert_eq!(
        (
            event(3)["data"].clone(),
            event(3)["datacontenttype"].clone()
        ),
        (json!("plain words"), json!("text/plain"))
    );
    assert_eq!(
        priority(3),
        "urgent",
        "the entry's metadata over the request's"
    );
    assert_eq!(
        event(4)["data_base64"],
        "AAEC",
        "binary data, base64 as sent"
    );
    for (body, why) in [
        (
            json!([{"entryId": "a", "event": 1, "contentType": "application/json"},
                {"entryId": "a", "event": 2, "contentType": "application/json"}]),
            "duplicated id",
        ),
        (
            json!([{"event": 1, "contentType": "application/json"}]),
            "no id",
        ),
        (
            json!([{"entryId": "a", "event": 1, "contentType": "text/plain"}]),
            "text that is no string",
        ),
        (json!({"entryId": "a"}), "not a list"),
    ] {
        let refused = client.post_json("/v1.0-alpha1/publish/bulk/events/orders", body);
        assert_eq!(refused.status, 400, "{why}: {}", refused.text());
        refused.assert_error(400, "ERR_PUBSUB_EVENTS_SER");
    }
    // A topic redis cannot append to (a string key): every entry failed, listed as daprd lists them.
    let () = ::redis::cmd("SET")
        .arg("taken")
        .arg("x")
        .query(&mut redis_client)
        .unwrap();
    let failed = client.post_json(
        "/v1.0/publish/bulk/events/taken",
        json!([{"entryId": "x", "event": 1, "contentType": "application/json"},
               {"entryId": "y", "event": 2, "contentType": "application/json"}]),
    );
    assert_eq!(failed.status, 500, "{}", failed.text());
    let answer = failed.json();
    assert_eq!(answer["errorCode"], "ERR_PUBSUB_PUBLISH_MESSAGE");
    let ids: Vec<&str> = answer["failedEntries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["entryId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["x", "y"]);
    assert!(
        answer["failedEntries"][0]["error"]
            .as_str()
            .unwrap()
            .contains("WRONGTYPE"),
        "{answer}"
    );
    client
        .post_json("/v1.0-alpha1/publish/bulk/nope/orders", json!([]))
        .assert_error(404, "ERR_PUBSUB_NOT_FOUND");

    // Redis cannot list an app's keys: no query, as daprd answers a store without it.
    client
        .post_json("/v1.0-alpha1/state/store/query", json!({}))
        .assert_error(500, "ERR_STATE_STORE_NOT_SUPPORTED");
}

#[test]
fn state_query_runs_daprs_query_language_on_the_in_memory_store() {
    let layotto = Layotto::start(&config(in_memory(), json!({})));
    let mut client = Client::connect(layotto.address("dapr"));
    let people = json!([
        {"key": "1", "value": {"person": {"org": "Dev Ops", "id": 1036}, "state": "WA"}},
        {"key": "2", "value": {"person": {"org": "Hardware", "id": 1028}, "state": "OR"}},
        {"key": "3", "value": {"person": {"org": "Finance", "id": 1071}, "state": "CA"}},
        {"key": "4", "value": {"person": {"org": "Dev Ops", "id": 1042}, "state": "WA"}}
    ]);
    assert_eq!(client.post_json("/v1.0/state/store", people).status, 204);

    let found = client.post_json(
        "/v1.0-alpha1/state/store/query",
        json!({"filter": {"EQ": {"state": "WA"}}, "sort": [{"key": "person.id", "order": "DESC"}]}),
    );
    assert_eq!(found.status, 200, "{}", found.text());
    let answer = found.json();
    let results = answer["results"].as_array().unwrap();
    let keys: Vec<&str> = results.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["4", "1"]);
    assert_eq!(
        results[0]["data"]["person"]["id"], 1042,
        "data is the stored JSON"
    );
    assert!(results[0]["etag"].is_string());
    assert!(answer.get("token").is_none(), "no further page: {answer}");

    let page = client.post_json(
        "/v1.0-alpha1/state/store/query",
        json!({"sort": [{"key": "person.id"}], "page": {"limit": 3}}),
    );
    let page = page.json();
    assert_eq!(page["results"].as_array().unwrap().len(), 3);
    assert_eq!(page["token"], "3");
    let rest = client.post_json(
        "/v1.0-alpha1/state/store/query",
        json!({"sort": [{"key": "person.id"}], "page": {"limit": 3, "token": "3"}}),
    );
    assert_eq!(rest.json()["results"][0]["key"], "3");

    let none = client.post_json(
        "/v1.0-alpha1/state/store/query",
        json!({"filter": {"EQ": {"state": "NY"}}}),
    );
    assert_eq!(none.status, 204, "nothing matched: {}", none.text());
    client
        .post_json(
            "/v1.0-alpha1/state/store/query",
            json!({"filter": {"LIKE": {"state": "W%"}}}),
        )
        .assert_error(400, "ERR_STATE_QUERY");
    client
        .post_json("/v1.0-alpha1/state/nope/query", json!({}))
        .assert_error(400, "ERR_STATE_STORE_NOT_FOUND");
}

/// TryLock and Unlock of store `locks`, with daprd's answers.
fn lock_round_trip(client: &mut Client) {
    let lock = |client: &mut Client, owner: &str| {
        client.post_json(
            "/v1.0-alpha1/lock/locks",
            json!({"resourceId": "r1", "lockOwner": owner, "expiryInSeconds": 30}),
        )
    };
    let unlock = |client: &mut Client, owner: &str| {
        client
            .post_json(
                "/v1.0-alpha1/unlock/locks",
                json!({"resourceId": "r1", "lockOwner": owner}),
            )
            .json()
    };
    assert_eq!(lock(client, "o1").json(), json!({"success": true}));
    assert_eq!(lock(client, "o2").json(), json!({"success": false}));
    assert_eq!(unlock(client, "o2"), json!({"status": 2}));
    assert_eq!(unlock(client, "o1"), json!({"status": 0}));
    assert_eq!(unlock(client, "o1"), json!({"status": 1}));
    client
        .post_json(
            "/v1.0-alpha1/lock/locks",
            json!({"resourceId": "r1", "lockOwner": "", "expiryInSeconds": 30}),
        )
        .assert_error(400, "ERR_MALFORMED_REQUEST");
    client
        .post_json(
            "/v1.0-alpha1/lock/locks",
            json!({"resourceId": "r1", "lockOwner": "o1", "expiryInSeconds": 0}),
        )
        .assert_error(400, "ERR_MALFORMED_REQUEST");
    client
        .post_json(
            "/v1.0-alpha1/lock/nope",
            json!({"resourceId": "r1", "lockOwner": "o1", "expiryInSeconds": 3}),
        )
        .assert_error(400, "ERR_LOCK_STORE_NOT_FOUND");
}

#[test]
fn locks_and_publishing_on_in_memory_components() {
    let layotto = Layotto::start(&config(in_memory(), json!({})));
    let mut client = Client::connect(layotto.address("dapr"));
    lock_round_trip(&mut client);
    let published = client.send(
        "PUT",
        "/v1.0/publish/events/a/b",
        &[("Content-Type", "text/plain")],
        b"hello",
    );
    assert_eq!(published.status, 204, "{}", published.text());
    client
        .send("POST", "/v1.0/publish/nope/t", &[], b"x")
        .assert_error(404, "ERR_PUBSUB_NOT_FOUND");
}

#[test]
fn bindings_and_invocation_reach_the_app_over_http() {
    let (app, received) = app_server();
    let mut components = in_memory();
    components["bindings"] =
        json!({"http": {"type": "http", "metadata": {"url": format!("http://{app}/api")}}});
    components["rpcs"] =
        json!({"http": {"type": "http", "metadata": {"targets": format!("app2={app}")}}});
    let layotto = Layotto::start(&config(components, json!({})));
    let mut client = Client::connect(layotto.address("dapr"));
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    let bound = client.send(
        "POST",
        "/v1.0/bindings/http",
        &[("traceparent", traceparent)],
        json!({"operation": "post", "data": {"n": 1}, "metadata": {"path": "/items"}})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(bound.status, 200, "{}", bound.text());
    assert_eq!(bound.text(), r#"created {"n":1}"#);
    assert_eq!(bound.header("metadata.statuscode"), Some("201"));
    assert_eq!(bound.header("traceparent"), Some(traceparent));
    {
        let received = received.lock().unwrap();
        let (method, target, headers, _) = received.last().unwrap();
        assert_eq!((method.as_str(), target.as_str()), ("POST", "/api/items"));
        assert_eq!(headers["traceparent"], traceparent);
    }
    client
        .post_json("/v1.0/bindings/nope", json!({"operation": "get"}))
        .assert_error(500, "ERR_INVOKE_OUTPUT_BINDING");
    client
        .send("POST", "/v1.0/bindings/http", &[], b"{")
        .assert_error(400, "ERR_MALFORMED_REQUEST");

    let got = client.send(
        "GET",
        "/v1.0/invoke/app2/method/orders/42?expand=1",
        &[("x-tenant", "t1"), ("traceparent", traceparent)],
        b"",
    );
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.text(), "GET /orders/42?expand=1");
    assert_eq!(got.header("content-type"), Some("text/plain"));
    assert_eq!(
        got.header("x-reply"),
        Some("yes"),
        "the app's headers come back"
    );
    {
        // The request's headers go to the app with daprd's identity headers.
        let received = received.lock().unwrap();
        let (_, _, headers, _) = received.last().unwrap();
        assert_eq!(headers["x-tenant"], "t1");
        assert_eq!(headers["traceparent"], traceparent);
        assert_eq!(headers["dapr-caller-app-id"], "app1");
        assert_eq!(headers["dapr-callee-app-id"], "app2");
    }
    let created = client.send(
        "POST",
        "/v1.0/invoke/app2/method/orders",
        &[("Content-Type", "application/json")],
        br#"{"id":1}"#,
    );
    assert_eq!(created.status, 201, "the app's status comes back");
    assert_eq!(created.text(), r#"created {"id":1}"#);
    {
        let received = received.lock().unwrap();
        let (_, _, headers, body) = received.last().unwrap();
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(body, br#"{"id":1}"#);
    }
    let by_header = client.send(
        "DELETE",
        "/orders/7",
        &[("dapr-app-id", "app2"), ("dapr-caller-app-id", "spoofed")],
        b"",
    );
    assert_eq!(by_header.text(), "DELETE /orders/7");
    {
        let received = received.lock().unwrap();
        let (_, _, headers, _) = received.last().unwrap();
        assert!(!headers.contains_key("dapr-app-id"), "{headers:?}");
        assert_eq!(
            headers["dapr-caller-app-id"], "app1",
            "not the caller's word"
        );
    }
    // An app the `rpcs` component does not know is the caller's mistake: 400 (daprd: 500).
    client
        .get("/v1.0/invoke/app9/method/x")
        .assert_error(400, "ERR_DIRECT_INVOKE");
    // An app's error status is the answer, as daprd passes it on: status, body, headers.
    let missing = client.get("/v1.0/invoke/app2/method/missing");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.text(), "no such thing");
    assert_eq!(missing.header("content-type"), Some("text/plain"));
    assert_eq!(missing.header("x-reply"), Some("yes"));
}

#[test]
fn secrets_are_read_with_daprs_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.json");
    std::fs::write(&file, r#"{"db": {"user": "admin"}, "token": "s3cr3t"}"#).unwrap();
    let mut components = in_memory();
    components["secret_store"] = json!({
        "files": {"type": "local.file", "metadata": {"secretsFile": file, "nestedSeparator": ":"}},
        "scoped": {"type": "local.file", "metadata": {"secretsFile": file, "deniedSecrets": "token"}}
    });
    let layotto = Layotto::start(&config(components, json!({})));
    let mut client = Client::connect(layotto.address("dapr"));
    let secret = client.get("/v1.0/secrets/files/db:user");
    assert_eq!(secret.status, 200);
    assert_eq!(secret.json(), json!({"db:user": "admin"}));
    assert_eq!(
        client.get("/v1.0/secrets/files/bulk").json(),
        json!({"db:user": {"db:user": "admin"}, "token": {"token": "s3cr3t"}})
    );
    client
        .get("/v1.0/secrets/files/nope")
        .assert_error(500, "ERR_SECRET_GET");
    client
        .get("/v1.0/secrets/scoped/token")
        .assert_error(403, "ERR_PERMISSION_DENIED");
    client
        .get("/v1.0/secrets/nope/a")
        .assert_error(401, "ERR_SECRET_STORE_NOT_FOUND");
}

#[test]
fn configuration_is_read_and_pushed_to_the_app() {
    let (app, received) = app_server();
    let layotto = Layotto::start(&config(in_memory(), json!({"app_port": app.port()})));
    let mut client = Client::connect(layotto.address("dapr"));
    let save = |key: &str, content: &str| {
        block_on(async {
            let mut grpc = runtime_client(layotto.address("grpc")).await;
            grpc.save_configuration(layotto_proto::runtime::SaveConfigurationRequest {
                store_name: "config".into(),
                app_id: "app1".into(),
                items: vec![layotto_proto::runtime::ConfigurationItem {
                    key: key.into(),
                    content: content.into(),
                    ..Default::default()
                }],
                metadata: HashMap::new(),
            })
            .await
            .unwrap();
        });
    };
    save("color", "red");
    save("size", "xl");
    let got = client.get("/v1.0/configuration/config?key=color");
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json(), json!({"color": {"value": "red"}}));
    assert_eq!(
        client.get("/v1.0-alpha1/configuration/config").json(),
        json!({"color": {"value": "red"}, "size": {"value": "xl"}})
    );
    assert_eq!(
        client.get("/v1.0/configuration/config?key=none").status,
        204
    );
    client
        .get("/v1.0/configuration/nope?key=a")
        .assert_error(400, "ERR_CONFIGURATION_STORE_NOT_FOUND");

    let subscribed = client.get("/v1.0/configuration/config/subscribe?key=color");
    assert_eq!(subscribed.status, 200, "{}", subscribed.text());
    let id = subscribed.json()["id"].as_str().unwrap().to_owned();
    save("size", "s");
    save("color", "blue");
    wait_until("the change is pushed to the app", || {
        !received.lock().unwrap().is_empty()
    });
    {
        let received = received.lock().unwrap();
        assert_eq!(received.len(), 1, "only the subscribed key: {received:?}");
        let (method, target, headers, body) = &received[0];
        assert_eq!(
            (method.as_str(), target.as_str()),
            ("POST", "/configuration/config/color")
        );
        assert_eq!(headers["content-type"], "application/json");
        let event: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            event,
            json!({"id": id, "items": {"color": {"value": "blue"}}})
        );
    }
    let unsubscribed = client.get(&format!("/v1.0/configuration/config/{id}/unsubscribe"));
    assert_eq!(unsubscribed.json(), json!({"ok": true}));
    let again = client.get(&format!("/v1.0/configuration/config/{id}/unsubscribe"));
    assert_eq!(again.status, 500);
    assert_eq!(again.json()["ok"], json!(false));

    // Without the app's port there is nothing to push to, as daprd without an app channel.
    let layotto = Layotto::start(&config(in_memory(), json!({})));
    let mut client = Client::connect(layotto.address("dapr"));
    client
        .get("/v1.0/configuration/config/subscribe?key=color")
        .assert_error(500, "ERR_APP_CHANNEL_NIL");
}

#[test]
fn shutdown_stops_the_process_as_sigterm_does() {
    let mut layotto = LayottoBinary::start(&config(in_memory(), json!({})), &[], 2);
    let mut client = Client::connect(layotto.address("dapr"));
    assert_eq!(client.send("POST", "/v1.0/shutdown", &[], b"").status, 204);
    let status = layotto.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", layotto.output());
}

#[test]
fn null_maps_and_lists_read_as_empty_as_go_reads_them() {
    let layotto = Layotto::start(&config(in_memory(), json!({})));
    let mut client = Client::connect(layotto.address("dapr"));
    let saved = client.post_json(
        "/v1.0/state/store",
        json!([{"key": "n", "value": 1, "etag": null, "metadata": null, "options": null}]),
    );
    assert_eq!(saved.status, 204, "{}", saved.text());
    let applied = client.post_json(
        "/v1.0/state/store/transaction",
        json!({"operations": [{"operation": "delete", "request": {"key": "n", "metadata": null}}],
               "metadata": null}),
    );
    assert_eq!(applied.status, 204, "{}", applied.text());
    let bulk = client.post_json(
        "/v1.0/state/store/bulk",
        json!({"keys": null, "metadata": null}),
    );
    assert_eq!(bulk.json(), json!([]));
}

#[test]
fn a_huge_head_is_refused_and_the_drain_closes_idle_connections() {
    let mut layotto = Layotto::start(&config(in_memory(), json!({})));
    let address = layotto.address("dapr");
    let mut huge = Client::connect(address);
    let value = "x".repeat(70 * 1024);
    let refused = huge.send("GET", "/v1.0/healthz", &[("x-big", &value)], b"");
    assert_eq!(refused.status, 431);

    // A kept-alive connection waiting for its next request is closed by the drain at once,
    // not after the head timeout.
    let mut idle = Client::connect(address);
    assert_eq!(idle.get("/v1.0/healthz").status, 204);
    let started = Instant::now();
    layotto.stop();
    assert!(idle.is_closed());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn daprs_api_token_variable_guards_the_api_of_the_binary() {
    let mut command = std::process::Command::new(binary());
    command.env("DAPR_API_TOKEN", "from-env");
    let mut layotto = LayottoBinary::start_with(command, &config(in_memory(), json!({})), &[], 2);
    let mut client = Client::connect(layotto.address("dapr"));
    assert_eq!(client.get("/v1.0/healthz/outbound").status, 204);
    assert_eq!(client.get("/v1.0/metadata").status, 401);
    let allowed = client.send(
        "GET",
        "/v1.0/metadata",
        &[("dapr-api-token", "from-env")],
        b"",
    );
    assert_eq!(allowed.status, 200);
    layotto.terminate();
    assert_eq!(layotto.wait_exit().code(), Some(0));
}
