//! Test harness shared by the end-to-end tests: starts layotto-rs in the test's own process
//! ([`Layotto`], through the library's `layotto::start`, reading addresses and counters from it)
//! or as the real binary ([`LayottoBinary`], for the command line, signals, exit codes and logs,
//! read from its output), and provides small real TCP servers to proxy to. Every wait is bounded.
#![allow(dead_code)] // each test binary uses its own part of the harness
#![allow(
    unreachable_pub,
    reason = "`pub` marks the harness API its test crates share"
)]

pub mod etcd;
pub mod https;
pub mod redis;
pub mod redis_topology;
pub mod zookeeper;

use std::{
    collections::HashMap,
    fs::Permissions,
    io::{BufRead, BufReader, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    os::unix::fs::PermissionsExt,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex},
    thread,
    time::{Duration, Instant},
};

use layotto::{ListenerReport, Options, Running, ServeReport, StartError};
use layotto_proto::runtime::{
    GetNextIdRequest, LockKeepAliveRequest, SequencerOptions, TryLockRequest, UnlockRequest,
    lock_keep_alive_response, runtime_client::RuntimeClient, sequencer_options::AutoIncrement,
    unlock_response,
};
use serde_json::{Value, json};
use tonic::transport::Channel;

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// layotto-rs running in the test process on a config value; stopped (without waiting for the
/// drain) when dropped.
pub struct Layotto {
    running: Option<Running>,
}

impl Layotto {
    /// Starts `config` on one shard per CPU, as the binary does by default.
    pub fn start(config: &Value) -> Self {
        Self::start_with_options(config, Options::default())
    }

    /// Starts `config` on `shards` shards.
    pub fn with_shards(config: &Value, shards: usize) -> Self {
        Self::start_with_options(
            config,
            Options {
                shards: Some(shards),
                ..Options::default()
            },
        )
    }

    /// Starts `config` with the Dapr component files in `dir` (`--resources-path`).
    pub fn with_resources(config: &Value, dir: &std::path::Path) -> Self {
        Self::start_with_options(
            config,
            Options {
                resources_path: Some(dir.to_owned()),
                ..Options::default()
            },
        )
    }

    fn start_with_options(config: &Value, options: Options) -> Self {
        match layotto::start(&config.to_string(), options) {
            Ok(running) => Self {
                running: Some(running),
            },
            Err(err) => panic!("layotto did not start: {err:?}"),
        }
    }

    fn running(&self) -> &Running {
        self.running.as_ref().expect("layotto is running")
    }

    /// The socket file of Unix socket listener `name`.
    pub fn unix_path(&self, name: &str) -> PathBuf {
        self.running()
            .unix_path(name)
            .unwrap_or_else(|| panic!("no unix socket listener {name}"))
            .to_path_buf()
    }

    /// The address listener `name` is bound to.
    pub fn address(&self, name: &str) -> SocketAddr {
        self.running()
            .address(name)
            .unwrap_or_else(|| panic!("no listener {name}: {:?}", self.running().addresses()))
    }

    /// The metrics as a Prometheus scrape gets them.
    pub fn metrics(&self) -> String {
        self.running().metrics()
    }

    /// Waits until the sample `series` (name and labels) of [`Layotto::metrics`] equals `value`.
    pub fn wait_metric(&self, series: &str, value: f64) {
        wait_until(&format!("{series} == {value}"), || {
            sample(&self.metrics(), series) == value
        });
    }

    /// Stops (the drain SIGTERM starts) and returns the report once it is over.
    pub fn stop(&mut self) -> ServeReport {
        let running = self.running.take().expect("layotto is running");
        running.stop();
        running.join().expect("layotto stopped cleanly")
    }

    /// Stops and returns the report of listener `name`.
    pub fn stop_and_summary(&mut self, name: &str) -> ListenerReport {
        let report = self.stop();
        report
            .listener(name)
            .unwrap_or_else(|| panic!("no listener {name} in {report:?}"))
            .clone()
    }
}

/// Why `config` does not start in-process (it must not).
pub fn start_error(config: &Value) -> StartError {
    match layotto::start(&config.to_string(), Options::default()) {
        Ok(_) => panic!("layotto started on a config that must not start"),
        Err(err) => err,
    }
}

/// The problems of a configuration rejected in-process, one `path: message` line each.
pub fn config_problems(config: &Value) -> Vec<String> {
    match start_error(config) {
        StartError::InvalidConfig(problems) => problems.iter().map(|p| p.to_string()).collect(),
        other => panic!("expected an invalid configuration, got {other:?}"),
    }
}

/// The value of counter `name` in a listener's report.
pub fn counter(report: &ListenerReport, name: &str) -> u64 {
    report
        .counter(name)
        .unwrap_or_else(|| panic!("no {name} in {report:?}"))
}

/// The value of the sample line starting with `series` (name and labels) in Prometheus text.
pub fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {series} in:\n{metrics}"))
}

/// Polls `condition` (every 10 ms, at most [`WAIT`]) until it holds, for state that changes
/// without telling anyone (a counter, a gauge); fails naming `what`.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Path of the binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_layotto"))
}

/// A running `layotto start` (the real binary), killed on drop.
pub struct LayottoBinary {
    child: Child,
    output: Arc<Output>,
    listeners: HashMap<String, SocketAddr>,
    dir: tempfile::TempDir,
}

/// What the process printed, line by line; readers of its two pipes tell waiters of each line
/// and of each pipe's end.
#[derive(Default)]
struct Output {
    printed: Mutex<Printed>,
    changed: Condvar,
}

#[derive(Default)]
struct Printed {
    lines: Vec<String>,
    pipes_closed: usize,
}

impl Output {
    /// Starts a thread appending the lines of `pipe`.
    fn collect(self: &Arc<Self>, pipe: impl Read + Send + 'static) {
        let output = self.clone();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                output.printed.lock().unwrap().lines.push(line);
                output.changed.notify_all();
            }
            output.printed.lock().unwrap().pipes_closed += 1;
            output.changed.notify_all();
        });
    }

    /// Waits (at most [`WAIT`]) until `done` says it has what it needs (`Some`) or both pipes
    /// closed (the process is gone): `None` then.
    fn wait_for<T>(&self, mut done: impl FnMut(&[String]) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + WAIT;
        let mut printed = self.printed.lock().unwrap();
        loop {
            if let Some(found) = done(&printed.lines) {
                return Some(found);
            }
            if printed.pipes_closed == 2 {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out; output:\n{}",
                printed.lines.join("\n")
            );
            printed = self.changed.wait_timeout(printed, left).unwrap().0;
        }
    }

    fn text(&self) -> String {
        self.printed.lock().unwrap().lines.join("\n")
    }
}

impl LayottoBinary {
    /// Starts layotto on `config` with `args` and waits until `expected_listeners` listeners
    /// report their addresses.
    pub fn start(config: &Value, args: &[&str], expected_listeners: usize) -> Self {
        Self::start_with(Command::new(binary()), config, args, expected_listeners)
    }

    /// Like [`LayottoBinary::start`], with a prepared command (e.g. one that drops privileges)
    /// whose arguments are followed by `start -c <config> <args>`.
    pub fn start_with(
        mut command: Command,
        config: &Value,
        args: &[&str],
        expected_listeners: usize,
    ) -> Self {
        // Readable by all: some tests run the binary as an unprivileged user.
        // At <dir>/configs/config.json, so that the pid file (MOSN's default) is <dir>/logs/mosn.pid.
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).unwrap();
        let configs = dir.path().join("configs");
        std::fs::create_dir(&configs).unwrap();
        std::fs::set_permissions(&configs, Permissions::from_mode(0o755)).unwrap();
        let path = configs.join("config.json");
        std::fs::write(&path, serde_json::to_vec_pretty(config).unwrap()).unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        // The pid file's directory, writable also when the binary runs unprivileged.
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        std::fs::set_permissions(&logs, Permissions::from_mode(0o777)).unwrap();
        command.arg("start").arg("-c").arg(&path).args(args);
        Self::spawn(command, dir, expected_listeners)
    }

    /// `layotto start` with no config file (in an empty working directory, without
    /// `$RUNTIME_CONFIG`): the embedded default (waits for all its listeners).
    ///
    /// The default listens on fixed ports (LayOtto's 34904, daprd's 3500 and 50001), two of
    /// them inside Linux's ephemeral range, so a client socket of a test running beside this
    /// one (or of any process on the machine) may hold one for a while. Such a start is
    /// retried once the ports can be bound again, a few times, instead of failing the test.
    pub fn start_default() -> Self {
        let default: Value =
            serde_json::from_str(include_str!("../../configs/default.json")).unwrap();
        let listeners = default["servers"][0]["listeners"].as_array().unwrap();
        let ports: Vec<SocketAddr> = listeners
            .iter()
            .map(|listener| listener["address"].as_str().unwrap().parse().unwrap())
            .collect();
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            wait_until_bindable(&ports);
            let dir = tempfile::tempdir().unwrap();
            let mut command = Command::new(binary());
            command
                .arg("start")
                .current_dir(dir.path())
                .env_remove("RUNTIME_CONFIG");
            match Self::try_spawn(command, dir, listeners.len()) {
                Ok(started) => return started,
                // Start again; the last attempt's failure is what the panic below shows.
                Err(failure)
                    if failure.contains("Address already in use") && attempt < ATTEMPTS => {}
                Err(failure) => panic!("{failure}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Runs a prepared command (its arguments, working directory and environment set by the
    /// caller) and waits until `expected_listeners` listeners report their addresses.
    pub fn launch(command: Command, expected_listeners: usize) -> Self {
        Self::spawn(command, tempfile::tempdir().unwrap(), expected_listeners)
    }

    /// The config file [`LayottoBinary::start`] wrote (`<dir>/configs/config.json`).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("configs").join("config.json")
    }

    fn spawn(command: Command, dir: tempfile::TempDir, expected_listeners: usize) -> Self {
        Self::try_spawn(command, dir, expected_listeners)
            .unwrap_or_else(|failure| panic!("{failure}"))
    }

    /// [`LayottoBinary::spawn`], returning what the process printed if it exited before
    /// listening.
    fn try_spawn(
        mut command: Command,
        dir: tempfile::TempDir,
        expected_listeners: usize,
    ) -> Result<Self, String> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start layotto");
        let output = Arc::new(Output::default());
        output.collect(child.stdout.take().unwrap());
        output.collect(child.stderr.take().unwrap());
        let listeners = output.wait_for(|lines| {
            let listening: HashMap<_, _> =
                lines.iter().filter_map(|l| parse_listening(l)).collect();
            (listening.len() >= expected_listeners).then_some(listening)
        });
        let Some(listeners) = listeners else {
            let status = child.wait().unwrap();
            return Err(format!(
                "layotto exited early ({status}):\n{}",
                output.text()
            ));
        };
        Ok(Self {
            child,
            output,
            listeners,
            dir,
        })
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
        self.output.text()
    }

    /// Waits until a printed line contains `needle`, returning that line.
    pub fn wait_for_line(&self, needle: &str) -> String {
        self.wait_for_lines(needle, 1).remove(0)
    }

    /// Waits until `count` printed lines contain `needle`, returning them.
    pub fn wait_for_lines(&self, needle: &str, count: usize) -> Vec<String> {
        let found = self.output.wait_for(|lines| {
            let found: Vec<String> = lines
                .iter()
                .filter(|l| l.contains(needle))
                .cloned()
                .collect();
            (found.len() >= count).then_some(found)
        });
        found.unwrap_or_else(|| {
            panic!(
                "fewer than {count} lines containing {needle:?} in:\n{}",
                self.output()
            )
        })
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (at most [`WAIT`]) for the process to exit, with everything it printed read.
    pub fn wait_exit(&mut self) -> ExitStatus {
        // Both pipes end when the process does.
        self.output.wait_for(|_| None::<()>);
        self.child.wait().unwrap()
    }

    /// SIGTERM, then the exit summary line of listener `name` (after checking exit code 0).
    pub fn stop_and_summary(&mut self, name: &str) -> String {
        self.terminate();
        let status = self.wait_exit();
        assert!(status.success(), "exit {status}:\n{}", self.output());
        self.wait_for_line(&format!("listener \"{name}\" summary"))
    }
}

impl Drop for LayottoBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_listening(line: &str) -> Option<(String, SocketAddr)> {
    let rest = line.split("listener \"").nth(1)?;
    let (name, rest) = rest.split_once('"')?;
    let address = rest.strip_prefix(" listening on ")?.trim();
    Some((name.to_owned(), address.parse().ok()?))
}

/// The value of counter `name` in a logged summary line (`... name=value ...`).
pub fn logged_counter(summary: &str, name: &str) -> u64 {
    let prefix = format!("{name}=");
    summary
        .split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in {summary}"))
        .parse()
        .unwrap()
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

/// A loopback address that refuses connections for the rest of the test process: a socket is
/// bound there and never listens, so no parallel test can take the port (as it could take one
/// found free and released).
pub fn dead_address() -> SocketAddr {
    static HELD: Mutex<Vec<socket2::Socket>> = Mutex::new(Vec::new());
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let address = socket.local_addr().unwrap().as_socket().unwrap();
    HELD.lock().unwrap().push(socket);
    address
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

/// [`grpc_config`] with `grpc_config`, plus Dapr's HTTP API (`dapr_http`) over the same
/// components on a listener named `dapr_listener` (127.0.0.1, port 0).
pub fn with_dapr_http(grpc_config: Value, dapr_listener: &str) -> Value {
    let mut config = self::grpc_config(grpc_config, json!({}));
    config["servers"][0]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "name": dapr_listener,
            "address": "127.0.0.1:0",
            "bind_port": true,
            "filter_chains": [{"filters": [{"type": "dapr_http"}]}]
        }));
    config
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

/// Saves `key` = `value` in state store `store` and answers what `GetState` reads back.
pub async fn save_and_read_back(
    client: &mut RuntimeClient<Channel>,
    store: &str,
    key: &str,
    value: &str,
) -> bytes::Bytes {
    client
        .save_state(layotto_proto::runtime::SaveStateRequest {
            store_name: store.into(),
            states: vec![item(key, value)],
        })
        .await
        .unwrap();
    client
        .get_state(layotto_proto::runtime::GetStateRequest {
            store_name: store.into(),
            key: key.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .data
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

/// Whether process `pid` has a TCP socket listening on `port` (from `/proc`). An external server
/// is started on a port found free a moment before, which someone else may take meanwhile: then
/// the server fails to bind and exits, and whatever answers on the port is not it. This tells
/// the two apart.
pub fn listens_on(pid: u32, port: u16) -> bool {
    let listening: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .into_iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    // sl local_address rem_address st ... uid timeout inode
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local_port = fields.get(1)?.rsplit(':').next()?;
                    let is_port = u16::from_str_radix(local_port, 16).ok()? == port;
                    let is_listening = *fields.get(3)? == "0A";
                    if !(is_port && is_listening) {
                        return None;
                    }
                    Some(format!("socket:[{}]", fields.get(9)?))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .any(|target| {
            listening
                .iter()
                .any(|socket| target.as_os_str() == socket.as_str())
        })
}

/// Starts an external server by `launch` on fresh free ports until one attempt binds them
/// (`launch` answers `Err` with the server's complaint when it exited having lost a port).
pub fn start_on_free_ports<T>(what: &str, mut launch: impl FnMut() -> Result<T, String>) -> T {
    const ATTEMPTS: usize = 5;
    let mut complaints = Vec::new();
    for _ in 0..ATTEMPTS {
        match launch() {
            Ok(server) => return server,
            Err(complaint) => complaints.push(complaint),
        }
    }
    panic!("{what} did not start in {ATTEMPTS} attempts: {complaints:#?}")
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

/// Waits (up to [`WAIT`]) until every address in `addresses` can be bound. Nothing signals
/// that another socket let a port go, so this polls.
fn wait_until_bindable(addresses: &[SocketAddr]) {
    let deadline = Instant::now() + WAIT;
    while !addresses
        .iter()
        .all(|address| std::net::TcpListener::bind(address).is_ok())
    {
        assert!(
            Instant::now() < deadline,
            "one of {addresses:?} stayed in use for {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
