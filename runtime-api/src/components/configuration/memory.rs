//! The `in-memory` configuration store: one map shared by all shards behind a short lock, with
//! the etcd store's semantics (LayOtto's defaults, whole-item saves, deletes that take the tags,
//! no item metadata). Writes publish their change to subscribers while still holding the lock,
//! so every subscriber sees changes in the order they were made.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use layotto_proto::runtime::ConfigurationItem;

use super::{
    ConfigStore, ItemPath, Selector, StoredKey,
    hub::{Subscription, WatchHub},
    prepare_items,
};
use crate::{components::component::Component, error::ApiError};

/// How far a subscriber may fall behind before it resyncs.
const SUBSCRIBER_BACKLOG: usize = 1024;

/// What is stored under one item's key.
struct Stored {
    content: String,
    tags: HashMap<String, String>,
}

/// An in-memory configuration store.
#[expect(
    clippy::disallowed_types,
    reason = "one view of the items for every shard; held for a write and its publish, never across an await"
)]
pub struct InMemoryConfigStore {
    /// By the item's stored key (LayOtto's layout), so prefixes select as in etcd.
    items: std::sync::Mutex<BTreeMap<String, Stored>>,
    hub: WatchHub,
}

impl Default for InMemoryConfigStore {
    fn default() -> Self {
        Self {
            items: Default::default(),
            hub: WatchHub::new(SUBSCRIBER_BACKLOG),
        }
    }
}

impl Component for InMemoryConfigStore {}

#[async_trait(?Send)]
impl ConfigStore for InMemoryConfigStore {
    async fn get(&self, selector: &Selector) -> Result<Vec<ConfigurationItem>, ApiError> {
        let prefix = selector.prefix();
        let items = self.items.lock().expect("config lock poisoned");
        let below: Vec<ConfigurationItem> = items
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .filter_map(|(key, stored)| match StoredKey::parse(key)? {
                StoredKey::Item(path) => {
                    Some(path.item(stored.content.clone(), stored.tags.clone()))
                }
                StoredKey::Tag(..) => None,
            })
            .collect();
        Ok(selector.select(&below))
    }

    async fn save(&self, app_id: &str, items: Vec<ConfigurationItem>) -> Result<(), ApiError> {
        let items = prepare_items(items)?;
        let mut stored = self.items.lock().expect("config lock poisoned");
        for item in &items {
            stored.insert(
                ItemPath::of(app_id, item).stored(),
                Stored {
                    content: item.content.clone(),
                    tags: item.tags.clone(),
                },
            );
        }
        self.hub.publish(app_id, items);
        Ok(())
    }

    async fn delete(&self, selector: &Selector) -> Result<(), ApiError> {
        let mut items = self.items.lock().expect("config lock poisoned");
        let deleted: Vec<ConfigurationItem> = selector
            .named()
            .filter(|path| items.remove(&path.stored()).is_some())
            .map(|path| path.deleted())
            .collect();
        if !deleted.is_empty() {
            self.hub.publish(&selector.app_id, deleted);
        }
        Ok(())
    }

    async fn subscribe(&self, app_id: &str) -> Result<Subscription, ApiError> {
        self.hub.subscribe(app_id, |feed| {
            feed.ready.send_replace(true);
            // Saves publish through the hub; the feed itself has nothing to run.
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::components::configuration::{DELETED_MARK, hub::WatchEvent};

    fn item(group: &str, label: &str, key: &str, content: &str) -> ConfigurationItem {
        ConfigurationItem {
            key: key.into(),
            content: content.into(),
            group: group.into(),
            label: label.into(),
            tags: HashMap::from([("owner".into(), "ops".into())]),
            metadata: HashMap::new(),
        }
    }

    fn select(group: &str, label: &str, keys: &[&str]) -> Selector {
        Selector::new(
            "app".into(),
            group.into(),
            label.into(),
            keys.iter().map(|k| k.to_string()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn saves_gets_and_deletes_by_selector() {
        let store = InMemoryConfigStore::default();
        glommio::LocalExecutor::default().run(async {
            let items = vec![
                item("default", "default", "a", "0"),
                item("g", "l", "a", "1"),
                item("g", "l", "b", "2"),
                item("h", "l", "a", "3"),
            ];
            store.save("app", items.clone()).await.unwrap();
            store
                .save("other", vec![item("g", "l", "a", "x")])
                .await
                .unwrap();
            assert_eq!(store.get(&select("*", "*", &[])).await.unwrap(), items);
            assert_eq!(store.get(&select("", "", &[])).await.unwrap(), items[..1]);
            assert_eq!(
                store.get(&select("g", "l", &["b"])).await.unwrap(),
                items[2..3]
            );
            store.delete(&select("", "", &["a"])).await.unwrap();
            assert_eq!(store.get(&select("*", "*", &[])).await.unwrap(), items[1..]);
            store.delete(&select("g", "l", &[])).await.unwrap();
            assert_eq!(store.get(&select("*", "*", &[])).await.unwrap(), items[1..]);
            let other = Selector::new("other".into(), "*".into(), "*".into(), vec![]).unwrap();
            assert_eq!(store.get(&other).await.unwrap().len(), 1);
        });
    }

    #[test]
    fn subscribers_see_saves_and_deletes_in_order() {
        let store = InMemoryConfigStore::default();
        glommio::LocalExecutor::default().run(async {
            let mut subscription = store.subscribe("app").await.unwrap();
            assert!(subscription.ready(Duration::from_secs(1)).await);
            store
                .save("app", vec![item("g", "l", "a", "1")])
                .await
                .unwrap();
            store
                .delete(&select("g", "l", &["a", "never"]))
                .await
                .unwrap();
            let WatchEvent::Changed(saved) = subscription.next().await else {
                panic!("expected a change")
            };
            assert_eq!(saved[0].content, "1");
            let WatchEvent::Changed(deleted) = subscription.next().await else {
                panic!("expected a change")
            };
            assert_eq!(deleted.len(), 1, "only what was there");
            assert_eq!(deleted[0].key, "a");
            assert_eq!(deleted[0].metadata[DELETED_MARK], "true");
            drop(subscription);
            assert_eq!(store.hub.active_watches(), 0);
        });
    }
}
