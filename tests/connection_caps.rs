//! The process's descriptor reserve and accept back-off, on the real binary run under a low
//! `RLIMIT_NOFILE` (256): a flood of the L4 proxy's listener leaves descriptors for the gRPC and
//! admin listeners, and a process out of descriptors backs off with one warning a second.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{
    io::Read,
    net::{SocketAddr, TcpStream},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::*;
use layotto_proto::runtime::SayHelloRequest;
use serde_json::{Value, json};

/// The open-files limit the binary runs under.
const NOFILE: usize = 256;

/// A gRPC listener (slow to give up on silent clients), an actuator and a proxy to `upstream`.
fn config(upstream: SocketAddr) -> Value {
    let mut config = grpc_config(
        json!({"hellos": {"quick_start_demo": {"type": "helloworld", "hello": "greeting"}}}),
        json!({"handshake_timeout": "60s"}),
    );
    let listeners = config["servers"][0]["listeners"].as_array_mut().unwrap();
    listeners.push(json!({
        "name": "actuator",
        "address": "127.0.0.1:0",
        "bind_port": true,
        "filter_chains": [{"filters": [{"type": "proxy", "config": {
            "downstream_protocol": "Http1", "upstream_protocol": "Http1",
            "router_config_name": "actuator_dont_need_router"}}]}],
        "stream_filters": [{"type": "actuator_filter"}]
    }));
    let proxy = &proxy_config(&[("proxy", &[upstream], json!({}))], json!({}));
    listeners.push(proxy["servers"][0]["listeners"][0].clone());
    config["cluster_manager"] = proxy["cluster_manager"].clone();
    config
}

/// The binary on one shard under an open-files limit of [`NOFILE`].
fn start_limited(config: &Value) -> LayottoBinary {
    let mut command = Command::new("prlimit");
    command
        .arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .arg(binary());
    LayottoBinary::start_with(command, config, &["--shards", "1"], 3)
}

/// A SayHello over a new connection, within 10 s.
async fn say_hello(address: SocketAddr) -> String {
    let call = async {
        runtime_client(address)
            .await
            .say_hello(SayHelloRequest {
                service_name: "quick_start_demo".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .hello
    };
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call was not served within 10 s")
}

/// An upstream whose accept queue is full, so that connecting to it hangs (SYNs dropped): each
/// proxied connection then holds its two descriptors for the cluster's connect timeout. Keep
/// the second value for as long as the address is needed.
fn blackhole() -> (SocketAddr, (socket2::Socket, Vec<TcpStream>)) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(0).unwrap();
    let address = socket.local_addr().unwrap().as_socket().unwrap();
    // Whether the kernel completes a first connection (with SYN cookies) or drops them all,
    // the queue is full after this one.
    let filling = TcpStream::connect_timeout(&address, Duration::from_millis(500))
        .into_iter()
        .collect();
    (address, (socket, filling))
}

/// Whether the peer has closed `stream` (it is not just quiet).
fn closed_by_peer(mut stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let closed = !matches!(stream.read(&mut [0u8]), Err(err) if err.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_proxy_listener_leaves_descriptors_for_the_api_and_admin_listeners() {
    let (upstream, _filling) = blackhole();
    let mut config = config(upstream);
    config["cluster_manager"]["clusters"][0]["connect_timeout"] = json!("60s");
    let layotto = start_limited(&config);
    let proxy = layotto.address("proxy");
    // Each proxied connection holds two descriptors: a flood of NOFILE would take them all.
    let flood: Vec<TcpStream> = (0..NOFILE)
        .map(|_| TcpStream::connect(proxy).unwrap())
        .collect();
    // Past the reserve the proxy closes connections at once.
    let until = Instant::now() + Duration::from_secs(10);
    let mut refused = 0;
    while refused < NOFILE / 2 {
        assert!(
            Instant::now() < until,
            "{refused} of {NOFILE} flood connections closed:\n{}",
            layotto.output()
        );
        std::thread::sleep(Duration::from_millis(20));
        refused = flood.iter().filter(|s| closed_by_peer(s)).count();
    }
    assert!(
        refused < NOFILE - NOFILE / 8,
        "{refused} closed: almost none kept"
    );
    // The reserve stays free (less what proxied connections admitted at its edge opened).
    let open = std::fs::read_dir(format!("/proc/{}/fd", layotto.pid()))
        .unwrap()
        .count();
    assert!(
        open < NOFILE - 16,
        "{open} descriptors open under a limit of {NOFILE}"
    );
    // While the flood goes on, the API and admin listeners accept.
    let flooding = Arc::new(AtomicBool::new(true));
    let flooder = {
        let flooding = flooding.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while flooding.load(Ordering::Relaxed) {
                held.extend(TcpStream::connect_timeout(
                    &proxy,
                    Duration::from_millis(200),
                ));
                held.retain(|s| !closed_by_peer(s));
            }
        })
    };
    assert_eq!(say_hello(layotto.address("grpc")).await, "greeting");
    let (status, _) = http_get(layotto.address("actuator"), "/actuator/health/liveness")
        .expect("the actuator answers");
    assert_eq!(status, 200);
    flooding.store(false, Ordering::Relaxed);
    flooder.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_accepting_backs_off_with_one_warning_a_second() {
    let layotto = start_limited(&config(echo_server()));
    let grpc = layotto.address("grpc");
    // Silent connections to the gRPC listener (which may use the reserve) until the process
    // has no descriptor left; the rest wait in the kernel's backlog.
    let flood: Vec<TcpStream> = (0..NOFILE + 50)
        .map(|_| TcpStream::connect(grpc).unwrap())
        .collect();
    layotto.wait_for_line("accept failed");
    let window = Duration::from_millis(2500);
    let started = Instant::now();
    std::thread::sleep(window);
    let warnings: Vec<String> = layotto
        .output()
        .lines()
        .filter(|l| l.contains("accept failed"))
        .map(str::to_owned)
        .collect();
    // One at the start of the window and at most one a second after it (every listener fails
    // while no descriptor is free; all share the limit).
    let allowed = 2 + started.elapsed().as_secs() as usize;
    assert!(
        warnings.len() <= allowed,
        "{} warnings in {window:?}:\n{}",
        warnings.len(),
        warnings.join("\n")
    );
    assert!(
        warnings.last().unwrap().contains("failures="),
        "{warnings:?}"
    );
    // Descriptors come back: calls are served again.
    drop(flood);
    assert_eq!(say_hello(grpc).await, "greeting");
}
