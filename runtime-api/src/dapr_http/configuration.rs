//! `GET /v1.0/configuration/{store}?key=a&key=b` (`{"a": {"value", "version", "metadata"}}`,
//! 204 when nothing matches), `…/subscribe` (`{"id"}`; each change is then POSTed to the app's
//! HTTP port at `/configuration/{store}/{key}` as daprd's `UpdateEvent`, `{"id", "items"}`) and
//! `…/{id}/unsubscribe` (`{"ok": true}`). Items are the app's own (`app.app_id`) in the
//! default group and label, LayOtto's layout. A subscription's pushes run as a task on the
//! shard that subscribed; its id is known to every shard (an unsubscribe may come on any).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use futures_lite::future::or;
use http_body_util::Full;
use hyper::rt::Executor;
use layotto_filters::http1::{GlommioExecutor, HyperIo};
use layotto_proto::runtime::ConfigurationItem;
use serde::Serialize;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::{DaprHttpApi, DaprRequest, Reply};
use crate::{
    components::configuration::{ConfigStore, DELETED_MARK, Selector, hub::WatchEvent},
    error::{DaprCodes, DaprHttpError},
};

const fn codes(failed: &'static str) -> DaprCodes {
    DaprCodes {
        unknown_component: (400, "ERR_CONFIGURATION_STORE_NOT_FOUND"),
        failed,
    }
}
const GET: DaprCodes = codes("ERR_CONFIGURATION_GET");
const SUBSCRIBE: DaprCodes = codes("ERR_CONFIGURATION_SUBSCRIBE");

/// How long a push to the app may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// components-contrib's configuration `Item` (every field `omitempty`).
#[derive(Serialize)]
struct Item {
    #[serde(skip_serializing_if = "String::is_empty")]
    value: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    version: String,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    metadata: HashMap<String, String>,
}

/// components-contrib's `UpdateEvent`, what the app is sent.
#[derive(Serialize)]
struct UpdateEvent<'a> {
    id: &'a str,
    items: BTreeMap<String, Item>,
}

#[derive(Serialize)]
struct Subscribed {
    id: String,
}

#[derive(Serialize)]
struct Unsubscribed {
    ok: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    message: String,
}

/// The live subscriptions of one listener, by id: dropping an entry's sender ends its task.
#[derive(Default)]
pub(super) struct Subscriptions {
    #[expect(
        clippy::disallowed_types,
        reason = "taken only to add or remove one entry per (un)subscribe, never across an await"
    )]
    by_id: std::sync::Mutex<HashMap<String, oneshot::Sender<()>>>,
}

impl Subscriptions {
    fn add(&self, id: String, stop: oneshot::Sender<()>) {
        self.by_id
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id, stop);
    }

    fn remove(&self, id: &str) -> bool {
        self.by_id
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(id)
            .is_some()
    }
}

fn store<'a>(
    api: &'a DaprHttpApi,
    name: &str,
    codes: DaprCodes,
) -> Result<&'a Arc<dyn ConfigStore>, DaprHttpError> {
    api.runtime()
        .components()
        .config_stores
        .get_shared(name)
        .map_err(|err| err.dapr_http(codes))
}

/// The app's items named by the request's `key` parameters (all without any).
fn selector(
    api: &DaprHttpApi,
    request: &DaprRequest,
    codes: DaprCodes,
) -> Result<Selector, DaprHttpError> {
    Selector::new(
        api.runtime().app_id().to_owned(),
        String::new(),
        String::new(),
        request.query_all("key"),
    )
    .map_err(|err| err.dapr_http(codes))
}

/// Items by key, as daprd answers and pushes them (a deleted item has an empty value).
fn by_key(items: Vec<ConfigurationItem>) -> BTreeMap<String, Item> {
    items
        .into_iter()
        .map(|item| {
            let mut metadata = item.metadata;
            metadata.remove(DELETED_MARK);
            (
                item.key,
                Item {
                    value: item.content,
                    version: String::new(),
                    metadata,
                },
            )
        })
        .collect()
}

/// `GET /v1.0/configuration/{store}`: 200, or 204 when no item matches.
pub(super) async fn get(
    api: &DaprHttpApi,
    name: &str,
    request: &DaprRequest,
) -> Result<Reply, DaprHttpError> {
    let store = store(api, name, GET)?;
    let selector = selector(api, request, GET)?;
    let items = store
        .get(&selector)
        .await
        .map_err(|err| err.dapr_http(GET))?;
    if items.is_empty() {
        return Ok(Reply::no_content());
    }
    Ok(Reply::json(&by_key(items)))
}

/// `GET /v1.0/configuration/{store}/subscribe`: 200 `{"id"}` once the store's watch is in
/// place; 500 `ERR_APP_CHANNEL_NIL` without the app's HTTP port (`app_port`) to push to.
pub(super) async fn subscribe(
    api: &DaprHttpApi,
    name: &str,
    request: &DaprRequest,
) -> Result<Reply, DaprHttpError> {
    let store = store(api, name, SUBSCRIBE)?.clone();
    let selector = selector(api, request, SUBSCRIBE)?;
    let Some(app_port) = api.shared.app_port else {
        return Err(DaprHttpError::new(
            500,
            "ERR_APP_CHANNEL_NIL",
            "app channel is not initialized. cannot subscribe to configuration updates",
        ));
    };
    let subscription = store
        .subscribe(&selector.app_id)
        .await
        .map_err(|err| err.dapr_http(SUBSCRIBE))?;
    let id = subscription_id();
    let (stop, stopped) = oneshot::channel();
    api.shared.subscriptions.add(id.clone(), stop);
    let push = Push {
        id: id.clone(),
        store_name: name.to_owned(),
        app: std::net::SocketAddr::from(([127, 0, 0, 1], app_port)),
    };
    glommio::spawn_local(async move {
        let mut subscription = subscription;
        let follow = async {
            loop {
                let items = match subscription.next().await {
                    WatchEvent::Changed(items) => selector.select(items.iter()),
                    WatchEvent::Resync => match store.get(&selector).await {
                        Ok(items) => items,
                        Err(err) => {
                            warn!(store = %push.store_name, error = %crate::error::chain(&err), "configuration resync failed");
                            continue;
                        }
                    },
                };
                if !items.is_empty() {
                    push.send(by_key(items)).await;
                }
            }
        };
        or(follow, async {
            let _ = stopped.await;
        })
        .await;
        debug!(id = %push.id, "configuration subscription ended");
    })
    .detach();
    Ok(Reply::json(&Subscribed { id }))
}

/// `GET /v1.0/configuration/{store}/{id}/unsubscribe`: 200 `{"ok": true}`, or 500 with
/// `{"ok": false, "message"}` for an unknown id (daprd's shape).
pub(super) fn unsubscribe(api: &DaprHttpApi, name: &str, id: &str) -> Result<Reply, DaprHttpError> {
    store(api, name, GET)?;
    if api.shared.subscriptions.remove(id) {
        return Ok(Reply::json(&Unsubscribed {
            ok: true,
            message: String::new(),
        }));
    }
    let answer = Reply::json(&Unsubscribed {
        ok: false,
        message: format!(
            "failed to unsubscribe to configuration request {id}: subscription does not exist"
        ),
    });
    Ok(answer.with_status(http::StatusCode::INTERNAL_SERVER_ERROR))
}

/// A unique subscription id.
fn subscription_id() -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    format!(
        "{nanos:x}-{:x}-{:x}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where one subscription's changes go.
struct Push {
    id: String,
    store_name: String,
    app: std::net::SocketAddr,
}

impl Push {
    /// POSTs each changed item to the app, as daprd does (one request per key, each with every
    /// item of the change); failures are logged, as daprd logs them.
    async fn send(&self, items: BTreeMap<String, Item>) {
        let event = UpdateEvent {
            id: &self.id,
            items,
        };
        let body = match serde_json::to_vec(&event) {
            Ok(body) => Bytes::from(body),
            Err(err) => {
                warn!(error = %err, "cannot encode a configuration update");
                return;
            }
        };
        for key in event.items.keys() {
            let path = format!("/configuration/{}/{key}", self.store_name);
            let sent = or(self.post(&path, body.clone()), async {
                glommio::timer::sleep(PUSH_TIMEOUT).await;
                Err("no answer in time".to_owned())
            })
            .await;
            if let Err(err) = sent {
                warn!(app = %self.app, path, error = %err, "error sending configuration item to the app");
            }
        }
    }

    async fn post(&self, path: &str, body: Bytes) -> Result<(), String> {
        let stream = glommio::net::TcpStream::connect(self.app)
            .await
            .map_err(|err| err.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(HyperIo::new(stream))
            .await
            .map_err(|err| err.to_string())?;
        GlommioExecutor.execute(async move {
            let _ = connection.await;
        });
        let request = http::Request::post(path)
            .header(http::header::HOST, self.app.to_string())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|err| err.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| err.to_string())?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("the app answered {}", response.status()));
        }
        Ok(())
    }
}
