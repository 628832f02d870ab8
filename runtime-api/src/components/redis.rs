//! One redis connection of a component (state, lock, sequencer, pub/sub): a multiplexed,
//! self-reconnecting connection manager created at start-up, every command run on the backend
//! pool (the redis client needs tokio) bounded by the component's timeout, failures mapped to
//! [`ApiError`]s naming the component and the address.
//!
//! The component's timeout is the only one applied: the manager gets no response timeout of its
//! own (the redis crate's default would fail every call after 500 ms), connecting is bounded by
//! the same timeout, and a refused connection is not retried inside the call (it fails at once
//! with its cause; the next call connects again).

use std::{future::Future, sync::OnceLock, time::Duration};

use layotto_core::backend::BackendHandle;
use redis::{
    AsyncConnectionConfig,
    aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection},
};
use tracing::info;

use super::{
    component::bounded_call,
    registry::{Entry, is_endpoint},
};
use crate::error::ApiError;

/// A redis component's call timeout unless its metadata's `timeout` says.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to reach redis (LayOtto's `redisHost`, `redisPassword`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `host:port`.
    pub address: String,
    /// The password, if any.
    pub password: Option<String>,
    /// The longest a call may take.
    pub timeout: Duration,
}

/// A component's redis connection.
pub struct RedisConnection {
    component: String,
    settings: RedisSettings,
    backend: BackendHandle,
    client: OnceLock<redis::Client>,
    manager: OnceLock<ConnectionManager>,
}

impl RedisConnection {
    /// A connection for `component` (e.g. `lock "demo"`, for messages).
    pub fn new(component: String, settings: RedisSettings, backend: BackendHandle) -> Self {
        Self {
            component,
            settings,
            backend,
            client: OnceLock::new(),
            manager: OnceLock::new(),
        }
    }

    /// The connection an entry describes with LayOtto's keys: `redisHost` (required),
    /// `redisPassword`, and our `timeout` (seconds).
    pub fn from_entry(entry: &mut Entry<'_>) -> Option<Self> {
        let address = entry.take("redisHost");
        let password = entry.take("redisPassword");
        let timeout = entry.seconds("timeout", DEFAULT_TIMEOUT);
        let Some(address) = address.filter(|a| is_endpoint(a)) else {
            entry.metadata_error("redisHost", "redis needs its \"host:port\"");
            return None;
        };
        let settings = RedisSettings {
            address,
            password,
            timeout: timeout?,
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
        let url = match &self.settings.password {
            Some(password) => format!("redis://:{password}@{}/", self.settings.address),
            None => format!("redis://{}/", self.settings.address),
        };
        let client = redis::Client::open(url).map_err(|err| self.map_error(err))?;
        let _ = self.client.set(client.clone());
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(self.settings.timeout))
            .set_number_of_retries(0);
        let manager = self
            .run(async move {
                let mut manager = client.get_connection_manager_with_config(config).await?;
                redis::cmd("PING").query_async::<()>(&mut manager).await?;
                Ok(manager)
            })
            .await?;
        info!("{}: connected", self.describe());
        let _ = self.manager.set(manager);
        Ok(())
    }

    /// `Ok` when redis answers a PING within the timeout (readiness).
    pub async fn health(&self) -> Result<(), ApiError> {
        self.call(
            |mut manager| async move { redis::cmd("PING").query_async::<()>(&mut manager).await },
        )
        .await
    }

    /// A way to open connections of their own (blocking reads); set by `connect`.
    pub fn dedicated(&self) -> Result<DedicatedConnector, ApiError> {
        let client =
            self.client.get().cloned().ok_or_else(|| {
                ApiError::unavailable(format!("{}: not connected", self.describe()))
            })?;
        Ok(DedicatedConnector {
            client,
            timeout: self.settings.timeout,
        })
    }

    /// The backend pool its calls run on.
    pub fn backend(&self) -> &BackendHandle {
        &self.backend
    }

    /// Runs `op` with the connection on the backend pool, bounded by the timeout.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, ApiError>
    where
        F: FnOnce(ConnectionManager) -> Fut + Send + 'static,
        Fut: Future<Output = redis::RedisResult<T>> + Send,
        T: Send + 'static,
    {
        let manager =
            self.manager.get().cloned().ok_or_else(|| {
                ApiError::unavailable(format!("{}: not connected", self.describe()))
            })?;
        self.run(async move { op(manager).await }).await
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
    client: redis::Client,
    timeout: Duration,
}

impl DedicatedConnector {
    /// A new connection without a response timeout, connecting within the component's timeout.
    pub async fn connect(&self) -> redis::RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(None);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// The component's timeout, for one command that does not block on the server.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}
