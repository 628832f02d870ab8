//! layotto-rs as a library: the whole runtime started from a configuration, in the caller's
//! process. [`prepare`] reads and validates the configuration and builds every listener's filter
//! chain; [`Prepared::start`] connects the components, binds the listeners and starts the shards;
//! [`Running`] tells the address each listener is bound to, stops (the drain SIGTERM starts) and
//! [`Running::join`]s with the serve report. [`start`] does both steps at once.
//!
//! The `layotto` binary is a thin command line over this; the end-to-end tests start it in their
//! own process. Nothing here installs a tracing subscriber or signal handlers: that belongs to
//! whoever owns the process. Runs on the caller's thread; the shards run on their own pinned
//! threads and component clients on the backend pool's.
#![forbid(unsafe_code)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

pub use layotto_core::{
    CoreError,
    config::ConfigIssue,
    shard::{ListenerReport, ServeReport},
};
use layotto_core::{
    backend::{BackendHandle, BackendPool},
    caps::DescriptorCeiling,
    config::{Config, Findings},
    handler::HandlerFactory,
    health::HealthRegistry,
    listener,
    metrics::{ListenerMetrics, MetricsRegistry},
    shard::{ListenerStats, RunningShards, ServedListener, ShardPlan},
    shutdown::{self, ShutdownSignal, ShutdownTrigger},
};
use layotto_filters::{
    actuator,
    admin_http::AdminHttpFactory,
    chain::FilterChainFactory,
    registry::{BuildContext, FilterRegistry},
};
use layotto_runtime_api::{Runtime, components::app_callback::AppFlags};
use tracing::{info, warn};

/// Threads of the backend pool that runs tokio-based component clients (etcd, redis).
const BACKEND_THREADS: usize = 2;
/// Component calls admitted in flight on the backend pool before calls get UNAVAILABLE.
const BACKEND_CAPACITY: usize = 16_384;

/// How to run the configuration (what the command line adds to the file).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Number of shards; `None`: one per CPU the process may run on.
    pub shards: Option<usize>,
    /// A directory of Dapr component files (Dapr's `--resources-path`), built beside the
    /// config's components.
    pub resources_path: Option<PathBuf>,
    /// The app settings of daprd's `--app-id`, `--app-port`, `--app-protocol` and
    /// `--app-channel-address`, over the config's `app` block.
    pub app: AppFlags,
}

/// Why the runtime did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration cannot be used: every problem found, each with its JSON path.
    #[error("invalid configuration, {} problem(s)", .0.len())]
    InvalidConfig(Vec<ConfigIssue>),
    /// The backend pool's threads could not start.
    #[error("cannot start the backend pool: {0}")]
    BackendPool(#[source] std::io::Error),
    /// Shards, listeners or components could not start (a port in use, an unreachable server).
    #[error(transparent)]
    Core(#[from] CoreError),
}

/// Reads `config` (LayOtto's JSON) and starts serving it: [`prepare`], then [`Prepared::start`].
pub fn start(config: &str, options: Options) -> Result<Running, StartError> {
    prepare(config, options)?.start()
}

/// Reads and validates `config` and builds every listener's filter chain, starting nothing that
/// serves yet (only the backend pool's threads, which building needs).
pub fn prepare(config: &str, options: Options) -> Result<Prepared, StartError> {
    let plan = ShardPlan::new(options.shards)?;
    let mut findings = Findings::default();
    let config = Config::parse(config, &mut findings);
    let pool = Backend::start()?;
    let metrics = Arc::new(MetricsRegistry::default());
    metrics.register(Arc::new(pool.handle()));
    let health = Arc::new(HealthRegistry::default());
    let ctx = BuildContext::new(
        &config,
        plan.len(),
        pool.handle(),
        metrics.clone(),
        health.clone(),
    );
    // The components are the process's, built once before any listener: every API serves them.
    let runtime = Runtime::from_config_and_resources(
        &config,
        options.resources_path.as_deref(),
        &options.app,
        &pool.handle(),
        &health,
        &ctx.http_proxies,
        &mut findings,
    );
    let (trigger, signal) = shutdown::channel();
    let trigger = Arc::new(trigger);
    let chains = build_chains(&ctx, &runtime, &trigger, &mut findings);
    ctx.http_proxies.check(&mut findings);
    if !findings.errors.is_empty() {
        return Err(StartError::InvalidConfig(findings.errors));
    }
    Ok(Prepared {
        config,
        ignored: findings.ignored,
        plan,
        runtime,
        chains,
        metrics,
        pool,
        stop: StopHandle(trigger),
        signal,
    })
}

/// A listener to serve: its name, the address asked for (or the Unix socket's path), and what
/// serves its connections.
type Chain = (String, ListenOn, Arc<dyn HandlerFactory>);

/// Where a listener listens.
#[derive(Debug, Clone)]
enum ListenOn {
    /// An IP address and port.
    Ip(SocketAddr),
    /// A Unix domain socket (`network` `unix`).
    Unix(PathBuf),
}

/// Every listener's filter chain: the one place the filter registry is wired (this crate's
/// filters, plus the runtime API's `grpc` terminal serving `runtime` and its `grpc_metric`
/// stream filter (its Dapr `Shutdown` pulls `stop`), and the `dapr_http` terminal serving Dapr's HTTP API over the same runtime,
/// whose shutdown route pulls `stop`). Problems go to `findings`; listeners whose terminal is
/// not served are left out.
fn build_chains(
    ctx: &BuildContext<'_>,
    runtime: &Arc<Runtime>,
    stop: &Arc<ShutdownTrigger>,
    findings: &mut Findings,
) -> Vec<Chain> {
    let registry = FilterRegistry::default()
        .with_terminal(
            layotto_runtime_api::KIND,
            layotto_runtime_api::builder(runtime.clone(), stop.clone()),
        )
        .with_terminal(
            layotto_runtime_api::dapr_http::KIND,
            layotto_runtime_api::dapr_http::builder(runtime.clone(), stop.clone()),
        )
        .with_stream_filter(
            layotto_runtime_api::filter::METRIC_FILTER_KIND,
            layotto_runtime_api::filter::build_metric_filter,
        );
    ctx.config
        .listeners
        .iter()
        .filter_map(|listener| {
            let chain = registry.build(listener, ctx, findings)?;
            let on = match &listener.unix_path {
                Some(path) => ListenOn::Unix(path.clone()),
                None => ListenOn::Ip(listener.address),
            };
            Some((
                listener.name.clone(),
                on,
                Arc::new(chain) as Arc<dyn HandlerFactory>,
            ))
        })
        .collect()
}

/// A validated configuration with its filter chains built, ready to [`Prepared::start`].
pub struct Prepared {
    config: Config,
    ignored: Vec<ConfigIssue>,
    plan: ShardPlan,
    runtime: Arc<Runtime>,
    chains: Vec<Chain>,
    metrics: Arc<MetricsRegistry>,
    pool: Backend,
    stop: StopHandle,
    signal: ShutdownSignal,
}

impl Prepared {
    /// The configuration read (log path and level are for whoever sets up logging).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces the configuration's drain timeout (`graceful_timeout`), as LayOtto's
    /// `--drain-time-s` does.
    pub fn set_drain_timeout(&mut self, timeout: Duration) {
        self.config.drain_timeout = timeout;
    }

    /// Number of shards it will run on.
    pub fn shards(&self) -> usize {
        self.plan.len()
    }

    /// A handle that stops the runtime once started; a stop requested before [`Prepared::start`]
    /// makes the shards drain as soon as they run.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Logs what the configuration has that is not used, connects the components (failing fast
    /// on an unreachable one), binds every listener (port 0 picks a free port) and starts the
    /// shards serving them.
    pub fn start(self) -> Result<Running, StartError> {
        for ignored in &self.ignored {
            warn!("{ignored}");
        }
        self.runtime.start()?;
        for (_, _, chain) in &self.chains {
            chain.start()?;
        }
        let mut listeners = self.chains;
        if let Some(sink) = &self.config.prometheus {
            // The route holds the registry weakly: the registry holds this listener's handler.
            let routes =
                actuator::metrics_routes(Arc::downgrade(&self.metrics), sink.endpoint.clone());
            let server = Arc::new(AdminHttpFactory::new(routes));
            listeners.push((
                "prometheus".to_owned(),
                ListenOn::Ip(sink.address),
                Arc::new(FilterChainFactory::new(Vec::new(), server)),
            ));
        }
        let shards = self.plan.len();
        let proxy_ceiling = DescriptorCeiling::for_capped_listener(self.config.reserved_fds);
        let proxies: Vec<&str> = self
            .config
            .listeners
            .iter()
            .filter(|l| {
                l.network_filters
                    .last()
                    .is_some_and(|f| f.kind == "tcp_proxy")
            })
            .map(|l| l.name.as_str())
            .collect();
        let mut served = Vec::with_capacity(listeners.len());
        for (name, on, handler) in listeners {
            let stats = Arc::new(ListenerStats::new(shards));
            self.metrics.register(Arc::new(ListenerMetrics {
                name: name.clone(),
                stats: stats.clone(),
                handler: handler.clone(),
            }));
            // The L4 proxy's listeners leave the descriptor reserve to the API and admin ones.
            let ceiling = if proxies.contains(&name.as_str()) {
                if let DescriptorCeiling::Below(ceiling) = proxy_ceiling {
                    info!(
                        "listener \"{name}\" closes connections that get descriptor {ceiling} or above (the rest are kept for the API and admin listeners)"
                    );
                }
                proxy_ceiling
            } else {
                DescriptorCeiling::None
            };
            served.push(ServedListener {
                bound: match &on {
                    ListenOn::Ip(address) => listener::bind(&name, *address, shards)?,
                    ListenOn::Unix(path) => listener::bind_unix(&name, path, shards)?,
                },
                handler,
                stats,
                ceiling,
            });
        }
        let (unix, ip): (Vec<_>, Vec<_>) = served
            .iter()
            .map(|s| {
                (
                    s.bound.name.clone(),
                    s.bound.address,
                    s.bound.unix_path.clone(),
                )
            })
            .partition(|(_, _, unix_path)| unix_path.is_some());
        let addresses: Vec<_> = ip
            .into_iter()
            .map(|(name, address, _)| (name, address))
            .collect();
        let unix_paths: Vec<_> = unix
            .into_iter()
            .filter_map(|(name, _, path)| Some((name, path?)))
            .collect();
        let drain_timeout = self.config.drain_timeout;
        let running = self.plan.start(served, drain_timeout, self.signal)?;
        for (name, address) in &addresses {
            info!("listener \"{name}\" listening on {address}");
        }
        for (name, path) in &unix_paths {
            info!(
                "listener \"{name}\" listening on unix socket {}",
                path.display()
            );
        }
        Ok(Running {
            addresses,
            unix_paths,
            shards: running,
            runtime: self.runtime,
            metrics: self.metrics,
            pool: self.pool,
            drain_timeout,
            stop: StopOnDrop(self.stop),
        })
    }
}

/// Stops the runtime: stop accepting at once, let open connections finish for up to the drain
/// timeout (what SIGTERM does to the binary). Cloneable and usable from any thread.
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<ShutdownTrigger>);

impl StopHandle {
    /// Starts the drain; later calls do nothing more.
    pub fn stop(&self) {
        self.0.trigger();
    }
}

/// Triggers the stop when dropped.
struct StopOnDrop(StopHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The runtime serving. Dropping it stops it without waiting for the drain (nor closing the
/// components); [`Running::join`] waits.
pub struct Running {
    addresses: Vec<(String, SocketAddr)>,
    unix_paths: Vec<(String, PathBuf)>,
    shards: RunningShards,
    runtime: Arc<Runtime>,
    metrics: Arc<MetricsRegistry>,
    pool: Backend,
    drain_timeout: Duration,
    stop: StopOnDrop,
}

impl Running {
    /// The address listener `name` is bound to (port 0 resolved), if there is such a listener.
    /// The Prometheus sink's listener is called `prometheus`.
    pub fn address(&self, name: &str) -> Option<SocketAddr> {
        self.addresses
            .iter()
            .find_map(|(listener, address)| (listener == name).then_some(*address))
    }

    /// Every IP listener's name and bound address, in configuration order.
    pub fn addresses(&self) -> &[(String, SocketAddr)] {
        &self.addresses
    }

    /// The socket file of Unix domain socket listener `name`, if there is such a listener.
    pub fn unix_path(&self, name: &str) -> Option<&Path> {
        self.unix_paths
            .iter()
            .find_map(|(listener, path)| (listener == name).then_some(path.as_path()))
    }

    /// The metrics in Prometheus text format, as a scrape of the Prometheus sink gets them
    /// (whether or not one is configured).
    pub fn metrics(&self) -> String {
        self.metrics.render()
    }

    /// Starts the drain (as SIGTERM does); [`Running::join`] then returns once it is over.
    pub fn stop(&self) {
        self.stop.0.stop();
    }

    /// A handle that stops the runtime from elsewhere (another thread, a signal handler).
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.0.clone()
    }

    /// Waits until the runtime has been stopped and has drained, closes the components, stops the
    /// backend pool (giving calls still running the drain timeout), logs each listener's summary
    /// and returns the report. Every listener's filters are gone when it returns (traffic dumps are flushed).
    /// Blocks the calling thread; may be called from inside an async runtime.
    pub fn join(self) -> Result<ServeReport, CoreError> {
        let Running {
            shards,
            runtime,
            metrics,
            pool,
            drain_timeout,
            ..
        } = self;
        let report = shards.join();
        runtime.close();
        pool.shutdown(drain_timeout);
        drop(metrics); // the last holder of the listeners' handlers
        let report = report?;
        log_summary(&report);
        Ok(report)
    }
}

/// The backend pool. Dropped (on a failed start, or a [`Running`] dropped without joining), it
/// stops without waiting for calls, which is also allowed inside a caller's async runtime.
struct Backend(Option<BackendPool>);

impl Backend {
    fn start() -> Result<Self, StartError> {
        BackendPool::start(BACKEND_THREADS, BACKEND_CAPACITY)
            .map(|pool| Self(Some(pool)))
            .map_err(StartError::BackendPool)
    }

    fn handle(&self) -> BackendHandle {
        self.0.as_ref().expect("pool is running").handle()
    }

    /// Stops the pool, giving running calls up to `grace`. tokio refuses to wait for its
    /// threads on a thread of another runtime, so the wait happens on a thread of its own.
    fn shutdown(mut self, grace: Duration) {
        if let Some(pool) = self.0.take() {
            std::thread::scope(|scope| {
                scope.spawn(move || pool.shutdown(grace));
            });
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take() {
            pool.shutdown(Duration::ZERO); // does not wait, so it never blocks an async caller
        }
    }
}

fn log_summary(report: &ServeReport) {
    for listener in &report.listeners {
        let counters: Vec<String> = listener
            .counters
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        info!(
            "listener \"{}\" summary: accepted per shard {:?}; {}",
            listener.name,
            listener.accepted_per_shard,
            counters.join(" ")
        );
    }
    if report.connections_cut > 0 {
        warn!(
            connections = report.connections_cut,
            "connections closed by the drain timeout"
        );
    }
}
