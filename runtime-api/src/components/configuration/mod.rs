//! The configuration building block: the [`ConfigStore`] contract, which items a request means
//! ([`Selector`]: LayOtto's defaults for a blank group or label, `*` for any in a get or a
//! subscription), the checks and defaults of a save ([`prepare_items`]), LayOtto's etcd key
//! layout that every store follows ([`ItemPath`], [`StoredKey`]: the content at
//! `/{app_id}/{group}/{label}/{key}`, each tag's value at `/{app_id}/{group}/{label}/{key}/{tag}`)
//! and the subscription fan-out ([`hub`]). Stores are shared by all shards (`Send + Sync`); calls
//! run on the calling shard, remote ones hop to the backend pool.

mod etcd;
pub mod hub;
mod memory;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use serde_json::Value;

use async_trait::async_trait;
use layotto_proto::runtime::ConfigurationItem;

pub use etcd::EtcdConfigStore;
pub use memory::InMemoryConfigStore;

use crate::{
    components::{
        component::Component,
        etcd::{EtcdConnection, EtcdSettings},
        registry::{Entry, Registry, is_endpoint, seconds},
    },
    error::ApiError,
};
use hub::Subscription;

/// Metadata key set on an item a subscriber receives because it was deleted.
pub const DELETED_MARK: &str = "deleted";
/// The group of a request or item that names none (LayOtto's, for every store).
pub const DEFAULT_GROUP: &str = "default";
/// The label of a request or item that names none (LayOtto's, for every store).
pub const DEFAULT_LABEL: &str = "default";
/// In a get or a subscription, the group, label or key that matches any.
pub const ANY: &str = "*";

/// A configuration store.
#[async_trait(?Send)]
pub trait ConfigStore: Component {
    /// The items `selector` matches: in the order of its keys, each key's in stored-key order.
    async fn get(&self, selector: &Selector) -> Result<Vec<ConfigurationItem>, ApiError>;
    /// Creates or replaces `items` of `app_id` (content and tags; item metadata is not stored),
    /// all or none; checked and completed by [`prepare_items`].
    async fn save(&self, app_id: &str, items: Vec<ConfigurationItem>) -> Result<(), ApiError>;
    /// Deletes the items `selector` names ([`Selector::named`]) with their tags, all or none.
    async fn delete(&self, selector: &Selector) -> Result<(), ApiError>;
    /// Follows every change of `app_id`'s items once the watch is in place (UNAVAILABLE if that
    /// takes longer than the store's timeout); subscribers of one app share one watch.
    async fn subscribe(&self, app_id: &str) -> Result<Subscription, ApiError>;
}

/// Which items of an app a request means. A blank group or label (empty or only spaces) is the
/// default ([`DEFAULT_GROUP`], [`DEFAULT_LABEL`]), as LayOtto fills it in; no keys means every
/// key of that group and label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// The application (required).
    pub app_id: String,
    /// The group; [`ANY`] matches every group in a get or a subscription.
    pub group: String,
    /// The label; [`ANY`] matches every label in a get or a subscription.
    pub label: String,
    /// The keys, without repeats, in the order asked for; [`ANY`] matches every key in a get or
    /// a subscription.
    pub keys: Vec<String>,
}

impl Selector {
    /// A selector with the defaults filled in, after checking its parts fit the layout.
    pub fn new(
        app_id: String,
        group: String,
        label: String,
        keys: Vec<String>,
    ) -> Result<Self, ApiError> {
        check_segment("app_id", &app_id, false)?;
        let group = or_default(group, DEFAULT_GROUP);
        let label = or_default(label, DEFAULT_LABEL);
        check_segment("group", &group, true)?;
        check_segment("label", &label, true)?;
        for key in &keys {
            check_name("configuration key", key)?;
        }
        let mut seen = HashSet::new();
        let keys = keys
            .into_iter()
            .filter(|key| seen.insert(key.clone()))
            .collect();
        Ok(Self {
            app_id,
            group,
            label,
            keys,
        })
    }

    /// Where `key` comes in the answer: the index of the first of the selector's keys it
    /// matches, or `None` if it matches none.
    fn rank(&self, key: &str) -> Option<usize> {
        if self.keys.is_empty() {
            return Some(0);
        }
        self.keys
            .iter()
            .position(|wanted| wanted == ANY || wanted == key)
    }

    /// Whether the item at `group`/`label` with `key` is selected (and where it comes).
    fn place(&self, group: &str, label: &str, key: &str) -> Option<usize> {
        let part = |wanted: &str, actual: &str| wanted == ANY || wanted == actual;
        if part(&self.group, group) && part(&self.label, label) {
            self.rank(key)
        } else {
            None
        }
    }

    /// The longest stored-key prefix every selected item shares.
    pub fn prefix(&self) -> String {
        let mut prefix = app_prefix(&self.app_id);
        if self.group != ANY {
            prefix.push_str(&self.group);
            prefix.push('/');
            if self.label != ANY {
                prefix.push_str(&self.label);
                prefix.push('/');
            }
        }
        prefix
    }

    /// The items of `items` (all of this selector's app) it selects, in the order of its keys,
    /// each key's in the order given.
    pub fn select<'a>(
        &self,
        items: impl IntoIterator<Item = &'a ConfigurationItem>,
    ) -> Vec<ConfigurationItem> {
        let mut placed: Vec<(usize, &ConfigurationItem)> = items
            .into_iter()
            .filter_map(|item| Some((self.place(&item.group, &item.label, &item.key)?, item)))
            .collect();
        placed.sort_by_key(|(rank, _)| *rank); // stable: the given order within a key
        placed.into_iter().map(|(_, item)| item.clone()).collect()
    }

    /// The items a delete names: its group, label and each key taken literally (`*` included,
    /// as LayOtto's delete takes it); none without keys, as in LayOtto.
    pub fn named(&self) -> impl Iterator<Item = ItemPath<'_>> {
        self.keys.iter().map(|key| ItemPath {
            app_id: &self.app_id,
            group: &self.group,
            label: &self.label,
            key,
        })
    }
}

/// Where one item lives: `/{app_id}/{group}/{label}/{key}` (LayOtto's etcd layout), its tags at
/// child keys `/{app_id}/{group}/{label}/{key}/{tag}`. No part contains `/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ItemPath<'a> {
    /// The application.
    pub app_id: &'a str,
    /// The group.
    pub group: &'a str,
    /// The label.
    pub label: &'a str,
    /// The key.
    pub key: &'a str,
}

impl<'a> ItemPath<'a> {
    /// Where `item` of `app_id` lives.
    pub fn of(app_id: &'a str, item: &'a ConfigurationItem) -> Self {
        Self {
            app_id,
            group: &item.group,
            label: &item.label,
            key: &item.key,
        }
    }

    /// The stored key of the item's content.
    pub fn stored(&self) -> String {
        format!(
            "/{}/{}/{}/{}",
            self.app_id, self.group, self.label, self.key
        )
    }

    /// The prefix of the item's tag keys.
    pub fn tags_prefix(&self) -> String {
        format!("{}/", self.stored())
    }

    /// The stored key of the item's tag `name`.
    pub fn tag_key(&self, name: &str) -> String {
        format!("{}/{name}", self.stored())
    }

    /// An item at this path.
    pub fn item(&self, content: String, tags: HashMap<String, String>) -> ConfigurationItem {
        ConfigurationItem {
            key: self.key.to_owned(),
            content,
            group: self.group.to_owned(),
            label: self.label.to_owned(),
            tags,
            metadata: HashMap::new(),
        }
    }

    /// The item a subscriber receives when this one is deleted.
    pub fn deleted(&self) -> ConfigurationItem {
        ConfigurationItem {
            metadata: HashMap::from([(DELETED_MARK.to_owned(), "true".to_owned())]),
            ..self.item(String::new(), HashMap::new())
        }
    }
}

/// What a stored key in LayOtto's layout holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredKey<'a> {
    /// An item's content.
    Item(ItemPath<'a>),
    /// The value of the item's tag of this name.
    Tag(ItemPath<'a>, &'a str),
}

impl<'a> StoredKey<'a> {
    /// Parses a stored key; `None` if it is not in the layout (wrong depth, no app, key or tag
    /// name). The group and label may be empty: older LayOtto versions wrote `/{app}///{key}`.
    pub fn parse(stored: &'a str) -> Option<Self> {
        let mut parts = stored.strip_prefix('/')?.split('/');
        let path = ItemPath {
            app_id: parts.next().filter(|app| !app.is_empty())?,
            group: parts.next()?,
            label: parts.next()?,
            key: parts.next().filter(|key| !key.is_empty())?,
        };
        match (parts.next(), parts.next()) {
            (None, _) => Some(Self::Item(path)),
            (Some(tag), None) if !tag.is_empty() => Some(Self::Tag(path, tag)),
            _ => None,
        }
    }
}

/// The items stored under `entries` (stored key and value, in any order): each item key with its
/// tag keys, in the order of the item keys. Tag keys of an item that is not there are skipped.
pub fn assemble<'a>(entries: &[(&'a str, &'a [u8])]) -> Vec<ConfigurationItem> {
    let text = |value: &[u8]| String::from_utf8_lossy(value).into_owned();
    let parsed: Vec<(StoredKey<'a>, &[u8])> = entries
        .iter()
        .filter_map(|(key, value)| Some((StoredKey::parse(key)?, *value)))
        .collect();
    let mut index = HashMap::new();
    let mut items = Vec::new();
    for (stored, value) in &parsed {
        if let StoredKey::Item(path) = stored {
            index.insert(*path, items.len());
            items.push(path.item(text(value), HashMap::new()));
        }
    }
    for (stored, value) in &parsed {
        if let StoredKey::Tag(path, name) = stored
            && let Some(&at) = index.get(path)
        {
            items[at].tags.insert((*name).to_owned(), text(value));
        }
    }
    items
}

/// The stored-key prefix of every item of `app_id`.
pub fn app_prefix(app_id: &str) -> String {
    format!("/{app_id}/")
}

/// `value`, or `default` when it is blank (empty or only spaces, as LayOtto checks).
fn or_default(value: String, default: &str) -> String {
    if value.chars().all(|c| c == ' ') {
        default.to_owned()
    } else {
        value
    }
}

/// Checks an `app_id`, `group` or `label`: no `/`, and not empty unless `may_be_empty`.
pub fn check_segment(field: &str, value: &str, may_be_empty: bool) -> Result<(), ApiError> {
    if value.is_empty() && !may_be_empty {
        return Err(ApiError::InvalidArgument(format!("{field} is empty")));
    }
    if value.contains('/') {
        return Err(ApiError::InvalidArgument(format!(
            "{field} \"{value}\" must not contain '/'"
        )));
    }
    Ok(())
}

/// Checks an item key or tag name: not empty, no `/` (which would make it a tag, or a tag's
/// child, in the layout).
pub fn check_name(field: &str, name: &str) -> Result<(), ApiError> {
    if name.is_empty() {
        return Err(ApiError::InvalidArgument(format!("a {field} is empty")));
    }
    if name.contains('/') {
        return Err(ApiError::InvalidArgument(format!(
            "{field} \"{name}\" must not contain '/'"
        )));
    }
    Ok(())
}

/// The items of a save as stores write them: checked, blank groups and labels set to the
/// defaults, item metadata dropped (LayOtto's stores keep none), and of items saved twice only
/// the last (as if written in turn).
pub fn prepare_items(items: Vec<ConfigurationItem>) -> Result<Vec<ConfigurationItem>, ApiError> {
    if items.is_empty() {
        return Err(ApiError::InvalidArgument("no items to save".into()));
    }
    let mut prepared = Vec::with_capacity(items.len());
    for mut item in items {
        item.group = or_default(item.group, DEFAULT_GROUP);
        item.label = or_default(item.label, DEFAULT_LABEL);
        check_segment("group", &item.group, true)?;
        check_segment("label", &item.label, true)?;
        check_name("configuration key", &item.key)?;
        for name in item.tags.keys() {
            check_name("tag name", name)?;
        }
        item.metadata.clear();
        prepared.push(item);
    }
    let mut seen = HashSet::new();
    let mut last_first: Vec<ConfigurationItem> = prepared
        .into_iter()
        .rev()
        .filter(|item| seen.insert((item.group.clone(), item.label.clone(), item.key.clone())))
        .collect();
    last_first.reverse();
    Ok(last_first)
}

/// The backend types of `config_store`. LayOtto gives etcd's settings at the top level of the
/// entry (`address`, `timeout`), not in `metadata`.
pub(crate) const BACKENDS: Registry<dyn ConfigStore> = Registry {
    label: "config store",
    kind: "config store",
    default_type: None,
    fields: &["address", "timeout"],
    backends: &[("in-memory", in_memory), ("etcd", etcd)],
};

/// An etcd config store's `timeout` when the config gives none.
const DEFAULT_ETCD_TIMEOUT: Duration = Duration::from_secs(10);

fn in_memory(entry: &mut Entry<'_>) -> Option<Arc<dyn ConfigStore>> {
    if entry.field("address").is_some() || entry.field("timeout").is_some() {
        entry.error("", "an in-memory config store takes no address or timeout");
        return None;
    }
    Some(Arc::new(InMemoryConfigStore::default()))
}

/// LayOtto's etcd config store: `address` (a list of `host:port`) and `timeout` (seconds).
fn etcd(entry: &mut Entry<'_>) -> Option<Arc<dyn ConfigStore>> {
    let mut valid = true;
    let endpoints: Vec<String> = match entry.field("address") {
        Some(Value::Array(list)) if !list.is_empty() => list
            .iter()
            .enumerate()
            .filter_map(|(i, address)| match address.as_str() {
                Some(text) if is_endpoint(text) => Some(text.to_owned()),
                _ => {
                    valid = false;
                    entry.error(
                        &format!("address[{i}]"),
                        format!("invalid etcd address {address} (expected host:port)"),
                    );
                    None
                }
            })
            .collect(),
        _ => {
            entry.error("address", "etcd needs at least one \"host:port\" address");
            return None;
        }
    };
    let timeout = match entry.field("timeout") {
        None => DEFAULT_ETCD_TIMEOUT,
        Some(value) => match seconds(&value) {
            Some(timeout) => timeout,
            None => {
                entry.error(
                    "timeout",
                    format!("invalid timeout {value}: expected a positive number of seconds (at most a day), e.g. \"10\""),
                );
                return None;
            }
        },
    };
    let settings = EtcdSettings {
        endpoints,
        timeout,
        credentials: None,
    };
    let etcd = EtcdConnection::new(
        entry.component().to_owned(),
        settings,
        entry.backend().clone(),
    );
    valid.then(|| Arc::new(EtcdConfigStore::new(etcd)) as Arc<dyn ConfigStore>)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selector(group: &str, label: &str, keys: &[&str]) -> Selector {
        Selector::new(
            "app".into(),
            group.into(),
            label.into(),
            keys.iter().map(|k| k.to_string()).collect(),
        )
        .unwrap()
    }

    fn path<'a>(group: &'a str, label: &'a str, key: &'a str) -> ItemPath<'a> {
        ItemPath {
            app_id: "app",
            group,
            label,
            key,
        }
    }

    #[test]
    fn stored_keys_are_items_or_their_tags() {
        let item = path("g", "l", "k");
        assert_eq!(StoredKey::parse("/app/g/l/k"), Some(StoredKey::Item(item)));
        assert_eq!(
            StoredKey::parse("/app/g/l/k/env"),
            Some(StoredKey::Tag(item, "env"))
        );
        assert_eq!(item.stored(), "/app/g/l/k");
        assert_eq!(item.tag_key("env"), "/app/g/l/k/env");
        assert_eq!(
            StoredKey::parse("/app///k"),
            Some(StoredKey::Item(path("", "", "k")))
        );
        for bad in [
            "app/g/l/k",
            "/app/g/l",
            "//g/l/k",
            "/app/g/l/",
            "/app/g/l/k/",
            "/app/g/l/k/t/deeper",
        ] {
            assert_eq!(StoredKey::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn assembles_items_with_their_tags_whatever_sorts_between() {
        let entries: Vec<(&str, &[u8])> = vec![
            ("/app/g/l/k", b"v"),
            ("/app/g/l/k-2", b"w"), // sorts between k and k's tags
            ("/app/g/l/k/env", b"prod"),
            ("/app/g/l/orphan/env", b"lost"),
            ("/app/g/l/k/t/deeper", b"ignored"),
        ];
        let items = assemble(&entries);
        let env = HashMap::from([("env".to_owned(), "prod".to_owned())]);
        assert_eq!(
            items,
            vec![
                path("g", "l", "k").item("v".into(), env),
                path("g", "l", "k-2").item("w".into(), HashMap::new()),
            ]
        );
    }

    #[test]
    fn blank_parts_are_the_defaults_and_stars_match_any() {
        let defaults = selector("", " ", &[]);
        assert_eq!(
            (defaults.group.as_str(), defaults.label.as_str()),
            ("default", "default")
        );
        let item = |g: &str, l: &str, k: &str| path(g, l, k).item(String::new(), HashMap::new());
        let items = [
            item("g", "l", "a"),
            item("g", "l", "b"),
            item("h", "l", "a"),
            item("default", "default", "a"),
        ];
        assert_eq!(defaults.select(&items), [items[3].clone()]);
        assert_eq!(selector("*", "*", &[]).select(&items), items);
        assert_eq!(
            selector("*", "l", &["a"]).select(&items),
            [items[0].clone(), items[2].clone()]
        );
        assert_eq!(
            selector("g", "l", &["b", "*", "b"]).select(&items),
            [items[1].clone(), items[0].clone()],
            "in the order of the keys, each item once"
        );
        assert_eq!(selector("*", "*", &[]).prefix(), "/app/");
        assert_eq!(selector("g", "*", &[]).prefix(), "/app/g/");
        assert_eq!(selector("*", "l", &[]).prefix(), "/app/");
        assert_eq!(selector("g", "l", &["k"]).prefix(), "/app/g/l/");
        let deletion = selector("", "", &["k", "*"]);
        let named: Vec<_> = deletion.named().collect();
        assert_eq!(
            named,
            [
                path("default", "default", "k"),
                path("default", "default", "*")
            ]
        );
        assert_eq!(selector("g", "l", &[]).named().count(), 0);
    }

    #[test]
    fn saves_get_defaults_lose_metadata_and_keep_the_last_of_twins() {
        let item = |group: &str, key: &str, content: &str| ConfigurationItem {
            key: key.into(),
            content: content.into(),
            group: group.into(),
            metadata: HashMap::from([("m".to_owned(), "v".to_owned())]),
            ..Default::default()
        };
        let prepared = prepare_items(vec![
            item("", "a", "1"),
            item("g", "b", "2"),
            item(" ", "a", "3"),
        ])
        .unwrap();
        let contents: Vec<_> = prepared
            .iter()
            .map(|i| (i.group.as_str(), i.label.as_str(), i.content.as_str()))
            .collect();
        assert_eq!(
            contents,
            [("g", "default", "2"), ("default", "default", "3")]
        );
        assert!(prepared.iter().all(|i| i.metadata.is_empty()));
    }

    #[test]
    fn rejects_parts_that_would_break_the_layout() {
        let err = |app: &str, group: &str, keys: &[&str]| {
            Selector::new(
                app.into(),
                group.into(),
                String::new(),
                keys.iter().map(|k| k.to_string()).collect(),
            )
            .unwrap_err()
            .to_string()
        };
        assert_eq!(err("", "", &[]), "app_id is empty");
        assert!(err("a/b", "", &[]).contains("must not contain '/'"));
        assert!(err("a", "g/h", &[]).starts_with("group \"g/h\""));
        assert_eq!(err("a", "", &[""]), "a configuration key is empty");
        assert!(err("a", "", &["k/t"]).starts_with("configuration key \"k/t\""));
        assert!(prepare_items(vec![]).is_err());
        let tagged = ConfigurationItem {
            key: "k".into(),
            tags: HashMap::from([("a/b".to_owned(), "v".to_owned())]),
            ..Default::default()
        };
        assert!(prepare_items(vec![tagged]).is_err());
    }
}
