//! How a building block turns one config entry into a component: a [`Registry`] per block maps
//! the entry's `type` to its backend's [`Constructor`], which reads what it needs from the
//! [`Entry`] (LayOtto's `metadata` string map, and the few top-level keys a block allows).
//! Every problem is recorded with its JSON path; metadata left unread is reported as ignored.
//! LayOtto's references are resolved here too, before the backend reads the entry: `secret_ref`
//! fills metadata keys from secret stores and `component_ref` names a config store and a secret
//! store the component may use (both looked up through [`RefTargets`]).
//! A leaf module: blocks and backends import it, it imports none of them. Main thread, start-up.

use std::{collections::HashMap, sync::Arc, time::Duration};

use layotto_core::{
    backend::BackendHandle,
    clock::Clock,
    config::{Findings, join, loose_number},
};
use layotto_filters::http_proxy::HttpProxyDirectory;
use serde::Deserialize;
use serde_json::{Map, Value};

/// What building an entry may consult and where its problems go.
pub struct BuildCx<'a> {
    /// The backend pool remote components submit their calls to.
    pub backend: &'a BackendHandle,
    /// The clock time-dependent components (TTLs, lock expiry) run on.
    pub clock: &'a Arc<dyn Clock>,
    /// Problems and ignored settings, with JSON paths.
    pub findings: &'a mut Findings,
    /// The process's HTTP proxies by listener (LayOtto's `mosn` invoker hands calls to one).
    pub http_proxies: &'a Arc<HttpProxyDirectory>,
    /// What `secret_ref` and `component_ref` resolve against; `None` while the secret stores
    /// themselves are built (they cannot take references).
    pub refs: Option<&'a dyn RefTargets>,
}

/// The components references may name: the secret and config stores, built before the other
/// blocks.
pub trait RefTargets {
    /// Secret `key` of secret store `store` (started first if it was not yet, so a file store
    /// has read its file): `None` if there is no such store, else the secret's map or why not.
    fn secret(&self, store: &str, key: &str) -> Option<Result<HashMap<String, String>, String>>;
    /// The secret stores' names.
    fn secret_stores(&self) -> Vec<String>;
    /// The config stores' names.
    fn config_stores(&self) -> Vec<String>;
}

/// One item of LayOtto's `secret_ref`: metadata `inject_as` (or `sub_key`) becomes entry
/// `sub_key` of secret `key` in secret store `store_name`.
#[derive(Deserialize)]
struct SecretRef {
    store_name: String,
    key: String,
    #[serde(default)]
    sub_key: String,
    #[serde(default)]
    inject_as: String,
}

/// LayOtto's `component_ref`: the config store and secret store a component may use.
#[derive(Deserialize)]
struct ComponentRef {
    #[serde(default)]
    config_store: String,
    #[serde(default)]
    secret_store: String,
}

/// Builds a backend's component from its entry (`None` after recording why not).
pub type Constructor<T> = fn(&mut Entry<'_>) -> Option<Arc<T>>;

/// A building block's backend types.
pub struct Registry<T: ?Sized + 'static> {
    /// How the block's components are named in messages (`state` gives `state "name"`).
    pub label: &'static str,
    /// What a backend type is called in "… type "x" is not supported" (`state store`).
    pub kind: &'static str,
    /// The type of an entry that gives none (LayOtto's `hellos` may omit it).
    pub default_type: Option<&'static str>,
    /// Top-level keys an entry may have besides `type` and `metadata`.
    pub fields: &'static [&'static str],
    /// Each backend type and its constructor.
    pub backends: &'static [(&'static str, Constructor<T>)],
}

impl<T: ?Sized + 'static> Registry<T> {
    /// Builds the entry called `name` (at `path`): its type, its backend, then the check that
    /// every metadata key was used.
    pub fn build(
        &self,
        name: &str,
        config: &Value,
        path: &str,
        cx: &mut BuildCx<'_>,
    ) -> Option<Arc<T>> {
        let mut entry = self.entry(name, config, path, cx)?;
        let built = self.construct(&mut entry);
        entry.finish();
        built
    }

    /// Decodes the entry, after checking its type is one of this block's backends (so an
    /// unsupported type is reported as such, whatever shape its metadata has).
    pub fn entry<'f>(
        &self,
        name: &str,
        config: &Value,
        path: &str,
        cx: &'f mut BuildCx<'_>,
    ) -> Option<Entry<'f>> {
        let Value::Object(map) = config else {
            cx.findings
                .error(path, "must be an object with the component's \"type\"");
            return None;
        };
        let kind = match (map.get("type"), self.default_type) {
            (Some(Value::String(kind)), _) => kind.clone(),
            (None, Some(default)) => default.to_owned(),
            (None, None) => {
                cx.findings
                    .error(join(path, "type"), "missing: the component's type");
                return None;
            }
            (Some(other), _) => {
                cx.findings
                    .error(join(path, "type"), format!("must be a string, not {other}"));
                return None;
            }
        };
        if !self.backends.iter().any(|(k, _)| *k == kind) {
            let supported: Vec<&str> = self.backends.iter().map(|(k, _)| *k).collect();
            cx.findings.error(
                join(path, "type"),
                format!(
                    "{} type \"{kind}\" is not supported (supported: {})",
                    self.kind,
                    supported.join(", ")
                ),
            );
            return None;
        }
        let mut entry = Entry {
            name: name.to_owned(),
            component: format!("{} \"{name}\"", self.label),
            kind,
            path: path.to_owned(),
            fields: Map::new(),
            metadata: HashMap::new(),
            backend: cx.backend.clone(),
            clock: cx.clock.clone(),
            http_proxies: cx.http_proxies.clone(),
            findings: cx.findings,
        };
        let before = entry.findings.errors.len();
        let (mut secret_refs, mut component_ref) = (None, None);
        for (key, value) in map {
            match key.as_str() {
                "type" => {}
                "metadata" => entry.metadata = metadata(value, &join(path, key), entry.findings),
                "secret_ref" => secret_refs = Some(value),
                "component_ref" => component_ref = Some(value),
                other if self.fields.contains(&other) => {
                    entry.fields.insert(key.clone(), value.clone());
                }
                _ => entry.findings.error(join(path, key), "unknown key"),
            }
        }
        for (key, value) in [
            ("secret_ref", secret_refs),
            ("component_ref", component_ref),
        ] {
            let Some(value) = value else { continue };
            let path = join(path, key);
            match cx.refs {
                None => entry
                    .findings
                    .error(path, format!("a {} cannot take {key}", self.kind)),
                Some(refs) if key == "secret_ref" => entry.inject_secrets(value, &path, refs),
                Some(refs) => entry.check_component_ref(value, &path, refs),
            }
        }
        (entry.findings.errors.len() == before).then_some(entry)
    }

    /// Runs the entry's backend constructor.
    pub fn construct(&self, entry: &mut Entry<'_>) -> Option<Arc<T>> {
        let (_, construct) = self.backends.iter().find(|(k, _)| *k == entry.kind)?;
        construct(entry)
    }
}

/// LayOtto's `metadata`: an object of strings (numbers and booleans are taken as their text).
fn metadata(value: &Value, path: &str, findings: &mut Findings) -> HashMap<String, String> {
    let Value::Object(map) = value else {
        findings.error(path, format!("must be an object of strings, not {value}"));
        return HashMap::new();
    };
    let mut out = HashMap::with_capacity(map.len());
    for (key, value) in map {
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            Value::Null => continue,
            other => {
                findings.error(join(path, key), format!("must be a string, not {other}"));
                continue;
            }
        };
        out.insert(key.clone(), text);
    }
    out
}

/// One component's config entry, read key by key by its backend.
pub struct Entry<'f> {
    name: String,
    component: String,
    kind: String,
    path: String,
    fields: Map<String, Value>,
    metadata: HashMap<String, String>,
    backend: BackendHandle,
    clock: Arc<dyn Clock>,
    http_proxies: Arc<HttpProxyDirectory>,
    findings: &'f mut Findings,
}

impl Entry<'_> {
    /// Fills metadata from the secrets `secret_ref` (at `path`) names, as LayOtto's injector:
    /// each item's secret entry `sub_key` (empty: the `key` itself) becomes metadata
    /// `inject_as` (empty: `sub_key`), over what the metadata had. A store, secret or entry
    /// that is not there is an error at that item's key (LayOtto injects nothing for a missing
    /// entry, and fails later for want of the value).
    fn inject_secrets(&mut self, value: &Value, path: &str, refs: &dyn RefTargets) {
        let Value::Array(items) = value else {
            self.findings.error(
                path,
                "must be a list of {store_name, key, sub_key, inject_as}",
            );
            return;
        };
        for (i, item) in items.iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let Some(item) = self.findings.decode::<SecretRef>(item, &item_path, &[]) else {
                continue;
            };
            let secret = match refs.secret(&item.store_name, &item.key) {
                None => {
                    self.findings.error(
                        join(&item_path, "store_name"),
                        format!(
                            "no secret store \"{}\" (configured: {:?})",
                            item.store_name,
                            refs.secret_stores()
                        ),
                    );
                    continue;
                }
                Some(Err(why)) => {
                    self.findings.error(join(&item_path, "key"), why);
                    continue;
                }
                Some(Ok(secret)) => secret,
            };
            let sub_key = if item.sub_key.is_empty() {
                &item.key
            } else {
                &item.sub_key
            };
            let Some(value) = secret.get(sub_key) else {
                let mut keys: Vec<&String> = secret.keys().collect();
                keys.sort();
                self.findings.error(
                    join(&item_path, "sub_key"),
                    format!(
                        "secret \"{}\" of secret store \"{}\" has no \"{sub_key}\" (it has {keys:?})",
                        item.key, item.store_name
                    ),
                );
                continue;
            };
            let name = if item.inject_as.is_empty() {
                sub_key.clone()
            } else {
                item.inject_as
            };
            self.metadata.insert(name, value.clone());
        }
    }

    /// Checks the stores `component_ref` (at `path`) names exist. LayOtto hands them to the
    /// components that take them (its `helloworld`, which only keeps them); no layotto-rs
    /// component uses them, which is noted.
    fn check_component_ref(&mut self, value: &Value, path: &str, refs: &dyn RefTargets) {
        let Some(wanted) = self.findings.decode::<ComponentRef>(value, path, &[]) else {
            return;
        };
        for (key, name, known) in [
            ("config_store", &wanted.config_store, refs.config_stores()),
            ("secret_store", &wanted.secret_store, refs.secret_stores()),
        ] {
            if !name.is_empty() && !known.contains(name) {
                self.findings.error(
                    join(path, key),
                    format!("no {key} component \"{name}\" (configured: {known:?})"),
                );
            }
        }
        self.findings.ignore(
            path,
            "the referenced stores exist; no layotto-rs component uses them",
        );
    }

    /// The component's name (what calls pass as `store_name`, `pubsub_name`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The component as messages name it: `state "name"`.
    pub fn component(&self) -> &str {
        &self.component
    }

    /// The entry's JSON path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The backend pool.
    pub fn backend(&self) -> &BackendHandle {
        &self.backend
    }

    /// The process's HTTP proxies by listener.
    pub fn http_proxies(&self) -> &Arc<HttpProxyDirectory> {
        &self.http_proxies
    }

    /// The clock for TTLs and expiry.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// The JSON path of metadata key `key`.
    pub fn metadata_path(&self, key: &str) -> String {
        join(&join(&self.path, "metadata"), key)
    }

    /// Records a problem with metadata key `key`.
    pub fn metadata_error(&mut self, key: &str, message: impl Into<String>) {
        let path = self.metadata_path(key);
        self.findings.error(path, message);
    }

    /// Records a problem at `relative` (a top-level key of the entry).
    pub fn error(&mut self, relative: &str, message: impl Into<String>) {
        let path = join(&self.path, relative);
        self.findings.error(path, message);
    }

    /// Takes metadata key `key`, if given and not empty.
    pub fn take(&mut self, key: &str) -> Option<String> {
        self.metadata.remove(key).filter(|v| !v.is_empty())
    }

    /// Takes metadata key `key` as a number of seconds, `default` when absent or empty
    /// (`None` after recording an invalid one).
    pub fn seconds(&mut self, key: &str, default: Duration) -> Option<Duration> {
        let Some(text) = self.take(key) else {
            return Some(default);
        };
        let parsed = seconds(&Value::String(text.clone()));
        if parsed.is_none() {
            self.metadata_error(
                key,
                format!(
                    "invalid \"{text}\": expected a positive number of seconds (at most a day)"
                ),
            );
        }
        parsed
    }

    /// Decodes `value` (found at `path`) as `T`; unknown keys are errors, except `ignorable`.
    pub fn decode<T: serde::de::DeserializeOwned>(
        &mut self,
        value: &Value,
        path: &str,
        ignorable: &[&str],
    ) -> Option<T> {
        self.findings.decode(value, path, ignorable)
    }

    /// Records that what stands at `path` is recognised but not used.
    pub fn ignore(&mut self, path: &str, note: impl Into<String>) {
        self.findings.ignore(path, note);
    }

    /// Takes top-level key `key` (one of the registry's `fields`).
    pub fn field(&mut self, key: &str) -> Option<Value> {
        self.fields.remove(key)
    }

    /// Notes metadata left unread as ignored.
    pub fn finish(self) {
        let mut left: Vec<_> = self.metadata.into_keys().collect();
        left.sort();
        for key in left {
            let path = join(&join(&self.path, "metadata"), &key);
            self.findings
                .ignore(path, "metadata not used by layotto-rs");
        }
    }
}

/// The entries of a building block's map (reporting a block that is not a map).
pub fn named<'a>(
    entries: &'a Value,
    path: &str,
    findings: &mut Findings,
) -> Vec<(&'a String, &'a Value)> {
    match entries {
        Value::Object(map) => map.iter().collect(),
        _ => {
            findings.error(path, "must be an object of components by name");
            Vec::new()
        }
    }
}

/// The longest timeout a config may give: a day (longer is surely a mistake, and far longer
/// would not fit a [`Duration`]).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);

/// LayOtto's timeouts: seconds as a string ("10") or a number; positive, at most
/// [`MAX_TIMEOUT`].
pub fn seconds(value: &Value) -> Option<Duration> {
    let seconds = loose_number(value)?;
    (seconds > 0.0 && seconds <= MAX_TIMEOUT.as_secs_f64())
        .then(|| Duration::from_secs_f64(seconds))
}

/// `host:port`, optionally behind `http://` or `https://`.
pub fn is_endpoint(address: &str) -> bool {
    let bare = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
        .unwrap_or(address);
    matches!(bare.rsplit_once(':'), Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn timeouts_are_positive_bounded_seconds() {
        assert_eq!(seconds(&json!("2.5")), Some(Duration::from_millis(2500)));
        assert_eq!(seconds(&json!(3)), Some(Duration::from_secs(3)));
        assert_eq!(seconds(&json!(-1)), None);
        assert_eq!(seconds(&json!(0)), None);
        assert_eq!(seconds(&json!(true)), None);
        // Would overflow Duration::from_secs_f64 (a panic) if not bounded.
        assert_eq!(seconds(&json!(1e20)), None);
        assert_eq!(seconds(&json!("1e20")), None);
    }

    #[test]
    fn endpoints_are_host_and_port() {
        assert!(is_endpoint("127.0.0.1:2379"));
        assert!(is_endpoint("http://etcd:2379"));
        assert!(!is_endpoint("127.0.0.1"));
        assert!(!is_endpoint(":80"));
        assert!(!is_endpoint("h:0"));
    }
}
