//! One etcd connection of a component (config store, lock, sequencer): connects at start-up,
//! runs every call on the backend pool (etcd-client needs tokio) bounded by the component's
//! timeout, and maps etcd's failures to [`ApiError`]s naming the component and the address.
//!
//! With several members, each has a client of its own and calls go to one of them (the
//! preferred) until it fails to answer; the call is then made on the next member, within the
//! same timeout, and that member becomes the preferred one. A member is asked with
//! `require_leader`, so one cut off from the cluster's leader refuses instead of answering stale.

use std::{
    future::Future,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use etcd_client::{Client, ConnectOptions};
use layotto_core::backend::BackendHandle;
use tokio::sync::OnceCell;
use tracing::{info, warn};

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

/// A component's etcd clients.
pub struct EtcdConnection {
    component: String,
    settings: EtcdSettings,
    backend: BackendHandle,
    members: OnceLock<Arc<Members>>,
}

/// One client per etcd member, connected on first use, and the member calls go to first.
/// Shared by the calls and watches of one component on the backend pool.
pub struct Members {
    endpoints: Vec<String>,
    options: ConnectOptions,
    clients: Vec<OnceCell<Client>>,
    preferred: AtomicUsize,
}

impl Members {
    fn new(endpoints: Vec<String>, options: ConnectOptions) -> Self {
        Self {
            clients: endpoints.iter().map(|_| OnceCell::new()).collect(),
            endpoints,
            options,
            preferred: AtomicUsize::new(0),
        }
    }

    /// How many members there are.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether there are none (never, once connected).
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The preferred member's index and client (connected now if it was not yet).
    pub async fn preferred(&self) -> (usize, Result<Client, etcd_client::Error>) {
        let member = self.preferred.load(Ordering::Relaxed);
        let client = self.clients[member]
            .get_or_try_init(|| {
                Client::connect([&self.endpoints[member]], Some(self.options.clone()))
            })
            .await
            .cloned();
        (member, client)
    }

    /// Records that `member` did not answer: the next member becomes the preferred one (unless
    /// another call moved on already).
    pub fn failed(&self, member: usize) {
        let next = (member + 1) % self.endpoints.len();
        if self
            .preferred
            .compare_exchange(member, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
            && next != member
        {
            warn!(
                "etcd member {} did not answer; calls go to {} now",
                self.endpoints[member], self.endpoints[next]
            );
        }
    }

    /// Runs `op` on the preferred member, and on the next ones while a member does not answer
    /// (each attempt but the last bounded by `attempt_timeout`); the last answer is the result.
    async fn run<T, F, Fut>(
        &self,
        op: F,
        attempt_timeout: Duration,
    ) -> Result<T, etcd_client::Error>
    where
        F: FnOnce(Client) -> Fut + Clone,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut attempts_left = self.len();
        loop {
            attempts_left -= 1;
            let (member, client) = self.preferred().await;
            let answer = match client {
                // The last attempt is bounded by the call's own timeout only.
                Ok(client) if attempts_left == 0 => op.clone()(client).await,
                Ok(client) => tokio::time::timeout(attempt_timeout, op.clone()(client))
                    .await
                    .unwrap_or_else(|_| {
                        Err(etcd_client::Error::IoError(
                            std::io::ErrorKind::TimedOut.into(),
                        ))
                    }),
                Err(err) => Err(err),
            };
            match answer {
                Err(err) if attempts_left > 0 && not_answered(&err) => self.failed(member),
                answer => return answer,
            }
        }
    }
}

/// Whether `err` says the member did not answer (down, frozen, cut off from its leader),
/// so another member may.
fn not_answered(err: &etcd_client::Error) -> bool {
    use etcd_client::Error;
    match err {
        Error::GRpcStatus(status) => matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
        ),
        Error::TransportError(_) | Error::IoError(_) => true,
        _ => false,
    }
}

impl EtcdConnection {
    /// A connection for `component` (e.g. `config store "demo"`, for messages).
    pub fn new(component: String, settings: EtcdSettings, backend: BackendHandle) -> Self {
        Self {
            component,
            settings,
            backend,
            members: OnceLock::new(),
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

    /// Connects and checks a member answers (start-up, main thread).
    pub async fn connect(&self) -> Result<(), ApiError> {
        // Calls are bounded in `run`; a per-request timeout here would also cut watches.
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.settings.timeout)
            .with_keep_alive(KEEP_ALIVE.0, KEEP_ALIVE.1)
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let Some((user, password)) = &self.settings.credentials {
            options = options.with_user(user, password);
        }
        let members = Arc::new(Members::new(self.settings.endpoints.clone(), options));
        let _ = self.members.set(members);
        self.health().await?;
        info!("{}: connected", self.describe());
        Ok(())
    }

    /// `Ok` when a member answers a status request within the timeout (readiness).
    pub async fn health(&self) -> Result<(), ApiError> {
        self.call(|mut client| async move { client.status().await })
            .await
            .map(drop)
    }

    /// The members' clients (for watches, which pick a member per session).
    pub fn members(&self) -> Result<Arc<Members>, ApiError> {
        self.members
            .get()
            .cloned()
            .ok_or_else(|| ApiError::unavailable(format!("{}: not connected", self.describe())))
    }

    /// Runs `op` with a member's client on the backend pool, bounded by the timeout; a member
    /// that does not answer (refused, reset, or silent for its share of the timeout) is passed
    /// over for the next one. `op` may thus run more than once: etcd calls that change data are
    /// made so that a repeat is harmless (puts of the same value, guarded transactions).
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, ApiError>
    where
        F: FnOnce(Client) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send,
        T: Send + 'static,
    {
        let members = self.members()?;
        // Each member gets an equal share of the timeout, so all may be tried within it.
        let attempt_timeout = self.settings.timeout / members.len().max(1) as u32;
        self.run(async move { members.run(op, attempt_timeout).await })
            .await
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
