//! A real zookeeper server for the tests (Debian's `zookeeper`, installed by `scripts/test.sh`):
//! standalone on a free loopback port with a temp data dir and a 250 ms tick, so sessions last
//! 0.5 to [`MAX_SESSION_TIMEOUT`]; stopped (SIGKILL, as a crash would) and restarted on the same
//! port and data. The JVM runs under a small shell that kills it and removes the data dir when
//! its stdin closes, which is also when the test process ends: a server shared by the tests of
//! one binary ([`ZookeeperServer::shared`]) never outlives the binary.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::OnceLock,
    thread,
    time::{Duration, Instant},
};

use super::{WAIT, etcd::free_address};

/// The longest session the server grants (20 ticks): a session whose client is gone ends at
/// most this long after its last heartbeat.
pub const MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(5);

/// A running (or stopped) standalone zookeeper.
pub struct ZookeeperServer {
    child: Option<Child>,
    address: SocketAddr,
    dir: PathBuf,
    /// What the shell does with the data dir when it stops the JVM: `keep` (for a restart;
    /// `Drop` removes it) or `remove` (the shared server, never dropped).
    on_exit: &'static str,
}

impl ZookeeperServer {
    /// Starts zookeeper and waits until it serves requests.
    pub fn start() -> Self {
        Self::start_with("keep")
    }

    /// One server for every test of this test binary (started by the first to ask).
    pub fn shared() -> &'static ZookeeperServer {
        static SHARED: OnceLock<ZookeeperServer> = OnceLock::new();
        SHARED.get_or_init(|| ZookeeperServer::start_with("remove"))
    }

    fn start_with(on_exit: &'static str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("zookeeper-test")
            .tempdir()
            .unwrap()
            .keep();
        let address = free_address();
        let config = format!(
            "tickTime=250\nminSessionTimeout=500\nmaxSessionTimeout={}\n\
             dataDir={}\nclientPortAddress=127.0.0.1\nclientPort={}\nmaxClientCnxns=0\n\
             preAllocSize=1024\nadmin.enableServer=false\n4lw.commands.whitelist=srvr\n",
            MAX_SESSION_TIMEOUT.as_millis(),
            dir.join("data").display(),
            address.port()
        );
        std::fs::write(dir.join("zoo.cfg"), config).unwrap();
        let mut server = Self {
            child: None,
            address,
            dir,
            on_exit,
        };
        server.restart();
        server
    }

    /// `host:port` for clients.
    pub fn endpoint(&self) -> String {
        self.address.to_string()
    }

    /// Starts zookeeper again on the same port and data (after [`ZookeeperServer::stop`]).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "zookeeper is already running");
        // The JVM in the background; `read` returns when our end of the pipe closes.
        let script = r#"java -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
            -Dzookeeper.forceSync=no -cp /usr/share/java/zookeeper.jar \
            org.apache.zookeeper.server.ZooKeeperServerMain "$1/zoo.cfg" 2>>"$1/zookeeper.log" &
            java=$!
            read -r _
            kill -9 "$java"
            wait "$java"
            [ "$2" = remove ] && rm -rf "$1""#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("zookeeper")
            .arg(&self.dir)
            .arg(self.on_exit)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while !self.answers() {
            assert!(
                Instant::now() < deadline,
                "zookeeper did not start (is Debian's zookeeper installed? scripts/test.sh \
                 installs it): {}",
                std::fs::read_to_string(self.dir.join("zookeeper.log")).unwrap_or_default()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops zookeeper (SIGKILL) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }

    /// Whether zookeeper serves requests: its `srvr` command answers with its version (`ruok`
    /// answers `imok` before the server takes sessions).
    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&self.address, Duration::from_secs(1))
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut answer = String::new();
        stream.write_all(b"srvr").is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && answer.starts_with("Zookeeper version")
    }
}

impl Drop for ZookeeperServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
