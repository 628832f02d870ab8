//! The `local.file` secret store: a JSON file (`secretsFile`) read once at start-up, nested keys
//! flattened with `nestedSeparator` (default `:`), as LayOtto's and Dapr's.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, OnceLock},
};

use async_trait::async_trait;
use serde_json::Value;

use super::{SecretStore, one, scope::Scoped};
use crate::{
    components::{component::Component, registry::Entry},
    error::ApiError,
};

/// Builds one from its entry: `secretsFile` (required) and `nestedSeparator`.
pub(super) fn build(entry: &mut Entry<'_>) -> Option<Arc<dyn SecretStore>> {
    let Some(file) = entry.take("secretsFile") else {
        entry.metadata_error("secretsFile", "local.file needs the path of its JSON file");
        return None;
    };
    let separator = entry.take("nestedSeparator").unwrap_or_else(|| ":".into());
    let store = FileSecrets::new(entry.component().to_owned(), file.into(), separator);
    Scoped::over(entry, Arc::new(store))
}

/// Secrets from a JSON file, flattened.
struct FileSecrets {
    component: String,
    path: PathBuf,
    separator: String,
    secrets: OnceLock<BTreeMap<String, String>>,
}

impl FileSecrets {
    fn new(component: String, path: PathBuf, separator: String) -> Self {
        Self {
            component,
            path,
            separator,
            secrets: OnceLock::new(),
        }
    }

    fn secrets(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.secrets.get().unwrap_or(&EMPTY)
    }
}

#[async_trait(?Send)]
impl Component for FileSecrets {
    /// Reads and flattens the file.
    async fn start(&self) -> Result<(), ApiError> {
        let path = &self.path;
        let text = std::fs::read_to_string(path).map_err(|err| {
            ApiError::internal_because(
                format!("{}: cannot read {}", self.component, path.display()),
                err,
            )
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|err| {
            ApiError::InvalidArgument(format!(
                "{}: {} is not JSON: {err}",
                self.component,
                path.display()
            ))
        })?;
        let mut flat = BTreeMap::new();
        flatten(&value, String::new(), &self.separator, &mut flat);
        let _ = self.secrets.set(flat);
        Ok(())
    }
}

impl SecretStore for FileSecrets {
    fn get(&self, key: &str) -> Result<HashMap<String, String>, ApiError> {
        self.secrets()
            .get(key)
            .map(|value| one(key.to_owned(), value.clone()))
            .ok_or_else(|| ApiError::NotFound(format!("{}: no secret \"{key}\"", self.component)))
    }

    fn get_all(&self) -> HashMap<String, HashMap<String, String>> {
        self.secrets()
            .iter()
            .map(|(key, value)| (key.clone(), one(key.clone(), value.clone())))
            .collect()
    }
}

/// `{"a": {"b": "x"}, "c": 1}` → `a:b = x`, `c = 1`.
fn flatten(value: &Value, prefix: String, separator: &str, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let key = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}{separator}{key}")
                };
                flatten(value, key, separator, out);
            }
        }
        Value::String(text) => {
            out.insert(prefix, text.clone());
        }
        other => {
            out.insert(prefix, other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(store: &FileSecrets) -> Result<(), ApiError> {
        futures_lite::future::block_on(store.start())
    }

    #[test]
    fn files_are_flattened_and_missing_keys_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        std::fs::write(
            &path,
            r#"{"db": {"user": "u", "port": 5432}, "token": "t"}"#,
        )
        .unwrap();
        let store = FileSecrets::new("secret_store \"s\"".into(), path, ":".into());
        start(&store).unwrap();
        assert_eq!(store.get("db:user").unwrap()["db:user"], "u");
        assert_eq!(store.get("db:port").unwrap()["db:port"], "5432");
        assert!(matches!(store.get("db"), Err(ApiError::NotFound(_))));
        let all = store.get_all();
        assert_eq!(all.len(), 3);
        assert_eq!(all["token"]["token"], "t");
        let missing = FileSecrets::new("s".into(), dir.path().join("nope.json"), ":".into());
        let err = start(&missing).unwrap_err();
        assert!(crate::error::chain(&err).to_string().contains("nope.json"));
    }
}
