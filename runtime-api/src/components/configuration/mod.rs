//! The configuration building block: the [`ConfigStore`] contract, how items are addressed
//! ([`Selector`], [`ItemPath`]: LayOtto's `/{app_id}/{group}/{label}/{key}` layout, shared by every
//! store) and the subscription fan-out ([`hub`]). Stores are shared by all shards (`Send + Sync`);
//! calls run on the calling shard, remote ones hop to the backend pool.

mod etcd;
pub mod hub;
mod memory;

use std::{collections::HashMap, sync::Arc, time::Duration};

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

/// A configuration store.
#[async_trait(?Send)]
pub trait ConfigStore: Component {
    /// The items `selector` matches, in stored-key order.
    async fn get(&self, selector: &Selector) -> Result<Vec<ConfigurationItem>, ApiError>;
    /// Creates or replaces `items` of `app_id`, all or none.
    async fn save(&self, app_id: &str, items: Vec<ConfigurationItem>) -> Result<(), ApiError>;
    /// Deletes the items `selector` matches, all or none.
    async fn delete(&self, selector: &Selector) -> Result<(), ApiError>;
    /// Follows every change of `app_id`'s items once the watch is in place (UNAVAILABLE if that
    /// takes longer than the store's timeout); subscribers of one app share one watch.
    async fn subscribe(&self, app_id: &str) -> Result<Subscription, ApiError>;
}

/// Which items of an app a request means: an empty `group`, `label` or `keys` matches all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// The application (required).
    pub app_id: String,
    /// The group, or empty for every group.
    pub group: String,
    /// The label, or empty for every label.
    pub label: String,
    /// The keys, or empty for every key.
    pub keys: Vec<String>,
}

impl Selector {
    /// A selector after checking its parts can be stored (see [`check_segment`]).
    pub fn new(
        app_id: String,
        group: String,
        label: String,
        keys: Vec<String>,
    ) -> Result<Self, ApiError> {
        check_segment("app_id", &app_id, false)?;
        check_segment("group", &group, true)?;
        check_segment("label", &label, true)?;
        for key in &keys {
            check_key(key)?;
        }
        Ok(Self {
            app_id,
            group,
            label,
            keys,
        })
    }

    /// Whether the item at `path` is selected.
    pub fn matches(&self, path: &ItemPath<'_>) -> bool {
        path.app_id == self.app_id
            && (self.group.is_empty() || path.group == self.group)
            && (self.label.is_empty() || path.label == self.label)
            && (self.keys.is_empty() || self.keys.iter().any(|key| key == path.key))
    }

    /// The longest stored-key prefix every selected item shares.
    pub fn prefix(&self) -> String {
        let mut prefix = app_prefix(&self.app_id);
        if !self.group.is_empty() {
            prefix.push_str(&self.group);
            prefix.push('/');
            if !self.label.is_empty() {
                prefix.push_str(&self.label);
                prefix.push('/');
            }
        }
        prefix
    }

    /// Keeps the items of a change this selector matches.
    pub fn filter(&self, items: &[ConfigurationItem]) -> Vec<ConfigurationItem> {
        items
            .iter()
            .filter(|item| {
                self.matches(&ItemPath {
                    app_id: &self.app_id,
                    group: &item.group,
                    label: &item.label,
                    key: &item.key,
                })
            })
            .cloned()
            .collect()
    }
}

/// Where one item lives: `/{app_id}/{group}/{label}/{key}` (LayOtto's etcd layout). The key may
/// contain `/`; no part contains NUL (companion keys of the etcd store do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Parses a stored key; `None` if it is not in the layout.
    pub fn parse(stored: &'a str) -> Option<Self> {
        if stored.contains('\0') {
            return None;
        }
        let mut parts = stored.strip_prefix('/')?.splitn(4, '/');
        let path = Self {
            app_id: parts.next()?,
            group: parts.next()?,
            label: parts.next()?,
            key: parts.next()?,
        };
        (!path.app_id.is_empty() && !path.key.is_empty()).then_some(path)
    }

    /// The stored key.
    pub fn stored(&self) -> String {
        format!(
            "/{}/{}/{}/{}",
            self.app_id, self.group, self.label, self.key
        )
    }

    /// An item at this path.
    pub fn item(
        &self,
        content: String,
        tags: HashMap<String, String>,
        metadata: HashMap<String, String>,
    ) -> ConfigurationItem {
        ConfigurationItem {
            key: self.key.to_owned(),
            content,
            group: self.group.to_owned(),
            label: self.label.to_owned(),
            tags,
            metadata,
        }
    }

    /// The item a subscriber receives when this one is deleted.
    pub fn deleted(&self) -> ConfigurationItem {
        self.item(
            String::new(),
            HashMap::new(),
            HashMap::from([(DELETED_MARK.to_owned(), "true".to_owned())]),
        )
    }
}

/// The stored-key prefix of every item of `app_id`.
pub fn app_prefix(app_id: &str) -> String {
    format!("/{app_id}/")
}

/// Checks an `app_id`, `group` or `label`: no `/` or NUL, and not empty unless `may_be_empty`.
pub fn check_segment(field: &str, value: &str, may_be_empty: bool) -> Result<(), ApiError> {
    if value.is_empty() && !may_be_empty {
        return Err(ApiError::InvalidArgument(format!("{field} is empty")));
    }
    if value.contains(['/', '\0']) {
        return Err(ApiError::InvalidArgument(format!(
            "{field} \"{value}\" must not contain '/' or NUL"
        )));
    }
    Ok(())
}

/// Checks an item key: not empty, no NUL.
pub fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::InvalidArgument(
            "a configuration key is empty".into(),
        ));
    }
    if key.contains('\0') {
        return Err(ApiError::InvalidArgument(format!(
            "configuration key \"{key}\" must not contain NUL"
        )));
    }
    Ok(())
}

/// Checks the items of a save.
pub fn check_items(items: &[ConfigurationItem]) -> Result<(), ApiError> {
    if items.is_empty() {
        return Err(ApiError::InvalidArgument("no items to save".into()));
    }
    for item in items {
        check_segment("group", &item.group, true)?;
        check_segment("label", &item.label, true)?;
        check_key(&item.key)?;
    }
    Ok(())
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

    #[test]
    fn paths_round_trip_and_keys_may_hold_slashes() {
        let path = ItemPath::parse("/app/g/l/a/b").unwrap();
        assert_eq!(
            path,
            ItemPath {
                app_id: "app",
                group: "g",
                label: "l",
                key: "a/b"
            }
        );
        assert_eq!(path.stored(), "/app/g/l/a/b");
        let empty_parts = ItemPath::parse("/app///k").unwrap();
        assert_eq!((empty_parts.group, empty_parts.label), ("", ""));
        for bad in [
            "app/g/l/k",
            "/app/g/l",
            "//g/l/k",
            "/app/g/l/",
            "/app/g/l/k\0meta",
        ] {
            assert_eq!(ItemPath::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn empty_parts_select_everything_below() {
        let path = ItemPath::parse("/app/g/l/k").unwrap();
        assert!(selector("", "", &[]).matches(&path));
        assert!(selector("g", "", &["k"]).matches(&path));
        assert!(selector("", "l", &[]).matches(&path));
        assert!(!selector("h", "", &[]).matches(&path));
        assert!(!selector("g", "m", &[]).matches(&path));
        assert!(!selector("g", "l", &["j"]).matches(&path));
        assert!(!selector("", "", &[]).matches(&ItemPath::parse("/apple/g/l/k").unwrap()));
        assert_eq!(selector("", "", &[]).prefix(), "/app/");
        assert_eq!(selector("g", "", &[]).prefix(), "/app/g/");
        assert_eq!(selector("", "l", &[]).prefix(), "/app/");
        assert_eq!(selector("g", "l", &["k"]).prefix(), "/app/g/l/");
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
        assert!(check_items(&[]).is_err());
    }
}
