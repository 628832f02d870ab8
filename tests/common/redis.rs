//! A real redis server for the tests (Debian's `redis-server`, installed by `scripts/test.sh`):
//! on a free loopback port with a temp working directory and no persistence, killed on drop.

use std::{
    net::{SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::{WAIT, etcd::free_address};

/// A running redis server.
pub struct RedisServer {
    child: Child,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts redis and waits until it accepts connections.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let address = free_address();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &address.port().to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot run redis-server ({err}); scripts/test.sh installs Debian's redis-server")
            });
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(address).is_err() {
            assert!(Instant::now() < deadline, "redis did not start");
            thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            address,
            _dir: dir,
        }
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
