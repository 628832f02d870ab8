//! The `etcd` configuration store, in LayOtto's layout: an item's content is the raw value of
//! `/{app_id}/{group}/{label}/{key}` and each tag's value that of `/{app_id}/{group}/{label}/{key}/{tag}`,
//! so `etcdctl`, LayOtto and layotto-rs read each other's items. Item metadata is not stored
//! (LayOtto's store keeps none). A save writes an item's content and tags and removes its other
//! tags in one transaction, guarded against tags added meanwhile; a delete removes an item with
//! everything under it. Every call runs etcd-client on the backend pool (tokio), bounded by the
//! configured timeout; one watch task per subscribed app runs there too, resuming from its last
//! revision after a loss.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, EventType, GetOptions, KeyValue, Txn, TxnOp,
    TxnOpResponse, WatchOptions, WatchResponse,
};
use layotto_proto::runtime::ConfigurationItem;
use tracing::warn;

use super::{
    ConfigStore, ItemPath, Selector, StoredKey, app_prefix, assemble,
    hub::{Subscription, WatchEvent, WatchFeed, WatchHub},
    prepare_items,
};
use crate::{
    components::{
        component::Component,
        etcd::{EtcdConnection, Members},
    },
    error::{ApiError, chain},
};

/// How far a subscriber may fall behind before it resyncs.
const SUBSCRIBER_BACKLOG: usize = 1024;
/// First and longest pause before a lost watch is re-established.
const RETRY_PAUSES: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
/// How often a save is tried again when tags were added under it meanwhile.
const ATTEMPTS: usize = 8;
/// Items read back per transaction after a change (two reads each; etcd allows 128 operations
/// per transaction by default).
const ITEMS_PER_READ: usize = 64;

/// A configuration store on etcd.
pub struct EtcdConfigStore {
    etcd: EtcdConnection,
    hub: WatchHub,
}

impl EtcdConfigStore {
    /// A store over `etcd`; connects in [`Component::start`].
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
        Ok(selector.select(&assemble(&entries(response.kvs()))))
    }

    async fn save(&self, app_id: &str, items: Vec<ConfigurationItem>) -> Result<(), ApiError> {
        let items = prepare_items(items)?;
        let tag_prefixes: Vec<String> = items
            .iter()
            .map(|item| ItemPath::of(app_id, item).tags_prefix())
            .collect();
        for _ in 0..ATTEMPTS {
            // The tag keys each item has now, at one revision.
            let reads: Vec<TxnOp> = tag_prefixes
                .iter()
                .map(|prefix| {
                    let options = GetOptions::new().with_prefix().with_keys_only();
                    TxnOp::get(prefix.clone(), Some(options))
                })
                .collect();
            let snapshot = self
                .etcd
                .call(move |mut client| async move { client.txn(Txn::new().and_then(reads)).await })
                .await?;
            let revision = snapshot.header().map_or(0, |header| header.revision());
            let mut guards = Vec::with_capacity(items.len());
            let mut writes = Vec::new();
            for ((item, prefix), read) in
                items.iter().zip(&tag_prefixes).zip(snapshot.op_responses())
            {
                // No tag added since the snapshot (a removed one is removed either way).
                guards.push(
                    Compare::mod_revision(prefix.clone(), CompareOp::Less, revision + 1)
                        .with_prefix(),
                );
                if let TxnOpResponse::Get(existing) = read {
                    let stale = existing
                        .kvs()
                        .iter()
                        .filter_map(|kv| kv.key_str().ok())
                        .filter(|key| {
                            key.strip_prefix(prefix.as_str()).is_some_and(|name| {
                                !name.contains('/') && !item.tags.contains_key(name)
                            })
                        });
                    writes.extend(stale.map(|key| TxnOp::delete(key, None)));
                }
                let path = ItemPath::of(app_id, item);
                writes.push(TxnOp::put(path.stored(), item.content.clone(), None));
                writes.extend(
                    item.tags
                        .iter()
                        .map(|(name, value)| TxnOp::put(path.tag_key(name), value.clone(), None)),
                );
            }
            let committed = self
                .etcd
                .call(move |mut client| async move {
                    let txn = Txn::new().when(guards).and_then(writes);
                    Ok(client.txn(txn).await?.succeeded())
                })
                .await?;
            if committed {
                return Ok(());
            }
        }
        Err(ApiError::unavailable(format!(
            "{}: tags kept being added under the items for {ATTEMPTS} attempts",
            self.etcd.describe()
        )))
    }

    async fn delete(&self, selector: &Selector) -> Result<(), ApiError> {
        // The item and everything under it (its tags), as LayOtto deletes by prefix, but not
        // other items whose key starts with this one's.
        let operations: Vec<TxnOp> = selector
            .named()
            .flat_map(|path| {
                let below = DeleteOptions::new().with_prefix();
                [
                    TxnOp::delete(path.stored(), None),
                    TxnOp::delete(path.tags_prefix(), Some(below)),
                ]
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
        let members = self.etcd.members()?;
        let prefix = app_prefix(app_id);
        let describe = self.etcd.describe();
        let timeout = self.etcd.timeout();
        let subscription = self.hub.subscribe(app_id, |feed| {
            self.etcd
                .backend()
                .spawn(follow(members, prefix, feed, describe, timeout))
                .map_err(ApiError::from)
        })?;
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

/// The stored keys (UTF-8 ones) and values of `kvs`.
fn entries<'a>(kvs: impl IntoIterator<Item = &'a KeyValue>) -> Vec<(&'a str, &'a [u8])> {
    kvs.into_iter()
        .filter_map(|kv| Some((kv.key_str().ok()?, kv.value())))
        .collect()
}

/// Follows `prefix` until the last subscriber goes, re-establishing the watch after a loss from
/// the revision after the last one delivered, so changes made meanwhile are delivered (on the
/// next etcd member: the lost one may be down). Each read-back is bounded by `timeout`. Backend
/// pool.
async fn follow(
    members: Arc<Members>,
    prefix: String,
    feed: WatchFeed,
    describe: String,
    timeout: Duration,
) {
    let WatchFeed {
        events,
        ready,
        mut stopped,
    } = feed;
    let mut next_revision = 0; // 0: from now
    let mut pause = RETRY_PAUSES.0;
    loop {
        let (member, client) = members.preferred().await;
        let lost = match client {
            Ok(mut client) => {
                let session = Session {
                    client: &mut client,
                    prefix: &prefix,
                    events: &events,
                    ready: &ready,
                    timeout,
                };
                tokio::select! {
                    _ = &mut stopped => return,
                    lost = session.run(&mut next_revision) => lost,
                }
            }
            Err(err) => err.to_string(),
        };
        members.failed(member);
        if *ready.borrow() {
            pause = RETRY_PAUSES.0;
        }
        warn!("{describe}: watch on {prefix:?} lost ({lost}); retrying in {pause:?}");
        tokio::select! {
            _ = &mut stopped => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(RETRY_PAUSES.1);
    }
}

/// One watch session of [`follow`].
struct Session<'a> {
    client: &'a mut Client,
    prefix: &'a str,
    events: &'a tokio::sync::broadcast::Sender<WatchEvent>,
    ready: &'a tokio::sync::watch::Sender<bool>,
    timeout: Duration,
}

impl Session<'_> {
    /// Watches from `next_revision` (0: from now), advancing it past each response once its
    /// changes are delivered; returns why the session ended.
    async fn run(self, next_revision: &mut i64) -> String {
        let mut options = WatchOptions::new().with_prefix();
        if *next_revision > 0 {
            options = options.with_start_revision(*next_revision);
        }
        let mut stream = match self.client.watch(self.prefix, Some(options)).await {
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
                let _ = self.events.send(WatchEvent::Resync);
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
                self.ready.send_replace(true);
                continue;
            }
            let Some(revision) = response
                .events()
                .iter()
                .filter_map(|event| event.kv())
                .map(KeyValue::mod_revision)
                .max()
            else {
                continue;
            };
            let read_back = tokio::time::timeout(
                self.timeout,
                changed_items(&mut *self.client, &response, revision),
            );
            match read_back.await {
                Ok(Ok(changed)) => {
                    if !changed.is_empty() {
                        let _ = self.events.send(WatchEvent::Changed(changed.into()));
                    }
                }
                Ok(Err(etcd_client::Error::GRpcStatus(status)))
                    if status.code() == tonic::Code::OutOfRange =>
                {
                    // Compacted before we could read it back: subscribers reread.
                    let _ = self.events.send(WatchEvent::Resync);
                }
                // Not advanced: the next session replays this response.
                Ok(Err(err)) => {
                    return format!("reading the changed items failed: {}", chain(&err));
                }
                Err(_) => return "reading the changed items timed out".into(),
            }
            *next_revision = revision + 1;
        }
    }
}

/// The items a watch response touched (through their own key or a tag key), each once in the
/// order first touched, as they are at `revision` (the response's last): an item that is gone
/// and whose own key was deleted comes as deleted; one whose tag alone changed with the item
/// absent is skipped.
async fn changed_items(
    client: &mut Client,
    response: &WatchResponse,
    revision: i64,
) -> Result<Vec<ConfigurationItem>, etcd_client::Error> {
    let mut touched: Vec<(ItemPath<'_>, bool)> = Vec::new();
    let mut index = HashMap::new();
    for event in response.events() {
        let Some(stored) = event
            .kv()
            .and_then(|kv| kv.key_str().ok())
            .and_then(StoredKey::parse)
        else {
            continue;
        };
        let (path, own_key) = match stored {
            StoredKey::Item(path) => (path, true),
            StoredKey::Tag(path, _) => (path, false),
        };
        let at = *index.entry(path).or_insert_with(|| {
            touched.push((path, false));
            touched.len() - 1
        });
        if own_key && event.event_type() == EventType::Delete {
            touched[at].1 = true;
        }
    }
    let mut changed = Vec::with_capacity(touched.len());
    for chunk in touched.chunks(ITEMS_PER_READ) {
        let at_revision = || GetOptions::new().with_revision(revision);
        let reads: Vec<TxnOp> = chunk
            .iter()
            .flat_map(|(path, _)| {
                [
                    TxnOp::get(path.stored(), Some(at_revision())),
                    TxnOp::get(path.tags_prefix(), Some(at_revision().with_prefix())),
                ]
            })
            .collect();
        let read = client.txn(Txn::new().and_then(reads)).await?;
        let responses = read.op_responses();
        for ((path, own_key_deleted), pair) in chunk.iter().zip(responses.chunks(2)) {
            let stored = entries(
                pair.iter()
                    .filter_map(|response| match response {
                        TxnOpResponse::Get(get) => Some(get.kvs()),
                        _ => None,
                    })
                    .flatten(),
            );
            match assemble(&stored).pop() {
                Some(item) => changed.push(item),
                None if *own_key_deleted => changed.push(path.deleted()),
                None => {}
            }
        }
    }
    Ok(changed)
}
