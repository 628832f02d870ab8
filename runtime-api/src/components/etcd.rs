//! One etcd connection of a component (config store, lock, sequencer): connects at start-up,
//! runs every call on the backend pool (etcd-client needs tokio) bounded by the component's
//! timeout, and maps etcd's failures to [`ApiError`]s naming the component and the address.

use std::{future::Future, sync::OnceLock, time::Duration};

use etcd_client::{Client, ConnectOptions};
use layotto_core::backend::BackendHandle;
use tracing::info;

use crate::{components::bounded_call, error::ApiError};

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

    /// The connected client.
    pub fn client(&self) -> Result<Client, ApiError> {
        self.client
            .get()
            .cloned()
            .ok_or_else(|| ApiError::Unavailable(format!("{}: not connected", self.describe())))
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
        let message = format!("{}: {err}", self.describe());
        match err {
            Error::GRpcStatus(status) => match status.code() {
                Code::InvalidArgument | Code::OutOfRange => ApiError::InvalidArgument(message),
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
                    ApiError::Unavailable(message)
                }
                _ => ApiError::Internal(message),
            },
            Error::TransportError(_) | Error::IoError(_) | Error::WatchError(_) => {
                ApiError::Unavailable(message)
            }
            _ => ApiError::Internal(message),
        }
    }
}
