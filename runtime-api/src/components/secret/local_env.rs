//! The `local.env` secret store: the process's environment variables; with `prefix`, only the
//! variables whose names start with it, named without it (as Dapr's `secretstores.local.env`).

use std::{collections::HashMap, sync::Arc};

use super::{SecretStore, one, scope::Scoped};
use crate::{
    components::{component::Component, registry::Entry},
    error::ApiError,
};

/// Builds one from its entry: `prefix` (optional).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn SecretStore>> {
    let store = EnvSecrets {
        component: entry.component().to_owned(),
        prefix: entry.take("prefix").unwrap_or_default(),
    };
    Scoped::over(entry, Arc::new(store))
}

/// Secrets from the environment.
struct EnvSecrets {
    component: String,
    prefix: String,
}

impl Component for EnvSecrets {}

impl SecretStore for EnvSecrets {
    fn get(&self, key: &str) -> Result<HashMap<String, String>, ApiError> {
        std::env::var(format!("{}{key}", self.prefix))
            .map(|value| one(key.to_owned(), value))
            .map_err(|_| ApiError::NotFound(format!("{}: no secret \"{key}\"", self.component)))
    }

    fn get_all(&self) -> HashMap<String, HashMap<String, String>> {
        std::env::vars()
            .filter_map(|(name, value)| {
                let key = name.strip_prefix(&self.prefix)?.to_owned();
                (!key.is_empty()).then(|| (key.clone(), one(key, value)))
            })
            .collect()
    }
}
