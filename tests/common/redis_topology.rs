//! Redis topologies for the scale-out tests, all on free loopback ports with temp directories and
//! killed on drop: a master with one replica watched by one sentinel ([`SentinelSetup`], short
//! `down-after-milliseconds` and `failover-timeout` so a failover takes seconds), and a 3-master
//! Redis Cluster ([`RedisCluster`]). Every node keeps an append-only file synced on every write.
//! Each wait is bounded polling of the servers' own state.

use std::{
    net::SocketAddr,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::{WAIT, etcd::free_address};

/// Sentinel's name for the master.
pub const MASTER_NAME: &str = "layotto-master";

/// One redis process (a node or a sentinel).
pub struct Node {
    child: Child,
    address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Starts `redis-server` on a free port with `args` (after its config file, if any) and
    /// waits until it answers PING.
    fn start(config: Option<&str>, args: &[&str]) -> Self {
        let address = free_address();
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new("redis-server");
        if let Some(config) = config {
            let path = dir.path().join("redis.conf");
            std::fs::write(&path, config).unwrap();
            command.arg(path);
        }
        command
            .args(["--bind", "127.0.0.1", "--port", &address.port().to_string()])
            .args(["--protected-mode", "no"])
            .args(args)
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = command.spawn().unwrap_or_else(|err| {
            panic!(
                "cannot run redis-server ({err}); scripts/test.sh installs Debian's redis-server"
            )
        });
        let node = Self {
            child,
            address,
            _dir: dir,
        };
        wait_for("redis to answer PING", || {
            node.query::<String>(&redis::cmd("PING")).is_ok()
        });
        node
    }

    fn data_node(args: &[&str]) -> Self {
        let mut all = vec![
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ];
        all.extend_from_slice(args);
        Self::start(None, &all)
    }

    /// `host:port`.
    pub fn endpoint(&self) -> String {
        self.address.to_string()
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Runs one command on a fresh connection of the test's own.
    pub fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> redis::RedisResult<T> {
        let mut connection = redis::Client::open(format!("redis://{}/", self.address))?
            .get_connection_with_timeout(Duration::from_secs(2))?;
        command.query(&mut connection)
    }

    /// One field of `INFO section`.
    fn info_field(&self, section: &str, field: &str) -> Option<String> {
        let info: String = self.query(redis::cmd("INFO").arg(section)).ok()?;
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .map(|value| value.trim().to_owned())
    }

    /// Kills it (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `condition` every 50 ms until it holds; panics after [`WAIT`].
pub fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A master, its replica and one sentinel watching them.
pub struct SentinelSetup {
    /// The master at start.
    pub master: Node,
    /// Its replica (the master after a failover).
    pub replica: Node,
    /// The sentinel.
    pub sentinel: Node,
}

impl SentinelSetup {
    /// Starts all three, waits until the replica is in sync and the sentinel knows it.
    pub fn start() -> Self {
        let master = Node::data_node(&[]);
        let replica = Node::data_node(&["--replicaof", "127.0.0.1", &master.port().to_string()]);
        wait_for("the replica to sync", || {
            replica
                .info_field("replication", "master_link_status")
                .as_deref()
                == Some("up")
        });
        let config = format!(
            "sentinel monitor {MASTER_NAME} 127.0.0.1 {port} 1\n\
             sentinel down-after-milliseconds {MASTER_NAME} 500\n\
             sentinel failover-timeout {MASTER_NAME} 2000\n",
            port = master.port()
        );
        let sentinel = Node::start(Some(&config), &["--sentinel"]);
        wait_for("the sentinel to see the replica", || {
            sentinel
                .query::<Vec<redis::Value>>(redis::cmd("SENTINEL").arg("replicas").arg(MASTER_NAME))
                .is_ok_and(|replicas| !replicas.is_empty())
        });
        Self {
            master,
            replica,
            sentinel,
        }
    }

    /// The master's port as the sentinel names it now.
    pub fn master_port(&self) -> Option<u16> {
        let (_, port): (String, u16) = self
            .sentinel
            .query(
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(MASTER_NAME),
            )
            .ok()?;
        Some(port)
    }

    /// Waits until the replica has every write the master acknowledged so far (`WAIT 1`).
    pub fn wait_replicated(&self) {
        let replicas: i64 = self
            .master
            .query(redis::cmd("WAIT").arg(1).arg(WAIT.as_millis() as u64))
            .unwrap();
        assert_eq!(replicas, 1, "the replica did not acknowledge the writes");
    }

    /// Kills the master and waits until the sentinel has promoted the replica.
    pub fn fail_over(&mut self) {
        self.master.kill();
        let promoted = self.replica.port();
        wait_for("the sentinel to promote the replica", || {
            self.master_port() == Some(promoted)
                && self.replica.info_field("replication", "role").as_deref() == Some("master")
        });
    }
}

/// A Redis Cluster of three masters (no replicas), slots spread by `redis-cli --cluster create`.
pub struct RedisCluster {
    /// Its nodes.
    pub nodes: Vec<Node>,
}

impl RedisCluster {
    /// Starts three cluster nodes, creates the cluster and waits until every node says `ok`.
    pub fn start() -> Self {
        let nodes: Vec<Node> = (0..3)
            .map(|_| {
                let bus = free_address().port().to_string();
                Node::data_node(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "2000",
                ])
            })
            .collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(nodes.iter().map(Node::endpoint))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run redis-cli --cluster create");
        assert!(status.success(), "redis-cli --cluster create failed");
        for node in &nodes {
            wait_for("the cluster to be ok", || {
                node.info_field_cluster().as_deref() == Some("ok")
            });
        }
        Self { nodes }
    }

    /// The seed nodes, comma-separated, for `redisHost`.
    pub fn endpoints(&self) -> String {
        self.nodes
            .iter()
            .map(Node::endpoint)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// How many keys each node holds.
    pub fn keys_per_node(&self) -> Vec<i64> {
        self.nodes
            .iter()
            .map(|node| node.query(&redis::cmd("DBSIZE")).unwrap())
            .collect()
    }
}

impl Node {
    /// `cluster_state` of `CLUSTER INFO`.
    fn info_field_cluster(&self) -> Option<String> {
        let info: String = self.query(redis::cmd("CLUSTER").arg("INFO")).ok()?;
        info.lines()
            .find_map(|line| line.strip_prefix("cluster_state:"))
            .map(|value| value.trim().to_owned())
    }
}
