//! End-to-end tests of the gRPC runtime API: layotto-rs in the test process (and the real binary
//! on its embedded default), called by tonic (an independent gRPC implementation generated from
//! our protos) and, for framing edge cases, by a raw h2 client.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use layotto_proto::runtime::{
    DeleteBulkStateRequest, DeleteStateRequest, Etag, ExecuteStateTransactionRequest,
    GetBulkStateRequest, GetStateRequest, SaveStateRequest, SayHelloRequest, StateItem,
    TransactionalStateOperation, state_options::StateConcurrency,
};
use prost::Message;
use serde_json::json;
use tonic::Code;

fn start(extra: serde_json::Value) -> Layotto {
    Layotto::start(&grpc_config(hello_and_state(), extra))
}

fn save(items: Vec<StateItem>) -> SaveStateRequest {
    SaveStateRequest {
        store_name: "state_demo".into(),
        states: items,
    }
}

fn get(key: &str) -> GetStateRequest {
    GetStateRequest {
        store_name: "state_demo".into(),
        key: key.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn say_hello_answers_with_the_configured_greeting() {
    let layotto = start(json!({}));
    let mut client = runtime_client(layotto.address("grpc")).await;
    let data = prost_types::Any {
        type_url: "type.googleapis.com/x".into(),
        value: b"payload".to_vec(),
    };
    let reply = client
        .say_hello(SayHelloRequest {
            service_name: "quick_start_demo".into(),
            name: "layotto".into(),
            data: Some(data.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.hello, "greeting, layotto");
    assert_eq!(reply.data, Some(data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_serves_hello_and_state_on_34904() {
    let mut layotto = LayottoBinary::start_default();
    assert_eq!(layotto.address("grpc"), "127.0.0.1:34904".parse().unwrap());
    let mut client = runtime_client(layotto.address("grpc")).await;
    let hello = SayHelloRequest {
        service_name: "quick_start_demo".into(),
        name: "new user".into(),
        data: None,
    };
    assert_eq!(
        client.say_hello(hello).await.unwrap().into_inner().hello,
        "greeting, new user"
    );
    client
        .save_state(save(vec![item("first", "call")]))
        .await
        .unwrap();
    assert_eq!(
        client
            .get_state(get("first"))
            .await
            .unwrap()
            .into_inner()
            .data,
        "call"
    );
    drop(client);
    layotto.stop_and_summary("grpc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_component_is_invalid_argument_and_serving_goes_on() {
    let layotto = start(json!({}));
    let mut client = runtime_client(layotto.address("grpc")).await;
    let err = client
        .say_hello(SayHelloRequest {
            service_name: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .contains(r#"no hellos component named "nope""#),
        "{err:?}"
    );
    // Non-ASCII in the message survives the percent-encoding of grpc-message.
    let err = client
        .get_state(GetStateRequest {
            store_name: "störe ✓".into(),
            key: "k".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("störe ✓"), "{err:?}");
    let err = client.get_state(get("")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // The same connection keeps working.
    let reply = client
        .say_hello(SayHelloRequest {
            service_name: "quick_start_demo".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(reply.into_inner().hello, "greeting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_round_trip_with_etags() {
    let layotto = start(json!({}));
    let mut client = runtime_client(layotto.address("grpc")).await;
    let missing = client.get_state(get("k")).await.unwrap().into_inner();
    assert!(missing.data.is_empty() && missing.etag.is_empty());

    client
        .save_state(save(vec![item("k", "v1")]))
        .await
        .unwrap();
    let first = client.get_state(get("k")).await.unwrap().into_inner();
    assert_eq!(first.data, "v1");
    assert!(!first.etag.is_empty());

    client
        .save_state(save(vec![with_etag(item("k", "v2"), &first.etag)]))
        .await
        .unwrap();
    let second = client.get_state(get("k")).await.unwrap().into_inner();
    assert_eq!(second.data, "v2");
    assert_ne!(second.etag, first.etag);

    let stale = client
        .save_state(save(vec![with_etag(item("k", "v3"), &first.etag)]))
        .await;
    assert_eq!(stale.unwrap_err().code(), Code::Aborted);
    let stale_delete = DeleteStateRequest {
        store_name: "state_demo".into(),
        key: "k".into(),
        etag: Some(Etag {
            value: first.etag.clone(),
        }),
        ..Default::default()
    };
    assert_eq!(
        client.delete_state(stale_delete).await.unwrap_err().code(),
        Code::Aborted
    );
    assert_eq!(
        client.get_state(get("k")).await.unwrap().into_inner().data,
        "v2"
    );

    let delete = DeleteStateRequest {
        store_name: "state_demo".into(),
        key: "k".into(),
        etag: Some(Etag { value: second.etag }),
        ..Default::default()
    };
    client.delete_state(delete).await.unwrap();
    assert!(
        client
            .get_state(get("k"))
            .await
            .unwrap()
            .into_inner()
            .data
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_write_and_last_write_concurrency() {
    let layotto = start(json!({}));
    let mut client = runtime_client(layotto.address("grpc")).await;
    let first_write =
        |value| with_concurrency(item("fw", value), StateConcurrency::ConcurrencyFirstWrite);
    client
        .save_state(save(vec![first_write("a")]))
        .await
        .unwrap();
    let second = client
        .save_state(save(vec![first_write("b")]))
        .await
        .unwrap_err();
    assert_eq!(second.code(), Code::Aborted);
    assert_eq!(
        client.get_state(get("fw")).await.unwrap().into_inner().data,
        "a"
    );

    // Last write wins even with a stale etag.
    let last_write = with_concurrency(
        with_etag(item("fw", "c"), "not-the-etag"),
        StateConcurrency::ConcurrencyLastWrite,
    );
    client.save_state(save(vec![last_write])).await.unwrap();
    assert_eq!(
        client.get_state(get("fw")).await.unwrap().into_inner().data,
        "c"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_get_and_bulk_delete() {
    let layotto = start(json!({}));
    let mut client = runtime_client(layotto.address("grpc")).await;
    let items: Vec<_> = (0..20)
        .map(|i| item(&format!("b{i}"), &format!("v{i}")))
        .collect();
    client.save_state(save(items)).await.unwrap();
    let keys: Vec<String> = (0..22).map(|i| format!("b{i}")).collect();
    for parallelism in [0, 1, 4] {
        let bulk = client
            .get_bulk_state(GetBulkStateRequest {
                store_name: "state_demo".into(),
                keys: keys.clone(),
                parallelism,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let got: Vec<(String, String)> = bulk
            .items
            .iter()
            .map(|i| (i.key.clone(), String::from_utf8(i.data.to_vec()).unwrap()))
            .collect();
        let expected: Vec<(String, String)> = (0..22)
            .map(|i| {
                (
                    format!("b{i}"),
                    if i < 20 {
                        format!("v{i}")
                    } else {
                        String::new()
                    },
                )
            })
            .collect();
        assert_eq!(got, expected, "parallelism {parallelism}");
        assert!(
            bulk.items[..20]
                .iter()
                .all(|i| !i.etag.is_empty() && i.error.is_empty())
        );
    }
    let delete = DeleteBulkStateRequest {
        store_name: "state_demo".into(),
        states: (0..10).map(|i| item(&format!("b{i}"), "")).collect(),
    };
    client.delete_bulk_state(delete).await.unwrap();
    assert!(
        client
            .get_state(get("b3"))
            .await
            .unwrap()
            .into_inner()
            .data
            .is_empty()
    );
    assert_eq!(
        client
            .get_state(get("b13"))
            .await
            .unwrap()
            .into_inner()
            .data,
        "v13"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_are_all_or_nothing() {
    let layotto = start(json!({}));
    let mut client = runtime_client(layotto.address("grpc")).await;
    client
        .save_state(save(vec![item("acct", "100")]))
        .await
        .unwrap();
    let operation = |kind: &str, item| TransactionalStateOperation {
        operation_type: kind.into(),
        request: Some(item),
    };
    let transaction = |operations| ExecuteStateTransactionRequest {
        store_name: "state_demo".into(),
        operations,
        metadata: HashMap::new(),
    };
    let failing = transaction(vec![
        operation("upsert", item("new", "1")),
        operation("delete", item("acct", "")),
        operation("upsert", with_etag(item("other", "2"), "999")),
    ]);
    assert_eq!(
        client
            .execute_state_transaction(failing)
            .await
            .unwrap_err()
            .code(),
        Code::Aborted
    );
    assert_eq!(
        client
            .get_state(get("acct"))
            .await
            .unwrap()
            .into_inner()
            .data,
        "100"
    );
    assert!(
        client
            .get_state(get("new"))
            .await
            .unwrap()
            .into_inner()
            .data
            .is_empty()
    );

    let etag = client
        .get_state(get("acct"))
        .await
        .unwrap()
        .into_inner()
        .etag;
    let passing = transaction(vec![
        operation("upsert", item("new", "1")),
        operation("upsert", with_etag(item("acct", "90"), &etag)),
    ]);
    client.execute_state_transaction(passing).await.unwrap();
    assert_eq!(
        client
            .get_state(get("acct"))
            .await
            .unwrap()
            .into_inner()
            .data,
        "90"
    );
    assert_eq!(
        client
            .get_state(get("new"))
            .await
            .unwrap()
            .into_inner()
            .data,
        "1"
    );

    let unknown = transaction(vec![operation("merge", item("x", "1"))]);
    assert_eq!(
        client
            .execute_state_transaction(unknown)
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_in_seconds_expires_entries() {
    let layotto = start(json!({}));
    let mut client = runtime_client(layotto.address("grpc")).await;
    let mut expiring = item("ttl", "short-lived");
    expiring.metadata.insert("ttlInSeconds".into(), "1".into());
    client.save_state(save(vec![expiring])).await.unwrap();
    assert_eq!(
        client
            .get_state(get("ttl"))
            .await
            .unwrap()
            .into_inner()
            .data,
        "short-lived"
    );
    tokio::time::sleep(Duration::from_millis(1300)).await; // the TTL passing is the thing tested
    assert!(
        client
            .get_state(get("ttl"))
            .await
            .unwrap()
            .into_inner()
            .data
            .is_empty()
    );
    let mut bad = item("ttl", "x");
    bad.metadata.insert("ttlInSeconds".into(), "soon".into());
    assert_eq!(
        client.save_state(save(vec![bad])).await.unwrap_err().code(),
        Code::InvalidArgument
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_are_unimplemented() {
    let layotto = start(json!({}));
    let reply = raw_call(
        layotto.address("grpc"),
        "/no.Such/Method",
        &[],
        frame(0, b""),
    )
    .await;
    assert_eq!(reply.grpc_status(), Some(12));
    assert!(
        reply.grpc_message().contains("/no.Such/Method"),
        "{:?}",
        reply.grpc_message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_messages_are_resource_exhausted_with_a_configurable_limit() {
    let layotto = start(json!({}));
    let mut client = runtime_client(layotto.address("grpc")).await;
    let big = "x".repeat(5 * 1024 * 1024);
    let err = client
        .save_state(save(vec![item("big", &big)]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    let fits = "x".repeat(3 * 1024 * 1024);
    client
        .save_state(save(vec![item("big", &fits)]))
        .await
        .unwrap();
    assert_eq!(
        client
            .get_state(get("big"))
            .await
            .unwrap()
            .into_inner()
            .data
            .len(),
        fits.len()
    );

    let small = start(json!({"max_message_size": 1024}));
    let mut client = runtime_client(small.address("grpc")).await;
    let err = client
        .save_state(save(vec![item("k", &"y".repeat(2000))]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    client
        .save_state(save(vec![item("k", &"y".repeat(900))]))
        .await
        .unwrap();
    // A response over the limit is refused too.
    client
        .save_state(save(vec![item("a", &"y".repeat(600))]))
        .await
        .unwrap();
    client
        .save_state(save(vec![item("b", &"y".repeat(600))]))
        .await
        .unwrap();
    let bulk = GetBulkStateRequest {
        store_name: "state_demo".into(),
        keys: vec!["a".into(), "b".into()],
        ..Default::default()
    };
    assert_eq!(
        client.get_bulk_state(bulk).await.unwrap_err().code(),
        Code::ResourceExhausted
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_errors_get_statuses_and_the_server_keeps_serving() {
    let layotto = start(json!({}));
    let address = layotto.address("grpc");
    let say_hello = "/spec.proto.runtime.v1.Runtime/SayHello";
    let hello = SayHelloRequest {
        service_name: "quick_start_demo".into(),
        ..Default::default()
    }
    .encode_to_vec();

    let compressed = raw_call(address, say_hello, &[], frame(1, &hello)).await;
    assert_eq!(
        compressed.grpc_status(),
        Some(12),
        "compressed flag without grpc-encoding"
    );

    let gzip = raw_call(
        address,
        say_hello,
        &[("grpc-encoding", "gzip")],
        frame(0, &hello),
    )
    .await;
    assert_eq!(gzip.grpc_status(), Some(12), "unsupported grpc-encoding");

    let undecodable = raw_call(address, say_hello, &[], frame(0, &[0xff, 0xff, 0xff])).await;
    assert_eq!(undecodable.grpc_status(), Some(13), "undecodable message");

    let truncated = raw_call(address, say_hello, &[], frame(0, &hello).slice(..3)).await;
    assert_eq!(
        truncated.grpc_status(),
        Some(13),
        "body ends inside a frame"
    );

    let bad_timeout = raw_call(
        address,
        say_hello,
        &[("grpc-timeout", "soon")],
        frame(0, &hello),
    )
    .await;
    assert_eq!(
        bad_timeout.grpc_status(),
        Some(13),
        "malformed grpc-timeout"
    );

    let not_grpc = raw_call(
        address,
        say_hello,
        &[("content-type", "application/json")],
        frame(0, &hello),
    )
    .await;
    assert_eq!(not_grpc.http_status, 415);

    let fine = raw_call(address, say_hello, &[], frame(0, &hello)).await;
    assert_eq!(fine.grpc_status(), Some(0));
    let reply = layotto_proto::runtime::SayHelloResponse::decode(&fine.data[5..]).unwrap();
    assert_eq!(reply.hello, "greeting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_on_the_port_do_not_hurt_other_clients() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let layotto = start(json!({}));
    let address = layotto.address("grpc");
    let mut healthy = runtime_client(address).await;
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0u8; 4096],
        &pattern(100_000, 9),
    ] {
        let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
        let _ = socket.write_all(garbage).await;
        let mut sink = Vec::new();
        let closed = tokio::time::timeout(WAIT, socket.read_to_end(&mut sink)).await;
        assert!(closed.is_ok(), "server kept a garbage connection open");
        let hello = SayHelloRequest {
            service_name: "quick_start_demo".into(),
            ..Default::default()
        };
        assert_eq!(
            healthy.say_hello(hello).await.unwrap().into_inner().hello,
            "greeting"
        );
    }
    let mut fresh = runtime_client(address).await;
    fresh
        .save_state(save(vec![item("after", "garbage")]))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_calls_across_shards_share_one_view() {
    const CONNECTIONS: usize = 32;
    const CALLS: usize = 50;
    let mut layotto = Layotto::with_shards(&grpc_config(hello_and_state(), json!({})), 2);
    let address = layotto.address("grpc");
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(runtime_client(address).await);
    }
    // Every connection writes its own keys with many calls in flight at once...
    let writers = clients.iter().enumerate().map(|(c, client)| {
        let client = client.clone();
        tokio::spawn(async move {
            let calls = (0..CALLS).map(|i| {
                let mut client = client.clone();
                async move {
                    client
                        .save_state(save(vec![item(&format!("c{c}-{i}"), &format!("{c}:{i}"))]))
                        .await
                }
            });
            for result in futures_util::future::join_all(calls).await {
                result.unwrap();
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    // ...and every connection, whichever shard serves it, reads every other connection's keys.
    for (reader, client) in clients.iter().enumerate() {
        let mut client = client.clone();
        let writer = (reader + 1) % CONNECTIONS;
        let keys: Vec<String> = (0..CALLS).map(|i| format!("c{writer}-{i}")).collect();
        let bulk = client
            .get_bulk_state(GetBulkStateRequest {
                store_name: "state_demo".into(),
                keys,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for (i, item) in bulk.items.iter().enumerate() {
            assert_eq!(item.data, format!("{writer}:{i}"));
        }
    }
    drop(clients);
    let summary = layotto.stop_and_summary("grpc");
    let per_shard = &summary.accepted_per_shard;
    assert_eq!(
        per_shard.iter().sum::<u64>(),
        CONNECTIONS as u64,
        "{summary:?}"
    );
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "connections did not spread: {summary:?}"
    );
}

/// A gRPC frame (`flag`, big-endian length, bytes).
fn frame(flag: u8, body: &[u8]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(flag);
    out.put_u32(body.len() as u32);
    out.put_slice(body);
    out.freeze()
}

/// What a raw HTTP/2 call got back.
struct RawReply {
    http_status: u16,
    headers: http::HeaderMap,
    trailers: Option<http::HeaderMap>,
    data: Bytes,
}

impl RawReply {
    fn status_header(&self, name: &str) -> Option<&http::HeaderValue> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get(name))
            .or_else(|| self.headers.get(name))
    }

    fn grpc_status(&self) -> Option<u8> {
        self.status_header("grpc-status")?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }

    fn grpc_message(&self) -> String {
        self.status_header("grpc-message")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }
}

/// One call over a fresh HTTP/2 connection, with full control of headers and body bytes.
async fn raw_call(
    address: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> RawReply {
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::post(format!("http://{address}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (name, value) in headers {
        let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request
            .headers_mut()
            .unwrap()
            .insert(name, http::HeaderValue::from_str(value).unwrap());
    }
    let (response, mut send) = client
        .send_request(request.body(()).unwrap(), false)
        .unwrap();
    send.send_data(body, true).unwrap();
    let response = tokio::time::timeout(WAIT, response).await.unwrap().unwrap();
    let (parts, mut body) = response.into_parts();
    let mut data = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.unwrap();
    RawReply {
        http_status: parts.status.as_u16(),
        headers: parts.headers,
        trailers,
        data: data.freeze(),
    }
}
