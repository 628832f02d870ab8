//! A real redis server for the tests (Debian's `redis-server`, installed by `scripts/test.sh`):
//! on a free loopback port with a temp working directory and no persistence, killed on drop.
//!
//! Ports: the port is found free just before redis binds it, so another test may take it in
//! between; redis then exits, which [`RedisServer::start`] sees (the process is gone, or is not
//! the one listening) and tries again on a new port.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::{WAIT, etcd::free_address, listens_on, start_on_free_ports};

/// A running redis server.
pub struct RedisServer {
    child: Child,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts redis and waits until it listens on its port.
    pub fn start() -> Self {
        start_on_free_ports("redis", Self::launch)
    }

    /// One attempt on a new free port; `Err` if redis exited (the port was taken).
    fn launch() -> Result<Self, String> {
        let dir = tempfile::tempdir().unwrap();
        let address = free_address();
        let mut child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &address.port().to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(dir.path().join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot run redis-server ({err}); scripts/test.sh installs Debian's redis-server")
            });
        let deadline = Instant::now() + WAIT;
        // Bounded polling of the external server's readiness: redis serves once it listens.
        while !listens_on(child.id(), address.port()) {
            if let Some(status) = child.try_wait().unwrap() {
                let log = std::fs::read_to_string(dir.path().join("redis.log")).unwrap_or_default();
                return Err(format!("redis exited ({status}): {log}"));
            }
            assert!(Instant::now() < deadline, "redis did not start");
            thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            child,
            address,
            _dir: dir,
        })
    }

    /// `host:port` for clients.
    pub fn endpoint(&self) -> String {
        self.address.to_string()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
