//! LayOtto's `Lifecycle.ApplyConfiguration` over a real socket: LayOtto's lifecycle demo
//! (`demo/lifecycle/common/client.go`: SayHello, change the `helloworld` greeting, SayHello
//! again) on every shard, and LayOtto's answers for a request that names no field, no
//! component, or a component that cannot change at run time.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{collections::HashMap, net::SocketAddr};

use common::*;
use layotto_proto::runtime::{
    ComponentConfig, DynamicConfiguration, SayHelloRequest, lifecycle_client::LifecycleClient,
};
use serde_json::json;
use tonic::Code;

/// LayOtto's demo config: a `helloworld` component called `helloworld`, and a state store.
fn demo_config() -> serde_json::Value {
    grpc_config(
        json!({
            "hellos": {"helloworld": {"type": "helloworld", "hello": "greeting"}},
            "state": {"state_demo": {"type": "in-memory", "metadata": {}}}
        }),
        json!({}),
    )
}

async fn lifecycle_client(address: SocketAddr) -> LifecycleClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    LifecycleClient::new(channel)
}

/// SayHello on a connection of its own (so calls reach different shards).
async fn say_hello(address: SocketAddr) -> String {
    runtime_client(address)
        .await
        .say_hello(SayHelloRequest {
            service_name: "helloworld".into(),
            name: "eva".into(),
            data: None,
        })
        .await
        .unwrap()
        .into_inner()
        .hello
}

fn request(kind: &str, name: &str, metadata: &[(&str, &str)]) -> DynamicConfiguration {
    DynamicConfiguration {
        component_config: Some(ComponentConfig {
            kind: kind.into(),
            name: name.into(),
            metadata: metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<HashMap<_, _>>(),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layottos_lifecycle_demo_changes_the_greeting_on_every_shard() {
    let layotto = Layotto::with_shards(&demo_config(), 2);
    let address = layotto.address("grpc");
    for _ in 0..4 {
        assert_eq!(say_hello(address).await, "greeting, eva");
    }
    lifecycle_client(address)
        .await
        .apply_configuration(request("hellos", "helloworld", &[("hello", "goodbye")]))
        .await
        .unwrap();
    for _ in 0..4 {
        assert_eq!(say_hello(address).await, "goodbye, eva");
    }
    // Metadata without `hello` leaves the greeting as it is (LayOtto's helloworld).
    lifecycle_client(address)
        .await
        .apply_configuration(request("hellos", "helloworld", &[("other", "x")]))
        .await
        .unwrap();
    assert_eq!(say_hello(address).await, "goodbye, eva");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_layottos_invalid_argument_answers() {
    let layotto = Layotto::start(&demo_config());
    let mut client = lifecycle_client(layotto.address("grpc")).await;
    let cases = [
        (
            DynamicConfiguration {
                component_config: None,
            },
            "field kind is not configured",
        ),
        (
            request("", "helloworld", &[("hello", "x")]),
            "field kind is not configured",
        ),
        (
            request("hellos", "", &[("hello", "x")]),
            "field name is not configured",
        ),
        (
            request("hellos", "helloworld", &[]),
            "field metadata is not configured",
        ),
        (
            request("hellos", "nope", &[("hello", "x")]),
            "component not found. kind: hellos , name: nope",
        ),
        (
            request("lock", "helloworld", &[("hello", "x")]),
            "component not found. kind: lock , name: helloworld",
        ),
        (
            request("state", "state_demo", &[("k", "v")]),
            "state \"state_demo\" does not support dynamic configuration",
        ),
    ];
    for (request, message) in cases {
        let status = client.apply_configuration(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert_eq!(status.message(), message);
    }
    assert_eq!(say_hello(layotto.address("grpc")).await, "greeting, eva");
}
