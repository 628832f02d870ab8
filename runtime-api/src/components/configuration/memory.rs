//! The `in-memory` configuration store: one map shared by all shards behind a short lock, in the
//! same key layout as the etcd store. Writes publish their change to subscribers while still
//! holding the lock, so every subscriber sees changes in the order they were made.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use layotto_proto::runtime::ConfigurationItem;

use super::{
    ConfigStore, ItemPath, Selector, check_items,
    hub::{Subscription, WatchHub},
};
use crate::{components::component::Component, error::ApiError};

/// How far a subscriber may fall behind before it resyncs.
const SUBSCRIBER_BACKLOG: usize = 1024;

/// What is stored under one key.
struct Stored {
    content: String,
    tags: HashMap<String, String>,
    metadata: HashMap<String, String>,
}

/// An in-memory configuration store.
#[expect(
    clippy::disallowed_types,
    reason = "one view of the items for every shard; held for a write and its publish, never across an await"
)]
pub struct InMemoryConfigStore {
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

impl InMemoryConfigStore {
    /// The items under `selector`'s prefix it matches, as (stored key, path) pairs.
    fn selected<'a>(
        items: &'a BTreeMap<String, Stored>,
        selector: &'a Selector,
    ) -> impl Iterator<Item = (&'a String, ItemPath<'a>, &'a Stored)> + 'a {
        let prefix = selector.prefix();
        items
            .range(prefix.clone()..)
            .take_while(move |(key, _)| key.starts_with(&prefix))
            .filter_map(|(key, stored)| Some((key, ItemPath::parse(key)?, stored)))
            .filter(|(_, path, _)| selector.matches(path))
    }
}

impl Component for InMemoryConfigStore {}

#[async_trait(?Send)]
impl ConfigStore for InMemoryConfigStore {
    async fn get(&self, selector: &Selector) -> Result<Vec<ConfigurationItem>, ApiError> {
        let items = self.items.lock().expect("config lock poisoned");
        Ok(Self::selected(&items, selector)
            .map(|(_, path, stored)| {
                path.item(
                    stored.content.clone(),
                    stored.tags.clone(),
                    stored.metadata.clone(),
                )
            })
            .collect())
    }

    async fn save(&self, app_id: &str, items: Vec<ConfigurationItem>) -> Result<(), ApiError> {
        check_items(&items)?;
        let mut stored = self.items.lock().expect("config lock poisoned");
        for item in &items {
            let path = ItemPath {
                app_id,
                group: &item.group,
                label: &item.label,
                key: &item.key,
            };
            stored.insert(
                path.stored(),
                Stored {
                    content: item.content.clone(),
                    tags: item.tags.clone(),
                    metadata: item.metadata.clone(),
                },
            );
        }
        self.hub.publish(app_id, items);
        Ok(())
    }

    async fn delete(&self, selector: &Selector) -> Result<(), ApiError> {
        let mut items = self.items.lock().expect("config lock poisoned");
        let (keys, deleted): (Vec<String>, Vec<ConfigurationItem>) =
            Self::selected(&items, selector)
                .map(|(key, path, _)| (key.clone(), path.deleted()))
                .unzip();
        for key in &keys {
            items.remove(key);
        }
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

    fn select(group: &str, keys: &[&str]) -> Selector {
        Selector::new(
            "app".into(),
            group.into(),
            String::new(),
            keys.iter().map(|k| k.to_string()).collect(),
        )
        .unwrap()
    }

    #[test]
    fn saves_gets_and_deletes_by_selector() {
        let store = InMemoryConfigStore::default();
        glommio::LocalExecutor::default().run(async {
            let items = vec![
                item("g", "l", "a", "1"),
                item("g", "l", "b", "2"),
                item("h", "", "a", "3"),
            ];
            store.save("app", items.clone()).await.unwrap();
            store
                .save("other", vec![item("g", "l", "a", "x")])
                .await
                .unwrap();
            assert_eq!(store.get(&select("", &[])).await.unwrap(), items);
            assert_eq!(store.get(&select("g", &["b"])).await.unwrap(), items[1..2]);
            assert_eq!(
                store.get(&select("", &["a"])).await.unwrap(),
                vec![items[0].clone(), items[2].clone()]
            );
            store.delete(&select("g", &[])).await.unwrap();
            assert_eq!(store.get(&select("", &[])).await.unwrap(), items[2..]);
            assert_eq!(store.get(&select("", &["nope"])).await.unwrap(), vec![]);
            let other = Selector::new("other".into(), "".into(), "".into(), vec![]).unwrap();
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
            store.delete(&select("g", &["a"])).await.unwrap();
            let WatchEvent::Changed(saved) = subscription.next().await else {
                panic!("expected a change")
            };
            assert_eq!(saved[0].content, "1");
            let WatchEvent::Changed(deleted) = subscription.next().await else {
                panic!("expected a change")
            };
            assert_eq!(deleted[0].key, "a");
            assert_eq!(deleted[0].metadata[DELETED_MARK], "true");
            drop(subscription);
            assert_eq!(store.hub.active_watches(), 0);
        });
    }
}
