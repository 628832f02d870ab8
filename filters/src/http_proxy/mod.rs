//! MOSN's HTTP `proxy` network filter (`downstream_protocol`/`upstream_protocol` `Http1`): an L7
//! HTTP/1.1 proxy on hyper. Each request is routed by the route table its `router_config_name`
//! names ([`routes`]: virtual hosts by domain, routes by path and headers) to a cluster, whose
//! host is picked per shard ([`balancer`]: `LB_ROUNDROBIN`/`LB_RANDOM` with host weights), and
//! sent over a keep-alive upstream connection of the shard ([`pool`]). Bodies stream both ways
//! frame by frame (hyper's buffers bound what is held). No route: 404; no host or no connection:
//! 503; an upstream that fails mid-exchange: 502; past the route's `timeout`: 504 — each with a
//! one-line body saying why. A listener with the `actuator_filter` stream filter is LayOtto's
//! actuator instead ([`crate::actuator`]).
//!
//! LayOtto's `mosn` rpc invoker hands `InvokeService` calls to such a listener by name, in
//! process: [`HttpProxyDirectory`] finds the listener's proxy, and [`HttpProxyFactory::on_this_shard`]
//! its instance on the calling shard (the one serving that shard's connections, so they share
//! the upstream connections). Factories are built on the main thread; instances run on their
//! shard.

pub mod balancer;
pub mod pool;
pub mod routes;

use std::{
    cell::RefCell,
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures_lite::future::{BoxedLocal, or};
use glommio::net::TcpStream;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use layotto_core::{
    config::{FilterConfig, Findings, LbPolicy, join, parse_duration},
    handler::ConnectionInfo,
    stats::ShardedCounter,
};
use serde::Deserialize;
use tracing::debug;

pub use pool::{BoxError, ProxyBody, boxed};

use crate::{
    chain::{Observers, Terminal, TerminalFactory},
    http1::{self, ServerLimits},
    observed::{ByteCounters, ObservedStream},
    registry::BuildContext,
};
use balancer::Balancer;
use pool::{PooledBody, UpstreamPool};
use routes::{RequestHead, RouteTable};

/// The filter's `type` in the config (shared with the actuator's listener).
pub const KIND: &str = "proxy";
/// Idle upstream connections kept per host and shard unless `max_idle_per_host` says.
pub const DEFAULT_MAX_IDLE_PER_HOST: usize = 32;
/// Hosts tried for one request when connects fail (the first pick and two more).
const MAX_CONNECT_ATTEMPTS: usize = 3;
/// The only protocol served, MOSN's name for it.
const HTTP1: &str = "Http1";
/// MOSN proxy keys accepted but not used.
const IGNORED_KEYS: &[&str] = &[
    "name",
    "extend_config",
    "router_handler_name",
    "validate_clusters",
    "fallback_for_unknown_protocol",
    "concurrency_num",
];

#[derive(Deserialize)]
struct ProxyConfig {
    downstream_protocol: Option<String>,
    upstream_protocol: Option<String>,
    router_config_name: Option<String>,
    max_idle_per_host: Option<usize>,
    head_timeout: Option<String>,
}

/// One cluster as the proxy balances it.
struct ClusterPlan {
    name: String,
    hosts: Arc<[SocketAddr]>,
    weights: Vec<u32>,
    lb: LbPolicy,
    connect_timeout: Duration,
}

/// Counters of one proxy listener, merged over shards on read.
struct ProxyStats {
    requests: ShardedCounter,
    no_route: ShardedCounter,
    upstream_connections: ShardedCounter,
    upstream_failures: ShardedCounter,
    upstream_timeouts: ShardedCounter,
}

/// What every shard's proxy shares.
struct Plan {
    routes: RouteTable,
    clusters: Vec<ClusterPlan>,
    cluster_index: HashMap<String, usize>,
    limits: ServerLimits,
    max_idle_per_host: usize,
}

/// The configured proxy of one listener, shared by all shards.
pub struct HttpProxyFactory {
    /// Tells this factory's instances apart in a shard's [`SHARD_PROXIES`].
    id: usize,
    plan: Arc<Plan>,
    stats: Arc<ProxyStats>,
    bytes: Arc<ByteCounters>,
}

/// Tells factories apart (a test process runs many).
static NEXT_FACTORY_ID: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The proxies of this shard, by factory id: what in-process callers on the shard use.
    static SHARD_PROXIES: RefCell<Vec<(usize, Rc<ShardProxy>)>> = const { RefCell::new(Vec::new()) };
}

/// Builds the proxy from a `proxy` filter entry (or the actuator, on a listener with
/// `actuator_filter`), recording problems (with paths) in `findings`.
pub fn build(
    filter: &FilterConfig,
    ctx: &BuildContext<'_>,
    findings: &mut Findings,
) -> Option<Arc<dyn TerminalFactory>> {
    if crate::actuator::hosts_actuator(ctx) {
        return crate::actuator::build(filter, ctx, findings);
    }
    let path = join(&filter.path, "config");
    let config: ProxyConfig = findings.decode(&filter.config, &path, IGNORED_KEYS)?;
    for (key, protocol) in [
        ("downstream_protocol", &config.downstream_protocol),
        ("upstream_protocol", &config.upstream_protocol),
    ] {
        if let Some(protocol) = protocol
            && protocol != HTTP1
        {
            findings.error(
                join(&path, key),
                format!("protocol \"{protocol}\" is not served; only \"{HTTP1}\" is"),
            );
        }
    }
    let mut limits = ServerLimits::default();
    if let Some(text) = &config.head_timeout {
        match parse_duration(text) {
            Ok(timeout) if !timeout.is_zero() => limits.head_timeout = timeout,
            Ok(_) => findings.error(join(&path, "head_timeout"), "must be greater than zero"),
            Err(err) => findings.error(join(&path, "head_timeout"), err),
        }
    }
    let max_idle_per_host = config
        .max_idle_per_host
        .unwrap_or(DEFAULT_MAX_IDLE_PER_HOST);
    let Some(router_name) = config.router_config_name else {
        findings.error(
            join(&path, "router_config_name"),
            "missing: the servers[0].routers entry that routes this proxy",
        );
        return None;
    };
    let Some(router) = ctx.config.router(&router_name) else {
        let known: Vec<&str> = ctx.config.routers.iter().map(|r| r.name.as_str()).collect();
        findings.error(
            join(&path, "router_config_name"),
            format!("no router named \"{router_name}\" in servers[0].routers (known: {known:?})"),
        );
        return None;
    };
    let routes = RouteTable::decode(&router.config, &router.path, findings)?;
    let mut clusters = Vec::new();
    let mut cluster_index = HashMap::new();
    for (name, route_path) in routes.clusters() {
        if cluster_index.contains_key(name) {
            continue;
        }
        let Some(cluster) = ctx.config.cluster(name) else {
            let known: Vec<&str> = ctx
                .config
                .clusters
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            findings.error(
                join(route_path, "route.cluster_name"),
                format!(
                    "no cluster named \"{name}\" in cluster_manager.clusters (known: {known:?})"
                ),
            );
            continue;
        };
        if cluster.health_check.is_some() {
            findings.ignore(
                join(&cluster.path, "health_check"),
                "active health checks are not run by the HTTP proxy",
            );
        }
        cluster_index.insert(name.to_owned(), clusters.len());
        clusters.push(ClusterPlan {
            name: name.to_owned(),
            hosts: cluster.hosts.iter().copied().collect(),
            weights: cluster.weights.clone(),
            lb: cluster.lb,
            connect_timeout: cluster.connect_timeout,
        });
    }
    let counter = || ShardedCounter::new(ctx.shards);
    let factory = Arc::new(HttpProxyFactory {
        id: NEXT_FACTORY_ID.fetch_add(1, Ordering::Relaxed),
        plan: Arc::new(Plan {
            routes,
            clusters,
            cluster_index,
            limits,
            max_idle_per_host,
        }),
        stats: Arc::new(ProxyStats {
            requests: counter(),
            no_route: counter(),
            upstream_connections: counter(),
            upstream_failures: counter(),
            upstream_timeouts: counter(),
        }),
        bytes: Arc::new(ByteCounters::new(ctx.shards)),
    });
    if let Some(listener) = ctx.listener {
        ctx.http_proxies.register(&listener.name, factory.clone());
    }
    Some(factory)
}

impl HttpProxyFactory {
    /// This proxy's instance on the calling shard, once the shard runs the listener (`None`
    /// off the shards, or before).
    pub fn on_this_shard(&self) -> Option<Rc<ShardProxy>> {
        SHARD_PROXIES.with(|proxies| {
            proxies
                .borrow()
                .iter()
                .find(|(id, _)| *id == self.id)
                .map(|(_, proxy)| proxy.clone())
        })
    }
}

impl TerminalFactory for HttpProxyFactory {
    fn for_shard(&self, shard: usize) -> Rc<dyn Terminal> {
        let plan = &self.plan;
        let proxy = Rc::new(ShardProxy {
            shard,
            balancers: plan
                .clusters
                .iter()
                .map(|c| Balancer::new(c.lb, &c.weights, shard))
                .collect(),
            pool: Rc::new(UpstreamPool::new(plan.max_idle_per_host)),
            plan: plan.clone(),
            stats: self.stats.clone(),
        });
        SHARD_PROXIES.with(|proxies| proxies.borrow_mut().push((self.id, proxy.clone())));
        Rc::new(HttpProxyTerminal {
            proxy,
            bytes: self.bytes.clone(),
        })
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = &self.stats;
        let mut counters = vec![
            ("http_requests", s.requests.sum()),
            ("http_no_route", s.no_route.sum()),
            ("upstream_connections", s.upstream_connections.sum()),
            ("upstream_failures", s.upstream_failures.sum()),
            ("upstream_timeouts", s.upstream_timeouts.sum()),
        ];
        counters.extend(self.bytes.counters());
        counters
    }
}

/// The listener's connections on one shard.
struct HttpProxyTerminal {
    proxy: Rc<ShardProxy>,
    bytes: Arc<ByteCounters>,
}

impl Terminal for HttpProxyTerminal {
    fn serve(
        self: Rc<Self>,
        stream: TcpStream,
        conn: ConnectionInfo,
        observers: Observers,
    ) -> BoxedLocal<()> {
        Box::pin(async move {
            let _ = stream.set_nodelay(true);
            let stream = ObservedStream::new(stream, observers, self.bytes.clone(), conn.shard);
            let proxy = self.proxy.clone();
            let service = service_fn(move |request: Request<Incoming>| {
                let proxy = proxy.clone();
                async move {
                    let request = request.map(boxed);
                    Ok::<_, Infallible>(proxy.forward(request).await)
                }
            });
            let limits = self.proxy.plan.limits;
            if let Err(err) = http1::serve(stream, service, limits, conn.shutdown).await {
                debug!(peer = %conn.peer, error = %err, "HTTP proxy connection ended");
            }
        })
    }
}

/// One shard's proxy: its balancers (one per cluster) and upstream connections.
pub struct ShardProxy {
    shard: usize,
    plan: Arc<Plan>,
    balancers: Vec<Balancer>,
    pool: Rc<UpstreamPool>,
    stats: Arc<ProxyStats>,
}

/// Why a request got no upstream response.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("no route for {host} {path}")]
    NoRoute { host: String, path: String },
    #[error("cluster \"{0}\" has no host")]
    NoHost(String),
    #[error("upstream connect error: {0}")]
    Connect(String),
    #[error("upstream request failed: {0}")]
    Upstream(String),
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
}

impl Failure {
    fn status(&self) -> StatusCode {
        match self {
            Self::NoRoute { .. } => StatusCode::NOT_FOUND,
            Self::NoHost(_) | Self::Connect(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn into_response(self) -> Response<ProxyBody> {
        let mut response = Response::new(boxed(Full::new(Bytes::from(format!("{self}\n")))));
        *response.status_mut() = self.status();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

impl ShardProxy {
    /// Routes `request` and answers it: the upstream's response (its body streaming), or the
    /// proxy's own 404/502/503/504.
    pub async fn forward(&self, request: Request<ProxyBody>) -> Response<ProxyBody> {
        self.stats.requests.add(self.shard, 1);
        match self.exchange(request).await {
            Ok(response) => response,
            Err(failure) => {
                let counter = match failure {
                    Failure::NoRoute { .. } => &self.stats.no_route,
                    Failure::Timeout(_) => &self.stats.upstream_timeouts,
                    _ => &self.stats.upstream_failures,
                };
                counter.add(self.shard, 1);
                debug!(error = %failure, "HTTP proxy answered an error");
                failure.into_response()
            }
        }
    }

    async fn exchange(
        &self,
        mut request: Request<ProxyBody>,
    ) -> Result<Response<ProxyBody>, Failure> {
        let host_header = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .or_else(|| request.uri().authority().map(|a| a.to_string()));
        let head = RequestHead {
            host: host_header.as_deref(),
            path: request.uri().path(),
            method: request.method(),
            headers: request.headers(),
        };
        let Some(action) = self.plan.routes.route(&head) else {
            return Err(Failure::NoRoute {
                host: host_header.unwrap_or_default(),
                path: request.uri().path().to_owned(),
            });
        };
        let timeout = action.timeout;
        // Every route's cluster was found when the proxy was built (or the config was refused).
        let Some(&cluster_at) = self.plan.cluster_index.get(&action.cluster) else {
            return Err(Failure::NoHost(action.cluster.clone()));
        };
        let cluster = &self.plan.clusters[cluster_at];
        let (host, mut sender) = self.connection(cluster_at, cluster).await?;
        prepare_upstream(&mut request, host);
        let sent = sender.send_request(request);
        let response = match timeout {
            None => sent
                .await
                .map_err(|err| Failure::Upstream(err.to_string()))?,
            Some(limit) => {
                or(
                    async { sent.await.map_err(|err| Failure::Upstream(err.to_string())) },
                    async {
                        glommio::timer::sleep(limit).await;
                        Err(Failure::Timeout(limit))
                    },
                )
                .await?
            }
        };
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = boxed(PooledBody::new(body, self.pool.clone(), host, sender));
        Ok(Response::from_parts(parts, body))
    }

    /// A ready connection to one of `cluster`'s hosts: a kept one, else a new one; a failed
    /// connect moves on to the next pick, up to [`MAX_CONNECT_ATTEMPTS`] hosts.
    async fn connection(
        &self,
        cluster_at: usize,
        cluster: &ClusterPlan,
    ) -> Result<
        (
            SocketAddr,
            hyper::client::conn::http1::SendRequest<ProxyBody>,
        ),
        Failure,
    > {
        let balancer = &self.balancers[cluster_at];
        let mut last_error = None;
        for _ in 0..MAX_CONNECT_ATTEMPTS.min(cluster.hosts.len()) {
            let Some(picked) = balancer.pick() else { break };
            let host = cluster.hosts[picked];
            if let Some(sender) = self.pool.take(host).await {
                return Ok((host, sender));
            }
            match UpstreamPool::connect(host, cluster.connect_timeout).await {
                Ok(sender) => {
                    self.stats.upstream_connections.add(self.shard, 1);
                    return Ok((host, sender));
                }
                Err(err) => {
                    debug!(cluster = %cluster.name, error = %chain(&err), "upstream connect failed");
                    last_error = Some(chain(&err));
                }
            }
        }
        Err(match last_error {
            Some(err) => Failure::Connect(err),
            None => Failure::NoHost(cluster.name.clone()),
        })
    }
}

/// `err` with its sources, `a: b: c`.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The request as the upstream gets it: origin-form target, no hop-by-hop headers, a `Host`.
fn prepare_upstream(request: &mut Request<ProxyBody>, host: SocketAddr) {
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    if let Ok(uri) = target.parse::<Uri>() {
        *request.uri_mut() = uri;
    }
    let headers = request.headers_mut();
    strip_hop_by_hop(headers);
    if !headers.contains_key(header::HOST)
        && let Ok(value) = HeaderValue::from_str(&host.to_string())
    {
        headers.insert(header::HOST, value);
    }
}

/// Removes the headers that belong to one connection (RFC 9110 §7.6.1), and those `Connection`
/// names. hyper frames the bodies itself (`Content-Length` or chunked) on each side. Also used
/// by the service invocation backends, on what they send and what they hand back.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|name| name.trim().to_ascii_lowercase()))
        .collect();
    for name in named {
        headers.remove(name.as_str());
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
}

/// The HTTP proxies of a process by listener name, for in-process callers (LayOtto's `mosn`
/// invoker). Filled while the listeners are built and checked against what callers named, on the
/// main thread; read by callers when they start.
#[derive(Default)]
pub struct HttpProxyDirectory {
    #[expect(
        clippy::disallowed_types,
        reason = "filled and read on the main thread at start-up, never on a shard"
    )]
    entries: std::sync::Mutex<Directory>,
}

#[derive(Default)]
struct Directory {
    proxies: HashMap<String, Arc<HttpProxyFactory>>,
    /// `(listener, JSON path of the reference)` of every caller.
    wanted: Vec<(String, String)>,
}

impl HttpProxyDirectory {
    fn entries(&self) -> std::sync::MutexGuard<'_, Directory> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the proxy serving `listener`.
    pub fn register(&self, listener: &str, proxy: Arc<HttpProxyFactory>) {
        self.entries().proxies.insert(listener.to_owned(), proxy);
    }

    /// Records that the config at `path` hands requests to `listener`'s proxy.
    pub fn want(&self, listener: &str, path: &str) {
        self.entries()
            .wanted
            .push((listener.to_owned(), path.to_owned()));
    }

    /// Records an error for every wanted listener that has no HTTP proxy.
    pub fn check(&self, findings: &mut Findings) {
        let entries = self.entries();
        for (listener, path) in &entries.wanted {
            if !entries.proxies.contains_key(listener) {
                let mut known: Vec<&str> = entries.proxies.keys().map(String::as_str).collect();
                known.sort_unstable();
                findings.error(
                    path.clone(),
                    format!(
                        "no listener \"{listener}\" whose terminal filter is the HTTP proxy (known: {known:?})"
                    ),
                );
            }
        }
    }

    /// The proxy serving `listener`, if any.
    pub fn get(&self, listener: &str) -> Option<Arc<HttpProxyFactory>> {
        self.entries().proxies.get(listener).cloned()
    }
}
