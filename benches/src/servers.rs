//! The peers the harness starts as processes of its own (so each can be pinned to a core): a TCP
//! echo server (the upstream of the L4 scenarios, and the "direct" baseline) and a minimal tonic
//! server of the measured rpcs (the gRPC reference: LayOtto's `SayHello` and `GetState`, Dapr's
//! `GetState`), both on one current-thread runtime.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use layotto_proto::{
    dapr::runtime::{
        self as dapr,
        dapr_server::{Dapr, DaprServer},
    },
    runtime::{
        GetStateRequest, GetStateResponse, SaveStateRequest, SayHelloRequest, SayHelloResponse,
        runtime_server::{Runtime, RuntimeServer},
    },
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Request, Response, Status};

/// Echoes every byte back on every connection, until killed.
pub(crate) async fn echo(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (mut stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                match stream.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if stream.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
}

/// SayHello and an in-memory GetState/SaveState, as layotto-rs's `helloworld` and `in-memory`
/// components answer them, and Dapr's GetState of the same store (keys under daprd's
/// `{app_id}||` prefix, app id `layotto`, as layotto-rs keeps them); every other rpc is
/// UNIMPLEMENTED.
#[derive(Default)]
#[expect(
    clippy::disallowed_types,
    reason = "the tonic reference server, not layotto-rs: one current-thread runtime, never contended"
)]
struct Reference {
    state: std::sync::Mutex<HashMap<String, bytes::Bytes>>,
}

impl Reference {
    /// The value under `key`, or none.
    fn value(&self, key: &str) -> bytes::Bytes {
        self.state
            .lock()
            .expect("state lock")
            .get(key)
            .cloned()
            .unwrap_or_default()
    }
}

#[tonic::async_trait]
impl Runtime for Reference {
    async fn say_hello(
        &self,
        request: Request<SayHelloRequest>,
    ) -> Result<Response<SayHelloResponse>, Status> {
        let request = request.into_inner();
        if request.service_name != "quick_start_demo" {
            return Err(Status::invalid_argument("unknown hello component"));
        }
        Ok(Response::new(SayHelloResponse {
            hello: format!("greeting, {}", request.name),
            data: request.data,
        }))
    }

    async fn get_state(
        &self,
        request: Request<GetStateRequest>,
    ) -> Result<Response<GetStateResponse>, Status> {
        Ok(Response::new(GetStateResponse {
            data: self.value(&request.get_ref().key),
            etag: "1".into(),
            metadata: HashMap::new(),
        }))
    }

    async fn save_state(&self, request: Request<SaveStateRequest>) -> Result<Response<()>, Status> {
        let mut state = self.state.lock().expect("state lock");
        for item in request.into_inner().states {
            state.insert(item.key, item.value);
        }
        Ok(Response::new(()))
    }
}

#[tonic::async_trait]
impl Dapr for Reference {
    async fn get_state(
        &self,
        request: Request<dapr::GetStateRequest>,
    ) -> Result<Response<dapr::GetStateResponse>, Status> {
        Ok(Response::new(dapr::GetStateResponse {
            data: self.value(&format!("layotto||{}", request.get_ref().key)),
            etag: "1".into(),
            metadata: HashMap::new(),
        }))
    }
}

/// Serves the reference until killed.
pub(crate) async fn tonic_reference(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on {}", listener.local_addr()?);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let reference = Arc::new(Reference::default());
    tonic::transport::Server::builder()
        .add_service(RuntimeServer::from_arc(reference.clone()))
        .add_service(DaprServer::from_arc(reference))
        .serve_with_incoming(incoming)
        .await?;
    Ok(())
}
