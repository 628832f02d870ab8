//! The configuration building block: the [`ConfigStore`] contract, LayOtto's layout every store
//! follows ([`layout`]: selectors, defaults, etcd keys), the registry of backend types and the
//! subscription fan-out ([`hub`]). Stores are shared by all shards (`Send + Sync`); calls
//! run on the calling shard, remote ones hop to the backend pool.

mod etcd;
pub mod hub;
pub mod layout;
mod memory;

use std::{sync::Arc, time::Duration};

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
pub use layout::{
    ANY, DEFAULT_GROUP, DEFAULT_LABEL, DELETED_MARK, ItemPath, Selector, StoredKey, app_prefix,
    assemble, check_name, check_segment, prepare_items,
};

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
