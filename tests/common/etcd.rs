//! A real etcd server for the tests (Debian's `etcd-server`, installed by `scripts/test.sh`): on
//! free loopback ports with a temp data dir, stopped and restarted on the same ports and data,
//! paused with SIGSTOP, and read through its own `/health` and `/metrics` endpoints.
//!
//! Ports: etcd cannot be given port 0, so it gets ports found free just before. Another test (or
//! another process) may take one in between; etcd then exits, which [`EtcdServer::start`] sees
//! (the process is gone, or not the one listening there) and tries again on new ports.

use std::{
    net::{SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::{WAIT, http_get, listens_on, start_on_free_ports};

/// A running (or stopped) single-member etcd cluster; killed on drop.
pub struct EtcdServer {
    child: Option<Child>,
    client: SocketAddr,
    peer: SocketAddr,
    data: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts etcd and waits until it reports healthy.
    pub fn start() -> Self {
        start_on_free_ports("etcd", || {
            let mut server = Self {
                child: None,
                client: free_address(),
                peer: free_address(),
                data: tempfile::tempdir().unwrap(),
            };
            server.launch().map(|()| server)
        })
    }

    /// `host:port` for clients.
    pub fn endpoint(&self) -> String {
        self.client.to_string()
    }

    /// Starts etcd again on the same ports and data (after [`EtcdServer::stop`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "etcd is already running");
        if let Err(complaint) = self.launch() {
            panic!("etcd did not restart on its ports: {complaint}");
        }
    }

    /// Runs etcd on this server's ports and data and waits until it listens on both and reports
    /// healthy; `Err` with its log if it exited (a port was taken).
    fn launch(&mut self) -> Result<(), String> {
        let client_url = format!("http://{}", self.client);
        let peer_url = format!("http://{}", self.peer);
        let child = Command::new("etcd")
            .args(["--name", "test"])
            .arg("--data-dir")
            .arg(self.data.path().join("member-data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("test={peer_url}")])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(self.data.path().join("etcd.log")).unwrap(),
            ))
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot run etcd ({err}); scripts/test.sh installs Debian's etcd-server")
            });
        let pid = child.id();
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        // Bounded polling of the external server's readiness.
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("etcd exited ({status}): {}", self.log()));
            }
            let ours = listens_on(pid, self.client.port()) && listens_on(pid, self.peer.port());
            if ours
                && http_get(self.client, "/health")
                    .is_some_and(|(_, body)| body.contains("\"true\""))
            {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy: {}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops etcd (SIGKILL, as a crash would) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes etcd (SIGSTOP): connections stay open but nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a paused etcd (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// The value of gauge `name` on etcd's `/metrics`.
    pub fn metric(&self, name: &str) -> f64 {
        let (_, body) = http_get(self.client, "/metrics").expect("etcd /metrics");
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("etcd has no metric {name}"))
    }

    /// Waits until gauge `name` equals `value` (bounded polling of etcd's own metrics).
    pub fn wait_metric(&self, name: &str, value: f64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let now = self.metric(name);
            if now == value {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} stayed {now}, expected {value}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("etcd is running").id();
        let status = Command::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.resume();
        }
        self.stop();
    }
}

/// A loopback address nobody listens on right now.
pub fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
