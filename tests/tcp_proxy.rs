//! End-to-end tests of the `tcp_proxy` listener: layotto-rs (in the test process) between a real
//! client and real upstream servers on loopback, over real sockets.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

mod common;

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpStream},
    thread,
    time::{Duration, Instant},
};

use common::*;
use serde_json::json;

#[test]
fn bytes_through_the_proxy_equal_bytes_sent() {
    let echo = echo_server();
    let mut layotto = Layotto::start(&proxy_config(&[("proxy", &[echo], json!({}))], json!({})));
    let proxy = layotto.address("proxy");
    let sizes = [1, 64 * 1024, 16 * 1024 * 1024];
    for (seed, size) in sizes.into_iter().enumerate() {
        let data = pattern(size, seed as u64);
        let echoed = round_trip(proxy, &data);
        assert_eq!(echoed.len(), size, "size {size}");
        assert!(echoed == data, "bytes differ for size {size}");
    }
    let summary = layotto.stop_and_summary("proxy");
    let total: u64 = sizes.iter().map(|&s| s as u64).sum();
    assert_eq!(
        counter(&summary, "bytes_from_downstream"),
        total,
        "{summary:?}"
    );
    assert_eq!(
        counter(&summary, "bytes_from_upstream"),
        total,
        "{summary:?}"
    );
    assert_eq!(counter(&summary, "connections"), 3, "{summary:?}");
    // The 16 MiB transfer fills the copy buffer both ways, so both directions go on with splice.
    assert!(counter(&summary, "spliced_directions") >= 2, "{summary:?}");
}

#[test]
fn small_exchanges_are_copied_not_spliced() {
    let echo = echo_server();
    let mut layotto = Layotto::start(&proxy_config(&[("proxy", &[echo], json!({}))], json!({})));
    let mut client = TcpStream::connect(layotto.address("proxy")).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    for i in 0..200u64 {
        let message = pattern(64, i);
        client.write_all(&message).unwrap();
        let mut answer = [0; 64];
        client.read_exact(&mut answer).unwrap();
        assert_eq!(answer[..], message[..], "message {i}");
    }
    drop(client);
    let summary = layotto.stop_and_summary("proxy");
    assert_eq!(
        counter(&summary, "bytes_from_upstream"),
        200 * 64,
        "{summary:?}"
    );
    assert_eq!(counter(&summary, "spliced_directions"), 0, "{summary:?}");
}

#[test]
fn many_concurrent_connections_spread_across_shards() {
    const CONNECTIONS: usize = 64;
    let echo = echo_server();
    let mut layotto = Layotto::with_shards(
        &proxy_config(&[("proxy", &[echo], json!({}))], json!({})),
        2,
    );
    let proxy = layotto.address("proxy");
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            thread::spawn(move || {
                let data = pattern(256 * 1024 + i, i as u64);
                assert!(round_trip(proxy, &data) == data, "connection {i} corrupted");
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let summary = layotto.stop_and_summary("proxy");
    let per_shard = &summary.accepted_per_shard;
    assert_eq!(per_shard.len(), 2, "{summary:?}");
    assert_eq!(
        per_shard.iter().sum::<u64>(),
        CONNECTIONS as u64,
        "{summary:?}"
    );
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "one shard took every connection: {summary:?}"
    );
}

#[test]
fn half_close_keeps_the_other_direction_open() {
    // The upstream answers only after it has seen the client's FIN.
    let upstream = server(|mut stream| {
        let mut request = Vec::new();
        stream.read_to_end(&mut request).unwrap();
        // The thing tested: the connection stays half-open a while (a proxy that closed on
        // the client's FIN would lose the answer).
        thread::sleep(Duration::from_millis(100));
        stream
            .write_all(format!("got {} bytes", request.len()).as_bytes())
            .unwrap();
    });
    let layotto = Layotto::start(&proxy_config(
        &[("proxy", &[upstream], json!({}))],
        json!({}),
    ));
    let mut client = TcpStream::connect(layotto.address("proxy")).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.write_all(&pattern(100_000, 7)).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "got 100000 bytes");
}

#[test]
fn upstream_down_closes_the_client_cleanly_and_spares_others() {
    let echo = echo_server();
    let config = proxy_config(
        &[
            ("down", &[dead_address()], json!({})),
            ("up", &[echo], json!({})),
        ],
        json!({}),
    );
    let mut layotto = Layotto::start(&config);
    // A connection through the healthy listener stays open across the failure.
    let mut healthy = TcpStream::connect(layotto.address("up")).unwrap();
    healthy.set_read_timeout(Some(WAIT)).unwrap();
    healthy.write_all(b"before").unwrap();
    let mut buf = [0; 6];
    healthy.read_exact(&mut buf).unwrap();

    let mut refused = TcpStream::connect(layotto.address("down")).unwrap();
    refused.set_read_timeout(Some(WAIT)).unwrap();
    let mut rest = Vec::new();
    // An orderly close: end of stream, not a reset or a hang.
    assert_eq!(refused.read_to_end(&mut rest).unwrap(), 0);

    healthy.write_all(b"after!").unwrap();
    healthy.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"after!");
    assert_eq!(round_trip(layotto.address("up"), b"new"), b"new");
    drop(healthy);

    let report = layotto.stop();
    let down = report.listener("down").unwrap();
    assert_eq!(counter(down, "upstream_connect_failures"), 1, "{down:?}");
    let up = report.listener("up").unwrap();
    assert_eq!(counter(up, "upstream_connect_failures"), 0, "{up:?}");
}

#[test]
fn round_robin_over_cluster_hosts() {
    let named = |name: &'static str| server(move |mut s| s.write_all(name.as_bytes()).unwrap());
    let hosts = [named("a"), named("b"), named("c")];
    let layotto =
        Layotto::with_shards(&proxy_config(&[("proxy", &hosts, json!({}))], json!({})), 1);
    let answers: Vec<String> = (0..6)
        .map(|_| {
            let mut client = TcpStream::connect(layotto.address("proxy")).unwrap();
            client.set_read_timeout(Some(WAIT)).unwrap();
            let mut answer = String::new();
            client.read_to_string(&mut answer).unwrap();
            answer
        })
        .collect();
    assert_eq!(answers, ["a", "b", "c", "a", "b", "c"]);
}

#[test]
fn idle_connections_are_closed_after_the_idle_timeout() {
    let echo = echo_server();
    let mut layotto = Layotto::start(&proxy_config(
        &[("proxy", &[echo], json!({"idle_timeout": "300ms"}))],
        json!({}),
    ));
    let mut client = TcpStream::connect(layotto.address("proxy")).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    // Traffic keeps it alive past the timeout (the pauses are the thing tested)...
    for _ in 0..4 {
        thread::sleep(Duration::from_millis(150));
        client.write_all(b"x").unwrap();
        client.read_exact(&mut [0]).unwrap();
    }
    // ...silence closes it.
    let started = Instant::now();
    assert_eq!(client.read(&mut [0; 8]).unwrap(), 0);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    let summary = layotto.stop_and_summary("proxy");
    assert_eq!(counter(&summary, "idle_timeouts"), 1, "{summary:?}");
}

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Polls (bounded) until process `pid` holds `expected` descriptors; the count it last saw.
fn wait_for_fds(pid: u32, expected: usize) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        let open = open_fds(pid);
        if open == expected || Instant::now() > deadline {
            return open;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Closes `stream` with a reset (SO_LINGER 0) instead of a FIN.
fn reset(stream: TcpStream) {
    socket2::SockRef::from(&stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(stream);
}

#[test]
fn an_upstream_reset_reaches_the_client_as_a_reset_and_frees_both_sockets() {
    // The upstream answers the first bytes, then resets the connection.
    let upstream = server(|mut stream| {
        let mut buf = [0; 5];
        stream.read_exact(&mut buf).unwrap();
        stream.write_all(&buf).unwrap();
        stream.read_exact(&mut buf).unwrap();
        reset(stream);
    });
    let layotto = LayottoBinary::start(
        &proxy_config(&[("proxy", &[upstream], json!({}))], json!({})),
        &["--shards", "1"],
        1,
    );
    let idle_fds = open_fds(layotto.pid());
    let mut kept_open = Vec::new();
    for _ in 0..3 {
        let mut client = TcpStream::connect(layotto.address("proxy")).unwrap();
        client.set_read_timeout(Some(WAIT)).unwrap();
        client.write_all(b"hello").unwrap();
        client.read_exact(&mut [0; 5]).unwrap();
        client.write_all(b"reset").unwrap();
        let err = client.read(&mut [0; 8]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
        // The client keeps its end open: the proxy must not wait for it to go.
        kept_open.push(client);
    }
    assert_eq!(wait_for_fds(layotto.pid(), idle_fds), idle_fds);
}

#[test]
fn a_client_reset_reaches_the_upstream_as_a_reset_and_frees_both_sockets() {
    let (seen, outcomes) = std::sync::mpsc::channel();
    let kept_open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let held = kept_open.clone();
    let upstream = server(move |mut stream| {
        let mut buf = [0; 5];
        stream.read_exact(&mut buf).unwrap();
        stream.write_all(&buf).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let outcome = stream.read(&mut [0; 8]).map_err(|e| e.kind());
        seen.send(outcome).unwrap();
        // The upstream keeps its end open: the proxy must not wait for it to go.
        held.lock().unwrap().push(stream);
    });
    let layotto = LayottoBinary::start(
        &proxy_config(&[("proxy", &[upstream], json!({}))], json!({})),
        &["--shards", "1"],
        1,
    );
    let idle_fds = open_fds(layotto.pid());
    for _ in 0..3 {
        let mut client = TcpStream::connect(layotto.address("proxy")).unwrap();
        client.set_read_timeout(Some(WAIT)).unwrap();
        client.write_all(b"hello").unwrap();
        client.read_exact(&mut [0; 5]).unwrap();
        reset(client);
        let outcome = outcomes.recv_timeout(WAIT).unwrap();
        assert_eq!(outcome, Err(std::io::ErrorKind::ConnectionReset));
    }
    assert_eq!(wait_for_fds(layotto.pid(), idle_fds), idle_fds);
}

#[test]
fn a_refusing_host_is_retried_past_then_ejected_and_taken_back_when_it_returns() {
    let alive = echo_server();
    // Bound but not listening: connections are refused until it listens ("the host returns").
    let held = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    held.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    let refusing = held.local_addr().unwrap().as_socket().unwrap();
    let mut config = proxy_config(&[("proxy", &[alive, refusing], json!({}))], json!({}));
    config["cluster_manager"]["clusters"][0]["outlier_detection"] =
        json!({"consecutive_5xx": 2, "base_ejection_time": "1s"});
    let mut layotto = Layotto::with_shards(&config, 1);
    let proxy = layotto.address("proxy");
    for i in 0..10u64 {
        let data = pattern(100, i);
        assert_eq!(round_trip(proxy, &data), data, "connection {i}");
    }
    // Back on the same port: once the ejection time is over, connections reach it again.
    held.listen(16).unwrap();
    let returned: std::net::TcpListener = held.into();
    let started = Instant::now();
    let accepted = thread::spawn(move || returned.accept().map(|_| ()));
    while !accepted.is_finished() {
        assert!(started.elapsed() < WAIT, "the host was never taken back");
        let _ = TcpStream::connect(proxy);
        thread::sleep(Duration::from_millis(50));
    }
    accepted.join().unwrap().unwrap();
    let report = layotto.stop_and_summary("proxy");
    assert_eq!(
        counter(&report, "upstream_connect_failures"),
        0,
        "{report:?}"
    );
    assert_eq!(counter(&report, "upstream_host_ejections"), 1, "{report:?}");
    assert!(
        counter(&report, "upstream_connect_retries") >= 2,
        "{report:?}"
    );
}
