//! One etcd connection of a component (config store, lock, sequencer): connects at start-up,
//! runs every call on the backend pool (etcd-client needs tokio) bounded by the component's
//! timeout, and maps etcd's failures to [`ApiError`]s naming the component and the address.

use std::{future::Future, sync::OnceLock, time::Duration};

use etcd_client::{Client, ConnectOptions};
use layotto_core::backend::BackendHandle;
use tracing::info;

use super::{
    component::bounded_call,
    registry::{Entry, is_endpoint},
};
use crate::error::ApiError;

/// An etcd lock, sequencer or state store's timeout unless its metadata's `dialTimeout` says.
const DEFAULT_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// etcd-client keep-alive: ping interval and how long to wait for the answer.
const KEEP_ALIVE: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(3));

/// Where and how to reach etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// `host:port` (or URL) of each member.
    pub endpoints: Vec<String>,
    /// The longest a call may take.
    pub timeout: Duration,
    /// User and password, when etcd has authentication on.
    pub credentials: Option<(String, String)>,
}

/// A component's etcd client.
pub struct EtcdConnection {
    component: String,
    settings: EtcdSettings,
    backend: BackendHandle,
    client: OnceLock<Client>,
}

impl EtcdConnection {
    /// A connection for `component` (e.g. `config store "demo"`, for messages).
    pub fn new(component: String, settings: EtcdSettings, backend: BackendHandle) -> Self {
        Self {
            component,
            settings,
            backend,
            client: OnceLock::new(),
        }
    }

    /// The connection an entry describes with LayOtto's keys, and the key prefix its data lives
    /// under: `endpoints` (comma-separated, required), `dialTimeout`, `username`, `password`,
    /// `keyPrefixPath` (else `default_prefix`).
    pub fn from_entry(entry: &mut Entry<'_>, default_prefix: &str) -> Option<(Self, String)> {
        let prefix = entry
            .take("keyPrefixPath")
            .unwrap_or_else(|| default_prefix.into());
        let endpoints: Vec<String> = entry
            .take("endpoints")
            .map(|list| {
                list.split(',')
                    .map(|e| e.trim().to_owned())
                    .filter(|e| !e.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let timeout = entry.seconds("dialTimeout", DEFAULT_DIAL_TIMEOUT);
        let user = entry.take("username");
        let password = entry.take("password").unwrap_or_default();
        if endpoints.is_empty() || !endpoints.iter().all(|e| is_endpoint(e)) {
            entry.metadata_error(
                "endpoints",
                "etcd needs \"host:port\" endpoints, comma-separated",
            );
            return None;
        }
        let settings = EtcdSettings {
            endpoints,
            timeout: timeout?,
            credentials: user.map(|user| (user, password)),
        };
        let etcd = Self::new(
            entry.component().to_owned(),
            settings,
            entry.backend().clone(),
        );
        Some((etcd, prefix))
    }

    /// "COMPONENT (etcd at ADDRESSES)", for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} (etcd at {})",
            self.component,
            self.settings.endpoints.join(", ")
        )
    }

    /// The longest a call may take.
    pub fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// The backend pool the calls run on.
    pub fn backend(&self) -> &BackendHandle {
        &self.backend
    }

    /// Connects and checks etcd answers (start-up, main thread).
    pub async fn connect(&self) -> Result<(), ApiError> {
        let endpoints = self.settings.endpoints.clone();
        // Calls are bounded in `run`; a per-request timeout here would also cut watches.
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.settings.timeout)
            .with_keep_alive(KEEP_ALIVE.0, KEEP_ALIVE.1)
            .with_keep_alive_while_idle(true);
        if let Some((user, password)) = &self.settings.credentials {
            options = options.with_user(user, password);
        }
        let client = self
            .run(async move {
                let mut client = Client::connect(endpoints, Some(options)).await?;
                client.status().await?;
                Ok(client)
            })
            .await?;
        info!("{}: connected", self.describe());
        let _ = self.client.set(client);
        Ok(())
    }

    /// `Ok` when etcd answers a status request within the timeout (readiness).
    pub async fn health(&self) -> Result<(), ApiError> {
        self.call(|mut client| async move { client.status().await })
            .await
            .map(drop)
    }

    /// The connected client.
    pub fn client(&self) -> Result<Client, ApiError> {
        self.client
            .get()
            .cloned()
            .ok_or_else(|| ApiError::unavailable(format!("{}: not connected", self.describe())))
    }

    /// Runs `op` with a client on the backend pool, bounded by the timeout.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, ApiError>
    where
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send,
        T: Send + 'static,
    {
        let client = self.client()?;
        self.run(async move { op(client).await }).await
    }

    /// Runs `op` on the backend pool, bounded by the timeout, mapping its errors.
    async fn run<T, Fut>(&self, op: Fut) -> Result<T, ApiError>
    where
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
        T: Send + 'static,
    {
        let timeout = self.settings.timeout;
        bounded_call(&self.backend, timeout, self.describe(), op, |err| {
            self.map_error(err)
        })
        .await
    }

    fn map_error(&self, err: etcd_client::Error) -> ApiError {
        use etcd_client::Error;
        use tonic::Code;
        match &err {
            Error::GRpcStatus(status) => match status.code() {
                Code::InvalidArgument | Code::OutOfRange => {
                    ApiError::InvalidArgument(format!("{}: {err}", self.describe()))
                }
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                    ApiError::unreachable(self.describe(), err)
                }
                _ => ApiError::backend(self.describe(), err),
            },
            Error::TransportError(_) | Error::IoError(_) | Error::WatchError(_) => {
                ApiError::unreachable(self.describe(), err)
            }
            _ => ApiError::backend(self.describe(), err),
        }
    }
}
