//! One zookeeper session of a component (lock, sequencer, state): opened at start-up, replaced
//! by a new one when zookeeper ends it (expiry after an outage longer than the session timeout),
//! every call run on the backend pool (zookeeper-client's tasks need tokio) bounded by the
//! component's timeout, failures mapped to [`ApiError`]s naming the component and the address.
//! Also where a component's znode paths are made from its `keyPrefixPath` and the caller's keys.

use std::{future::Future, sync::Arc, time::Duration};

use layotto_core::{backend::BackendHandle, config::parse_duration};
use tracing::info;
use zookeeper_client::{Acls, Client, CreateMode, Error as ZkError};

use super::{component::bounded_call, registry::Entry};
use crate::error::ApiError;

/// The session timeout asked for unless the metadata's `sessionTimeout` says (LayOtto's).
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(5);

/// A zookeeper component's call timeout unless its metadata's `timeout` says.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how to reach zookeeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZookeeperSettings {
    /// `host` or `host:port` (port 2181 when absent) of each server.
    pub hosts: Vec<String>,
    /// The session timeout asked of the server (it bounds it by its own minimum and maximum).
    pub session_timeout: Duration,
    /// The longest a call may take.
    pub timeout: Duration,
}

/// A component's zookeeper session.
pub struct ZookeeperConnection {
    component: String,
    settings: ZookeeperSettings,
    backend: BackendHandle,
    session: Arc<Session>,
}

impl ZookeeperConnection {
    /// A connection for `component` (e.g. `lock "demo"`, for messages).
    pub fn new(component: String, settings: ZookeeperSettings, backend: BackendHandle) -> Self {
        let session = Arc::new(Session {
            opener: SessionOpener {
                cluster: settings.hosts.join(","),
            },
            timeout: settings.session_timeout,
            describe: describe(&component, &settings.hosts),
            client: tokio::sync::Mutex::new(None),
        });
        Self {
            component,
            settings,
            backend,
            session,
        }
    }

    /// The connection an entry describes, and the znode its keys live under: the servers in
    /// metadata `hosts_key` (LayOtto's `zookeeperHosts` or Dapr's `servers`; separated by `;` or
    /// `,`), `sessionTimeout` (seconds, or a duration such as `"3s"`; LayOtto's code reads
    /// `SessionTimeout`, also taken), `keyPrefixPath` (default `/`) and our `timeout` (seconds).
    pub fn from_entry(entry: &mut Entry<'_>, hosts_key: &str) -> Option<(Self, KeyPaths)> {
        let hosts: Vec<String> = entry
            .take(hosts_key)
            .map(|list| {
                list.split([';', ','])
                    .map(|host| host.trim().to_owned())
                    .filter(|host| !host.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let session_timeout = match entry
            .take("sessionTimeout")
            .or_else(|| entry.take("SessionTimeout"))
        {
            None => Some(DEFAULT_SESSION_TIMEOUT),
            Some(text) => {
                let parsed = session_timeout(&text);
                if parsed.is_none() {
                    entry.metadata_error(
                        "sessionTimeout",
                        format!(
                            "invalid \"{text}\": expected seconds or a duration such as \"3s\""
                        ),
                    );
                }
                parsed
            }
        };
        let prefix = entry.take("keyPrefixPath");
        let timeout = entry.seconds("timeout", DEFAULT_TIMEOUT);
        if hosts.is_empty() {
            entry.metadata_error(
                hosts_key,
                "zookeeper needs its servers, \"host:port\" separated by ';' or ','",
            );
            return None;
        }
        let paths = match KeyPaths::new(prefix.as_deref().unwrap_or("/")) {
            Ok(paths) => paths,
            Err(message) => {
                entry.metadata_error("keyPrefixPath", message);
                return None;
            }
        };
        let settings = ZookeeperSettings {
            hosts,
            session_timeout: session_timeout?,
            timeout: timeout?,
        };
        let connection = Self::new(
            entry.component().to_owned(),
            settings,
            entry.backend().clone(),
        );
        Some((connection, paths))
    }

    /// "COMPONENT (zookeeper at HOSTS)", for messages.
    pub fn describe(&self) -> String {
        describe(&self.component, &self.settings.hosts)
    }

    /// Opens the session and creates `paths`' prefix znode if missing (start-up, main thread).
    pub async fn connect(&self, paths: &KeyPaths) -> Result<(), ApiError> {
        let prefix = paths.prefix.clone();
        self.call(move |client| async move {
            if !prefix.is_empty() {
                let options = CreateMode::Persistent.with_acls(Acls::anyone_all());
                client.mkdir(&prefix, &options).await?;
            }
            client.check_stat("/").await.map(drop)
        })
        .await?;
        info!("{}: connected", self.describe());
        Ok(())
    }

    /// `Ok` when zookeeper answers within the timeout (readiness).
    pub async fn health(&self) -> Result<(), ApiError> {
        self.call(|client| async move { client.check_stat("/").await.map(drop) })
            .await
    }

    /// Lets go of the session (drain).
    pub async fn close(&self) {
        self.session.client.lock().await.take();
    }

    /// Opens sessions of their own (a lock's, which ends with it).
    pub fn opener(&self) -> SessionOpener {
        self.session.opener.clone()
    }

    /// Runs `op` with the session's client on the backend pool, bounded by the timeout; a
    /// session zookeeper has ended is replaced first.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, ApiError>
    where
        F: FnOnce(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ZkError>> + Send,
        T: Send + 'static,
    {
        let session = self.session.clone();
        let call = async move { op(session.client().await?).await };
        bounded_call(
            &self.backend,
            self.settings.timeout,
            self.describe(),
            call,
            |err| self.map_error(err),
        )
        .await
    }

    /// The [`ApiError`] for a zookeeper failure: UNAVAILABLE when zookeeper cannot be reached or
    /// the session is gone, INVALID_ARGUMENT for a path it refuses, INTERNAL otherwise.
    pub fn map_error(&self, err: ZkError) -> ApiError {
        match err {
            ZkError::ConnectionLoss
            | ZkError::Timeout
            | ZkError::NoHosts
            | ZkError::SessionExpired
            | ZkError::SessionMoved
            | ZkError::ClientClosed
            | ZkError::Throttled
            | ZkError::NotReadOnly => ApiError::unreachable(self.describe(), err),
            ZkError::BadArguments(_) => {
                ApiError::InvalidArgument(format!("{}: {err}", self.describe()))
            }
            _ => ApiError::backend(self.describe(), err),
        }
    }
}

fn describe(component: &str, hosts: &[String]) -> String {
    format!("{component} (zookeeper at {})", hosts.join(", "))
}

/// `sessionTimeout`: whole or fractional seconds (LayOtto's `"3"`) or a duration (Dapr's
/// `"3s"`), positive and at most a day.
fn session_timeout(text: &str) -> Option<Duration> {
    let duration = match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0 => {
            Duration::from_secs_f64(seconds)
        }
        Ok(_) => return None,
        Err(_) => parse_duration(text).ok()?,
    };
    (duration > Duration::ZERO && duration <= Duration::from_secs(86_400)).then_some(duration)
}

/// Opens zookeeper sessions on a component's servers.
#[derive(Debug, Clone)]
pub struct SessionOpener {
    cluster: String,
}

impl SessionOpener {
    /// A new session asking for `session_timeout`; fails once every server has been tried.
    /// Call it on the backend pool (the session's task is spawned on tokio).
    pub async fn open(&self, session_timeout: Duration) -> Result<Client, ZkError> {
        Client::connector()
            .with_session_timeout(session_timeout)
            .with_fail_eagerly()
            .connect(&self.cluster)
            .await
    }
}

/// The component's shared session, opened on first use and again after zookeeper ended it.
struct Session {
    opener: SessionOpener,
    timeout: Duration,
    describe: String,
    client: tokio::sync::Mutex<Option<Client>>,
}

impl Session {
    /// The live client (backend pool).
    async fn client(&self) -> Result<Client, ZkError> {
        let mut current = self.client.lock().await;
        if let Some(client) = current.as_ref()
            && !client.state().is_terminated()
        {
            return Ok(client.clone());
        }
        let client = self.opener.open(self.timeout).await?;
        if current.is_some() {
            info!("{}: the session had ended; opened a new one", self.describe);
        }
        *current = Some(client.clone());
        Ok(client)
    }
}

/// Where a component's keys live: `<keyPrefixPath>/<key>`, each key one znode name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPaths {
    /// The prefix without its trailing `/` (empty for the root).
    prefix: String,
}

impl KeyPaths {
    /// Paths under `prefix`, an absolute znode path (`/` for the root).
    pub fn new(prefix: &str) -> Result<Self, String> {
        let trimmed = prefix.trim_end_matches('/');
        let valid = prefix.starts_with('/')
            && trimmed.split('/').skip(1).all(|name| {
                !name.is_empty() && name != "." && name != ".." && !name.contains('\0')
            });
        if !valid {
            return Err(format!(
                "invalid \"{prefix}\": expected an absolute znode path such as \"/\" or \"/layotto/lock\""
            ));
        }
        Ok(Self {
            prefix: trimmed.to_owned(),
        })
    }

    /// The znode of `key`; `INVALID_ARGUMENT` for a key that is not one znode name.
    pub fn path(&self, key: &str) -> Result<String, ApiError> {
        if key.is_empty() || key == "." || key == ".." || key.contains(['/', '\0']) {
            return Err(ApiError::InvalidArgument(format!(
                "key \"{key}\" cannot be a zookeeper znode name (no '/', NUL, \".\" or \"..\")"
            )));
        }
        if self.prefix.is_empty() && key == "zookeeper" {
            return Err(ApiError::InvalidArgument(
                "key \"zookeeper\" is zookeeper's own znode at the root".into(),
            ));
        }
        Ok(format!("{}/{key}", self.prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_timeouts_are_seconds_or_durations() {
        assert_eq!(session_timeout("3"), Some(Duration::from_secs(3)));
        assert_eq!(session_timeout("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(session_timeout("3s"), Some(Duration::from_secs(3)));
        assert_eq!(session_timeout("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(session_timeout("0"), None);
        assert_eq!(session_timeout("-1"), None);
        assert_eq!(session_timeout("0s"), None);
        assert_eq!(session_timeout("soon"), None);
        assert_eq!(session_timeout("1e20"), None);
    }

    #[test]
    fn keys_are_one_znode_under_the_prefix() {
        let root = KeyPaths::new("/").unwrap();
        assert_eq!(root.path("order-1").unwrap(), "/order-1");
        let nested = KeyPaths::new("/layotto/lock/").unwrap();
        assert_eq!(nested.path("order-1").unwrap(), "/layotto/lock/order-1");
        assert_eq!(nested.path("zookeeper").unwrap(), "/layotto/lock/zookeeper");
        for bad in ["", "a/b", ".", "..", "nul\0", "zookeeper"] {
            assert!(root.path(bad).is_err(), "{bad:?}");
        }
        for bad in ["", "lock", "/a//b", "/a/../b"] {
            assert!(KeyPaths::new(bad).is_err(), "{bad:?}");
        }
    }
}
