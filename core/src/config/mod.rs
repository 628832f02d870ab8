//! LayOtto's (MOSN-shaped) JSON configuration as typed structs. Loading is text in, a [`Config`]
//! out, with every problem recorded in [`Findings`] by its JSON path so that all of them can be
//! reported at once; its only I/O is checking that a log file can be opened (never creating it).
//! Filter-specific `config` blocks are kept as JSON and validated by the crate that owns the
//! filter. Runs on the main thread before shards start.

mod findings;
mod host_health;

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use serde_json::Value;

pub use findings::{ConfigIssue, Findings, ROOT, index, join};
pub use host_health::{
    DEFAULT_BASE_EJECTION_TIME, DEFAULT_CHECK_INTERVAL, DEFAULT_CHECK_TIMEOUT,
    DEFAULT_CONSECUTIVE_FAILURES, DEFAULT_MAX_EJECTION_PERCENT, DEFAULT_MAX_EJECTION_TIME,
    HealthCheckConfig, OutlierDetectionConfig,
};

/// How long open connections may finish after a stop signal unless `graceful_timeout` says.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a connection to an upstream host may take unless the cluster's `connect_timeout` says.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest duration a config may give (timeouts, windows): a day. Longer is surely a
/// mistake, and far longer would overflow a deadline (`Instant + Duration` panics).
pub const MAX_DURATION: Duration = Duration::from_secs(86_400);

/// Top-level keys that only tune MOSN internals (or features not served yet): logged as ignored.
const IGNORED_TOP_LEVEL: &[&str] = &[
    "admin",
    "pprof",
    "tracing",
    "dynamic_resources",
    "static_resources",
    "close_graceful",
    "inherit_old_mosnconfig",
    "third_part_codec",
    "extends",
    "wasm_global_plugins",
    "plugin",
];
const IGNORED_SERVER: &[&str] = &[
    "mosn_server_name",
    "global_log_roller",
    "processor",
    "use_netpoll_mode",
    "optimize_local_write",
];
const IGNORED_LISTENER: &[&str] = &[
    "type",
    "access_logs",
    "inspector",
    "use_original_dst",
    "connection_idle_timeout",
    "per_connection_buffer_limit_bytes",
    "listener_filters",
];
const IGNORED_FILTER_CHAIN: &[&str] = &["match", "tls_context", "tls_context_set"];
const IGNORED_CLUSTER_MANAGER: &[&str] = &[
    "tls_context",
    "auto_discovery",
    "registry_use_health_check",
    "cluster_pool_enable",
];
const IGNORED_CLUSTER: &[&str] = &[
    "max_request_per_conn",
    "conn_buffer_limit_bytes",
    "circuit_breakers",
    "spec",
    "lb_subset_config",
    "original_dst_lb_config",
    "tls_context",
    "cluster_type",
    "dns_refresh_rate",
];
const IGNORED_HOST: &[&str] = &["metadata", "tls_disable", "hostname"];

/// A validated configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Where logs go.
    pub log_path: LogPath,
    /// Log level from `default_log_level`, if given.
    pub log_level: Option<LogLevel>,
    /// How long open connections may finish after SIGTERM/SIGINT (`graceful_timeout`).
    pub drain_timeout: Duration,
    /// File descriptors proxy listeners leave to the others (`reserved_fds`; `None`: the
    /// default of [`crate::caps::DescriptorCeiling::for_capped_listener`]).
    pub reserved_fds: Option<usize>,
    /// The listeners, in file order.
    pub listeners: Vec<ListenerConfig>,
    /// Upstream clusters by name order of the file.
    pub clusters: Vec<ClusterConfig>,
    /// MOSN's route tables (`servers[0].routers`), each validated by the filter that uses it.
    pub routers: Vec<RouterConfig>,
    /// Where to serve Prometheus metrics (`metrics.sinks[type=prometheus]`), if anywhere.
    pub prometheus: Option<PrometheusSink>,
    /// MOSN's top-level `pid`: where the binary writes its pid file, if the file says.
    pub pid_file: Option<PathBuf>,
}

/// The Prometheus sink: an HTTP endpoint for scrapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusSink {
    /// Where to listen: `config.port` on 127.0.0.1, unless `config.address` (an IP) says otherwise.
    pub address: SocketAddr,
    /// The path scrapes use (`config.endpoint`, default `/metrics`).
    pub endpoint: String,
}

/// Keys of MOSN's `metrics` block that tune its own stats machinery.
const IGNORED_METRICS: &[&str] = &[
    "stats_matcher",
    "shm_zone",
    "shm_size",
    "flush_mosn",
    "lazy_flush",
];
/// Keys of MOSN's prometheus sink layotto-rs does not need.
const IGNORED_PROMETHEUS: &[&str] = &[
    "disable_collect_go",
    "disable_collect_process",
    "percentiles",
];

#[derive(Deserialize)]
struct RawMetrics {
    #[serde(default)]
    sinks: Vec<RawSink>,
}

#[derive(Deserialize)]
struct RawSink {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: Value,
}

#[derive(Deserialize)]
struct RawPrometheus {
    port: u16,
    address: Option<String>,
    endpoint: Option<String>,
}

fn read_metrics(value: &Value, config: &mut Config, findings: &mut Findings) {
    let Some(metrics) = findings.decode::<RawMetrics>(value, "metrics", IGNORED_METRICS) else {
        return;
    };
    for (i, sink) in metrics.sinks.iter().enumerate() {
        let path = index("metrics.sinks", i);
        if sink.kind != "prometheus" {
            findings.ignore(
                &path,
                format!(
                    "metrics sink \"{}\" is not served; only prometheus is",
                    sink.kind
                ),
            );
            continue;
        }
        let config_path = join(&path, "config");
        let Some(raw) =
            findings.decode::<RawPrometheus>(&sink.config, &config_path, IGNORED_PROMETHEUS)
        else {
            continue;
        };
        let ip = match raw.address.as_deref().unwrap_or("127.0.0.1").parse() {
            Ok(ip) => ip,
            Err(_) => {
                findings.error(
                    join(&config_path, "address"),
                    format!("invalid IP address {:?}", raw.address.unwrap_or_default()),
                );
                continue;
            }
        };
        let endpoint = raw.endpoint.unwrap_or_else(|| "/metrics".into());
        if !endpoint.starts_with('/') {
            findings.error(
                join(&config_path, "endpoint"),
                "must be a path starting with /",
            );
        }
        if config.prometheus.is_some() {
            findings.error(&path, "a second prometheus sink");
        }
        config.prometheus = Some(PrometheusSink {
            address: SocketAddr::new(ip, raw.port),
            endpoint,
        });
    }
}

/// Destination of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LogPath {
    /// Standard output (`"stdout"`, the default).
    #[default]
    Stdout,
    /// Standard error (`"stderr"`).
    Stderr,
    /// A file, appended to.
    File(PathBuf),
}

/// Log verbosity, MOSN's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation (default).
    Info,
    /// Something unexpected but handled.
    Warn,
    /// Failures (MOSN's FATAL and CRITICAL map here).
    Error,
}

impl LogLevel {
    /// Parses a MOSN level name, case-insensitively.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.to_ascii_uppercase().as_str() {
            "TRACE" => Ok(Self::Trace),
            "DEBUG" => Ok(Self::Debug),
            "INFO" => Ok(Self::Info),
            "WARN" | "WARNING" => Ok(Self::Warn),
            "ERROR" | "FATAL" | "CRITICAL" => Ok(Self::Error),
            _ => Err(format!(
                "unknown log level \"{text}\" (expected TRACE, DEBUG, INFO, WARN or ERROR)"
            )),
        }
    }

    /// The level as a `tracing` filter directive.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// One listener: where it listens and which filters serve its connections.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Its name (`name`, or the address when absent).
    pub name: String,
    /// Address to bind; for a Unix socket listener the stand-in
    /// [`crate::listener::UNIX_STAND_IN`] (the socket's path is `unix_path`).
    pub address: SocketAddr,
    /// `network` `unix`: the path of the Unix domain socket to listen on (`address`).
    pub unix_path: Option<PathBuf>,
    /// JSON path of this listener, for errors found later.
    pub path: String,
    /// `filter_chains[0].filters`, in order.
    pub network_filters: Vec<FilterConfig>,
    /// `stream_filters`, in order.
    pub stream_filters: Vec<FilterConfig>,
}

/// One filter entry: its type and its own configuration, validated by the filter's crate.
#[derive(Debug, Clone)]
pub struct FilterConfig {
    /// The `type` key.
    pub kind: String,
    /// The `config` block (`null` when absent).
    pub config: Value,
    /// JSON path of this filter entry.
    pub path: String,
}

/// One of MOSN's route tables, `servers[0].routers[i]`: found by its `router_config_name`; the
/// rest (`virtual_hosts`, …) is decoded by the filter naming it (the HTTP `proxy`).
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Its `router_config_name`.
    pub name: String,
    /// The whole entry.
    pub config: Value,
    /// JSON path of this entry.
    pub path: String,
}

/// How a cluster picks a host (`lb_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LbPolicy {
    /// `LB_ROUNDROBIN` (the default): hosts in turn, in proportion to their weights.
    #[default]
    RoundRobin,
    /// `LB_RANDOM`: a host drawn at random, in proportion to its weight.
    Random,
}

/// MOSN's bounds of a host's `weight`; values outside are clamped, as MOSN does.
pub const HOST_WEIGHTS: std::ops::RangeInclusive<u32> = 1..=128;

/// An upstream cluster from `cluster_manager.clusters`.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Its name, referenced by filters.
    pub name: String,
    /// Host addresses, balanced round-robin.
    pub hosts: Vec<SocketAddr>,
    /// Each host's `weight` (default 1, clamped to [`HOST_WEIGHTS`]), in the order of `hosts`.
    pub weights: Vec<u32>,
    /// How a host is picked (`lb_type`).
    pub lb: LbPolicy,
    /// Limit on establishing an upstream connection.
    pub connect_timeout: Duration,
    /// Active TCP checks of the hosts (`health_check`), if configured.
    pub health_check: Option<HealthCheckConfig>,
    /// Ejection of hosts whose connects keep failing (`outlier_detection`; on by default).
    pub outlier_detection: OutlierDetectionConfig,
    /// JSON path of this cluster.
    pub path: String,
}

impl Config {
    /// Reads a configuration from JSON text, recording every problem in `findings`. The returned
    /// config holds what could be read; it is only usable if `findings.errors` is empty.
    pub fn parse(text: &str, findings: &mut Findings) -> Config {
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(err) => {
                findings.error("", format!("not valid JSON: {err}"));
                return Config::default();
            }
        };
        let Some(raw) = findings.decode::<RawConfig>(&value, "", IGNORED_TOP_LEVEL) else {
            return Config::default();
        };
        let mut config = Config {
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            pid_file: raw.pid.filter(|pid| !pid.is_empty()).map(PathBuf::from),
            ..Config::default()
        };
        match raw.servers.as_slice() {
            [] => findings.error("servers", "at least one server is required"),
            [server, rest @ ..] => {
                for (i, _) in rest.iter().enumerate() {
                    findings.error(
                        index("servers", i + 1),
                        "layotto-rs runs one server; move its listeners into servers[0]",
                    );
                }
                read_server(server, &mut config, findings);
            }
        }
        if let Some(manager) = raw.cluster_manager {
            read_clusters(&manager, &mut config, findings);
        }
        if let Some(metrics) = raw.metrics {
            read_metrics(&metrics, &mut config, findings);
        }
        check_unique(&config, findings);
        config
    }

    /// The route table called `name` (`router_config_name`).
    pub fn router(&self, name: &str) -> Option<&RouterConfig> {
        self.routers.iter().find(|r| r.name == name)
    }

    /// The cluster called `name`.
    pub fn cluster(&self, name: &str) -> Option<&ClusterConfig> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

#[derive(Deserialize)]
struct RawConfig {
    servers: Vec<Value>,
    cluster_manager: Option<Value>,
    metrics: Option<Value>,
    pid: Option<String>,
}

#[derive(Deserialize)]
struct RawServer {
    default_log_path: Option<String>,
    default_log_level: Option<String>,
    graceful_timeout: Option<String>,
    reserved_fds: Option<usize>,
    #[serde(default)]
    listeners: Vec<Value>,
    #[serde(default)]
    routers: Vec<Value>,
}

#[derive(Deserialize)]
struct RawListener {
    name: Option<String>,
    address: String,
    network: Option<String>,
    bind_port: Option<bool>,
    #[serde(default)]
    filter_chains: Vec<Value>,
    #[serde(default)]
    stream_filters: Vec<RawFilter>,
}

#[derive(Deserialize)]
struct RawFilterChain {
    #[serde(default)]
    filters: Vec<RawFilter>,
}

#[derive(Deserialize)]
struct RawFilter {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    config: Value,
}

#[derive(Deserialize)]
struct RawClusterManager {
    #[serde(default)]
    clusters: Vec<Value>,
}

#[derive(Deserialize)]
struct RawCluster {
    name: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    lb_type: Option<String>,
    connect_timeout: Option<String>,
    health_check: Option<Value>,
    outlier_detection: Option<Value>,
    #[serde(default)]
    hosts: Vec<Value>,
}

#[derive(Deserialize)]
struct RawHost {
    address: String,
    weight: Option<u32>,
}

fn read_server(value: &Value, config: &mut Config, findings: &mut Findings) {
    let path = index("servers", 0);
    let Some(server) = findings.decode::<RawServer>(value, &path, IGNORED_SERVER) else {
        return;
    };
    config.log_path = match server.default_log_path.as_deref() {
        None | Some("") | Some("stdout") => LogPath::Stdout,
        Some("stderr") => LogPath::Stderr,
        Some(file) => {
            if let Err(err) = check_log_file(Path::new(file)) {
                findings.error(join(&path, "default_log_path"), err);
            }
            LogPath::File(file.into())
        }
    };
    if let Some(level) = &server.default_log_level {
        match LogLevel::parse(level) {
            Ok(level) => config.log_level = Some(level),
            Err(err) => findings.error(join(&path, "default_log_level"), err),
        }
    }
    if let Some(timeout) = &server.graceful_timeout {
        match parse_duration(timeout) {
            Ok(timeout) => config.drain_timeout = timeout,
            Err(err) => findings.error(join(&path, "graceful_timeout"), err),
        }
    }
    config.reserved_fds = server.reserved_fds;
    let routers_path = join(&path, "routers");
    for (i, router) in server.routers.into_iter().enumerate() {
        let router_path = index(&routers_path, i);
        let name = router
            .get("router_config_name")
            .cloned()
            .map(serde_json::from_value::<String>);
        match name {
            Some(Ok(name)) => config.routers.push(RouterConfig {
                name,
                config: router,
                path: router_path,
            }),
            Some(Err(err)) => {
                findings.error(join(&router_path, "router_config_name"), err.to_string())
            }
            None => findings.error(
                join(&router_path, "router_config_name"),
                "missing: the name proxies refer to",
            ),
        }
    }
    let listeners_path = join(&path, "listeners");
    if server.listeners.is_empty() {
        findings.error(listeners_path.clone(), "at least one listener is required");
    }
    for (i, listener) in server.listeners.iter().enumerate() {
        if let Some(listener) = read_listener(listener, &index(&listeners_path, i), findings) {
            config.listeners.push(listener);
        }
    }
}

fn read_listener(value: &Value, path: &str, findings: &mut Findings) -> Option<ListenerConfig> {
    let raw = findings.decode::<RawListener>(value, path, IGNORED_LISTENER)?;
    if raw.bind_port == Some(false) {
        findings.error(
            join(path, "bind_port"),
            "virtual listeners (bind_port: false) are not supported; use true",
        );
    }
    let (address, unix_path) = match raw.network.as_deref() {
        None | Some("" | "tcp" | "tcp4" | "tcp6") => {
            let address = parse_socket_addr(&raw.address)
                .map_err(|err| findings.error(join(path, "address"), err))
                .ok();
            (address, None)
        }
        Some("unix") if raw.address.is_empty() => {
            findings.error(
                join(path, "address"),
                "a unix listener needs the socket's path",
            );
            (None, None)
        }
        Some("unix") => (
            Some(crate::listener::UNIX_STAND_IN),
            Some(PathBuf::from(&raw.address)),
        ),
        Some(other) => {
            findings.error(
                join(path, "network"),
                format!("network \"{other}\" is not supported (tcp or unix)"),
            );
            (None, None)
        }
    };
    let chains_path = join(path, "filter_chains");
    let mut network_filters = Vec::new();
    match raw.filter_chains.as_slice() {
        [] => findings.error(
            chains_path,
            "a filter chain with at least one filter is required",
        ),
        [chain, rest @ ..] => {
            for (i, _) in rest.iter().enumerate() {
                findings.error(
                    index(&chains_path, i + 1),
                    "layotto-rs serves one filter chain per listener",
                );
            }
            let chain_path = index(&chains_path, 0);
            if let Some(chain) =
                findings.decode::<RawFilterChain>(chain, &chain_path, IGNORED_FILTER_CHAIN)
            {
                let filters_path = join(&chain_path, "filters");
                if chain.filters.is_empty() {
                    findings.error(filters_path.clone(), "at least one filter is required");
                }
                network_filters = filter_configs(chain.filters, &filters_path);
            }
        }
    }
    let stream_filters = filter_configs(raw.stream_filters, &join(path, "stream_filters"));
    Some(ListenerConfig {
        name: raw.name.unwrap_or_else(|| raw.address.clone()),
        address: address?,
        unix_path,
        path: path.to_owned(),
        network_filters,
        stream_filters,
    })
}

fn filter_configs(filters: Vec<RawFilter>, path: &str) -> Vec<FilterConfig> {
    filters
        .into_iter()
        .enumerate()
        .map(|(i, filter)| FilterConfig {
            kind: filter.kind,
            config: filter.config,
            path: index(path, i),
        })
        .collect()
}

fn read_clusters(value: &Value, config: &mut Config, findings: &mut Findings) {
    let path = "cluster_manager";
    let Some(manager) = findings.decode::<RawClusterManager>(value, path, IGNORED_CLUSTER_MANAGER)
    else {
        return;
    };
    for (i, cluster) in manager.clusters.iter().enumerate() {
        let cluster_path = index(&join(path, "clusters"), i);
        if let Some(cluster) = read_cluster(cluster, &cluster_path, findings) {
            config.clusters.push(cluster);
        }
    }
}

fn read_cluster(value: &Value, path: &str, findings: &mut Findings) -> Option<ClusterConfig> {
    let raw = findings.decode::<RawCluster>(value, path, IGNORED_CLUSTER)?;
    if let Some(kind) = raw.kind.as_deref()
        && kind != "SIMPLE"
    {
        findings.error(
            join(path, "type"),
            format!("cluster type \"{kind}\" is not supported (expected \"SIMPLE\")"),
        );
    }
    let lb = match raw.lb_type.as_deref() {
        None | Some("LB_ROUNDROBIN") => LbPolicy::RoundRobin,
        Some("LB_RANDOM") => LbPolicy::Random,
        Some(lb) => {
            findings.error(
                join(path, "lb_type"),
                format!(
                    "load balancer \"{lb}\" is not supported (expected \"LB_ROUNDROBIN\" or \"LB_RANDOM\")"
                ),
            );
            LbPolicy::RoundRobin
        }
    };
    let connect_timeout = match raw.connect_timeout.as_deref().map(parse_duration) {
        None => DEFAULT_CONNECT_TIMEOUT,
        Some(Ok(timeout)) if !timeout.is_zero() => timeout,
        Some(Ok(_)) => {
            findings.error(join(path, "connect_timeout"), "must be greater than zero");
            DEFAULT_CONNECT_TIMEOUT
        }
        Some(Err(err)) => {
            findings.error(join(path, "connect_timeout"), err);
            DEFAULT_CONNECT_TIMEOUT
        }
    };
    let hosts_path = join(path, "hosts");
    if raw.hosts.is_empty() {
        findings.error(hosts_path.clone(), "at least one host is required");
    }
    let mut hosts = Vec::with_capacity(raw.hosts.len());
    let mut weights = Vec::with_capacity(raw.hosts.len());
    for (i, host) in raw.hosts.iter().enumerate() {
        let host_path = index(&hosts_path, i);
        let Some(host) = findings.decode::<RawHost>(host, &host_path, IGNORED_HOST) else {
            continue;
        };
        match parse_socket_addr(&host.address) {
            Ok(address) => hosts.push(address),
            Err(err) => {
                findings.error(join(&host_path, "address"), err);
                continue;
            }
        }
        let weight = host.weight.unwrap_or(1);
        let clamped = weight.clamp(*HOST_WEIGHTS.start(), *HOST_WEIGHTS.end());
        if clamped != weight {
            findings.ignore(
                join(&host_path, "weight"),
                format!("weight {weight} taken as {clamped}, as MOSN clamps it"),
            );
        }
        weights.push(clamped);
    }
    let health_check = raw.health_check.as_ref().and_then(|check| {
        host_health::read_health_check(check, &join(path, "health_check"), findings)
    });
    let outlier_detection = match &raw.outlier_detection {
        None => OutlierDetectionConfig::default(),
        Some(outlier) => {
            host_health::read_outlier_detection(outlier, &join(path, "outlier_detection"), findings)
                .unwrap_or_default()
        }
    };
    Some(ClusterConfig {
        name: raw.name,
        hosts,
        weights,
        lb,
        connect_timeout,
        health_check,
        outlier_detection,
        path: path.to_owned(),
    })
}

fn check_unique(config: &Config, findings: &mut Findings) {
    let mut names = HashMap::new();
    let mut addresses = HashMap::new();
    let mut unix_paths = HashMap::new();
    for listener in &config.listeners {
        if let Some(first) = names.insert(listener.name.as_str(), listener.path.as_str()) {
            findings.error(
                join(&listener.path, "name"),
                format!(
                    "listener name \"{}\" is already used by {first}",
                    listener.name
                ),
            );
        }
        if listener.address.port() != 0
            && let Some(first) = addresses.insert(listener.address, listener.path.as_str())
        {
            findings.error(
                join(&listener.path, "address"),
                format!("address {} is already used by {first}", listener.address),
            );
        }
        if let Some(socket) = &listener.unix_path
            && let Some(first) = unix_paths.insert(socket, listener.path.as_str())
        {
            findings.error(
                join(&listener.path, "address"),
                format!("socket {} is already used by {first}", socket.display()),
            );
        }
    }
    let mut routers = HashMap::new();
    for router in &config.routers {
        if let Some(first) = routers.insert(router.name.as_str(), router.path.as_str()) {
            findings.error(
                join(&router.path, "router_config_name"),
                format!("router \"{}\" is already declared at {first}", router.name),
            );
        }
    }
    let mut clusters = HashMap::new();
    for cluster in &config.clusters {
        if let Some(first) = clusters.insert(cluster.name.as_str(), cluster.path.as_str()) {
            findings.error(
                join(&cluster.path, "name"),
                format!(
                    "cluster name \"{}\" is already used by {first}",
                    cluster.name
                ),
            );
        }
    }
}

/// A number LayOtto's configs write either as a JSON number or as a string (`"10"`).
pub fn loose_number(value: &Value) -> Option<f64> {
    let number = match value {
        Value::String(text) => text.trim().parse::<f64>().ok()?,
        Value::Number(number) => number.as_f64()?,
        _ => return None,
    };
    number.is_finite().then_some(number)
}

/// Parses `ip:port` (no host names: resolution would be I/O).
pub fn parse_socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("invalid socket address \"{text}\" (expected ip:port)"))
}

/// Parses a duration such as `"15s"`, `"500ms"` or `"1m30s"`, at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|err| format!("invalid duration \"{text}\": {err} (expected e.g. \"15s\")"))?;
    if duration > MAX_DURATION {
        return Err(format!(
            "duration \"{text}\" is too long (at most {})",
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(duration)
}

/// Checks that the log can be appended to `path`, without creating it: an existing regular file
/// must open for appending; a new one needs an existing directory. (Devices and pipes are taken
/// as they are: opening a pipe could block.)
fn check_log_file(path: &Path) -> Result<(), String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(format!("{shown} is a directory, not a log file")),
        Ok(meta) if meta.is_file() => std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|err| format!("cannot open log file {shown} for appending: {err}")),
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let dir = path
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            match std::fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => Ok(()),
                Ok(_) => Err(format!(
                    "cannot create log file {shown}: {} is not a directory",
                    dir.display()
                )),
                Err(err) => Err(format!(
                    "cannot create log file {shown}: directory {}: {err}",
                    dir.display()
                )),
            }
        }
        Err(err) => Err(format!("cannot open log file {shown}: {err}")),
    }
}

#[cfg(test)]
mod tests;
