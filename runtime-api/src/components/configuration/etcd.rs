//! The `etcd` configuration store. Items live at LayOtto's keys `/{app_id}/{group}/{label}/{key}`
//! with the content as the raw value, so `etcdctl` and LayOtto see the same data; tags and item
//! metadata go in a companion key (`<key>\0meta`, JSON) written in the same transaction. Every
//! call runs etcd-client on the backend pool (tokio), bounded by the configured timeout; one
//! watch task per subscribed app runs there too, resuming from its last revision after a loss.

use std::{collections::HashMap, future::Future, sync::OnceLock, time::Duration};

use async_trait::async_trait;
use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, KeyValue, Txn, TxnOp, WatchOptions,
    WatchResponse,
};
use layotto_core::backend::BackendHandle;
use layotto_proto::runtime::ConfigurationItem;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{
    ConfigStore, ItemPath, Selector, app_prefix, check_items,
    hub::{Subscription, WatchEvent, WatchFeed, WatchHub},
};
use crate::error::ApiError;

/// Suffix of the companion key holding an item's tags and metadata.
const META_SUFFIX: &str = "\0meta";
/// How far a subscriber may fall behind before it resyncs.
const SUBSCRIBER_BACKLOG: usize = 1024;
/// First and longest pause before a lost watch is re-established.
const RETRY_PAUSES: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
/// etcd-client keep-alive: ping interval and how long to wait for the answer.
const KEEP_ALIVE: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(3));

/// Where and how to reach etcd (LayOtto's `address` and `timeout`).
#[derive(Debug, Clone)]
pub struct EtcdSettings {
    /// `host:port` (or URL) of each member.
    pub endpoints: Vec<String>,
    /// The longest a call may take.
    pub timeout: Duration,
}

/// Tags and metadata of one item, as stored in its companion key.
#[derive(Serialize, Deserialize, Default)]
struct Extras {
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    tags: HashMap<String, String>,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    metadata: HashMap<String, String>,
}

/// A configuration store on etcd.
pub struct EtcdConfigStore {
    name: String,
    settings: EtcdSettings,
    backend: BackendHandle,
    client: OnceLock<Client>,
    hub: WatchHub,
}

impl EtcdConfigStore {
    /// A store named `name` (for messages); connects in [`ConfigStore::connect`].
    pub fn new(name: String, settings: EtcdSettings, backend: BackendHandle) -> Self {
        Self {
            name,
            settings,
            backend,
            client: OnceLock::new(),
            hub: WatchHub::new(SUBSCRIBER_BACKLOG),
        }
    }

    /// The connected client.
    fn client(&self) -> Result<Client, ApiError> {
        self.client
            .get()
            .cloned()
            .ok_or_else(|| ApiError::Unavailable(format!("{}: not connected", self.describe())))
    }

    /// "config store NAME (etcd at ADDRESSES)", for messages.
    fn describe(&self) -> String {
        format!(
            "config store \"{}\" (etcd at {})",
            self.name,
            self.settings.endpoints.join(", ")
        )
    }

    /// Runs `op` with a client on the backend pool, bounded by the timeout.
    async fn call<T, F, Fut>(&self, op: F) -> Result<T, ApiError>
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
        match self
            .backend
            .submit(async move { tokio::time::timeout(timeout, op).await })
            .await?
        {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(err)) => Err(self.map_error(err)),
            Err(_) => Err(ApiError::Unavailable(format!(
                "{}: no answer within {}s",
                self.describe(),
                timeout.as_secs_f64()
            ))),
        }
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

#[async_trait(?Send)]
impl ConfigStore for EtcdConfigStore {
    async fn connect(&self) -> Result<(), ApiError> {
        let endpoints = self.settings.endpoints.clone();
        let options = ConnectOptions::new()
            // Calls are bounded in `run`; a per-request timeout here would also cut watches.
            .with_connect_timeout(self.settings.timeout)
            .with_keep_alive(KEEP_ALIVE.0, KEEP_ALIVE.1)
            .with_keep_alive_while_idle(true);
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

    async fn health(&self) -> Result<(), ApiError> {
        self.call(|mut client| async move { client.status().await })
            .await
            .map(drop)
    }

    async fn get(&self, selector: &Selector) -> Result<Vec<ConfigurationItem>, ApiError> {
        let prefix = selector.prefix();
        let response = self
            .call(move |mut client| async move {
                client
                    .get(prefix, Some(GetOptions::new().with_prefix()))
                    .await
            })
            .await?;
        let kvs = response.kvs();
        let extras: HashMap<&[u8], &KeyValue> = kvs
            .iter()
            .filter_map(|kv| Some((kv.key().strip_suffix(META_SUFFIX.as_bytes())?, kv)))
            .collect();
        Ok(kvs
            .iter()
            .filter_map(|kv| {
                let path = ItemPath::parse(kv.key_str().ok()?)?;
                if !selector.matches(&path) {
                    return None;
                }
                // Extras count only if written with this content (same revision).
                let extras = extras
                    .get(kv.key())
                    .filter(|meta| meta.mod_revision() == kv.mod_revision())
                    .map(|meta| decode_extras(meta.value()))
                    .unwrap_or_default();
                Some(path.item(
                    String::from_utf8_lossy(kv.value()).into_owned(),
                    extras.tags,
                    extras.metadata,
                ))
            })
            .collect())
    }

    async fn save(&self, app_id: &str, items: Vec<ConfigurationItem>) -> Result<(), ApiError> {
        check_items(&items)?;
        let operations: Vec<TxnOp> = items
            .into_iter()
            .flat_map(|item| {
                let key = ItemPath {
                    app_id,
                    group: &item.group,
                    label: &item.label,
                    key: &item.key,
                }
                .stored();
                let meta_key = format!("{key}{META_SUFFIX}");
                let extras = if item.tags.is_empty() && item.metadata.is_empty() {
                    TxnOp::delete(meta_key, None)
                } else {
                    let extras = Extras {
                        tags: item.tags,
                        metadata: item.metadata,
                    };
                    TxnOp::put(meta_key, encode_extras(&extras), None)
                };
                [TxnOp::put(key, item.content, None), extras]
            })
            .collect();
        self.call(
            move |mut client| async move { client.txn(Txn::new().and_then(operations)).await },
        )
        .await?;
        Ok(())
    }

    async fn delete(&self, selector: &Selector) -> Result<(), ApiError> {
        let prefix = selector.prefix();
        let listed = self
            .call(move |mut client| async move {
                client
                    .get(
                        prefix,
                        Some(GetOptions::new().with_prefix().with_keys_only()),
                    )
                    .await
            })
            .await?;
        let operations: Vec<TxnOp> = listed
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = kv.key_str().ok()?;
                selector
                    .matches(&ItemPath::parse(key)?)
                    .then(|| key.to_owned())
            })
            .flat_map(|key| {
                let meta_key = format!("{key}{META_SUFFIX}");
                [TxnOp::delete(key, None), TxnOp::delete(meta_key, None)]
            })
            .collect();
        if operations.is_empty() {
            return Ok(());
        }
        self.call(
            move |mut client| async move { client.txn(Txn::new().and_then(operations)).await },
        )
        .await?;
        Ok(())
    }

    async fn subscribe(&self, app_id: &str) -> Result<Subscription, ApiError> {
        let client = self.client()?;
        let prefix = app_prefix(app_id);
        let describe = self.describe();
        let subscription = self.hub.subscribe(app_id, |feed| {
            self.backend
                .spawn(follow(client, prefix, feed, describe))
                .map_err(ApiError::from)
        })?;
        if subscription.ready(self.settings.timeout).await {
            Ok(subscription)
        } else {
            Err(ApiError::Unavailable(format!(
                "{}: watch not in place within {}s",
                self.describe(),
                self.settings.timeout.as_secs_f64()
            )))
        }
    }
}

/// Follows `prefix` until the last subscriber goes, re-establishing the watch after a loss from
/// the revision after the last one seen, so changes made meanwhile are delivered. Backend pool.
async fn follow(mut client: Client, prefix: String, feed: WatchFeed, describe: String) {
    let WatchFeed {
        events,
        ready,
        mut stopped,
    } = feed;
    let mut next_revision = 0; // 0: from now
    let mut pause = RETRY_PAUSES.0;
    loop {
        let session = watch_once(&mut client, &prefix, &events, &ready, &mut next_revision);
        tokio::select! {
            _ = &mut stopped => return,
            lost = session => {
                if *ready.borrow() {
                    pause = RETRY_PAUSES.0;
                }
                warn!("{describe}: watch on {prefix:?} lost ({lost}); retrying in {pause:?}");
            }
        }
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RETRY_PAUSES.1);
    }
}

/// One watch session; returns why it ended.
async fn watch_once(
    client: &mut Client,
    prefix: &str,
    events: &tokio::sync::broadcast::Sender<WatchEvent>,
    ready: &tokio::sync::watch::Sender<bool>,
    next_revision: &mut i64,
) -> String {
    let mut options = WatchOptions::new().with_prefix();
    if *next_revision > 0 {
        options = options.with_start_revision(*next_revision);
    }
    let mut stream = match client.watch(prefix, Some(options)).await {
        Ok(stream) => stream,
        Err(err) => return err.to_string(),
    };
    loop {
        let response = match stream.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return "stream ended".into(),
            Err(err) => return err.to_string(),
        };
        if response.compact_revision() > 0 {
            // The history we would resume from is gone: follow from now, subscribers reread.
            *next_revision = 0;
            let _ = events.send(WatchEvent::Resync);
            return format!("revision {} compacted", response.compact_revision());
        }
        if response.canceled() {
            return format!("cancelled by etcd: {}", response.cancel_reason());
        }
        if response.created() {
            if *next_revision == 0
                && let Some(header) = response.header()
            {
                *next_revision = header.revision() + 1;
            }
            ready.send_replace(true);
            continue;
        }
        if let Some(kv) = response.events().last().and_then(|event| event.kv()) {
            *next_revision = kv.mod_revision() + 1;
        }
        let changed = changes(&response);
        if !changed.is_empty() {
            let _ = events.send(WatchEvent::Changed(changed.into()));
        }
    }
}

/// The items a watch response changed, with the tags written in the same transaction.
fn changes(response: &WatchResponse) -> Vec<ConfigurationItem> {
    let kvs = |kind: EventType| {
        response
            .events()
            .iter()
            .filter(move |event| event.event_type() == kind)
            .filter_map(|event| event.kv())
    };
    let extras: HashMap<&[u8], &KeyValue> = kvs(EventType::Put)
        .filter_map(|kv| Some((kv.key().strip_suffix(META_SUFFIX.as_bytes())?, kv)))
        .collect();
    response
        .events()
        .iter()
        .filter_map(|event| {
            let kv = event.kv()?;
            let path = ItemPath::parse(kv.key_str().ok()?)?;
            Some(match event.event_type() {
                EventType::Delete => path.deleted(),
                EventType::Put => {
                    let extras = extras
                        .get(kv.key())
                        .filter(|meta| meta.mod_revision() == kv.mod_revision())
                        .map(|meta| decode_extras(meta.value()))
                        .unwrap_or_default();
                    path.item(
                        String::from_utf8_lossy(kv.value()).into_owned(),
                        extras.tags,
                        extras.metadata,
                    )
                }
            })
        })
        .collect()
}

fn encode_extras(extras: &Extras) -> Vec<u8> {
    serde_json::to_vec(extras).expect("string maps always serialize")
}

/// Extras from a companion key; unreadable ones (written by someone else) count as none.
fn decode_extras(bytes: &[u8]) -> Extras {
    serde_json::from_slice(bytes).unwrap_or_default()
}
