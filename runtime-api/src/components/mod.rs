//! The components named in a `grpc` filter's `grpc_config`, by building block and name. Built once
//! on the main thread from the config (recording problems with their JSON paths) and shared by all
//! shards; a call names its component and an unknown name is `INVALID_ARGUMENT`.

pub mod app_callback;
pub mod binding;
pub mod configuration;
pub mod etcd;
pub mod file;
pub mod hello;
pub mod http_client;
pub mod invoke;
pub mod lock;
pub mod pubsub;
pub mod redis;
pub mod secret;
pub mod sequencer;
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
use app_callback::AppSettings;
use binding::HttpBinding;
use configuration::{ConfigStore, EtcdConfigStore, InMemoryConfigStore};
use etcd::{EtcdConnection, EtcdSettings};
use file::LocalFileStore;
use hello::HelloWorld;
use invoke::ServiceInvoker;
use lock::{EtcdLockStore, InMemoryLockStore, LockStore, RedisLockStore};
use pubsub::{InMemoryPubSub, PubSub, RedisPubSub};
use redis::{RedisConnection, RedisSettings};
use secret::{SecretSource, SecretStore};
use sequencer::{EtcdIdStore, IdStore, InMemoryIdStore, RedisIdStore, Sequencer};
use state::{EtcdStateStore, InMemoryStateStore, RedisStateStore, StateStore};

/// An etcd config store's `timeout` when the config gives none (seconds).
const DEFAULT_ETCD_TIMEOUT: Duration = Duration::from_secs(10);

/// Building blocks of LayOtto configs that layotto-rs does not serve (LayOtto's extension point for
/// its own Go components): logged as ignored.
const NOT_SERVED: &[&str] = &["custom_component"];

/// Every configured component.
#[derive(Default)]
pub struct Components {
    hellos: BTreeMap<String, HelloWorld>,
    state: BTreeMap<String, Arc<dyn StateStore>>,
    config_stores: BTreeMap<String, Arc<dyn ConfigStore>>,
    locks: BTreeMap<String, Arc<dyn LockStore>>,
    sequencers: BTreeMap<String, Arc<Sequencer>>,
    secrets: BTreeMap<String, Arc<SecretStore>>,
    files: BTreeMap<String, Arc<LocalFileStore>>,
    bindings: BTreeMap<String, Arc<HttpBinding>>,
    pubsubs: BTreeMap<String, Arc<dyn PubSub>>,
    app: Option<AppSettings>,
    invoker: Option<Arc<ServiceInvoker>>,
    backend: Option<BackendHandle>,
}

/// LayOtto's `app` block.
#[derive(Deserialize)]
struct AppConfig {
    app_id: String,
    grpc_callback_port: Option<u16>,
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
    metadata: HashMap<String, String>,
}

/// A redis component's call timeout unless its metadata's `timeout` says (seconds).
const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(5);
/// An etcd lock or sequencer's timeout unless its metadata's `dialTimeout` says (seconds).
const DEFAULT_ETCD_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

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
        let mut components = Components {
            backend: Some(backend.clone()),
            ..Components::default()
        };
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
                        if let Some(store) = state_store(name, config, &entry_path, backend, findings) {
                            components.state.insert(name.clone(), store);
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
                "lock" => {
                    for (name, config) in named(entries, &block_path, findings) {
                        let entry_path = join(&block_path, name);
                        if let Some(store) = lock_store(name, config, &entry_path, backend, findings) {
                            components.locks.insert(name.clone(), store);
                        }
                    }
                }
                "sequencer" => {
                    for (name, config) in named(entries, &block_path, findings) {
                        let entry_path = join(&block_path, name);
                        if let Some(sequencer) = sequencer(name, config, &entry_path, backend, findings) {
                            components.sequencers.insert(name.clone(), Arc::new(sequencer));
                        }
                    }
                }
                "pub_subs" => {
                    for (name, config) in named(entries, &block_path, findings) {
                        let entry_path = join(&block_path, name);
                        if let Some(broker) = pubsub(name, config, &entry_path, backend, findings) {
                            components.pubsubs.insert(name.clone(), broker);
                        }
                    }
                }
                "rpcs" => {
                    for (name, config) in named(entries, &block_path, findings) {
                        let entry_path = join(&block_path, name);
                        if components.invoker.is_some() {
                            findings.error(&entry_path, "one rpcs component serves InvokeService; this is a second");
                            continue;
                        }
                        components.invoker = invoker(name, config, &entry_path, backend, findings).map(Arc::new);
                    }
                }
                "app" => {
                    if let Some(app) = findings.decode::<AppConfig>(entries, &block_path, &[]) {
                        components.app = Some(AppSettings {
                            app_id: app.app_id,
                            grpc_callback_port: app.grpc_callback_port,
                        });
                    }
                }
                "bindings" => {
                    for (name, config) in named(entries, &block_path, findings) {
                        let entry_path = join(&block_path, name);
                        if let Some(binding) = binding(name, config, &entry_path, backend, findings) {
                            components.bindings.insert(name.clone(), Arc::new(binding));
                        }
                    }
                }
                "file" | "files" => {
                    for (name, config) in named(entries, &block_path, findings) {
                        let entry_path = join(&block_path, name);
                        if let Some(store) = file_store(name, config, &entry_path, backend, findings) {
                            components.files.insert(name.clone(), Arc::new(store));
                        }
                    }
                }
                "secret_store" | "secret_stores" => {
                    for (name, config) in named(entries, &block_path, findings) {
                        let entry_path = join(&block_path, name);
                        if let Some(store) = secret_store(name, config, &entry_path, findings) {
                            components.secrets.insert(name.clone(), Arc::new(store));
                        }
                    }
                }
                other if NOT_SERVED.contains(&other) => findings.ignore(
                    block_path,
                    "building block not served by layotto-rs",
                ),
                other => findings.error(
                    block_path,
                    format!(
                        "unknown building block \"{other}\" (known: hellos, state, config_store, lock, sequencer, secret_store, file, bindings, pub_subs, app, rpcs, {})",
                        NOT_SERVED.join(", ")
                    ),
                ),
            }
        }
        components
    }

    /// Connects every remote component (fail fast at start-up), on the main thread.
    pub fn start(&self) -> Result<(), CoreError> {
        let failed = |block: &str, name: &str| {
            let component = format!("{block} \"{name}\"");
            move |err: ApiError| CoreError::ComponentStart {
                component,
                reason: err.to_string(),
            }
        };
        for (name, store) in &self.config_stores {
            futures_lite::future::block_on(store.connect())
                .map_err(failed("config_store", name))?;
        }
        for (name, store) in &self.state {
            futures_lite::future::block_on(store.connect()).map_err(failed("state", name))?;
        }
        for (name, store) in &self.locks {
            futures_lite::future::block_on(store.connect()).map_err(failed("lock", name))?;
        }
        for (name, sequencer) in &self.sequencers {
            futures_lite::future::block_on(sequencer.connect())
                .map_err(failed("sequencer", name))?;
        }
        for (name, store) in &self.secrets {
            store.load().map_err(failed("secret_store", name))?;
        }
        for (name, store) in &self.files {
            store.prepare().map_err(failed("file", name))?;
        }
        for (name, broker) in &self.pubsubs {
            futures_lite::future::block_on(broker.connect()).map_err(failed("pub_subs", name))?;
        }
        if let (Some(app), Some(backend)) = (&self.app, &self.backend) {
            app_callback::start(app, &self.pubsubs, backend).map_err(failed("app", &app.app_id))?;
        }
        Ok(())
    }

    /// The `pub_subs` component called `name`.
    pub fn pubsub(&self, name: &str) -> Result<&dyn PubSub, ApiError> {
        lookup(&self.pubsubs, "pub_subs", name).map(|broker| broker.as_ref())
    }

    /// The `rpcs` component serving InvokeService.
    pub fn invoker(&self) -> Result<&ServiceInvoker, ApiError> {
        self.invoker
            .as_deref()
            .ok_or_else(|| ApiError::UnknownComponent {
                block: "rpcs",
                name: "http".into(),
                known: Vec::new(),
            })
    }

    /// The app's id (`app.app_id`), the `source` of published events.
    pub fn app_id(&self) -> &str {
        self.app
            .as_ref()
            .map_or("layotto", |app| app.app_id.as_str())
    }

    /// The `bindings` component called `name`.
    pub fn binding(&self, name: &str) -> Result<&HttpBinding, ApiError> {
        lookup(&self.bindings, "bindings", name).map(|binding| binding.as_ref())
    }

    /// The `file` component called `name`.
    pub fn file_store(&self, name: &str) -> Result<&LocalFileStore, ApiError> {
        lookup(&self.files, "file", name).map(|store| store.as_ref())
    }

    /// The `secret_store` component called `name`.
    pub fn secret_store(&self, name: &str) -> Result<&SecretStore, ApiError> {
        lookup(&self.secrets, "secret_store", name).map(|store| store.as_ref())
    }

    /// The `lock` component called `name`.
    pub fn lock(&self, name: &str) -> Result<&dyn LockStore, ApiError> {
        lookup(&self.locks, "lock", name).map(|store| store.as_ref())
    }

    /// The `sequencer` component called `name`.
    pub fn sequencer(&self, name: &str) -> Result<&Sequencer, ApiError> {
        lookup(&self.sequencers, "sequencer", name).map(|sequencer| sequencer.as_ref())
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
                credentials: None,
            };
            Some(Arc::new(EtcdConfigStore::new(EtcdConnection::new(
                format!("config store \"{name}\""),
                settings,
                backend.clone(),
            ))))
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

/// Builds one `state` entry.
fn state_store(
    name: &str,
    config: &Value,
    path: &str,
    backend: &BackendHandle,
    findings: &mut Findings,
) -> Option<Arc<dyn StateStore>> {
    let config: ComponentConfig = findings.decode(config, path, &[])?;
    let mut metadata = Metadata::new(config.metadata, join(path, "metadata"));
    let backing = metadata.backing(
        &config.kind,
        "state store",
        format!("state \"{name}\""),
        "/state",
        path,
        backend,
        findings,
    )?;
    let store: Arc<dyn StateStore> = match backing {
        Backing::InMemory => Arc::new(InMemoryStateStore::new()),
        Backing::Redis(redis) => Arc::new(RedisStateStore::new(*redis)),
        Backing::Etcd(etcd, prefix) => Arc::new(EtcdStateStore::new(*etcd, prefix)),
    };
    metadata.finish(findings);
    Some(store)
}

/// Builds one `lock` entry.
fn lock_store(
    name: &str,
    config: &Value,
    path: &str,
    backend: &BackendHandle,
    findings: &mut Findings,
) -> Option<Arc<dyn LockStore>> {
    let config: ComponentConfig = findings.decode(config, path, &[])?;
    let mut metadata = Metadata::new(config.metadata, join(path, "metadata"));
    let backing = metadata.backing(
        &config.kind,
        "lock",
        format!("lock \"{name}\""),
        "/lock",
        path,
        backend,
        findings,
    )?;
    let store: Arc<dyn LockStore> = match backing {
        Backing::InMemory => Arc::new(InMemoryLockStore::default()),
        Backing::Redis(redis) => Arc::new(RedisLockStore::new(*redis)),
        Backing::Etcd(etcd, prefix) => Arc::new(EtcdLockStore::new(*etcd, prefix)),
    };
    metadata.finish(findings);
    Some(store)
}

/// Builds one `sequencer` entry.
fn sequencer(
    name: &str,
    config: &Value,
    path: &str,
    backend: &BackendHandle,
    findings: &mut Findings,
) -> Option<Sequencer> {
    let config: ComponentConfig = findings.decode(config, path, &[])?;
    let mut metadata = Metadata::new(config.metadata, join(path, "metadata"));
    let caching = metadata
        .take("segmentCacheEnable")
        .is_some_and(|v| v == "true");
    let step = metadata.take("segmentStep");
    let segment = match (caching, step) {
        (false, _) => 1,
        (true, None) => 50,
        (true, Some(step)) => match step.parse::<u32>() {
            Ok(step) if step > 0 => step,
            _ => {
                findings.error(
                    join(&metadata.path, "segmentStep"),
                    format!("invalid \"{step}\": expected a positive whole number"),
                );
                return None;
            }
        },
    };
    let backing = metadata.backing(
        &config.kind,
        "sequencer",
        format!("sequencer \"{name}\""),
        "/sequencer",
        path,
        backend,
        findings,
    )?;
    let store: Box<dyn IdStore> = match backing {
        Backing::InMemory => Box::new(InMemoryIdStore::default()),
        Backing::Redis(redis) => Box::new(RedisIdStore::new(*redis)),
        Backing::Etcd(etcd, prefix) => Box::new(EtcdIdStore::new(*etcd, prefix)),
    };
    metadata.finish(findings);
    Some(Sequencer::new(store, segment))
}

/// Builds the `rpcs` entry.
fn invoker(
    name: &str,
    config: &Value,
    path: &str,
    backend: &BackendHandle,
    findings: &mut Findings,
) -> Option<ServiceInvoker> {
    let config: ComponentConfig = findings.decode(config, path, &[])?;
    let mut metadata = Metadata::new(config.metadata, join(path, "metadata"));
    if config.kind != "http" {
        findings.error(
            join(path, "type"),
            format!(
                "rpcs type \"{}\" is not supported (supported: http)",
                config.kind
            ),
        );
        return None;
    }
    let timeout = metadata.seconds("timeout", DEFAULT_BINDING_TIMEOUT, findings);
    let mut targets = HashMap::new();
    for pair in metadata
        .take("targets")
        .unwrap_or_default()
        .split(';')
        .filter(|p| !p.trim().is_empty())
    {
        match pair.split_once('=') {
            Some((id, address)) if is_endpoint(address.trim()) && !id.trim().is_empty() => {
                targets.insert(id.trim().to_owned(), address.trim().to_owned());
            }
            _ => findings.error(
                join(&metadata.path, "targets"),
                format!("\"{pair}\" is not app_id=host:port"),
            ),
        }
    }
    metadata.finish(findings);
    Some(ServiceInvoker::new(
        format!("rpcs \"{name}\""),
        targets,
        timeout?,
        backend.clone(),
    ))
}

/// Builds one `pub_subs` entry.
fn pubsub(
    name: &str,
    config: &Value,
    path: &str,
    backend: &BackendHandle,
    findings: &mut Findings,
) -> Option<Arc<dyn PubSub>> {
    let config: ComponentConfig = findings.decode(config, path, &[])?;
    let component = format!("pub_subs \"{name}\"");
    let mut metadata = Metadata::new(config.metadata, join(path, "metadata"));
    let group = metadata
        .take("consumerID")
        .unwrap_or_else(|| "layotto".into());
    let broker: Arc<dyn PubSub> = match config.kind.as_str() {
        "in-memory" => Arc::new(InMemoryPubSub::default()),
        "redis" => Arc::new(RedisPubSub::new(
            metadata.redis(component, backend, findings)?,
            group,
        )),
        other => {
            findings.error(
                join(path, "type"),
                format!("pub/sub type \"{other}\" is not supported (supported: in-memory, redis)"),
            );
            return None;
        }
    };
    metadata.finish(findings);
    Some(broker)
}

/// An http binding's timeout unless its metadata's `timeout` says (seconds).
const DEFAULT_BINDING_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds one `bindings` entry.
fn binding(
    name: &str,
    config: &Value,
    path: &str,
    backend: &BackendHandle,
    findings: &mut Findings,
) -> Option<HttpBinding> {
    let config: ComponentConfig = findings.decode(config, path, &[])?;
    let mut metadata = Metadata::new(config.metadata, join(path, "metadata"));
    if config.kind != "http" {
        findings.error(
            join(path, "type"),
            format!(
                "binding type \"{}\" is not supported (supported: http)",
                config.kind
            ),
        );
        return None;
    }
    let url = metadata
        .take("url")
        .filter(|url| url.starts_with("http://"));
    let timeout = metadata.seconds("timeout", DEFAULT_BINDING_TIMEOUT, findings);
    let Some(url) = url else {
        findings.error(
            join(&metadata.path, "url"),
            "an http binding needs an http:// url",
        );
        return None;
    };
    metadata.finish(findings);
    Some(HttpBinding::new(
        format!("binding \"{name}\""),
        url,
        timeout?,
        backend.clone(),
    ))
}

/// Builds one `file` entry.
fn file_store(
    name: &str,
    config: &Value,
    path: &str,
    backend: &BackendHandle,
    findings: &mut Findings,
) -> Option<LocalFileStore> {
    let config: ComponentConfig = findings.decode(config, path, &[])?;
    let mut metadata = Metadata::new(config.metadata, join(path, "metadata"));
    if config.kind != "local" {
        findings.error(
            join(path, "type"),
            format!(
                "file store type \"{}\" is not supported (supported: local)",
                config.kind
            ),
        );
        return None;
    }
    let Some(root) = metadata.take("rootPath") else {
        findings.error(
            join(&metadata.path, "rootPath"),
            "a local file store needs its directory",
        );
        return None;
    };
    metadata.finish(findings);
    Some(LocalFileStore::new(
        format!("file \"{name}\""),
        root.into(),
        backend.clone(),
    ))
}

/// Builds one `secret_store` entry.
fn secret_store(
    name: &str,
    config: &Value,
    path: &str,
    findings: &mut Findings,
) -> Option<SecretStore> {
    let config: ComponentConfig = findings.decode(config, path, &[])?;
    let mut metadata = Metadata::new(config.metadata, join(path, "metadata"));
    let source = match config.kind.as_str() {
        "local.file" => {
            let Some(file) = metadata.take("secretsFile") else {
                findings.error(
                    join(&metadata.path, "secretsFile"),
                    "local.file needs the path of its JSON file",
                );
                return None;
            };
            SecretSource::File {
                path: file.into(),
                separator: metadata
                    .take("nestedSeparator")
                    .unwrap_or_else(|| ":".into()),
            }
        }
        "local.env" => SecretSource::Env,
        other => {
            findings.error(
                join(path, "type"),
                format!("secret store type \"{other}\" is not supported (supported: local.file, local.env)"),
            );
            return None;
        }
    };
    metadata.finish(findings);
    Some(SecretStore::new(format!("secret_store \"{name}\""), source))
}

/// Where a state, lock or sequencer component keeps its data.
enum Backing {
    /// In this process.
    InMemory,
    /// On redis.
    Redis(Box<RedisConnection>),
    /// On etcd, under a key prefix (`keyPrefixPath`).
    Etcd(Box<EtcdConnection>, String),
}

/// A component's `metadata` (LayOtto's string map), consumed key by key; keys left over are
/// noted as ignored.
struct Metadata {
    values: HashMap<String, String>,
    path: String,
}

impl Metadata {
    fn new(values: HashMap<String, String>, path: String) -> Self {
        Self { values, path }
    }

    /// The value of `key`, if given and not empty.
    fn take(&mut self, key: &str) -> Option<String> {
        self.values.remove(key).filter(|v| !v.is_empty())
    }

    /// A timeout in seconds under `key`.
    fn seconds(
        &mut self,
        key: &str,
        default: Duration,
        findings: &mut Findings,
    ) -> Option<Duration> {
        match self.take(key) {
            None => Some(default),
            Some(text) => {
                let parsed = seconds(&Value::String(text.clone()));
                if parsed.is_none() {
                    findings.error(
                        join(&self.path, key),
                        format!("invalid \"{text}\": expected a positive number of seconds"),
                    );
                }
                parsed
            }
        }
    }

    /// The backing of a component of type `kind` (`what` names such components in the error
    /// for an unsupported type; `default_prefix` is etcd's `keyPrefixPath` when not given).
    #[allow(clippy::too_many_arguments)]
    fn backing(
        &mut self,
        kind: &str,
        what: &str,
        component: String,
        default_prefix: &str,
        path: &str,
        backend: &BackendHandle,
        findings: &mut Findings,
    ) -> Option<Backing> {
        match kind {
            "in-memory" => Some(Backing::InMemory),
            "redis" => {
                let redis = self.redis(component, backend, findings)?;
                Some(Backing::Redis(Box::new(redis)))
            }
            "etcd" => {
                let prefix = self
                    .take("keyPrefixPath")
                    .unwrap_or_else(|| default_prefix.into());
                let etcd = self.etcd(component, backend, findings)?;
                Some(Backing::Etcd(Box::new(etcd), prefix))
            }
            other => {
                findings.error(
                    join(path, "type"),
                    format!("{what} type \"{other}\" is not supported (supported: in-memory, redis, etcd)"),
                );
                None
            }
        }
    }

    /// LayOtto's redis keys: `redisHost` (required), `redisPassword`, and our `timeout`.
    fn redis(
        &mut self,
        component: String,
        backend: &BackendHandle,
        findings: &mut Findings,
    ) -> Option<RedisConnection> {
        let address = self.take("redisHost");
        let password = self.take("redisPassword");
        let timeout = self.seconds("timeout", DEFAULT_REDIS_TIMEOUT, findings);
        let Some(address) = address.filter(|a| is_endpoint(a)) else {
            findings.error(
                join(&self.path, "redisHost"),
                "redis needs its \"host:port\"",
            );
            return None;
        };
        let settings = RedisSettings {
            address,
            password,
            timeout: timeout?,
        };
        Some(RedisConnection::new(component, settings, backend.clone()))
    }

    /// LayOtto's etcd keys: `endpoints` (comma-separated, required), `dialTimeout`, `username`,
    /// `password`.
    fn etcd(
        &mut self,
        component: String,
        backend: &BackendHandle,
        findings: &mut Findings,
    ) -> Option<EtcdConnection> {
        let endpoints: Vec<String> = self
            .take("endpoints")
            .map(|list| {
                list.split(',')
                    .map(|e| e.trim().to_owned())
                    .filter(|e| !e.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let timeout = self.seconds("dialTimeout", DEFAULT_ETCD_DIAL_TIMEOUT, findings);
        let credentials = self
            .take("username")
            .map(|user| (user, self.take("password").unwrap_or_default()));
        self.values.remove("password");
        if endpoints.is_empty() || !endpoints.iter().all(|e| is_endpoint(e)) {
            findings.error(
                join(&self.path, "endpoints"),
                "etcd needs \"host:port\" endpoints, comma-separated",
            );
            return None;
        }
        let settings = EtcdSettings {
            endpoints,
            timeout: timeout?,
            credentials,
        };
        Some(EtcdConnection::new(component, settings, backend.clone()))
    }

    fn finish(self, findings: &mut Findings) {
        let mut left: Vec<_> = self.values.into_keys().collect();
        left.sort();
        for key in left {
            findings.ignore(join(&self.path, &key), "metadata not used by layotto-rs");
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

/// Runs a client call `op` of `component` on the backend pool, bounded by `timeout`: the
/// client's errors go through `map_error`; no answer in time is UNAVAILABLE naming `component`.
pub(crate) async fn bounded_call<T, E, Fut>(
    backend: &BackendHandle,
    timeout: Duration,
    component: String,
    op: Fut,
    map_error: impl FnOnce(E) -> ApiError,
) -> Result<T, ApiError>
where
    Fut: std::future::Future<Output = Result<T, E>> + Send + 'static,
    T: Send + 'static,
    E: Send + 'static,
{
    match backend
        .submit(async move { tokio::time::timeout(timeout, op).await })
        .await?
    {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(err)) => Err(map_error(err)),
        Err(_) => Err(ApiError::Unavailable(format!(
            "{component}: no answer within {}s",
            timeout.as_secs_f64()
        ))),
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
            "custom_component": {"p": {"type": "in-memory"}},
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
        assert!(errors[1].starts_with("cfg.state.r.metadata.redisHost: redis needs"));
        assert!(errors[2].starts_with("cfg.telepathy: unknown building block"));
        assert_eq!(findings.ignored[0].path, "cfg.custom_component");
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

    #[test]
    fn locks_and_sequencers_take_layotto_metadata() {
        let config = json!({
            "lock": {
                "mem": {"type": "in-memory"},
                "r": {"type": "redis", "metadata": {"redisHost": "127.0.0.1:6379", "redisPassword": ""}},
                "e": {"type": "etcd", "metadata": {"endpoints": "127.0.0.1:2379,127.0.0.1:2380",
                       "keyPrefixPath": "/l", "dialTimeout": "5", "username": "", "password": "",
                       "extra": "x"}},
                "no_host": {"type": "redis", "metadata": {}},
                "zk": {"type": "zookeeper"}
            },
            "sequencer": {
                "mem": {"type": "in-memory"},
                "e": {"type": "etcd", "metadata": {"endpoints": "127.0.0.1:2379",
                       "segmentCacheEnable": "true", "segmentStep": "10"}},
                "bad_step": {"type": "in-memory", "metadata": {"segmentCacheEnable": "true", "segmentStep": "x"}},
                "bad_timeout": {"type": "etcd", "metadata": {"endpoints": "h:1", "dialTimeout": "soon"}}
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
            "cfg.lock.no_host.metadata.redisHost: redis needs",
            "cfg.lock.zk.type: lock type \"zookeeper\" is not supported",
            "cfg.sequencer.bad_step.metadata.segmentStep: invalid \"x\"",
            "cfg.sequencer.bad_timeout.metadata.dialTimeout: invalid \"soon\"",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (error, expected) in errors.iter().zip(expected) {
            assert!(
                error.starts_with(expected),
                "{error} does not start with {expected}"
            );
        }
        let ignored: Vec<&str> = findings.ignored.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(ignored, vec!["cfg.lock.e.metadata.extra"]);
        for name in ["mem", "r", "e"] {
            assert!(components.lock(name).is_ok(), "{name}");
        }
        assert!(components.sequencer("e").is_ok());
        assert!(components.sequencer("bad_step").is_err());
    }
}
