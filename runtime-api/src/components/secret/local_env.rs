//! The `local.env` secret store: the process's environment variables.

use std::{collections::HashMap, sync::Arc};

use super::{SecretStore, one};
use crate::{
    components::{component::Component, registry::Entry},
    error::ApiError,
};

/// Builds one from its entry (no settings).
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn SecretStore>> {
    Some(Arc::new(EnvSecrets {
        component: entry.component().to_owned(),
    }))
}

/// Secrets from the environment.
struct EnvSecrets {
    component: String,
}

impl Component for EnvSecrets {}

impl SecretStore for EnvSecrets {
    fn get(&self, key: &str) -> Result<HashMap<String, String>, ApiError> {
        std::env::var(key)
            .map(|value| one(key.to_owned(), value))
            .map_err(|_| ApiError::NotFound(format!("{}: no secret \"{key}\"", self.component)))
    }

    fn get_all(&self) -> HashMap<String, HashMap<String, String>> {
        std::env::vars()
            .map(|(key, value)| (key.clone(), one(key, value)))
            .collect()
    }
}
