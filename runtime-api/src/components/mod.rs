//! The components named in a `grpc` filter's `grpc_config`, by building block and name. Built once
//! on the main thread from the config (recording problems with their JSON paths) and shared by all
//! shards; a call names its component and an unknown name is `INVALID_ARGUMENT`.

pub mod hello;
pub mod state;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use layotto_core::config::{Findings, join};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;
use hello::HelloWorld;
use state::{InMemoryStateStore, StateStore};

/// Building blocks LayOtto configs use that layotto-rs does not serve yet: logged as ignored, and
/// their rpcs answer UNIMPLEMENTED.
const NOT_SERVED_YET: &[&str] = &[
    "config_store",
    "config_stores",
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
}

#[derive(Deserialize)]
struct HelloConfig {
    #[serde(rename = "type")]
    kind: Option<String>,
    hello: String,
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
    /// Builds the components of `grpc_config` (found at `path`).
    pub fn from_config(grpc_config: &Value, path: &str, findings: &mut Findings) -> Self {
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
                other if NOT_SERVED_YET.contains(&other) => findings.ignore(
                    block_path,
                    "building block not served yet; its rpcs answer UNIMPLEMENTED",
                ),
                other => findings.error(
                    block_path,
                    format!(
                        "unknown building block \"{other}\" (known: hellos, state, {})",
                        NOT_SERVED_YET.join(", ")
                    ),
                ),
            }
        }
        components
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
        let components = Components::from_config(&config, "cfg", &mut findings);
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
}
