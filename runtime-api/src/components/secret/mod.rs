//! The secrets building block: `local.file` (a JSON file read at start-up, nested keys flattened
//! with `nestedSeparator`, default `:`, as LayOtto's/Dapr's) and `local.env` (the process's
//! environment). Both are read-only maps, shared by all shards without a lock.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::OnceLock,
};

use serde_json::Value;

use crate::error::ApiError;

/// Where a store's secrets come from.
pub enum SecretSource {
    /// A JSON file, flattened.
    File {
        /// The file (`secretsFile`).
        path: PathBuf,
        /// Joins the keys of nested objects (`nestedSeparator`).
        separator: String,
    },
    /// The environment.
    Env,
}

/// A secret store.
pub struct SecretStore {
    component: String,
    source: SecretSource,
    file: OnceLock<BTreeMap<String, String>>,
}

impl SecretStore {
    /// A store named `component` (for messages) reading `source`.
    pub fn new(component: String, source: SecretSource) -> Self {
        Self {
            component,
            source,
            file: OnceLock::new(),
        }
    }

    /// Reads the secrets file (start-up, main thread).
    pub fn load(&self) -> Result<(), ApiError> {
        let SecretSource::File { path, separator } = &self.source else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path).map_err(|err| {
            ApiError::Unavailable(format!(
                "{}: cannot read {}: {err}",
                self.component,
                path.display()
            ))
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|err| {
            ApiError::InvalidArgument(format!(
                "{}: {} is not JSON: {err}",
                self.component,
                path.display()
            ))
        })?;
        let mut flat = BTreeMap::new();
        flatten(&value, String::new(), separator, &mut flat);
        let _ = self.file.set(flat);
        Ok(())
    }

    /// The secret `key`, as a one-entry map (NOT_FOUND if absent).
    pub fn get(&self, key: &str) -> Result<HashMap<String, String>, ApiError> {
        let value = match &self.source {
            SecretSource::File { .. } => self.secrets().get(key).cloned(),
            SecretSource::Env => std::env::var(key).ok(),
        };
        value
            .map(|value| HashMap::from([(key.to_owned(), value)]))
            .ok_or_else(|| ApiError::NotFound(format!("{}: no secret \"{key}\"", self.component)))
    }

    /// Every secret, each as a one-entry map.
    pub fn get_all(&self) -> HashMap<String, HashMap<String, String>> {
        let all: Vec<(String, String)> = match &self.source {
            SecretSource::File { .. } => self
                .secrets()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            SecretSource::Env => std::env::vars().collect(),
        };
        all.into_iter()
            .map(|(key, value)| (key.clone(), HashMap::from([(key, value)])))
            .collect()
    }

    fn secrets(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.file.get().unwrap_or(&EMPTY)
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

    #[test]
    fn files_are_flattened_and_missing_keys_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.json");
        std::fs::write(
            &path,
            r#"{"db": {"user": "u", "port": 5432}, "token": "t"}"#,
        )
        .unwrap();
        let store = SecretStore::new(
            "secret_store \"s\"".into(),
            SecretSource::File {
                path,
                separator: ":".into(),
            },
        );
        store.load().unwrap();
        assert_eq!(store.get("db:user").unwrap()["db:user"], "u");
        assert_eq!(store.get("db:port").unwrap()["db:port"], "5432");
        assert!(matches!(store.get("db"), Err(ApiError::NotFound(_))));
        let all = store.get_all();
        assert_eq!(all.len(), 3);
        assert_eq!(all["token"]["token"], "t");
        let missing = SecretStore::new(
            "s".into(),
            SecretSource::File {
                path: dir.path().join("nope.json"),
                separator: ":".into(),
            },
        );
        assert!(
            missing
                .load()
                .unwrap_err()
                .to_string()
                .contains("nope.json")
        );
    }
}
