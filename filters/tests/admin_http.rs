//! The admin HTTP server over a real socket, served in-process on a glommio executor: a client
//! that leaves its request head unfinished is disconnected after the read timeout, and a
//! complete request is still answered.
#![allow(
    clippy::unwrap_used,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    reason = "test code, never on a shard: a failed step panics, and it may block its own thread"
)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::Arc,
    time::{Duration, Instant},
};

use layotto_core::{handler::ConnectionInfo, shutdown};
use layotto_filters::{
    admin_http::{AdminHttpFactory, AdminRequest, AdminResponse, READ_TIMEOUT},
    chain::{Observers, TerminalFactory},
};

fn start() -> SocketAddr {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (trigger, signal) = shutdown::channel();
        let factory = AdminHttpFactory::new(Arc::new(|request: AdminRequest| {
            let body = format!("{{\"path\":\"{}\"}}", request.path);
            Some(Box::pin(async move { AdminResponse::json(200, body) }) as _)
        }));
        glommio::LocalExecutor::default().run(async move {
            let _trigger = trigger;
            let server = factory.for_shard(0);
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            ready_tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let stream = listener.accept().await.unwrap();
                let conn = ConnectionInfo {
                    listener: "admin".into(),
                    shard: 0,
                    peer: stream.peer_addr().unwrap(),
                    local: stream.local_addr().unwrap(),
                    shutdown: signal.clone(),
                };
                glommio::spawn_local(server.clone().serve(stream, conn, Observers::default()))
                    .detach();
            }
        });
    });
    ready_rx.recv().unwrap()
}

#[test]
fn an_unfinished_request_head_is_disconnected_after_the_read_timeout() {
    let address = start();
    let mut slow = TcpStream::connect(address).unwrap();
    slow.set_read_timeout(Some(READ_TIMEOUT * 3)).unwrap();
    slow.write_all(b"GET /actuator/health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    // Closed by the server (EOF or reset), not by our own read timeout.
    let closed = slow.read_to_end(&mut rest).map(|_| ());
    let waited = started.elapsed();
    assert!(
        closed.is_ok()
            || closed
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{closed:?}"
    );
    assert!(
        waited >= READ_TIMEOUT - Duration::from_millis(100) && waited < READ_TIMEOUT * 2,
        "closed after {waited:?}"
    );
    // A complete request is answered.
    let mut client = TcpStream::connect(address).unwrap();
    client
        .write_all(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
