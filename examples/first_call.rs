//! A first call to layotto-rs: SayHello, then save and read back a state item.
//!
//! Start layotto-rs with its embedded default config (`cargo run --release -- start`), then run
//! `cargo run --example first_call` (or pass another address: `-- 127.0.0.1:34904`).
#![allow(
    clippy::print_stdout,
    reason = "an example client: the answers are its output"
)]

use bytes::Bytes;
use layotto_proto::runtime::{
    GetStateRequest, SaveStateRequest, SayHelloRequest, StateItem, runtime_client::RuntimeClient,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:34904".into());
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    let mut client = RuntimeClient::new(channel);

    let hello = client
        .say_hello(SayHelloRequest {
            service_name: "quick_start_demo".into(),
            name: "layotto-rs".into(),
            data: None,
        })
        .await?
        .into_inner();
    println!("SayHello -> {:?}", hello.hello);

    client
        .save_state(SaveStateRequest {
            store_name: "state_demo".into(),
            states: vec![StateItem {
                key: "hello".into(),
                value: Bytes::from_static(b"world"),
                ..Default::default()
            }],
        })
        .await?;
    let state = client
        .get_state(GetStateRequest {
            store_name: "state_demo".into(),
            key: "hello".into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    println!(
        "GetState(hello) -> {:?} (etag {})",
        String::from_utf8_lossy(&state.data),
        state.etag
    );
    Ok(())
}
