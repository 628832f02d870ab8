//! Start-up and shutdown of the real binary: draining on SIGTERM, the drain timeout, and running
//! unprivileged under the machine's locked-memory limit.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    sync::mpsc,
    time::{Duration, Instant},
};

use common::*;
use serde_json::json;

#[test]
fn sigterm_stops_accepting_and_lets_an_inflight_transfer_finish() {
    // The upstream tells when the request has reached it, and answers only when told: the
    // transfer is in flight through the proxy when SIGTERM arrives, and still after it.
    let (reached, request_reached) = mpsc::channel();
    let (answer_now, may_answer) = mpsc::channel::<()>();
    let may_answer = std::sync::Mutex::new(may_answer);
    let slow = server(move |mut stream| {
        let mut request = [0; 5];
        stream.read_exact(&mut request).unwrap();
        reached.send(()).unwrap();
        may_answer.lock().unwrap().recv().unwrap();
        stream.write_all(&pattern(1024 * 1024, 3)).unwrap();
    });
    let mut layotto = LayottoBinary::start(
        &proxy_config(&[("proxy", &[slow], json!({}))], json!({})),
        &["--shards", "2"],
        1,
    );
    let proxy = layotto.address("proxy");
    let mut client = TcpStream::connect(proxy).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.write_all(b"hello").unwrap();
    request_reached.recv_timeout(WAIT).unwrap();

    layotto.terminate();
    // Each shard closes its socket, then says so; once both have, connections are refused
    // while the old one drains.
    layotto.wait_for_lines("stopped accepting", 2);
    assert!(
        TcpStream::connect(proxy).is_err(),
        "still accepting after SIGTERM"
    );
    answer_now.send(()).unwrap();
    let mut answer = Vec::new();
    client.read_to_end(&mut answer).unwrap();
    assert!(
        answer == pattern(1024 * 1024, 3),
        "in-flight transfer cut short"
    );
    drop(client); // the client's FIN ends the last open direction
    let status = layotto.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", layotto.output());
    assert!(
        !layotto.output().contains("drain timeout"),
        "{}",
        layotto.output()
    );
}

#[test]
fn drain_timeout_closes_what_is_left_and_exits_0() {
    let echo = echo_server();
    let config = proxy_config(
        &[("proxy", &[echo], json!({}))],
        json!({"graceful_timeout": "500ms"}),
    );
    let mut layotto = LayottoBinary::start(&config, &[], 1);
    let mut idle = TcpStream::connect(layotto.address("proxy")).unwrap();
    idle.set_read_timeout(Some(WAIT)).unwrap();
    idle.write_all(b"x").unwrap();
    idle.read_exact(&mut [0]).unwrap();

    let started = Instant::now();
    layotto.terminate();
    // The open connection is closed by the drain timeout, not before.
    let mut rest = Vec::new();
    let _ = idle.read_to_end(&mut rest);
    let closed_after = started.elapsed();
    assert!(
        closed_after >= Duration::from_millis(400),
        "closed after {closed_after:?}"
    );
    assert_eq!(layotto.wait_exit().code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(10));
    layotto.wait_for_line("connections closed by the drain timeout");
}

/// glommio registers io_uring memory; an unprivileged user is held to RLIMIT_MEMLOCK (8 MiB on
/// these machines). Runs only where the test can drop privileges (root with setpriv).
#[test]
fn runs_unprivileged_under_an_8_mib_memlock_limit() {
    let is_root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    let has_setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !is_root || !has_setpriv {
        eprintln!("skipped: needs root and setpriv to drop privileges");
        return;
    }
    let echo = echo_server();
    let mut command = Command::new("prlimit");
    command.args([
        "--memlock=8388608:8388608",
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ]);
    command.arg(binary());
    let config = proxy_config(&[("proxy", &[echo], json!({}))], json!({}));
    let mut layotto = LayottoBinary::start_with(command, &config, &["--shards", "2"], 1);
    let status = std::fs::read_to_string(format!("/proc/{}/status", layotto.pid())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().nth(1),
        Some("65534"),
        "{uid_line}"
    );
    assert_eq!(
        round_trip(layotto.address("proxy"), b"unprivileged"),
        b"unprivileged"
    );
    let summary = layotto.stop_and_summary("proxy");
    assert_eq!(logged_counter(&summary, "connections"), 1, "{summary}");
    let output = layotto.output();
    assert!(!output.to_lowercase().contains("enomem"), "{output}");
}

/// A server that takes connections and never answers (an etcd that hangs): tells when layotto
/// has connected, and keeps the connections open.
fn silent_server() -> (std::net::SocketAddr, mpsc::Receiver<TcpStream>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (connected, connections) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if connected.send(stream.unwrap()).is_err() {
                break;
            }
        }
    });
    (address, connections)
}

#[test]
fn sigterm_while_a_component_is_still_connecting_exits_0_at_once() {
    let (etcd, connections) = silent_server();
    let config = grpc_config(
        json!({"config_store": {"config_demo": {
            "type": "etcd", "address": [etcd.to_string()], "timeout": "120"
        }}}),
        json!({}),
    );
    // No listener is served yet: start-up is waiting for the component.
    let mut layotto = LayottoBinary::start(&config, &[], 0);
    let _connection = connections.recv_timeout(WAIT).unwrap();

    let signalled = Instant::now();
    layotto.terminate();
    let status = layotto.wait_exit();
    assert_eq!(status.code(), Some(0), "{status}:\n{}", layotto.output());
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "exited {:?} after SIGTERM",
        signalled.elapsed()
    );
    layotto.wait_for_line("stop requested during start-up");
    assert!(!layotto.output().contains("listening on"));
    let pid_file = layotto.config_path().join("../../logs/mosn.pid");
    assert!(!pid_file.exists(), "the pid file is removed");
}
