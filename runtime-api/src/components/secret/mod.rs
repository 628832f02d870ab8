//! The secrets building block: the [`SecretStore`] contract (read-only secrets by key) and the
//! registry of its backend types: `local.file` (a JSON file read at start-up, nested keys
//! flattened) and `local.env` (the process's environment), as LayOtto's and Dapr's. Shared by
//! all shards without a lock.

mod local_env;
mod local_file;

use std::collections::HashMap;

use crate::{
    components::{component::Component, registry::Registry},
    error::ApiError,
};

/// A secret store.
pub trait SecretStore: Component {
    /// The secret `key`, as a one-entry map (NOT_FOUND if absent).
    fn get(&self, key: &str) -> Result<HashMap<String, String>, ApiError>;
    /// Every secret, each as a one-entry map.
    fn get_all(&self) -> HashMap<String, HashMap<String, String>>;
}

/// The backend types of `secret_store`.
pub(crate) const BACKENDS: Registry<dyn SecretStore> = Registry {
    label: "secret_store",
    kind: "secret store",
    default_type: None,
    fields: &[],
    backends: &[
        ("local.file", local_file::build),
        ("local.env", local_env::build),
    ],
};

/// `key` and `value` as the one-entry map the API answers per secret.
fn one(key: String, value: String) -> HashMap<String, String> {
    HashMap::from([(key, value)])
}
