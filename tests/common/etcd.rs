//! A real etcd server for the tests (Debian's `etcd-server`, installed by `scripts/test.sh`): on
//! free loopback ports with a temp data dir, stopped and restarted on the same ports and data,
//! paused with SIGSTOP, and read through its own `/health` and `/metrics` endpoints; also as a
//! cluster of several members on loopback ([`EtcdCluster`]).
//!
//! Ports: etcd cannot be given port 0, so it gets ports found free just before. Another test (or
//! another process) may take one in between; etcd then exits, which [`EtcdServer::start`] sees
//! (the process is gone, or not the one listening there) and tries again on new ports.

use std::{
    cell::Cell,
    net::{SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::{WAIT, http_get, listens_on, start_on_free_ports};

/// A running (or stopped) etcd member (alone, a single-member cluster); killed on drop.
pub struct EtcdServer {
    name: String,
    /// `--initial-cluster`: every member's `name=peer url`.
    initial_cluster: String,
    child: Option<Child>,
    /// Frozen with SIGSTOP.
    paused: Cell<bool>,
    client: SocketAddr,
    peer: SocketAddr,
    data: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts a single-member etcd and waits until it reports healthy.
    pub fn start() -> Self {
        start_on_free_ports("etcd", || {
            let mut server = Self::member("test", free_address());
            server.initial_cluster = format!("test=http://{}", server.peer);
            server.launch().map(|()| server)
        })
    }

    /// A member named `name` with its peer port at `peer`, not started.
    fn member(name: &str, peer: SocketAddr) -> Self {
        Self {
            name: name.into(),
            initial_cluster: String::new(),
            child: None,
            paused: Cell::new(false),
            client: free_address(),
            peer,
            data: tempfile::tempdir().unwrap(),
        }
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
        self.spawn();
        self.wait_ready()
    }

    /// Runs etcd on this server's ports and data.
    fn spawn(&mut self) {
        let client_url = format!("http://{}", self.client);
        let peer_url = format!("http://{}", self.peer);
        let child = Command::new("etcd")
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(self.data.path().join("member-data"))
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
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
        self.child = Some(child);
    }

    /// Waits until the spawned etcd listens on both ports and reports healthy (it has a
    /// leader); `Err` with its log if it exited (a port was taken).
    fn wait_ready(&mut self) -> Result<(), String> {
        let pid = self.child.as_ref().expect("etcd was spawned").id();
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
        self.paused.set(true);
    }

    /// Thaws a paused etcd (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
        self.paused.set(false);
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

/// A running etcd cluster of several members on loopback; every member killed on drop.
pub struct EtcdCluster {
    members: Vec<EtcdServer>,
}

impl EtcdCluster {
    /// Starts `size` members, waits until every one reports healthy (a leader is elected).
    pub fn start(size: usize) -> Self {
        start_on_free_ports("etcd cluster", || {
            let mut members: Vec<EtcdServer> = (0..size)
                .map(|i| EtcdServer::member(&format!("m{i}"), free_address()))
                .collect();
            let initial_cluster = members
                .iter()
                .map(|m| format!("{}=http://{}", m.name, m.peer))
                .collect::<Vec<_>>()
                .join(",");
            for member in &mut members {
                member.initial_cluster = initial_cluster.clone();
                member.spawn();
            }
            for member in &mut members {
                member.wait_ready()?;
            }
            Ok(Self { members })
        })
    }

    /// Every member's client endpoint, comma-separated (LayOtto's `endpoints` metadata), the
    /// leader's first: a client's first choice is then the member a test stops as leader.
    pub fn endpoints_leader_first(&mut self) -> String {
        let leader = self.leader().endpoint();
        let mut endpoints = vec![leader.clone()];
        endpoints.extend(
            self.members
                .iter()
                .map(EtcdServer::endpoint)
                .filter(|e| *e != leader),
        );
        endpoints.join(",")
    }

    /// The member that is the leader now, among the running ones that are not paused
    /// (bounded polling of their `/metrics` until one says so).
    pub fn leader(&mut self) -> &mut EtcdServer {
        let deadline = Instant::now() + WAIT;
        loop {
            let leader = self.members.iter().position(|m| {
                m.child.is_some()
                    && !m.paused.get()
                    && http_get(m.client, "/metrics").is_some_and(|(_, body)| {
                        body.lines().any(|line| line == "etcd_server_is_leader 1")
                    })
            });
            if let Some(leader) = leader {
                return &mut self.members[leader];
            }
            assert!(Instant::now() < deadline, "no etcd member became leader");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A loopback address nobody listens on right now.
pub fn free_address() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
