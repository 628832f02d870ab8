//! The processes a scenario runs against, each started pinned to a core (`taskset`) on a free
//! loopback port, inheriting the harness's file limit, and killed when dropped: the harness's own
//! echo and tonic servers, layotto-rs, and HAProxy, nginx and redis-server (when installed).

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

/// A started server.
pub(crate) struct Process {
    /// What it is ("layotto-rs", "haproxy", ...).
    pub name: String,
    /// Where it listens.
    pub address: SocketAddr,
    /// Where a layotto-rs serving the API also serves Dapr's HTTP API.
    pub dapr_http: Option<SocketAddr>,
    /// The core it is pinned to.
    pub core: Option<usize>,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Process {
    /// Runs `program args` pinned to `core`, then waits until `address` (and `dapr_http`)
    /// accept connections.
    fn start(
        name: &str,
        core: Option<usize>,
        program: &Path,
        args: &[String],
        (address, dapr_http): (SocketAddr, Option<SocketAddr>),
        dir: tempfile::TempDir,
    ) -> Result<Self> {
        let mut command = match core {
            Some(core) => {
                let mut taskset = Command::new("taskset");
                taskset.args(["-c", &core.to_string()]).arg(program);
                taskset
            }
            None => Command::new(program),
        };
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(
                dir.path().join("stderr"),
            )?));
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        for listen in std::iter::once(address).chain(dapr_http) {
            while TcpStream::connect(listen).is_err() {
                if let Some(status) = child.try_wait()? {
                    let stderr =
                        std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
                    bail!("{name} exited ({status}): {stderr}");
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("{name} did not listen on {listen}");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(Self {
            name: name.to_owned(),
            address,
            dapr_http,
            core,
            child,
            _dir: dir,
        })
    }

    /// Its process id (of the server itself: `taskset` execs it).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, in KiB (`VmRSS` of the process itself: `taskset` execs it).
    pub(crate) fn rss_kib(&self) -> Result<u64> {
        self.status_kib("VmRSS:")
    }

    /// The anonymous part of [`Self::rss_kib`] (`RssAnon`): heap, stacks, what the process
    /// wrote. The rest is mapped files, mostly its code, which every process running the same
    /// binary on a host shares.
    pub(crate) fn anon_kib(&self) -> Result<u64> {
        self.status_kib("RssAnon:")
    }

    fn status_kib(&self, field: &str) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .with_context(|| format!("no {field} in /proc status"))
    }
}

impl Process {
    /// CPU time it has used so far (user + system), in seconds (`/proc` counts in 1/100 s).
    pub(crate) fn cpu_seconds(&self) -> Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the command name (which may hold spaces) start at `state`, field 3.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("malformed /proc stat")?
            .1
            .split_whitespace()
            .collect();
        let ticks = |field: usize| -> Result<f64> {
            Ok(fields
                .get(field - 3)
                .context("short /proc stat")?
                .parse::<f64>()?)
        };
        Ok((ticks(14)? + ticks(15)?) / 100.0)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback address nobody listens on right now.
pub(crate) fn free_address() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The harness's own echo server.
pub(crate) fn echo(core: Option<usize>) -> Result<Process> {
    let address = free_address()?;
    let args = ["echo-server".into(), "--listen".into(), address.to_string()];
    Process::start(
        "echo",
        core,
        &std::env::current_exe()?,
        &args,
        (address, None),
        tempfile::tempdir()?,
    )
}

/// The harness's tonic reference server.
pub(crate) fn tonic_reference(core: Option<usize>) -> Result<Process> {
    let address = free_address()?;
    let args = [
        "tonic-server".into(),
        "--listen".into(),
        address.to_string(),
    ];
    Process::start(
        "tonic",
        core,
        &std::env::current_exe()?,
        &args,
        (address, None),
        tempfile::tempdir()?,
    )
}

/// What a layotto-rs under test serves.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role {
    /// A `tcp_proxy` to this upstream.
    TcpProxy(SocketAddr),
    /// The gRPC API (LayOtto's and Dapr's) with the embedded default's `helloworld`
    /// `quick_start_demo` and in-memory `state_demo`, plus a redis state store `state_redis` on
    /// this redis when given, and Dapr's HTTP API on a second listener when asked.
    Api {
        /// The redis of `state_redis`.
        redis: Option<SocketAddr>,
        /// Whether a `dapr_http` listener serves Dapr's HTTP API too.
        dapr_http: bool,
    },
}

/// The layotto-rs under test: its binary and what its command line adds to `start`.
#[derive(Debug, Clone)]
pub(crate) struct Layotto {
    /// The binary.
    pub binary: std::path::PathBuf,
    /// Arguments after the harness's own (`--log-level debug`, say).
    pub extra_args: Vec<String>,
}

/// layotto-rs on one shard, in `role`.
pub(crate) fn layotto(layotto: &Layotto, core: Option<usize>, role: Role) -> Result<Process> {
    let dir = tempfile::tempdir()?;
    let address = free_address()?;
    let listener = |name: &str, address: SocketAddr, filter: serde_json::Value| {
        serde_json::json!({
            "name": name, "address": address.to_string(),
            "filter_chains": [{"filters": [filter]}]
        })
    };
    let (listeners, clusters, dapr_http) = match role {
        Role::TcpProxy(upstream) => (
            vec![listener(
                "bench",
                address,
                serde_json::json!({"type": "tcp_proxy", "config": {"cluster": "echo"}}),
            )],
            vec![serde_json::json!({"name": "echo", "hosts": [{"address": upstream.to_string()}]})],
            None,
        ),
        Role::Api { redis, dapr_http } => {
            let mut state =
                serde_json::json!({"state_demo": {"type": "in-memory", "metadata": {}}});
            if let Some(redis) = redis {
                state["state_redis"] = serde_json::json!(
                    {"type": "redis", "metadata": {"redisHost": redis.to_string()}}
                );
            }
            let grpc = serde_json::json!({"type": "grpc", "config": {
                "server_name": "runtime", "grpc_config": {
                    "hellos": {"quick_start_demo": {"type": "helloworld", "hello": "greeting"}},
                    "state": state
                }
            }});
            let mut listeners = vec![listener("bench", address, grpc)];
            let dapr_http = dapr_http.then(free_address).transpose()?;
            if let Some(dapr_http) = dapr_http {
                listeners.push(listener(
                    "dapr_http",
                    dapr_http,
                    serde_json::json!({"type": "dapr_http"}),
                ));
            }
            (listeners, Vec::new(), dapr_http)
        }
    };
    let config = serde_json::json!({
        "servers": [{"default_log_level": "WARN", "listeners": listeners}],
        "cluster_manager": {"clusters": clusters}
    });
    let path = dir.path().join("config.json");
    std::fs::write(&path, config.to_string())?;
    let mut args = vec![
        "start".into(),
        "-c".into(),
        path.display().to_string(),
        "--shards".into(),
        "1".into(),
    ];
    args.extend(layotto.extra_args.iter().cloned());
    Process::start(
        "layotto-rs",
        core,
        &layotto.binary,
        &args,
        (address, dapr_http),
        dir,
    )
}

/// redis-server without persistence on a free loopback port, if installed.
pub(crate) fn redis(core: Option<usize>) -> Result<Option<Process>> {
    let Some(program) = installed("redis-server") else {
        return Ok(None);
    };
    let dir = tempfile::tempdir()?;
    let address = free_address()?;
    let args = [
        "--bind".into(),
        "127.0.0.1".into(),
        "--port".into(),
        address.port().to_string(),
        "--save".into(),
        String::new(),
        "--appendonly".into(),
        "no".into(),
        "--protected-mode".into(),
        "no".into(),
        "--dir".into(),
        dir.path().display().to_string(),
    ];
    Process::start("redis", core, &program, &args, (address, None), dir).map(Some)
}

/// HAProxy in TCP mode with one thread, if installed.
pub(crate) fn haproxy(core: Option<usize>, upstream: SocketAddr) -> Result<Option<Process>> {
    let Some(program) = installed("haproxy") else {
        return Ok(None);
    };
    let dir = tempfile::tempdir()?;
    let address = free_address()?;
    // Two descriptors per proxied connection, within the inherited limit.
    let (soft, _) = rlimit::Resource::NOFILE.get()?;
    let maxconn = soft.saturating_sub(100) / 2;
    let config = format!(
        "global\n  maxconn {maxconn}\n  nbthread 1\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n\
         listen l4\n  bind {address}\n  server echo {upstream}\n"
    );
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, config)?;
    let args = ["-db".into(), "-f".into(), path.display().to_string()];
    Process::start("haproxy", core, &program, &args, (address, None), dir).map(Some)
}

/// nginx with the `stream` module and one worker (no master), if installed.
pub(crate) fn nginx(core: Option<usize>, upstream: SocketAddr) -> Result<Option<Process>> {
    let Some(program) = installed("nginx") else {
        return Ok(None);
    };
    let module = Path::new("/usr/lib/nginx/modules/ngx_stream_module.so");
    let dir = tempfile::tempdir()?;
    let address = free_address()?;
    let load = if module.exists() {
        format!("load_module {};\n", module.display())
    } else {
        String::new()
    };
    let config = format!(
        "{load}daemon off;\nmaster_process off;\nworker_processes 1;\n\
         pid {pid};\nerror_log stderr error;\n\
         events {{ worker_connections 20000; }}\n\
         stream {{ server {{ listen {address}; proxy_pass {upstream}; }} }}\n",
        pid = dir.path().join("nginx.pid").display(),
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, config)?;
    let args = [
        "-c".into(),
        path.display().to_string(),
        "-p".into(),
        dir.path().display().to_string(),
        "-e".into(),
        "stderr".into(),
    ];
    match Process::start("nginx", core, &program, &args, (address, None), dir) {
        Ok(process) => Ok(Some(process)),
        Err(err) if err.to_string().contains("stream") => {
            eprintln!("nginx has no stream module: skipped ({err})");
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// Where `program` is installed, if it is.
pub(crate) fn installed(program: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.exists())
}
