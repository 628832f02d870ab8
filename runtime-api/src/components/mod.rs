//! The components named in a `grpc` filter's `grpc_config`, by building block and name. Built once
//! on the main thread from the config (recording problems with their JSON paths) and shared by all
//! shards; a call names its component and an unknown name is `INVALID_ARGUMENT`.

pub mod configuration;
pub mod hello;
pub mod state;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use futures_lite::future::BoxedLocal;
use layotto_core::{
    CoreError,
    backend::BackendHandle,
    config::{Findings, join, loose_number},
    health::{HealthCheck, HealthRegistry},
};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;
use configuration::{ConfigStore, EtcdConfigStore, EtcdSettings, InMemoryConfigStore};
use hello::HelloWorld;
use state::{InMemoryStateStore, StateStore};

/// An etcd config store's `timeout` when the config gives none (seconds).
const DEFAULT_ETCD_TIMEOUT: Duration = Duration::from_secs(10);

/// Building blocks LayOtto configs use that layotto-rs does not serve yet: logged as ignored, and
/// their rpcs answer UNIMPLEMENTED.
const NOT_SERVED_YET: &[&str] = &[
    "lock",
    "pub_subs",
    "sequencer",
    "file",
    "secret_store",
    "bindings",
    "custom_component",
    "app",
    "rpcs",
];

/// Every configured component.
#[derive(Default)]
pub struct Components {
    hellos: BTreeMap<String, HelloWorld>,
    state: BTreeMap<String, Arc<dyn StateStore>>,
    config_stores: BTreeMap<String, Arc<dyn ConfigStore>>,
}

#[derive(Deserialize)]
struct HelloConfig {
    #[serde(rename = "type")]
    kind: Option<String>,
    hello: String,
}

/// A `config_store` entry: LayOtto's shape, with the etcd keys at the top level.
#[derive(Deserialize)]
struct ConfigStoreConfig {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    address: Vec<String>,
    timeout: Option<Value>,
}

#[derive(Deserialize)]
struct ComponentConfig {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    #[allow(dead_code)] // accepted for every store; the in-memory store has no settings
    metadata: HashMap<String, String>,
}

impl Components {
    /// Builds the components of `grpc_config` (found at `path`); remote ones submit their calls
    /// to `backend` and connect in [`Components::start`].
    pub fn from_config(
        grpc_config: &Value,
        path: &str,
        backend: &BackendHandle,
        health: &HealthRegistry,
        findings: &mut Findings,
    ) -> Self {
        let mut components = Components::default();
        let blocks = match grpc_config {
            Value::Null => return components,
            Value::Object(blocks) => blocks,
            _ => {
                findings.error(path, "must be an object of building blocks");
                return components;
            }
        };
        for (block, entries) in blocks {
            let block_path = join(path, block);
            match block.as_str() {
                "hellos" => {
                    for (name, config) in named(entries, &block_path, findings) {
                        let entry_path = join(&block_path, name);
                        let Some(config) = findings.decode::<HelloConfig>(config, &entry_path, &[])
                        else {
                            continue;
                        };
                        match config.kind.as_deref() {
                            None | Some("helloworld") => {
                                components.hellos.insert(name.clone(), HelloWorld::new(config.hello));
                            }
                            Some(other) => findings.error(
                                join(&entry_path, "type"),
                                format!("hello component type \"{other}\" is not supported (supported: helloworld)"),
                            ),
                        }
                    }
                }
                "state" => {
                    for (name, config) in named(entries, &block_path, findings) {
                        let entry_path = join(&block_path, name);
                        let Some(config) =
                            findings.decode::<ComponentConfig>(config, &entry_path, &[])
                        else {
                            continue;
                        };
                        match config.kind.as_str() {
                            "in-memory" => {
                                components.state.insert(name.clone(), Arc::new(InMemoryStateStore::new()));
                            }
                            other => findings.error(
                                join(&entry_path, "type"),
                                format!("state store type \"{other}\" is not supported (supported: in-memory)"),
                            ),
                        }
                    }
                }
                "config_store" | "config_stores" => {
                    for (name, config) in named(entries, &block_path, findings) {
                        let entry_path = join(&block_path, name);
                        if let Some(store) =
                            config_store(name, config, &entry_path, backend, findings)
                        {
                            health.register(
                                format!("config_store.{name}"),
                                Arc::new(StoreHealth(store.clone())),
                            );
                            components.config_stores.insert(name.clone(), store);
                        }
                    }
                }
                other if NOT_SERVED_YET.contains(&other) => findings.ignore(
                    block_path,
                    "building block not served yet; its rpcs answer UNIMPLEMENTED",
                ),
                other => findings.error(
                    block_path,
                    format!(
                        "unknown building block \"{other}\" (known: hellos, state, config_store, {})",
                        NOT_SERVED_YET.join(", ")
                    ),
                ),
            }
        }
        components
    }

    /// Connects every remote component (fail fast at start-up), on the main thread.
    pub fn start(&self) -> Result<(), CoreError> {
        for (name, store) in &self.config_stores {
            futures_lite::future::block_on(store.connect()).map_err(|err| {
                CoreError::ComponentStart {
                    component: format!("config_store \"{name}\""),
                    reason: err.to_string(),
                }
            })?;
        }
        Ok(())
    }

    /// The `config_store` component called `name`.
    pub fn config_store(&self, name: &str) -> Result<&dyn ConfigStore, ApiError> {
        lookup(&self.config_stores, "config_store", name).map(|store| store.as_ref())
    }

    /// The `hellos` component called `name`.
    pub fn hello(&self, name: &str) -> Result<&HelloWorld, ApiError> {
        lookup(&self.hellos, "hellos", name)
    }

    /// The `state` component called `name`.
    pub fn state(&self, name: &str) -> Result<&dyn StateStore, ApiError> {
        lookup(&self.state, "state", name).map(|store| store.as_ref())
    }
}

/// A config store's readiness check.
struct StoreHealth(Arc<dyn ConfigStore>);

impl HealthCheck for StoreHealth {
    fn check(&self) -> BoxedLocal<Result<(), String>> {
        let store = self.0.clone();
        Box::pin(async move { store.health().await.map_err(|err| err.to_string()) })
    }
}

/// Builds one `config_store` entry.
fn config_store(
    name: &str,
    config: &Value,
    path: &str,
    backend: &BackendHandle,
    findings: &mut Findings,
) -> Option<Arc<dyn ConfigStore>> {
    let config: ConfigStoreConfig = findings.decode(config, path, &["metadata"])?;
    match config.kind.as_str() {
        "in-memory" => {
            if !config.address.is_empty() || config.timeout.is_some() {
                findings.error(
                    path,
                    "an in-memory config store takes no address or timeout",
                );
                return None;
            }
            Some(Arc::new(InMemoryConfigStore::default()))
        }
        "etcd" => {
            let problems_before = findings.errors.len();
            let address_path = join(path, "address");
            if config.address.is_empty() {
                findings.error(
                    &address_path,
                    "etcd needs at least one \"host:port\" address",
                );
            }
            for (i, address) in config.address.iter().enumerate() {
                if !is_endpoint(address) {
                    findings.error(
                        format!("{address_path}[{i}]"),
                        format!("invalid etcd address \"{address}\" (expected host:port)"),
                    );
                }
            }
            let timeout = match &config.timeout {
                None => DEFAULT_ETCD_TIMEOUT,
                Some(value) => match seconds(value) {
                    Some(timeout) => timeout,
                    None => {
                        findings.error(
                            join(path, "timeout"),
                            format!("invalid timeout {value}: expected a positive number of seconds, e.g. \"10\""),
                        );
                        return None;
                    }
                },
            };
            if findings.errors.len() > problems_before {
                return None;
            }
            let settings = EtcdSettings {
                endpoints: config.address,
                timeout,
            };
            Some(Arc::new(EtcdConfigStore::new(
                name.to_owned(),
                settings,
                backend.clone(),
            )))
        }
        other => {
            findings.error(
                join(path, "type"),
                format!(
                    "config store type \"{other}\" is not supported (supported: in-memory, etcd)"
                ),
            );
            None
        }
    }
}

/// `host:port`, optionally behind `http://` or `https://`.
fn is_endpoint(address: &str) -> bool {
    let bare = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"))
        .unwrap_or(address);
    matches!(bare.rsplit_once(':'), Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
}

/// LayOtto's timeouts: seconds as a string ("10") or a number.
fn seconds(value: &Value) -> Option<Duration> {
    let seconds = loose_number(value)?;
    (seconds > 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// The entries of a building block's map (reporting a block that is not a map).
fn named<'a>(
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

fn lookup<'a, T>(
    map: &'a BTreeMap<String, T>,
    block: &'static str,
    name: &str,
) -> Result<&'a T, ApiError> {
    map.get(name).ok_or_else(|| ApiError::UnknownComponent {
        block,
        name: name.to_owned(),
        known: map.keys().cloned().collect(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn builds_known_components_and_reports_the_rest() {
        let config = json!({
            "hellos": {"quick": {"type": "helloworld", "hello": "hi"}, "bare": {"hello": "yo"},
                       "odd": {"type": "grpc-hello", "hello": "x"}},
            "state": {"mem": {"type": "in-memory", "metadata": {}}, "r": {"type": "redis"}},
            "lock": {"l": {"type": "in-memory"}},
            "telepathy": {}
        });
        let mut findings = Findings::default();
        let pool = layotto_core::backend::BackendPool::start(1, 4).unwrap();
        let components = Components::from_config(
            &config,
            "cfg",
            &pool.handle(),
            &HealthRegistry::default(),
            &mut findings,
        );
        let errors: Vec<String> = findings.errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].starts_with("cfg.hellos.odd.type: hello component type \"grpc-hello\""));
        assert!(errors[1].starts_with("cfg.state.r.type: state store type \"redis\""));
        assert!(errors[2].starts_with("cfg.telepathy: unknown building block"));
        assert_eq!(findings.ignored[0].path, "cfg.lock");
        assert_eq!(components.hello("quick").unwrap().hello("a"), "hi, a");
        assert_eq!(components.hello("bare").unwrap().hello(""), "yo");
        assert!(components.state("mem").is_ok());
        let unknown = components.state("nope").err().unwrap().to_string();
        assert_eq!(
            unknown,
            r#"no state component named "nope" is configured (configured: ["mem"])"#
        );
    }

    #[test]
    fn config_stores_take_layotto_keys_and_report_each_bad_one() {
        let config = json!({
            "config_store": {
                "mem": {"type": "in-memory"},
                "etcd": {"type": "etcd", "address": ["127.0.0.1:2379", "http://h:1"], "timeout": "2.5",
                         "metadata": {"x": "y"}},
                "numeric": {"type": "etcd", "address": ["localhost:2379"], "timeout": 3},
                "no_address": {"type": "etcd"},
                "bad_address": {"type": "etcd", "address": ["127.0.0.1"], "timeout": "0"},
                "apollo": {"type": "apollo"},
                "typo": {"type": "in-memory", "adress": []}
            }
        });
        let mut findings = Findings::default();
        let pool = layotto_core::backend::BackendPool::start(1, 4).unwrap();
        let components = Components::from_config(
            &config,
            "cfg",
            &pool.handle(),
            &HealthRegistry::default(),
            &mut findings,
        );
        let errors: Vec<String> = findings.errors.iter().map(|e| e.to_string()).collect();
        let expected = [
            "cfg.config_store.no_address.address: etcd needs at least one",
            "cfg.config_store.bad_address.address[0]: invalid etcd address \"127.0.0.1\"",
            "cfg.config_store.bad_address.timeout: invalid timeout \"0\"",
            "cfg.config_store.apollo.type: config store type \"apollo\" is not supported",
            "cfg.config_store.typo.adress: unknown key",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (error, expected) in errors.iter().zip(expected) {
            assert!(
                error.starts_with(expected),
                "{error} does not start with {expected}"
            );
        }
        assert_eq!(findings.ignored[0].path, "cfg.config_store.etcd.metadata");
        for name in ["mem", "etcd", "numeric"] {
            assert!(components.config_store(name).is_ok(), "{name}");
        }
        assert!(components.config_store("no_address").is_err());
        assert_eq!(seconds(&json!("2.5")), Some(Duration::from_millis(2500)));
        assert_eq!(seconds(&json!(-1)), None);
        assert_eq!(seconds(&json!(true)), None);
    }
}
