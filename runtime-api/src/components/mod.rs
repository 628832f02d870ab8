//! The building blocks and their components. [`blocks!`] below is the one table of blocks: each
//! row names the block's config keys, its component type and the module that builds an entry
//! (every block module owns its contract, its config decoding and a registry of its backend
//! types, see [`registry`]). Built once per process on the main thread (see
//! [`crate::runtime`]); shared by all shards, where a call names its component and an unknown
//! name is `INVALID_ARGUMENT`.

pub mod app_callback;
pub mod binding;
pub mod component;
pub mod configuration;
pub mod etcd;
pub mod file;
pub mod hello;
pub mod http_client;
pub mod invoke;
pub mod lock;
pub mod pubsub;
pub mod redis;
pub mod registry;
pub mod secret;
pub mod sequencer;
pub mod state;
pub mod zookeeper;

use std::{collections::BTreeMap, sync::Arc};

use layotto_core::config::join;
use serde_json::Value;

use crate::error::ApiError;
use component::Component;
use registry::{BuildCx, named};

/// The components of one building block, by name, each with the JSON path that declared it.
pub struct Block<T: ?Sized> {
    label: &'static str,
    by_name: BTreeMap<String, (String, Arc<T>)>,
    /// Each component's backend type (`redis`, `in-memory`), as its entry gives it.
    types: BTreeMap<String, String>,
}

impl<T: ?Sized> Block<T> {
    fn new(label: &'static str) -> Self {
        Self {
            label,
            by_name: BTreeMap::new(),
            types: BTreeMap::new(),
        }
    }

    /// The component called `name`.
    pub fn get(&self, name: &str) -> Result<&T, ApiError> {
        self.get_shared(name).map(|component| &**component)
    }

    /// The component called `name`, shared (for work that outlives the call).
    pub fn get_shared(&self, name: &str) -> Result<&Arc<T>, ApiError> {
        self.by_name
            .get(name)
            .map(|(_, component)| component)
            .ok_or_else(|| ApiError::UnknownComponent {
                block: self.label,
                name: name.to_owned(),
                known: self.by_name.keys().cloned().collect(),
            })
    }

    /// Every component, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Arc<T>)> {
        self.by_name
            .iter()
            .map(|(name, (_, component))| (name.as_str(), component))
    }

    /// The JSON path that declared the component called `name`.
    pub fn declared_at(&self, name: &str) -> Option<&str> {
        self.by_name.get(name).map(|(path, _)| path.as_str())
    }

    /// The backend type of the component called `name` (`redis`, `in-memory`).
    pub fn backend_type(&self, name: &str) -> Option<&str> {
        self.types.get(name).map(String::as_str)
    }

    /// How many are configured.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// True when none is configured.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Adds `component` declared at `path`, unless the name is taken (recorded with both paths).
    fn insert(
        &mut self,
        name: &str,
        path: String,
        backend_type: Option<&str>,
        component: Arc<T>,
        cx: &mut BuildCx<'_>,
    ) {
        if let Some((first, _)) = self.by_name.get(name) {
            cx.findings.error(
                path,
                format!(
                    "{} component \"{name}\" is declared twice: also at {first}",
                    self.label
                ),
            );
            return;
        }
        self.by_name.insert(name.to_owned(), (path, component));
        if let Some(backend_type) = backend_type {
            self.types.insert(name.to_owned(), backend_type.to_owned());
        }
    }
}

/// Which component: its building block and name; shown as `block "name"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// The building block's config key (`state`, `config_store`, ...).
    pub block: &'static str,
    /// The component's name.
    pub name: String,
}

impl Label {
    /// `block.name`, as health checks and metrics name it.
    pub fn dotted(&self) -> String {
        format!("{}.{}", self.block, self.name)
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} \"{}\"", self.block, self.name)
    }
}

/// Declares the block table: `field: Type = module, "label", ["config key", ...];` per block,
/// where `module::BACKENDS` is the block's [`registry::Registry`]. It makes [`Components`] (one [`Block`] field per row), the list of config keys, the
/// dispatch from a key to the module's `build`, and the walk over every component.
macro_rules! blocks {
    ($( $(#[$doc:meta])* $field:ident: $ty:ty = $module:ident, $label:literal, [$($key:literal),+]; )+) => {
        /// Every configured component, by building block and name.
        pub struct Components {
            $( $(#[$doc])* pub $field: Block<$ty>, )+
        }

        impl Default for Components {
            fn default() -> Self {
                Self { $( $field: Block::new($label), )+ }
            }
        }

        impl Components {
            /// The config keys of the building blocks.
            pub const KEYS: &'static [&'static str] = &[$($($key),+),+];

            /// Builds every entry of block `key` (at `path`); `false` if no block has that key.
            pub fn add_block(
                &mut self,
                key: &str,
                entries: &Value,
                path: &str,
                cx: &mut BuildCx<'_>,
            ) -> bool {
                if !Self::KEYS.contains(&key) {
                    return false;
                }
                for (name, config) in named(entries, path, cx.findings) {
                    self.add_entry(key, name, config, &join(path, name), cx);
                }
                true
            }

            /// Builds entry `name` of block `key`, declared at `path`; `false` if no block has
            /// that key.
            pub fn add_entry(
                &mut self,
                key: &str,
                name: &str,
                config: &Value,
                path: &str,
                cx: &mut BuildCx<'_>,
            ) -> bool {
                match key {
                    $(
                        $($key)|+ => {
                            if let Some(built) = $module::BACKENDS.build(name, config, path, cx) {
                                let backend_type = config
                                    .get("type")
                                    .and_then(Value::as_str)
                                    .or($module::BACKENDS.default_type);
                                self.$field.insert(name, path.to_owned(), backend_type, built, cx);
                            }
                        }
                    )+
                    _ => return false,
                }
                true
            }

            /// Every component's label and config `type`, in table order.
            pub fn types(&self) -> Vec<(Label, &str)> {
                let mut all = Vec::new();
                $(
                    for (name, _) in self.$field.iter() {
                        let kind = self.$field.backend_type(name).unwrap_or_default();
                        all.push((Label { block: $label, name: name.to_owned() }, kind));
                    }
                )+
                all
            }

            /// Every component with its label, in table order.
            pub fn all(&self) -> Vec<(Label, Arc<dyn Component>)> {
                let mut all = Vec::new();
                $(
                    for (name, component) in self.$field.iter() {
                        let component: Arc<dyn Component> = component.clone();
                        all.push((Label { block: $label, name: name.to_owned() }, component));
                    }
                )+
                all
            }
        }
    };
}

blocks! {
    /// `hellos`: greetings (LayOtto's `helloworld`).
    hellos: dyn hello::Hello = hello, "hellos", ["hellos"];
    /// `state`: key/value stores with etags.
    state: dyn state::StateStore = state, "state", ["state"];
    /// `config_store`: configuration items.
    config_stores: dyn configuration::ConfigStore = configuration, "config_store", ["config_store", "config_stores"];
    /// `lock`: distributed locks.
    locks: dyn lock::LockStore = lock, "lock", ["lock"];
    /// `sequencer`: increasing ids.
    sequencers: sequencer::Sequencer = sequencer, "sequencer", ["sequencer"];
    /// `pub_subs`: event brokers.
    pubsubs: dyn pubsub::PubSub = pubsub, "pub_subs", ["pub_subs"];
    /// `secret_store`: read-only secrets.
    secrets: dyn secret::SecretStore = secret, "secret_store", ["secret_store", "secret_stores"];
    /// `file`: file stores.
    files: dyn file::FileStore = file, "file", ["file", "files"];
    /// `bindings`: output bindings.
    bindings: dyn binding::OutputBinding = binding, "bindings", ["bindings"];
    /// `rpcs`: service invocation.
    rpcs: dyn invoke::Invoker = invoke, "rpcs", ["rpcs"];
}

impl Components {
    /// The `rpcs` component serving InvokeService: the only one configured.
    pub fn invoker(&self) -> Result<&dyn invoke::Invoker, ApiError> {
        let mut all = self.rpcs.iter();
        match (all.next(), all.next()) {
            (Some((_, invoker)), None) => Ok(&**invoker),
            _ => Err(ApiError::UnknownComponent {
                block: "rpcs",
                name: "the one serving InvokeService".into(),
                known: self.rpcs.iter().map(|(name, _)| name.to_owned()).collect(),
            }),
        }
    }
}
