//! A real redis server for the tests (Debian's `redis-server`, installed by `scripts/test.sh`):
//! on a free loopback port with a temp working directory, killed on drop. Without persistence by
//! default; [`RedisServer::start_persistent`] keeps an append-only file synced on every write, so
//! the data survives [`RedisServer::restart`]. It can be stalled ([`RedisServer::pause`], SIGSTOP)
//! and resumed, and a plain client ([`RedisServer::client`]) stands in for other sidecars.

use std::{
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::{WAIT, etcd::free_address};

/// A running redis server.
pub struct RedisServer {
    child: Child,
    address: SocketAddr,
    persistent: bool,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts redis without persistence and waits until it accepts connections.
    pub fn start() -> Self {
        Self::launch(free_address(), false, tempfile::tempdir().unwrap())
    }

    /// Starts redis with `appendonly yes` and `appendfsync always`: every acknowledged write is
    /// on disk, and survives a kill.
    pub fn start_persistent() -> Self {
        Self::launch(free_address(), true, tempfile::tempdir().unwrap())
    }

    fn launch(address: SocketAddr, persistent: bool, dir: tempfile::TempDir) -> Self {
        let server = Self {
            child: spawn(address, persistent, dir.path()),
            address,
            persistent,
            dir,
        };
        server.wait_ready();
        server
    }

    /// Waits until redis answers: accepting connections is not enough after a restart, redis
    /// answers LOADING while it reads the append-only file.
    fn wait_ready(&self) {
        let deadline = Instant::now() + WAIT;
        while self.ping().is_err() {
            assert!(Instant::now() < deadline, "redis did not start");
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> redis::RedisResult<()> {
        TcpStream::connect(self.address)?;
        redis::cmd("PING").query(&mut self.client_once()?)
    }

    fn client_once(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(format!("redis://{}/", self.address))?.get_connection_with_timeout(WAIT)
    }

    /// `host:port` for clients.
    pub fn endpoint(&self) -> String {
        self.address.to_string()
    }

    /// A plain client connection of the test's own.
    pub fn client(&self) -> redis::Connection {
        self.client_once().expect("connect to redis")
    }

    /// Kills redis (SIGKILL: nothing is flushed at exit) and starts it again on the same port and
    /// directory; waits until it answers.
    pub fn restart(&mut self) {
        assert!(
            self.persistent,
            "a restart only keeps data with persistence"
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(self.address, self.persistent, self.dir.path());
        self.wait_ready();
    }

    /// Stalls redis (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a paused redis (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} redis");
    }
}

fn spawn(address: SocketAddr, persistent: bool, dir: &Path) -> Child {
    let persistence: &[&str] = if persistent {
        &["--appendonly", "yes", "--appendfsync", "always"]
    } else {
        &["--appendonly", "no"]
    };
    Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &address.port().to_string()])
        .args(["--save", "", "--protected-mode", "no"])
        .args(persistence)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run redis-server ({err}); scripts/test.sh installs Debian's redis-server"
            )
        })
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
