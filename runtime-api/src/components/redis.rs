//! One redis connection of a component (state, lock, sequencer, pub/sub): a multiplexed,
//! self-reconnecting connection manager created at start-up, every command run on the backend
//! pool (the redis client needs tokio; all on one of its threads, the one the connection task
//! runs on) bounded by the component's timeout, failures mapped to
//! [`ApiError`]s naming the component and the address.
//!
//! Three modes, with Dapr's metadata keys: one node (`redisHost: host:port`), a master found
//! through Sentinel (`failover: true`, `sentinelMasterName`, `redisHost` the sentinels,
//! comma-separated; re-resolved after a connection error or a `READONLY` reply, so the calls
//! after a failover go to the promoted replica), and a Redis Cluster (`redisType: cluster`,
//! `redisHost` seed nodes; the redis crate's cluster connection follows MOVED/ASK; dedicated
//! connections for blocking reads go to the node owning their key's slot).
//!
//! The component's timeout is the only one applied: the manager gets no response timeout of its
//! own (the redis crate's default would fail every call after 500 ms), connecting is bounded by
//! the same timeout, and a refused connection is not retried inside the call (it fails at once
//! with its cause; the next call connects again).

use std::{
    future::Future,
    sync::{Arc, OnceLock},
    time::Duration,
};

use layotto_core::backend::BackendHandle;
use redis::{
    AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, RedisResult, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
    cluster::ClusterClient,
    cluster_async::ClusterConnection,
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
};
use tracing::{info, warn};

use super::{
    component::bounded_call,
    registry::{Entry, is_endpoint},
};
use crate::error::ApiError;

/// A redis component's call timeout unless its metadata's `timeout` says.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to reach redis (LayOtto's `redisHost`, `redisPassword`; Dapr's `redisType`,
/// `failover`, `sentinelMasterName`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `host:port`; for Sentinel and Cluster a comma-separated list of them.
    pub address: String,
    /// The password, if any (of the redis nodes, not of the sentinels).
    pub password: Option<String>,
    /// The longest a call may take.
    pub timeout: Duration,
    /// How `address` is reached.
    pub mode: RedisMode,
}

/// How a component reaches redis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisMode {
    /// One node at `address`.
    Node,
    /// The master Sentinel names `master_name`, asked of the sentinels at `address`.
    Sentinel {
        /// Sentinel's name for the master (`sentinelMasterName`).
        master_name: String,
    },
    /// A Redis Cluster whose seed nodes are at `address`.
    Cluster,
}

/// The connection a call's operation gets: one node's (or Sentinel's current master's)
/// connection manager, or a cluster connection. Cheap to clone.
#[derive(Clone)]
pub enum RedisLink {
    /// A single node's connection.
    Node(ConnectionManager),
    /// A Redis Cluster connection (routes each command by its key's slot).
    Cluster(ClusterConnection),
}

impl ConnectionLike for RedisLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Node(manager) => manager.req_packed_command(cmd),
            Self::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Node(manager) => manager.req_packed_commands(pipeline, offset, count),
            Self::Cluster(cluster) => cluster.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Node(manager) => manager.get_db(),
            Self::Cluster(cluster) => cluster.get_db(),
        }
    }
}

/// What `connect` set up.
enum Link {
    Node {
        client: redis::Client,
        manager: ConnectionManager,
    },
    Sentinel(Arc<SentinelMaster>),
    Cluster(ClusterConnection),
}

/// The master Sentinel currently names, and the way to ask again.
struct SentinelMaster {
    sentinels: tokio::sync::Mutex<SentinelClient>,
    config: ConnectionManagerConfig,
    /// Only ever locked on the backend pool.
    current: tokio::sync::RwLock<ConnectionManager>,
}

impl SentinelMaster {
    /// The master's client, as the sentinels name it now.
    async fn master_client(&self) -> RedisResult<redis::Client> {
        self.sentinels.lock().await.async_get_client().await
    }

    /// A connection manager to the master the sentinels name now.
    async fn resolve(&self) -> RedisResult<ConnectionManager> {
        let client = self.master_client().await?;
        let mut manager = client
            .get_connection_manager_with_config(self.config.clone())
            .await?;
        redis::cmd("PING").query_async::<()>(&mut manager).await?;
        Ok(manager)
    }

    async fn current(&self) -> ConnectionManager {
        self.current.read().await.clone()
    }

    /// Asks the sentinels again after `err` from the current master; the next calls use the
    /// master they name (unchanged if none answers).
    async fn re_resolve(&self, component: &str, err: &redis::RedisError) {
        match self.resolve().await {
            Ok(manager) => {
                *self.current.write().await = manager;
                info!("{component}: master re-resolved through sentinel after: {err}");
            }
            Err(resolve) => {
                warn!("{component}: sentinel re-resolve failed after {err}: {resolve}")
            }
        }
    }
}

/// Whether `err` says the master may have moved (it is gone, or it is a replica now).
fn master_may_have_moved(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.code() == Some("READONLY")
}

/// A component's redis connection.
pub struct RedisConnection {
    component: String,
    settings: RedisSettings,
    backend: BackendHandle,
    link: OnceLock<Link>,
}

impl RedisConnection {
    /// A connection for `component` (e.g. `lock "demo"`, for messages). Its calls all run on one
    /// backend thread, the one its connection task is started on when it connects.
    pub fn new(component: String, settings: RedisSettings, backend: BackendHandle) -> Self {
        Self {
            component,
            settings,
            backend: backend.pinned(),
            link: OnceLock::new(),
        }
    }

    /// The connection an entry describes with LayOtto's keys: `redisHost` (required),
    /// `redisPassword`, our `timeout` (seconds), and Dapr's `redisType` (`node` | `cluster`),
    /// `failover` (`true`: `redisHost` lists sentinels) with `sentinelMasterName`.
    pub fn from_entry(entry: &mut Entry<'_>) -> Option<Self> {
        let address = entry.take("redisHost");
        let password = entry.take("redisPassword");
        let timeout = entry.seconds("timeout", DEFAULT_TIMEOUT);
        let mode = mode_from_entry(entry);
        let Some(address) = address.filter(|a| a.split(',').all(|one| is_endpoint(one.trim())))
        else {
            entry.metadata_error(
                "redisHost",
                "redis needs its \"host:port\" (comma-separated for sentinels or cluster nodes)",
            );
            return None;
        };
        let mode = mode?;
        if mode == RedisMode::Node && address.contains(',') {
            entry.metadata_error(
                "redisHost",
                "one \"host:port\" unless redisType is cluster or failover is true",
            );
            return None;
        }
        let settings = RedisSettings {
            address,
            password,
            timeout: timeout?,
            mode,
        };
        Some(Self::new(
            entry.component().to_owned(),
            settings,
            entry.backend().clone(),
        ))
    }

    /// "COMPONENT (redis at ADDRESS)", for messages.
    pub fn describe(&self) -> String {
        format!("{} (redis at {})", self.component, self.settings.address)
    }

    /// Connects and checks redis answers (start-up, main thread).
    pub async fn connect(&self) -> Result<(), ApiError> {
        let link = match &self.settings.mode {
            RedisMode::Node => self.connect_node().await?,
            RedisMode::Sentinel { master_name } => self.connect_sentinel(master_name).await?,
            RedisMode::Cluster => self.connect_cluster().await?,
        };
        info!("{}: connected", self.describe());
        let _ = self.link.set(link);
        Ok(())
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(self.settings.timeout))
            .set_number_of_retries(0)
    }

    fn addresses(&self) -> impl Iterator<Item = &str> {
        self.settings.address.split(',').map(str::trim)
    }

    async fn connect_node(&self) -> Result<Link, ApiError> {
        let url = node_url(&self.settings.address, self.settings.password.as_deref());
        let client = redis::Client::open(url).map_err(|err| self.map_error(err))?;
        let config = self.manager_config();
        let connecting = client.clone();
        let manager = self
            .run(async move {
                let mut manager = connecting
                    .get_connection_manager_with_config(config)
                    .await?;
                redis::cmd("PING").query_async::<()>(&mut manager).await?;
                Ok(manager)
            })
            .await?;
        Ok(Link::Node { client, manager })
    }

    async fn connect_sentinel(&self, master_name: &str) -> Result<Link, ApiError> {
        let mut node = redis::RedisConnectionInfo::default();
        if let Some(password) = &self.settings.password {
            node = node.set_password(password);
        }
        let sentinels = self
            .addresses()
            .map(|address| format!("redis://{address}/"))
            .collect::<Vec<_>>();
        let sentinels = SentinelClient::build(
            sentinels,
            master_name.to_owned(),
            Some(SentinelNodeConnectionInfo::default().set_redis_connection_info(node)),
            SentinelServerType::Master,
        )
        .map_err(|err| self.map_error(err))?;
        let config = self.manager_config();
        let first = self
            .run(async move {
                let mut sentinels = sentinels;
                let client = sentinels.async_get_client().await?;
                let mut manager = client
                    .get_connection_manager_with_config(config.clone())
                    .await?;
                redis::cmd("PING").query_async::<()>(&mut manager).await?;
                Ok((sentinels, manager, config))
            })
            .await?;
        let (sentinels, manager, config) = first;
        Ok(Link::Sentinel(Arc::new(SentinelMaster {
            sentinels: tokio::sync::Mutex::new(sentinels),
            config,
            current: tokio::sync::RwLock::new(manager),
        })))
    }

    async fn connect_cluster(&self) -> Result<Link, ApiError> {
        let nodes = self
            .addresses()
            .map(|address| format!("redis://{address}/"))
            .collect::<Vec<_>>();
        let mut builder = ClusterClient::builder(nodes)
            .connection_timeout(self.settings.timeout)
            .response_timeout(self.settings.timeout);
        if let Some(password) = &self.settings.password {
            builder = builder.password(password);
        }
        let client = builder.build().map_err(|err| self.map_error(err))?;
        let cluster = self
            .run(async move {
                let mut cluster = client.get_async_connection().await?;
                redis::cmd("PING").query_async::<()>(&mut cluster).await?;
                Ok(cluster)
            })
            .await?;
        Ok(Link::Cluster(cluster))
    }

    /// `Ok` when redis answers a PING within the timeout (readiness).
    pub async fn health(&self) -> Result<(), ApiError> {
        self.call(
            |mut manager| async move { redis::cmd("PING").query_async::<()>(&mut manager).await },
        )
        .await
    }

    fn connected(&self) -> Result<&Link, ApiError> {
        self.link
            .get()
            .ok_or_else(|| ApiError::unavailable(format!("{}: not connected", self.describe())))
    }

    /// A way to open connections of their own (blocking reads); set by `connect`.
    pub fn dedicated(&self) -> Result<DedicatedConnector, ApiError> {
        let source = match self.connected()? {
            Link::Node { client, .. } => DedicatedSource::Node(client.clone()),
            Link::Sentinel(master) => DedicatedSource::Sentinel(master.clone()),
            Link::Cluster(cluster) => DedicatedSource::Cluster {
                cluster: cluster.clone(),
                password: self.settings.password.clone(),
            },
        };
        Ok(DedicatedConnector {
            source,
            timeout: self.settings.timeout,
        })
    }

    /// The backend pool its calls run on.
    pub fn backend(&self) -> &BackendHandle {
        &self.backend
    }

    /// Runs `op` with the connection on the backend pool, bounded by the timeout. Through
    /// Sentinel, an error saying the master may have moved re-resolves it for the next calls.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, ApiError>
    where
        F: FnOnce(RedisLink) -> Fut + Send + 'static,
        Fut: Future<Output = redis::RedisResult<T>> + Send,
        T: Send + 'static,
    {
        match self.connected()? {
            Link::Node { manager, .. } => {
                let link = RedisLink::Node(manager.clone());
                self.run(async move { op(link).await }).await
            }
            Link::Cluster(cluster) => {
                let link = RedisLink::Cluster(cluster.clone());
                self.run(async move { op(link).await }).await
            }
            Link::Sentinel(master) => {
                let master = master.clone();
                let component = self.describe();
                self.run(async move {
                    let result = op(RedisLink::Node(master.current().await)).await;
                    if let Err(err) = &result
                        && master_may_have_moved(err)
                    {
                        master.re_resolve(&component, err).await;
                    }
                    result
                })
                .await
            }
        }
    }

    async fn run<T, Fut>(&self, op: Fut) -> Result<T, ApiError>
    where
        Fut: Future<Output = redis::RedisResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        let timeout = self.settings.timeout;
        bounded_call(&self.backend, timeout, self.describe(), op, |err| {
            self.map_error(err)
        })
        .await
    }

    fn map_error(&self, err: redis::RedisError) -> ApiError {
        if err.is_io_error()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_timeout()
        {
            ApiError::unreachable(self.describe(), err)
        } else {
            ApiError::backend(self.describe(), err)
        }
    }
}

/// Opens connections of their own to a component's redis: for commands that block on the
/// server (`XREADGROUP ... BLOCK`), so they neither hold up the shared connection nor run into
/// a response timeout. Their callers bound each command themselves.
#[derive(Clone)]
pub struct DedicatedConnector {
    source: DedicatedSource,
    timeout: Duration,
}

/// Where dedicated connections go.
#[derive(Clone)]
enum DedicatedSource {
    Node(redis::Client),
    /// The master the sentinels name at each connect.
    Sentinel(Arc<SentinelMaster>),
    /// The cluster node that owns the key's slot at each connect (asked of the cluster).
    Cluster {
        cluster: ClusterConnection,
        password: Option<String>,
    },
}

impl DedicatedConnector {
    /// A new connection for commands on `key` without a response timeout, connecting within
    /// the component's timeout (through Sentinel: to the master the sentinels name now; on a
    /// cluster: to the master owning `key`'s slot now).
    pub async fn connect(&self, key: &str) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(None);
        let client = match &self.source {
            DedicatedSource::Node(client) => client.clone(),
            DedicatedSource::Sentinel(master) => master.master_client().await?,
            DedicatedSource::Cluster { cluster, password } => {
                let owner = slot_owner(&mut cluster.clone(), key).await?;
                redis::Client::open(node_url(&owner, password.as_deref()))?
            }
        };
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// The component's timeout, for one command that does not block on the server.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// `redis://` URL of the node at `address`.
fn node_url(address: &str, password: Option<&str>) -> String {
    match password {
        Some(password) => format!("redis://:{password}@{address}/"),
        None => format!("redis://{address}/"),
    }
}

/// `host:port` of the cluster master serving `key`'s slot (`CLUSTER KEYSLOT`, `CLUSTER SLOTS`).
async fn slot_owner(cluster: &mut ClusterConnection, key: &str) -> RedisResult<String> {
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(cluster)
        .await?;
    let ranges: Vec<Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(cluster)
        .await?;
    for range in ranges {
        let Value::Array(range) = range else {
            continue;
        };
        let [
            Value::Int(first),
            Value::Int(last),
            Value::Array(master),
            ..,
        ] = range.as_slice()
        else {
            continue;
        };
        if let ([Value::BulkString(host), Value::Int(port), ..], true) =
            (master.as_slice(), (*first..=*last).contains(&slot))
        {
            return Ok(format!("{}:{port}", String::from_utf8_lossy(host)));
        }
    }
    Err(redis::RedisError::from((
        redis::ErrorKind::ClusterConnectionNotFound,
        "no cluster master serves the key's slot",
    )))
}

/// Dapr's `redisType` and `failover`/`sentinelMasterName`, as a [`RedisMode`].
fn mode_from_entry(entry: &mut Entry<'_>) -> Option<RedisMode> {
    let redis_type = entry.take("redisType");
    let failover = entry.take("failover");
    let master_name = entry.take("sentinelMasterName");
    let failover = match failover.as_deref().map(str::trim) {
        None | Some("") => false,
        Some(value) => match value.parse::<bool>() {
            Ok(failover) => failover,
            Err(_) => {
                entry.metadata_error("failover", "\"true\" or \"false\"");
                return None;
            }
        },
    };
    let cluster = match redis_type.as_deref().map(str::trim) {
        None | Some("") | Some("node") => false,
        Some("cluster") => true,
        Some(_) => {
            entry.metadata_error("redisType", "\"node\" or \"cluster\"");
            return None;
        }
    };
    match (cluster, failover) {
        (true, true) => {
            entry.metadata_error("failover", "Sentinel failover is for redisType node");
            None
        }
        (true, false) => Some(RedisMode::Cluster),
        (false, true) => match master_name.filter(|name| !name.trim().is_empty()) {
            Some(master_name) => Some(RedisMode::Sentinel { master_name }),
            None => {
                entry.metadata_error(
                    "sentinelMasterName",
                    "failover needs the master's name as the sentinels know it",
                );
                None
            }
        },
        (false, false) => Some(RedisMode::Node),
    }
}
