//! What one call of each scenario is and how its answer is checked: an L4 echo, LayOtto's
//! `SayHello`, a `GetState` through LayOtto's gRPC API, Dapr's gRPC API or Dapr's HTTP API, and
//! the read a redis state store's `GetState` makes, sent to redis directly. [`connect`] opens the
//! pool of clients a call needs and [`Client::call`] makes one call and checks its answer; the
//! `seed_*` functions write the value every `GetState` reads. Runs on the load generator's thread
//! (inside its `LocalSet`).

use std::{net::SocketAddr, rc::Rc};

use anyhow::{Context, Result};
use bytes::Bytes;
use layotto_proto::{
    dapr,
    runtime::{
        GetStateRequest, GetStateResponse, SaveStateRequest, SayHelloRequest, SayHelloResponse,
        StateItem,
    },
};
use prost::Message;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{grpc_client::UnaryCaller, http_client::HttpGetter};

/// The key every `GetState` reads (LayOtto's API keeps it as given).
const KEY: &str = "bench";

/// Where Dapr's APIs keep [`KEY`]: daprd's `{app_id}||{key}`, with layotto-rs's app id when the
/// config has no `app` block.
const DAPR_KEY: &str = "layotto||bench";

/// The value saved under both keys.
const VALUE: &[u8] = b"value";

/// The reply of [`redis_read`] once [`seed_redis`] has run: `data` and `version` (the etag).
const REDIS_READ_REPLY: &[u8] = b"*2\r\n$5\r\nvalue\r\n$1\r\n1\r\n";

/// A state store of the benchmarked layotto-rs (`targets::layotto`'s config names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Store {
    /// `state_demo`, in layotto-rs's memory.
    InMemory,
    /// `state_redis`, on the harness's redis server.
    Redis,
}

impl Store {
    /// The component's name, as calls pass it.
    pub(crate) fn component(self) -> &'static str {
        match self {
            Self::InMemory => "state_demo",
            Self::Redis => "state_redis",
        }
    }
}

/// The API a `GetState` goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// LayOtto's `spec.proto.runtime.v1.Runtime/GetState`.
    Layotto,
    /// Dapr's `dapr.proto.runtime.v1.Dapr/GetState`, on the same HTTP/2 listener.
    DaprGrpc,
    /// Dapr's `GET /v1.0/state/{store}/{key}`, on the `dapr_http` listener (HTTP/1.1).
    DaprHttp,
}

impl Api {
    /// How the report names it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Layotto => "LayOtto gRPC",
            Self::DaprGrpc => "Dapr gRPC",
            Self::DaprHttp => "Dapr HTTP",
        }
    }
}

/// One call of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Call {
    /// `size` bytes written and read back (the L4 echo).
    Echo(usize),
    /// LayOtto's `SayHello` on the `helloworld` component `quick_start_demo`.
    SayHello,
    /// `GetState` of the seeded key through `api` on `store`.
    GetState(Api, Store),
    /// What a redis store's `GetState` asks redis (`HMGET bench data version`), sent straight
    /// to redis over RESP: the baseline of the latency layotto-rs adds.
    RedisRead,
}

impl Call {
    /// The gRPC path and encoded request message of a gRPC call.
    pub(crate) fn grpc(self) -> Option<(&'static str, Vec<u8>)> {
        match self {
            Self::SayHello => Some((
                "/spec.proto.runtime.v1.Runtime/SayHello",
                SayHelloRequest {
                    service_name: "quick_start_demo".into(),
                    name: "bench".into(),
                    data: None,
                }
                .encode_to_vec(),
            )),
            Self::GetState(Api::Layotto, store) => Some((
                "/spec.proto.runtime.v1.Runtime/GetState",
                GetStateRequest {
                    store_name: store.component().into(),
                    key: KEY.into(),
                    ..Default::default()
                }
                .encode_to_vec(),
            )),
            Self::GetState(Api::DaprGrpc, store) => Some((
                "/dapr.proto.runtime.v1.Dapr/GetState",
                dapr::runtime::GetStateRequest {
                    store_name: store.component().into(),
                    key: KEY.into(),
                    ..Default::default()
                }
                .encode_to_vec(),
            )),
            Self::Echo(_) | Self::GetState(Api::DaprHttp, _) | Self::RedisRead => None,
        }
    }

    /// Whether calls of this kind share a connection (HTTP/2 streams); the others carry one
    /// call at a time per connection.
    fn multiplexed(self) -> bool {
        self.grpc().is_some()
    }
}

/// The clients of a run: `connections`, each carrying `streams` calls at once when the call is
/// a gRPC one (one otherwise).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pool {
    /// Connections opened.
    pub connections: usize,
    /// Calls in flight per connection, for gRPC calls.
    pub streams: usize,
}

impl Pool {
    /// How many calls of `call` the pool has in flight at most.
    pub(crate) fn clients(self, call: Call) -> usize {
        if call.multiplexed() {
            self.connections * self.streams
        } else {
            self.connections
        }
    }
}

/// Which gRPC reply a [`Client::Grpc`] expects.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GrpcReply {
    /// `SayHelloResponse` with the greeting.
    Hello,
    /// LayOtto's `GetStateResponse` with the seeded value.
    LayottoState,
    /// Dapr's `GetStateResponse` with the seeded value.
    DaprState,
}

/// One client of a run's pool.
pub(crate) enum Client {
    /// Writes `request` on its own connection and expects exactly `reply` back (the L4 echo,
    /// RESP).
    Exchange {
        /// Its connection.
        stream: TcpStream,
        /// What it writes.
        request: Rc<[u8]>,
        /// What must come back.
        reply: Rc<[u8]>,
        /// Where the answer is read.
        buffer: Vec<u8>,
    },
    /// A unary gRPC call on a shared HTTP/2 connection.
    Grpc(UnaryCaller, GrpcReply),
    /// A `GET` on its own kept-alive HTTP/1.1 connection; the body must be the seeded value.
    Http(HttpGetter),
}

impl Client {
    /// Makes one call; the client back, and whether the answer was right.
    pub(crate) async fn call(mut self) -> (Self, Result<(), String>) {
        let result = match &mut self {
            Self::Exchange {
                stream,
                request,
                reply,
                buffer,
            } => exchange(stream, request, reply, buffer).await,
            Self::Grpc(caller, GrpcReply::Hello) => caller
                .call::<SayHelloResponse>()
                .await
                .and_then(|reply| expect(reply.hello == "greeting, bench", "wrong greeting")),
            Self::Grpc(caller, GrpcReply::LayottoState) => caller
                .call::<GetStateResponse>()
                .await
                .and_then(|reply| expect(reply.data == VALUE, "wrong value")),
            Self::Grpc(caller, GrpcReply::DaprState) => caller
                .call::<dapr::runtime::GetStateResponse>()
                .await
                .and_then(|reply| expect(reply.data == VALUE, "wrong value")),
            Self::Http(getter) => getter
                .get()
                .await
                .and_then(|body| expect(body == VALUE, "wrong value")),
        };
        (self, result)
    }
}

fn expect(ok: bool, otherwise: &str) -> Result<(), String> {
    ok.then_some(()).ok_or_else(|| otherwise.to_owned())
}

/// Writes `request` and reads until `reply` has come back; an answer that departs from it
/// (a redis error reply, say) fails as soon as it does rather than waiting for bytes that never
/// come.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    reply: &[u8],
    buffer: &mut [u8],
) -> Result<(), String> {
    stream
        .write_all(request)
        .await
        .map_err(|err| err.to_string())?;
    let mut filled = 0;
    while filled < reply.len() {
        let n = stream
            .read(&mut buffer[filled..reply.len()])
            .await
            .map_err(|err| err.to_string())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        if buffer[filled..filled + n] != reply[filled..filled + n] {
            return Err(format!(
                "unexpected answer {:?}",
                String::from_utf8_lossy(&buffer[..filled + n])
            ));
        }
        filled += n;
    }
    Ok(())
}

/// A RESP command (an array of bulk strings).
fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut command = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        command.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        command.extend_from_slice(arg);
        command.extend_from_slice(b"\r\n");
    }
    command
}

/// The redis read of a redis store's `GetState` of [`KEY`].
fn redis_read() -> Vec<u8> {
    resp(&[b"HMGET", KEY.as_bytes(), b"data", b"version"])
}

/// Opens `pool`'s clients of `call` to `address`.
pub(crate) async fn connect(address: SocketAddr, call: Call, pool: Pool) -> Result<Vec<Client>> {
    let exchange = |request: Vec<u8>, reply: Vec<u8>| async move {
        let (request, reply): (Rc<[u8]>, Rc<[u8]>) = (request.into(), reply.into());
        let mut clients = Vec::with_capacity(pool.connections);
        for _ in 0..pool.connections {
            let stream = TcpStream::connect(address).await?;
            stream.set_nodelay(true)?;
            clients.push(Client::Exchange {
                stream,
                request: request.clone(),
                reply: reply.clone(),
                buffer: vec![0; reply.len()],
            });
        }
        Ok(clients)
    };
    match call {
        Call::Echo(size) => {
            let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
            exchange(payload.clone(), payload).await
        }
        Call::RedisRead => exchange(redis_read(), REDIS_READ_REPLY.to_vec()).await,
        Call::GetState(Api::DaprHttp, store) => {
            let path = format!("/v1.0/state/{}/{KEY}", store.component());
            let mut clients = Vec::with_capacity(pool.connections);
            for _ in 0..pool.connections {
                clients.push(Client::Http(HttpGetter::connect(address, &path).await?));
            }
            Ok(clients)
        }
        Call::SayHello | Call::GetState(Api::Layotto | Api::DaprGrpc, _) => {
            let (path, message) = call.grpc().context("a gRPC call")?;
            let reply = match call {
                Call::SayHello => GrpcReply::Hello,
                Call::GetState(Api::DaprGrpc, _) => GrpcReply::DaprState,
                _ => GrpcReply::LayottoState,
            };
            let mut callers = Vec::with_capacity(pool.connections);
            for _ in 0..pool.connections {
                callers.push(UnaryCaller::connect(address, path, &message).await?);
            }
            Ok((0..pool.clients(call))
                .map(|i| Client::Grpc(callers[i % pool.connections].clone(), reply))
                .collect())
        }
    }
}

/// Saves the value under [`KEY`] and [`DAPR_KEY`] in `store` of the gRPC server at `address`,
/// through LayOtto's `SaveState`.
pub(crate) async fn seed_state(address: SocketAddr, store: Store) -> Result<()> {
    let save = SaveStateRequest {
        store_name: store.component().into(),
        states: [KEY, DAPR_KEY]
            .map(|key| StateItem {
                key: key.into(),
                value: Bytes::from_static(VALUE),
                ..Default::default()
            })
            .into(),
    };
    UnaryCaller::connect(
        address,
        "/spec.proto.runtime.v1.Runtime/SaveState",
        &save.encode_to_vec(),
    )
    .await?
    .call::<()>()
    .await
    .map_err(anyhow::Error::msg)
    .context("saving the state GetState reads")
}

/// Writes the value under [`KEY`] and [`DAPR_KEY`] straight into the redis at `address`, in the
/// redis store's layout (a hash with `data` and `version` 1), so every API and the direct
/// read find the same bytes.
pub(crate) async fn seed_redis(address: SocketAddr) -> Result<()> {
    let mut stream = TcpStream::connect(address).await?;
    for key in [KEY, DAPR_KEY] {
        let command = resp(&[b"HSET", key.as_bytes(), b"data", VALUE, b"version", b"1"]);
        stream.write_all(&command).await?;
        let mut line = Vec::new();
        while !line.ends_with(b"\r\n") {
            line.push(stream.read_u8().await?);
        }
        anyhow::ensure!(
            line.starts_with(b":"),
            "redis answered HSET with {:?}",
            String::from_utf8_lossy(&line)
        );
    }
    let mut reply = vec![0; REDIS_READ_REPLY.len()];
    exchange(&mut stream, &redis_read(), REDIS_READ_REPLY, &mut reply)
        .await
        .map_err(anyhow::Error::msg)
        .context("reading the seeded state back")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resp_commands_are_arrays_of_bulk_strings() {
        assert_eq!(
            redis_read(),
            b"*4\r\n$5\r\nHMGET\r\n$5\r\nbench\r\n$4\r\ndata\r\n$7\r\nversion\r\n"
        );
    }

    /// A server on a free loopback port that reads one request and writes `answer`.
    async fn answering(answer: &'static [u8]) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 64];
            let _ = stream.read(&mut request).await.unwrap();
            stream.write_all(answer).await.unwrap();
            // Keeps the connection open: a client waiting for more bytes would hang.
            std::future::pending::<()>().await;
        });
        address
    }

    async fn exchange_with(answer: &'static [u8]) -> Result<(), String> {
        let address = answering(answer).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let mut buffer = vec![0; REDIS_READ_REPLY.len()];
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            exchange(&mut stream, &redis_read(), REDIS_READ_REPLY, &mut buffer),
        )
        .await
        .expect("the exchange ended")
    }

    #[tokio::test]
    async fn an_exchange_reads_exactly_the_expected_reply() {
        assert_eq!(exchange_with(REDIS_READ_REPLY).await, Ok(()));
    }

    #[tokio::test]
    async fn a_diverging_short_answer_fails_at_once_instead_of_waiting() {
        let err = exchange_with(b"-ERR wrong type\r\n").await.unwrap_err();
        assert!(err.contains("-ERR wrong type"), "{err}");
        // The right start but another value: fails at the first byte that differs.
        let err = exchange_with(b"*2\r\n$5\r\nother\r\n").await.unwrap_err();
        assert!(err.contains("other"), "{err}");
    }

    #[test]
    fn pools_multiplex_grpc_calls_only() {
        let pool = Pool {
            connections: 2,
            streams: 8,
        };
        assert_eq!(
            pool.clients(Call::GetState(Api::DaprGrpc, Store::Redis)),
            16
        );
        assert_eq!(pool.clients(Call::GetState(Api::DaprHttp, Store::Redis)), 2);
        assert_eq!(pool.clients(Call::RedisRead), 2);
    }
}
