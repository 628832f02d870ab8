//! The `etcd` configuration store. Items live at LayOtto's keys `/{app_id}/{group}/{label}/{key}`
//! with the content as the raw value, so `etcdctl` and LayOtto see the same data; tags and item
//! metadata go in a companion key (`<key>\0meta`, JSON) written in the same transaction. Every
//! call runs etcd-client on the backend pool (tokio), bounded by the configured timeout; one
//! watch task per subscribed app runs there too, resuming from its last revision after a loss.

use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use etcd_client::{
    Client, EventType, GetOptions, KeyValue, Txn, TxnOp, WatchOptions, WatchResponse,
};
use layotto_proto::runtime::ConfigurationItem;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{
    ConfigStore, ItemPath, Selector, app_prefix, check_items,
    hub::{Subscription, WatchEvent, WatchFeed, WatchHub},
};
use crate::{
    components::{component::Component, etcd::EtcdConnection},
    error::ApiError,
};

/// Suffix of the companion key holding an item's tags and metadata.
const META_SUFFIX: &str = "\0meta";
/// How far a subscriber may fall behind before it resyncs.
const SUBSCRIBER_BACKLOG: usize = 1024;
/// First and longest pause before a lost watch is re-established.
const RETRY_PAUSES: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

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
    etcd: EtcdConnection,
    hub: WatchHub,
}

impl EtcdConfigStore {
    /// A store over `etcd`; connects in [`ConfigStore::connect`].
    pub fn new(etcd: EtcdConnection) -> Self {
        Self {
            etcd,
            hub: WatchHub::new(SUBSCRIBER_BACKLOG),
        }
    }
}

#[async_trait(?Send)]
impl Component for EtcdConfigStore {
    async fn start(&self) -> Result<(), ApiError> {
        self.etcd.connect().await
    }

    async fn health(&self) -> Result<(), ApiError> {
        self.etcd.health().await
    }
}

#[async_trait(?Send)]
impl ConfigStore for EtcdConfigStore {
    async fn get(&self, selector: &Selector) -> Result<Vec<ConfigurationItem>, ApiError> {
        let prefix = selector.prefix();
        let response = self
            .etcd
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
        self.etcd
            .call(
                move |mut client| async move { client.txn(Txn::new().and_then(operations)).await },
            )
            .await?;
        Ok(())
    }

    async fn delete(&self, selector: &Selector) -> Result<(), ApiError> {
        let prefix = selector.prefix();
        let listed = self
            .etcd
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
        self.etcd
            .call(
                move |mut client| async move { client.txn(Txn::new().and_then(operations)).await },
            )
            .await?;
        Ok(())
    }

    async fn subscribe(&self, app_id: &str) -> Result<Subscription, ApiError> {
        let client = self.etcd.client()?;
        let prefix = app_prefix(app_id);
        let describe = self.etcd.describe();
        let subscription = self.hub.subscribe(app_id, |feed| {
            self.etcd
                .backend()
                .spawn(follow(client, prefix, feed, describe))
                .map_err(ApiError::from)
        })?;
        let timeout = self.etcd.timeout();
        if subscription.ready(timeout).await {
            Ok(subscription)
        } else {
            Err(ApiError::unavailable(format!(
                "{}: watch not in place within {}s",
                self.etcd.describe(),
                timeout.as_secs_f64()
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
