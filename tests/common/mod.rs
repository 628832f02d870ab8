//! Test harness shared by the end-to-end tests: starts the real `layotto` binary on a config
//! written to a temp dir, reads its log for the bound addresses, and provides small real TCP
//! servers to proxy to. Every wait is bounded.
#![allow(dead_code)] // each test binary uses its own part of the harness
#![allow(
    unreachable_pub,
    reason = "`pub` marks the harness API its test crates share"
)]

pub mod etcd;
pub mod redis;
pub mod zookeeper;

use std::{
    collections::HashMap,
    fs::Permissions,
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use layotto_proto::runtime::{
    GetNextIdRequest, LockKeepAliveRequest, SequencerOptions, TryLockRequest, UnlockRequest,
    lock_keep_alive_response, runtime_client::RuntimeClient, sequencer_options::AutoIncrement,
    unlock_response,
};
use serde_json::{Value, json};
use tonic::transport::Channel;

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Path of the binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_layotto"))
}

/// A running `layotto start`, killed on drop.
pub struct Layotto {
    child: Child,
    output: Arc<Mutex<Vec<String>>>,
    listeners: HashMap<String, SocketAddr>,
    _dir: tempfile::TempDir,
}

impl Layotto {
    /// Starts layotto on `config` with `args` and waits until `expected_listeners` listeners
    /// report their addresses.
    pub fn start(config: &Value, args: &[&str], expected_listeners: usize) -> Self {
        Self::start_with(Command::new(binary()), config, args, expected_listeners)
    }

    /// Like [`Layotto::start`], with a prepared command (e.g. one that drops privileges) whose
    /// arguments are followed by `start -c <config> <args>`.
    pub fn start_with(
        mut command: Command,
        config: &Value,
        args: &[&str],
        expected_listeners: usize,
    ) -> Self {
        // Readable by all: some tests run the binary as an unprivileged user.
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        command.arg("start").arg("-c").arg(&path).args(args);
        Self::spawn(command, dir, expected_listeners)
    }

    /// `layotto start` with no config file: the embedded default.
    pub fn start_default() -> Self {
        let mut command = Command::new(binary());
        command.arg("start");
        Self::spawn(command, tempfile::tempdir().unwrap(), 1)
    }

    fn spawn(mut command: Command, dir: tempfile::TempDir, expected_listeners: usize) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start layotto");
        let output = Arc::new(Mutex::new(Vec::new()));
        collect_lines(child.stdout.take().unwrap(), output.clone());
        collect_lines(child.stderr.take().unwrap(), output.clone());
        let mut layotto = Self {
            child,
            output,
            listeners: HashMap::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + WAIT;
        while layotto.listeners.len() < expected_listeners {
            assert!(
                Instant::now() < deadline,
                "layotto did not report {expected_listeners} listeners:\n{}",
                layotto.output()
            );
            if let Ok(Some(status)) = layotto.child.try_wait() {
                thread::sleep(Duration::from_millis(100));
                panic!("layotto exited early ({status}):\n{}", layotto.output());
            }
            for line in layotto.output.lock().unwrap().iter() {
                if let Some((name, address)) = parse_listening(line) {
                    layotto.listeners.insert(name, address);
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        layotto
    }

    /// The process id (of the command started, e.g. the binary after `exec`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address listener `name` is bound to.
    pub fn address(&self, name: &str) -> SocketAddr {
        self.listeners[name]
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    /// Waits until a printed line contains `needle`, returning that line.
    pub fn wait_for_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(line) = self
                .output
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no line containing {needle:?} in:\n{}",
                self.output()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit (at most [`WAIT`]).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                thread::sleep(Duration::from_millis(100)); // let the readers drain the pipes
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "layotto did not exit:\n{}",
                self.output()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit summary line of listener `name` (after checking exit code 0).
    pub fn stop_and_summary(&mut self, name: &str) -> String {
        self.terminate();
        let status = self.wait_exit();
        assert!(status.success(), "exit {status}:\n{}", self.output());
        self.wait_for_line(&format!("listener \"{name}\" summary"))
    }
}

impl Drop for Layotto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect_lines(stream: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    });
}

fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    let rest = line.split("listener \"").nth(1)?;
    let (name, rest) = rest.split_once('"')?;
    let address = rest.strip_prefix(" listening on ")?.trim();
    Some((name.to_owned(), address.parse().ok()?))
}

/// The value of counter `name` in a summary line (`... name=value ...`).
pub fn counter(summary: &str, name: &str) -> u64 {
    let prefix = format!("{name}=");
    summary
        .split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in {summary}"))
        .parse()
        .unwrap()
}

/// The per-shard accepted counts in a summary line.
pub fn accepted_per_shard(summary: &str) -> Vec<u64> {
    let list = summary
        .split("accepted per shard [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("no per-shard counts in {summary}"));
    list.split(", ").map(|n| n.parse().unwrap()).collect()
}

/// A config with one `tcp_proxy` listener per `(name, hosts, extra proxy config)` entry, each
/// on 127.0.0.1 port 0 with its own cluster.
pub fn proxy_config(listeners: &[(&str, &[SocketAddr], Value)], server_extra: Value) -> Value {
    let mut server = json!({
        "default_log_path": "stdout",
        "default_log_level": "INFO",
        "listeners": listeners.iter().map(|(name, _, extra)| {
            let mut config = json!({"cluster": format!("{name}_cluster")});
            config.as_object_mut().unwrap().extend(extra.as_object().cloned().unwrap_or_default());
            json!({
                "name": name,
                "address": "127.0.0.1:0",
                "bind_port": true,
                "filter_chains": [{"filters": [{"type": "tcp_proxy", "config": config}]}]
            })
        }).collect::<Vec<_>>()
    });
    server
        .as_object_mut()
        .unwrap()
        .extend(server_extra.as_object().cloned().unwrap_or_default());
    json!({
        "servers": [server],
        "cluster_manager": {"clusters": listeners.iter().map(|(name, hosts, _)| json!({
            "name": format!("{name}_cluster"),
            "type": "SIMPLE",
            "lb_type": "LB_ROUNDROBIN",
            "connect_timeout": "2s",
            "hosts": hosts.iter().map(|h| json!({"address": h.to_string()})).collect::<Vec<_>>()
        })).collect::<Vec<_>>()}
    })
}

/// A TCP server on a free loopback port running `serve` on each connection in its own thread.
pub fn server(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let serve = Arc::new(serve);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let serve = serve.clone();
            thread::spawn(move || serve(stream));
        }
    });
    address
}

/// An echo server: writes back every byte, then half-closes when the client does.
pub fn echo_server() -> SocketAddr {
    server(|mut stream| {
        let mut buf = vec![0; 64 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = stream.shutdown(Shutdown::Write);
    })
}

/// A loopback address nothing listens on.
pub fn dead_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Deterministic, non-repeating-looking test bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// Sends `data` through `address` while reading the echo concurrently; returns what came back
/// once the peer closed.
pub fn round_trip(address: SocketAddr, data: &[u8]) -> Vec<u8> {
    let stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let data = data.to_vec();
    let sender = thread::spawn(move || {
        writer.write_all(&data).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut received = Vec::new();
    (&stream).read_to_end(&mut received).unwrap();
    sender.join().unwrap();
    received
}

/// A config with one `grpc` listener named "grpc" on 127.0.0.1 port 0 serving `grpc_config`,
/// with `extra` merged into the filter's `config`.
pub fn grpc_config(grpc_config: Value, extra: Value) -> Value {
    let mut config = json!({"server_name": "runtime", "grpc_config": grpc_config});
    config
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    json!({"servers": [{
        "default_log_path": "stdout",
        "default_log_level": "INFO",
        "listeners": [{
            "name": "grpc",
            "address": "127.0.0.1:0",
            "bind_port": true,
            "filter_chains": [{"filters": [{"type": "grpc", "config": config}]}]
        }]
    }]})
}

/// The components most gRPC tests use: a greeting and an in-memory state store.
pub fn hello_and_state() -> Value {
    json!({
        "hellos": {"quick_start_demo": {"type": "helloworld", "hello": "greeting"}},
        "state": {"state_demo": {"type": "in-memory", "metadata": {}}}
    })
}

/// A tonic client of the runtime API over a new HTTP/2 connection to `address`.
pub async fn runtime_client(
    address: SocketAddr,
) -> layotto_proto::runtime::runtime_client::RuntimeClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .expect("connect to layotto");
    layotto_proto::runtime::runtime_client::RuntimeClient::new(channel)
}

/// The status code and body of a plain HTTP/1.0 GET, or `None` if nothing answers.
pub fn http_get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

/// Runs `layotto start -c <config>` to its exit (for configs that must not start): its exit code
/// and standard error.
pub fn run_to_exit(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, config).unwrap();
    let output = Command::new(binary())
        .args(["start", "-c"])
        .arg(&path)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A state item with `value`.
pub fn item(key: &str, value: &str) -> layotto_proto::runtime::StateItem {
    layotto_proto::runtime::StateItem {
        key: key.into(),
        value: bytes::Bytes::from(value.to_owned()),
        ..Default::default()
    }
}

/// `item` carrying the etag it expects.
pub fn with_etag(
    mut item: layotto_proto::runtime::StateItem,
    etag: &str,
) -> layotto_proto::runtime::StateItem {
    item.etag = Some(layotto_proto::runtime::Etag { value: etag.into() });
    item
}

/// `item` with a concurrency rule.
pub fn with_concurrency(
    mut item: layotto_proto::runtime::StateItem,
    concurrency: layotto_proto::runtime::state_options::StateConcurrency,
) -> layotto_proto::runtime::StateItem {
    item.options = Some(layotto_proto::runtime::StateOptions {
        concurrency: concurrency as i32,
        consistency: 0,
    });
    item
}

/// `TryLock` on component `lock_demo`: whether it was taken.
pub async fn try_lock(
    client: &mut RuntimeClient<Channel>,
    resource: &str,
    owner: &str,
    expire: i32,
) -> bool {
    client
        .try_lock(TryLockRequest {
            store_name: "lock_demo".into(),
            resource_id: resource.into(),
            lock_owner: owner.into(),
            expire,
        })
        .await
        .unwrap()
        .into_inner()
        .success
}

/// `Unlock` on component `lock_demo`.
pub async fn unlock(
    client: &mut RuntimeClient<Channel>,
    resource: &str,
    owner: &str,
) -> unlock_response::Status {
    client
        .unlock(UnlockRequest {
            store_name: "lock_demo".into(),
            resource_id: resource.into(),
            lock_owner: owner.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

/// `LockKeepAlive` on component `lock_demo`.
pub async fn keep_alive(
    client: &mut RuntimeClient<Channel>,
    resource: &str,
    owner: &str,
    expire: i32,
) -> lock_keep_alive_response::Status {
    client
        .lock_keep_alive(LockKeepAliveRequest {
            store_name: "lock_demo".into(),
            resource_id: resource.into(),
            lock_owner: owner.into(),
            expire,
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

/// `GetNextId` of `key` on sequencer `store`.
pub async fn next_id(
    client: &mut RuntimeClient<Channel>,
    store: &str,
    key: &str,
    increment: AutoIncrement,
) -> i64 {
    client
        .get_next_id(GetNextIdRequest {
            store_name: store.into(),
            key: key.into(),
            options: Some(SequencerOptions {
                increment: increment as i32,
            }),
            metadata: Default::default(),
        })
        .await
        .unwrap()
        .into_inner()
        .next_id
}
