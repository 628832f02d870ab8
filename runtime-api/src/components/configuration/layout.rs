//! LayOtto's configuration layout, shared by every store: which items a request means
//! ([`Selector`]: LayOtto's defaults for a blank group or label, `*` for any in a get or a
//! subscription), the checks and defaults of a save ([`prepare_items`]), and the etcd key layout
//! ([`ItemPath`], [`StoredKey`]: the content at `/{app_id}/{group}/{label}/{key}`, each tag's
//! value at `/{app_id}/{group}/{label}/{key}/{tag}`). Sans-IO.

use std::collections::{HashMap, HashSet};

use layotto_proto::runtime::ConfigurationItem;

use crate::error::ApiError;

/// Metadata key set on an item a subscriber receives because it was deleted.
pub const DELETED_MARK: &str = "deleted";
/// The group of a request or item that names none (LayOtto's, for every store).
pub const DEFAULT_GROUP: &str = "default";
/// The label of a request or item that names none (LayOtto's, for every store).
pub const DEFAULT_LABEL: &str = "default";
/// In a get or a subscription, the group, label or key that matches any.
pub const ANY: &str = "*";

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

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
