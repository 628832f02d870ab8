//! `tcp_proxy`: MOSN's L4 proxy. Each connection goes to the next host of the configured cluster
//! (round-robin per shard), bytes are pumped both ways with shard buffers (or spliced through
//! kernel pipes for bulk transfers no filter needs to see), half-closes are passed on, and the
//! connection ends after `idle_timeout` without traffic (one sweeper per shard watches). A refused or unreachable
//! upstream closes the client's connection, is logged and counted, and touches no other
//! connection. The factory is built on the main thread; instances run on their shard.

mod balancer;
mod idle;
mod outlier;
mod pump;
mod splice;

use std::{net::SocketAddr, rc::Rc, sync::Arc, time::Duration};

use futures_lite::{AsyncWriteExt, future::BoxedLocal};
use glommio::net::TcpStream;
use layotto_core::{
    clock::{Clock, MonotonicClock},
    config::{Findings, LbPolicy, join, parse_duration},
    handler::ConnectionInfo,
    stats::ShardedCounter,
};
use serde::Deserialize;
use tracing::{debug, warn};

pub use balancer::RoundRobin;

use crate::{
    FilterError,
    buffer_pool::BufferPool,
    chain::{Observers, Terminal, TerminalFactory},
    registry::BuildContext,
};

/// The filter's `type` in the config.
pub const KIND: &str = "tcp_proxy";
/// Idle timeout when the config gives none (as Envoy's tcp_proxy).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Size of each copy buffer.
const BUFFER_SIZE: usize = 32 * 1024;
/// Idle buffers each shard keeps for reuse.
const BUFFERS_KEPT: usize = 64;
/// Size asked for each splice pipe.
const PIPE_SIZE: usize = 256 * 1024;
/// Idle pipes each shard keeps for reuse.
const PIPES_KEPT: usize = 64;
/// MOSN tcp_proxy keys accepted but not used.
const IGNORED_KEYS: &[&str] = &["stat_prefix"];
/// Hosts tried for one client connection unless `max_connect_attempts` says (Envoy's default is
/// 1; one retry on each of two more hosts keeps a refusing host from failing clients).
pub const DEFAULT_MAX_CONNECT_ATTEMPTS: u32 = 3;

#[derive(Deserialize)]
struct TcpProxyConfig {
    cluster: String,
    idle_timeout: Option<String>,
    max_connect_attempts: Option<u32>,
}

/// Counters of one tcp_proxy listener, merged over shards on read.
#[derive(Debug)]
pub struct ProxyStats {
    /// Client connections handled.
    pub connections: ShardedCounter,
    /// Client connections closed because no upstream connection could be made.
    pub upstream_connect_failures: ShardedCounter,
    /// Upstream connects that failed and were retried on the next host.
    pub upstream_connect_retries: ShardedCounter,
    /// Hosts ejected after failed connects in a row.
    pub upstream_host_ejections: ShardedCounter,
    /// Connections closed for inactivity.
    pub idle_timeouts: ShardedCounter,
    /// Bytes read from clients.
    pub bytes_from_downstream: ShardedCounter,
    /// Bytes read from upstreams.
    pub bytes_from_upstream: ShardedCounter,
    /// Directions of connections that went on with splice(2) after a bulk read.
    pub spliced_directions: ShardedCounter,
}

/// The configured proxy, shared by all shards.
pub struct TcpProxyFactory {
    hosts: Arc<[SocketAddr]>,
    connect_timeout: Duration,
    max_connect_attempts: u32,
    outliers: Arc<outlier::Outliers>,
    clock: Arc<dyn Clock>,
    idle_timeout: Option<Duration>,
    stats: Arc<ProxyStats>,
}

/// Builds the proxy from its `config` block, recording problems (with paths) in `findings`.
pub fn build(
    filter: &layotto_core::config::FilterConfig,
    ctx: &BuildContext<'_>,
    findings: &mut Findings,
) -> Option<Arc<dyn TerminalFactory>> {
    let path = join(&filter.path, "config");
    if !ctx.stream_filters.is_empty() {
        findings.error(
            join(&filter.path, "type"),
            "tcp_proxy carries no calls: its listener's stream_filters cannot apply",
        );
    }
    let config: TcpProxyConfig = findings.decode(&filter.config, &path, IGNORED_KEYS)?;
    let idle_timeout = match config.idle_timeout.as_deref().map(parse_duration) {
        None => Some(DEFAULT_IDLE_TIMEOUT),
        Some(Ok(timeout)) => (!timeout.is_zero()).then_some(timeout),
        Some(Err(err)) => {
            findings.error(join(&path, "idle_timeout"), err);
            None
        }
    };
    let max_connect_attempts = match config.max_connect_attempts {
        None => DEFAULT_MAX_CONNECT_ATTEMPTS,
        Some(0) => {
            findings.error(join(&path, "max_connect_attempts"), "must be at least 1");
            DEFAULT_MAX_CONNECT_ATTEMPTS
        }
        Some(attempts) => attempts,
    };
    let Some(cluster) = ctx.config.cluster(&config.cluster) else {
        let known: Vec<&str> = ctx
            .config
            .clusters
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        findings.error(
            join(&path, "cluster"),
            format!(
                "no cluster named \"{}\" in cluster_manager.clusters (known: {known:?})",
                config.cluster
            ),
        );
        return None;
    };
    if cluster.hosts.is_empty() {
        return None; // already reported on the cluster
    }
    if cluster.lb != LbPolicy::RoundRobin || cluster.weights.windows(2).any(|w| w[0] != w[1]) {
        findings.error(
            cluster.path.clone(),
            format!(
                "tcp_proxy ({}) balances round robin over equal weights; this cluster asks for \
                 LB_RANDOM or unequal host weights (the HTTP proxy serves those)",
                filter.path
            ),
        );
    }
    if cluster.health_check.is_some() {
        findings.ignore(
            join(&cluster.path, "health_check"),
            "active health checks are not run yet; outlier_detection ejects failing hosts",
        );
    }
    let counter = || ShardedCounter::new(ctx.shards);
    Some(Arc::new(TcpProxyFactory {
        hosts: cluster.hosts.iter().copied().collect(),
        connect_timeout: cluster.connect_timeout,
        max_connect_attempts,
        outliers: Arc::new(outlier::Outliers::new(
            cluster.outlier_detection.clone(),
            cluster.hosts.len(),
        )),
        clock: Arc::new(MonotonicClock::default()),
        idle_timeout,
        stats: Arc::new(ProxyStats {
            connections: counter(),
            upstream_connect_failures: counter(),
            upstream_connect_retries: counter(),
            upstream_host_ejections: counter(),
            idle_timeouts: counter(),
            bytes_from_downstream: counter(),
            bytes_from_upstream: counter(),
            spliced_directions: counter(),
        }),
    }))
}

impl TerminalFactory for TcpProxyFactory {
    fn for_shard(&self, shard: usize) -> Rc<dyn Terminal> {
        Rc::new(TcpProxy {
            shard,
            balancer: RoundRobin::new(self.hosts.clone(), shard),
            connect_timeout: self.connect_timeout,
            max_connect_attempts: self.max_connect_attempts,
            outliers: self.outliers.clone(),
            clock: self.clock.clone(),
            idle: self.idle_timeout.map(idle::IdleSweeper::new),
            buffers: BufferPool::new(BUFFER_SIZE, BUFFERS_KEPT),
            pipes: splice::PipePool::new(PIPE_SIZE, PIPES_KEPT),
            stats: self.stats.clone(),
        })
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = &self.stats;
        vec![
            ("connections", s.connections.sum()),
            (
                "upstream_connect_failures",
                s.upstream_connect_failures.sum(),
            ),
            ("upstream_connect_retries", s.upstream_connect_retries.sum()),
            ("upstream_host_ejections", s.upstream_host_ejections.sum()),
            ("idle_timeouts", s.idle_timeouts.sum()),
            ("bytes_from_downstream", s.bytes_from_downstream.sum()),
            ("bytes_from_upstream", s.bytes_from_upstream.sum()),
            ("spliced_directions", s.spliced_directions.sum()),
        ]
    }
}

/// One shard's proxy.
struct TcpProxy {
    shard: usize,
    balancer: RoundRobin,
    connect_timeout: Duration,
    max_connect_attempts: u32,
    /// Failure records of the cluster's hosts, shared by all shards of the listener.
    outliers: Arc<outlier::Outliers>,
    clock: Arc<dyn Clock>,
    /// Closes this shard's connections idle for the configured timeout, if any.
    idle: Option<Rc<idle::IdleSweeper>>,
    buffers: BufferPool,
    pipes: splice::PipePool,
    stats: Arc<ProxyStats>,
}

impl Terminal for TcpProxy {
    fn serve(
        self: Rc<Self>,
        downstream: TcpStream,
        conn: ConnectionInfo,
        observers: Observers,
    ) -> BoxedLocal<()> {
        Box::pin(async move {
            self.stats.connections.add(self.shard, 1);
            match self.proxy(downstream, observers).await {
                Ok(()) => debug!(listener = %conn.listener, peer = %conn.peer, "connection done"),
                Err(err @ FilterError::UpstreamConnect { .. }) => {
                    self.stats.upstream_connect_failures.add(self.shard, 1);
                    warn!(listener = %conn.listener, peer = %conn.peer, error = %err,
                          "closing client connection");
                }
                Err(err @ FilterError::Idle(_)) => {
                    self.stats.idle_timeouts.add(self.shard, 1);
                    debug!(listener = %conn.listener, peer = %conn.peer, error = %err, "closed");
                }
                Err(err) => debug!(listener = %conn.listener, peer = %conn.peer, error = %err,
                                   "connection ended"),
            }
        })
    }
}

impl TcpProxy {
    async fn proxy(
        &self,
        mut downstream: TcpStream,
        mut observers: Observers,
    ) -> Result<(), FilterError> {
        let mut upstream = match self.connect_upstream().await {
            Ok(upstream) => upstream,
            Err(err) => {
                // A FIN, not a reset: the client sees an orderly close.
                let _ = downstream.close().await;
                return Err(err);
            }
        };
        // Both sides forward what they read at once: no Nagle delay on either.
        let _ = upstream.set_nodelay(true);
        let _ = downstream.set_nodelay(true);
        let activity = Rc::new(idle::Activity::new(std::time::Instant::now()));
        let hooks = pump::PumpHooks {
            observers: &mut observers,
            activity: activity.reads(),
            stats: &self.stats,
            shard: self.shard,
        };
        // Splicing skips user space: only when no filter needs to see the bytes.
        let pipes = hooks.observers.is_empty().then_some(&self.pipes);
        let pumping =
            pump::Pumping::new(&mut downstream, &mut upstream, &self.buffers, pipes, hooks);
        let transfer = async { pumping.await.map_err(FilterError::from) };
        let outcome = match &self.idle {
            None => transfer.await,
            Some(sweeper) => sweeper.until_idle(&activity, transfer).await,
        };
        if let Err(FilterError::Transfer(_)) = &outcome {
            // A reset (or any failure) on one side is passed on as a reset on the other, not
            // as a clean end of stream: both are closed with SO_LINGER 0 when dropped.
            abort_on_close(&downstream);
            abort_on_close(&upstream);
        }
        outcome
    }
}

impl TcpProxy {
    /// Connects to the next available host, trying the next ones on failure up to
    /// `max_connect_attempts` hosts; records each outcome for outlier detection.
    async fn connect_upstream(&self) -> Result<TcpStream, FilterError> {
        let mut attempt = 1;
        loop {
            let now = self.clock.now();
            let (index, address) = self.balancer.pick(|i| self.outliers.available(i, now));
            match TcpStream::connect_timeout(address, self.connect_timeout).await {
                Ok(upstream) => {
                    self.outliers.connected(index);
                    return Ok(upstream);
                }
                Err(err) => {
                    if let Some(ejection) = self.outliers.failed(index, self.clock.now()) {
                        self.stats.upstream_host_ejections.add(self.shard, 1);
                        warn!(host = %address, ?ejection, error = %err,
                              "upstream host ejected after failed connects");
                    }
                    if attempt >= self.max_connect_attempts {
                        return Err(FilterError::UpstreamConnect {
                            address,
                            source: err.into(),
                        });
                    }
                    debug!(host = %address, error = %err, "connect failed; trying the next host");
                    self.stats.upstream_connect_retries.add(self.shard, 1);
                    attempt += 1;
                }
            }
        }
    }
}

/// Makes closing `stream` send a reset (SO_LINGER 0) and free its socket at once.
fn abort_on_close(stream: &TcpStream) {
    if let Err(err) = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO)) {
        debug!(error = %err, "cannot set SO_LINGER 0; the socket closes with a FIN");
    }
}
