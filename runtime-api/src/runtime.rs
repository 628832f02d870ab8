//! The process-level runtime: every component declared under the `grpc_config` of any `grpc`
//! filter, built once per process on the main thread before any listener starts, plus the app's
//! identity, the backend pool and the components' health checks. Every API server (LayOtto's
//! `Runtime` service on each shard, and whatever API comes next) is a thin layer over a shared
//! [`Arc<Runtime>`], so two listeners serving the API see the same data.

use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet, HashMap},
    path::Path,
    sync::Arc,
};

use futures_lite::future::{BoxedLocal, block_on};
use layotto_core::{
    CoreError,
    backend::BackendHandle,
    clock::{Clock, MonotonicClock},
    config::{Config, Findings, join},
    health::{HealthCheck, HealthRegistry},
};
use layotto_filters::http_proxy::HttpProxyDirectory;
use serde_json::Value;
use tracing::info;

use crate::{
    components::{
        Components,
        app_callback::{AppConnection, AppFlags, AppSettings, AppSubscriptions},
        component::Component,
        invoke::Invoker,
        registry::{BuildCx, RefTargets},
        secret::SecretStore,
    },
    dapr::DaprShared,
    dapr_resources,
    error::{ApiError, chain},
    filter::KIND,
};

/// Building blocks of LayOtto configs that layotto-rs does not serve (LayOtto's extension point
/// for its own Go components): logged as ignored.
const NOT_SERVED: &[&str] = &["custom_component"];

/// The key of LayOtto's `app` block in `grpc_config`.
const APP_KEY: &str = "app";

/// The blocks references may name, built first and in this order (secret stores take no
/// references; config stores and every other block may name secret stores).
const REFERENCED_BLOCKS: [&[&str]; 2] = [
    &["secret_store", "secret_stores"],
    &["config_store", "config_stores"],
];

/// Everything the runtime APIs serve, shared by all shards.
pub struct Runtime {
    components: Components,
    app: Option<AppSettings>,
    backend: BackendHandle,
    dapr: DaprShared,
    /// The app's subscriptions its channels deliver.
    app_subscriptions: Arc<AppSubscriptions>,
    /// The connection to the app's Dapr channel (daprd's `--app-port`), if it has one.
    app_connection: Option<AppConnection>,
    /// Calls of the app's own id through Dapr's APIs, over that connection.
    app_invoker: Option<Arc<dyn Invoker>>,
    /// Dapr's extended metadata (`PUT /v1.0/metadata/{key}`, `SetMetadata`), for every API.
    #[expect(
        clippy::disallowed_types,
        reason = "a few entries set and read rarely, each access a map operation: never held across an await"
    )]
    extended_metadata: std::sync::Mutex<BTreeMap<String, String>>,
}

impl Runtime {
    /// Builds the components of every `grpc` filter in `config`, recording problems (with their
    /// JSON paths) in `findings`; their health checks go into `health`.
    /// `http_proxies` is where the listeners' HTTP proxies will be found (LayOtto's `mosn`
    /// invoker hands calls to one).
    pub fn from_config(
        config: &Config,
        backend: &BackendHandle,
        health: &HealthRegistry,
        http_proxies: &Arc<HttpProxyDirectory>,
        findings: &mut Findings,
    ) -> Arc<Self> {
        let flags = AppFlags::default();
        Self::from_config_and_resources(
            config,
            None,
            &flags,
            backend,
            health,
            http_proxies,
            findings,
        )
    }

    /// Like [`Runtime::from_config`], plus the Dapr component files in `resources_path` (Dapr's
    /// `--resources-path`), added after the config's components, and the app settings of
    /// `app_flags` (daprd's `--app-*` flags) over the config's `app` block.
    pub fn from_config_and_resources(
        config: &Config,
        resources_path: Option<&Path>,
        app_flags: &AppFlags,
        backend: &BackendHandle,
        health: &HealthRegistry,
        http_proxies: &Arc<HttpProxyDirectory>,
        findings: &mut Findings,
    ) -> Arc<Self> {
        let mut builder = RuntimeBuilder::new(backend)
            .with_http_proxies(http_proxies.clone())
            .with_app_flags(app_flags.clone());
        for listener in &config.listeners {
            for filter in listener.network_filters.iter().filter(|f| f.kind == KIND) {
                if let Some(grpc_config) = filter.config.get("grpc_config") {
                    let path = join(&join(&filter.path, "config"), "grpc_config");
                    builder.add(grpc_config, &path, findings);
                }
            }
        }
        if let Some(dir) = resources_path {
            builder.add_dapr_resources(dir, findings);
        }
        builder.finish(health, findings)
    }

    /// The components, by building block.
    pub fn components(&self) -> &Components {
        &self.components
    }

    /// The app's settings (the config's `app` block under the command line's flags), if any.
    pub fn app(&self) -> Option<&AppSettings> {
        self.app.as_ref()
    }

    /// The app's id (`app.app_id`), the `source` of published events.
    pub fn app_id(&self) -> &str {
        self.app
            .as_ref()
            .map_or("layotto", |app| app.app_id.as_str())
    }

    /// What Dapr's API keeps for the whole process (its subscriptions).
    pub fn dapr(&self) -> &DaprShared {
        &self.dapr
    }

    /// Who serves a Dapr invocation of app `id`: the app's own channel (HTTP, or gRPC
    /// `OnInvoke`) when `id` is this sidecar's app (as daprd), else the process's one `rpcs`
    /// component.
    pub fn dapr_invoker(&self, id: &str) -> Result<&dyn Invoker, ApiError> {
        match &self.app_invoker {
            Some(own) if id == self.app_id() => Ok(&**own),
            _ => self.components.invoker(),
        }
    }

    /// The subscriptions the app asked for through its channels and that are being delivered.
    pub fn app_subscriptions(&self) -> &AppSubscriptions {
        &self.app_subscriptions
    }

    /// Dapr's extended metadata: what callers set with `PUT /v1.0/metadata/{key}`.
    pub fn extended_metadata(&self) -> BTreeMap<String, String> {
        self.extended_metadata
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Sets extended metadata `key` to `value`.
    pub fn set_extended_metadata(&self, key: String, value: String) {
        self.extended_metadata
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key, value);
    }

    /// The backend pool remote components run on.
    pub fn backend(&self) -> &BackendHandle {
        &self.backend
    }

    /// Starts every component (fail fast, naming the component), then delivery to the app's
    /// channels (LayOtto's callback server, Dapr's app channel); main thread, before any
    /// listener opens.
    pub fn start(&self) -> Result<(), CoreError> {
        for (label, component) in self.components.all() {
            block_on(component.start()).map_err(|err| CoreError::ComponentStart {
                component: label.to_string(),
                reason: chain(&err).to_string(),
            })?;
        }
        if let Some(app) = &self.app {
            crate::components::app_callback::start(
                app,
                self.app_connection.as_ref(),
                &self.components.pubsubs,
                &self.backend,
                &self.app_subscriptions,
            )
            .map_err(|err| CoreError::ComponentStart {
                component: format!("app \"{}\"", app.app_id),
                reason: chain(&err).to_string(),
            })?;
        }
        Ok(())
    }

    /// Closes every component, after the listeners have drained; main thread.
    pub fn close(&self) {
        for (label, component) in self.components.all() {
            block_on(component.close());
            info!("{label}: closed");
        }
    }
}

/// Collects the `grpc_config` blocks of a process into one [`Runtime`].
pub struct RuntimeBuilder<'a> {
    backend: &'a BackendHandle,
    clock: Arc<dyn Clock>,
    http_proxies: Arc<HttpProxyDirectory>,
    components: Components,
    app: Option<(AppSettings, String)>,
    /// The command line's app settings, over `app`.
    app_flags: AppFlags,
    /// The secret stores a reference has started (read) already.
    started_stores: RefCell<BTreeSet<String>>,
}

impl<'a> RuntimeBuilder<'a> {
    /// A builder whose remote components will run on `backend`.
    pub fn new(backend: &'a BackendHandle) -> Self {
        Self {
            backend,
            clock: Arc::new(MonotonicClock::default()),
            http_proxies: Arc::default(),
            components: Components::default(),
            app: None,
            app_flags: AppFlags::default(),
            started_stores: RefCell::default(),
        }
    }

    /// Time-dependent components (TTLs, lock expiry) built after this run on `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Components handing calls to a listener's HTTP proxy find it in `http_proxies`.
    pub fn with_http_proxies(mut self, http_proxies: Arc<HttpProxyDirectory>) -> Self {
        self.http_proxies = http_proxies;
        self
    }

    /// The app settings of `flags` (daprd's `--app-*` flags) override the config's `app` block.
    pub fn with_app_flags(mut self, flags: AppFlags) -> Self {
        self.app_flags = flags;
        self
    }

    /// Adds the building blocks of one `grpc_config` (found at `path`). Component names must
    /// be unique per block across every `grpc_config`. Secret stores are built first, then
    /// config stores, then the rest in their order, so references (`secret_ref`,
    /// `component_ref`) find what they name wherever it is declared.
    pub fn add(&mut self, grpc_config: &Value, path: &str, findings: &mut Findings) {
        let blocks = match grpc_config {
            Value::Null => return,
            Value::Object(blocks) => blocks,
            _ => {
                findings.error(path, "must be an object of building blocks");
                return;
            }
        };
        let mut blocks: Vec<(&String, &Value)> = blocks.iter().collect();
        blocks.sort_by_key(|(block, _)| build_order(block));
        for (block, entries) in blocks {
            let block_path = join(path, block);
            if block == APP_KEY {
                self.add_app(entries, block_path, findings);
                continue;
            }
            if self.build_with(block, findings, |components, cx| {
                components.add_block(block, entries, &block_path, cx)
            }) {
                continue;
            }
            if NOT_SERVED.contains(&block.as_str()) {
                findings.ignore(block_path, "building block not served by layotto-rs");
            } else {
                findings.error(
                    block_path,
                    format!(
                        "unknown building block \"{block}\" (known: {}, {APP_KEY}, {})",
                        Components::KEYS.join(", "),
                        NOT_SERVED.join(", ")
                    ),
                );
            }
        }
    }

    /// Adds the components of the Dapr component files in `dir` (see [`dapr_resources`]),
    /// secret stores first, then config stores, then the rest, as [`RuntimeBuilder::add`].
    pub fn add_dapr_resources(&mut self, dir: &Path, findings: &mut Findings) {
        let mut components = dapr_resources::read_dir(dir, findings);
        components.sort_by_key(|component| build_order(component.block));
        for component in components {
            self.build_with(component.block, findings, |components, cx| {
                components.add_entry(
                    component.block,
                    &component.name,
                    &component.entry,
                    &component.path,
                    cx,
                )
            });
        }
    }

    /// Runs `build` for block `block` with a build context whose references see the stores
    /// built so far (none for a secret store); answers what `build` answers.
    fn build_with(
        &mut self,
        block: &str,
        findings: &mut Findings,
        build: impl FnOnce(&mut Components, &mut BuildCx<'_>) -> bool,
    ) -> bool {
        let stores = BuiltStores {
            secrets: self
                .components
                .secrets
                .iter()
                .map(|(name, store)| (name.to_owned(), store.clone()))
                .collect(),
            config_stores: self
                .components
                .config_stores
                .iter()
                .map(|(name, _)| name.to_owned())
                .collect(),
            started: &self.started_stores,
        };
        let takes_refs = !REFERENCED_BLOCKS[0].contains(&block);
        let mut cx = BuildCx {
            backend: self.backend,
            clock: &self.clock,
            findings,
            refs: takes_refs.then_some(&stores as &dyn RefTargets),
            http_proxies: &self.http_proxies,
        };
        build(&mut self.components, &mut cx)
    }

    fn add_app(&mut self, entries: &Value, path: String, findings: &mut Findings) {
        let Some(app) = AppSettings::decode(entries, &path, findings) else {
            return;
        };
        match &self.app {
            Some((first, _)) if *first == app => {}
            Some((_, first_path)) => findings.error(
                path,
                format!("a second, different app block: the first is at {first_path}"),
            ),
            None => self.app = Some((app, path)),
        }
    }

    /// The runtime, with every component's readiness check registered in `health`.
    pub fn finish(self, health: &HealthRegistry, findings: &mut Findings) -> Arc<Runtime> {
        let rpcs = &self.components.rpcs;
        if let Some((second, _)) = rpcs.iter().nth(1) {
            let names: Vec<&str> = rpcs.iter().map(|(n, _)| n).collect();
            findings.error(
                rpcs.declared_at(second).unwrap_or_default(),
                format!("one rpcs component serves InvokeService; configured: {names:?}"),
            );
        }
        for (label, component) in self.components.all() {
            health.register(label.dotted(), Arc::new(ComponentHealth(component)));
        }
        let (app, app_path) = match self.app {
            Some((app, path)) => (Some(app), path),
            None => (None, String::new()),
        };
        let app = self.app_flags.apply(app);
        let app_connection = app.as_ref().and_then(|app| {
            AppConnection::new(app, self.backend)
                .map_err(|err| findings.error(app_path.clone(), chain(&err).to_string()))
                .ok()
                .flatten()
        });
        let app_invoker = app
            .as_ref()
            .zip(app_connection.as_ref())
            .map(|(app, connection)| connection.invoker(&app.app_id));
        Arc::new(Runtime {
            components: self.components,
            app,
            app_connection,
            app_invoker,
            backend: self.backend.clone(),
            dapr: DaprShared::default(),
            app_subscriptions: Arc::default(),
            extended_metadata: Default::default(),
        })
    }
}

/// Where block `block` comes in the build: the referenced blocks first, in their order.
fn build_order(block: &str) -> usize {
    REFERENCED_BLOCKS
        .iter()
        .position(|keys| keys.contains(&block))
        .unwrap_or(REFERENCED_BLOCKS.len())
}

/// The secret and config stores built so far, which the references of later blocks name.
struct BuiltStores<'b> {
    secrets: BTreeMap<String, Arc<dyn SecretStore>>,
    config_stores: Vec<String>,
    started: &'b RefCell<BTreeSet<String>>,
}

impl RefTargets for BuiltStores<'_> {
    fn secret(&self, store: &str, key: &str) -> Option<Result<HashMap<String, String>, String>> {
        let found = self.secrets.get(store)?;
        if !self.started.borrow().contains(store) {
            if let Err(err) = block_on(found.start()) {
                return Some(Err(format!(
                    "secret store \"{store}\" cannot start: {}",
                    chain(&err)
                )));
            }
            self.started.borrow_mut().insert(store.to_owned());
        }
        Some(found.get(key).map_err(|err| chain(&err).to_string()))
    }

    fn secret_stores(&self) -> Vec<String> {
        self.secrets.keys().cloned().collect()
    }

    fn config_stores(&self) -> Vec<String> {
        self.config_stores.clone()
    }
}

/// A component's readiness check.
struct ComponentHealth(Arc<dyn Component>);

impl HealthCheck for ComponentHealth {
    fn check(&self) -> BoxedLocal<Result<(), String>> {
        let component = self.0.clone();
        Box::pin(async move {
            component
                .health()
                .await
                .map_err(|err| chain(&err).to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use layotto_core::backend::BackendPool;
    use serde_json::json;

    use super::*;

    /// Builds `grpc_configs` (each at `cfgN`) into a runtime, answering it and the findings.
    fn build(grpc_configs: &[Value]) -> (Arc<Runtime>, Findings) {
        let pool = BackendPool::start(1, 4).unwrap();
        let mut findings = Findings::default();
        let backend = pool.handle();
        let mut builder = RuntimeBuilder::new(&backend);
        for (i, config) in grpc_configs.iter().enumerate() {
            builder.add(config, &format!("cfg{i}"), &mut findings);
        }
        let runtime = builder.finish(&HealthRegistry::default(), &mut findings);
        (runtime, findings)
    }

    fn errors(findings: &Findings) -> Vec<String> {
        findings.errors.iter().map(|e| e.to_string()).collect()
    }

    fn assert_starts_with(errors: &[String], expected: &[&str]) {
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (error, expected) in errors.iter().zip(expected) {
            assert!(
                error.starts_with(expected),
                "{error} does not start with {expected}"
            );
        }
    }

    #[test]
    fn builds_known_components_and_reports_the_rest() {
        let (runtime, findings) = build(&[json!({
            "hellos": {"quick": {"type": "helloworld", "hello": "hi"}, "bare": {"hello": "yo"},
                       "odd": {"type": "grpc-hello", "hello": "x"}},
            "state": {"mem": {"type": "in-memory", "metadata": {}}, "r": {"type": "redis"}},
            "file": {"oss": {"type": "aliyun.oss", "metadata": [{"endpoint": "e"}]}},
            "custom_component": {"p": {"type": "in-memory"}},
            "telepathy": {}
        })]);
        assert_starts_with(
            &errors(&findings),
            &[
                "cfg0.hellos.odd.type: hello component type \"grpc-hello\" is not supported (supported: helloworld)",
                "cfg0.state.r.metadata.redisHost: redis needs",
                "cfg0.file.oss.type: file store type \"aliyun.oss\" is not supported (supported: local)",
                "cfg0.telepathy: unknown building block",
            ],
        );
        assert_eq!(findings.ignored[0].path, "cfg0.custom_component");
        let components = runtime.components();
        assert_eq!(components.hellos.get("quick").unwrap().hello("a"), "hi, a");
        assert_eq!(components.hellos.get("bare").unwrap().hello(""), "yo");
        assert!(components.state.get("mem").is_ok());
        let unknown = components.state.get("nope").err().unwrap().to_string();
        assert_eq!(
            unknown,
            r#"no state component named "nope" is configured (configured: ["mem"])"#
        );
    }

    #[test]
    fn secret_refs_fill_metadata_from_stores_declared_anywhere() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets.json");
        std::fs::write(&file, r#"{"db": {"pass": "p1"}, "plain": "v"}"#).unwrap();
        let (runtime, findings) = build(&[json!({
            // Declared before the stores it names, as in LayOtto's config_ref_example.json.
            "hellos": {"h": {"type": "helloworld", "hello": "hi",
                "secret_ref": [
                    {"store_name": "files", "key": "db:pass", "sub_key": "db:pass", "inject_as": "redisPassword"},
                    {"store_name": "files", "key": "plain"}
                ],
                "component_ref": {"config_store": "cfg", "secret_store": "files"}}},
            "config_store": {"cfg": {"type": "in-memory"}},
            "secret_store": {"files": {"type": "local.file", "metadata": {"secretsFile": file}}}
        })]);
        assert!(findings.errors.is_empty(), "{:?}", errors(&findings));
        let ignored: Vec<&str> = findings.ignored.iter().map(|i| i.path.as_str()).collect();
        // Injected, then reported unread by helloworld (which, as LayOtto's, reads none).
        for path in [
            "cfg0.hellos.h.component_ref",
            "cfg0.hellos.h.metadata.plain",
            "cfg0.hellos.h.metadata.redisPassword",
        ] {
            assert!(ignored.contains(&path), "{path} not in {ignored:?}");
        }
        assert_eq!(
            runtime.components().hellos.get("h").unwrap().hello(""),
            "hi"
        );
    }

    #[test]
    fn unresolvable_refs_are_errors_at_their_paths() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets.json");
        std::fs::write(&file, r#"{"k": "v"}"#).unwrap();
        let (_, findings) = build(&[json!({
            "hellos": {"bad": {"hello": "x",
                "secret_ref": [
                    {"store_name": "nope", "key": "k"},
                    {"store_name": "files", "key": "missing"},
                    {"store_name": "files", "key": "k", "sub_key": "other"},
                    {"store_name": "files"}
                ],
                "component_ref": {"config_store": "gone"}}},
            "secret_store": {
                "files": {"type": "local.file", "metadata": {"secretsFile": file}},
                "chained": {"type": "local.env", "secret_ref": []}
            }
        })]);
        assert_starts_with(
            &errors(&findings),
            &[
                "cfg0.secret_store.chained.secret_ref: a secret store cannot take secret_ref",
                "cfg0.hellos.bad.secret_ref[0].store_name: no secret store \"nope\" (configured: [\"files\"])",
                "cfg0.hellos.bad.secret_ref[1].key: secret_store \"files\": no secret \"missing\"",
                "cfg0.hellos.bad.secret_ref[2].sub_key: secret \"k\" of secret store \"files\" has no \"other\"",
                "cfg0.hellos.bad.secret_ref[3]: missing field `key`",
                "cfg0.hellos.bad.component_ref.config_store: no config_store component \"gone\"",
            ],
        );
    }

    #[test]
    fn config_stores_take_layotto_keys_and_report_each_bad_one() {
        let (runtime, findings) = build(&[json!({
            "config_store": {
                "mem": {"type": "in-memory"},
                "etcd": {"type": "etcd", "address": ["127.0.0.1:2379", "http://h:1"], "timeout": "2.5",
                         "metadata": {"x": "y"}},
                "numeric": {"type": "etcd", "address": ["localhost:2379"], "timeout": 3},
                "no_address": {"type": "etcd"},
                "bad_address": {"type": "etcd", "address": ["127.0.0.1"], "timeout": "0"},
                "huge_timeout": {"type": "etcd", "address": ["h:1"], "timeout": 1e20},
                "apollo": {"type": "apollo"},
                "typo": {"type": "in-memory", "adress": []}
            }
        })]);
        assert_starts_with(
            &errors(&findings),
            &[
                "cfg0.config_store.no_address.address: etcd needs at least one",
                "cfg0.config_store.bad_address.address[0]: invalid etcd address \"127.0.0.1\"",
                "cfg0.config_store.bad_address.timeout: invalid timeout \"0\"",
                "cfg0.config_store.huge_timeout.timeout: invalid timeout 1e+20",
                "cfg0.config_store.apollo.type: config store type \"apollo\" is not supported",
                "cfg0.config_store.typo.adress: unknown key",
            ],
        );
        assert_eq!(
            findings.ignored[0].path,
            "cfg0.config_store.etcd.metadata.x"
        );
        for name in ["mem", "etcd", "numeric"] {
            assert!(
                runtime.components().config_stores.get(name).is_ok(),
                "{name}"
            );
        }
        assert!(
            runtime
                .components()
                .config_stores
                .get("no_address")
                .is_err()
        );
    }

    #[test]
    fn locks_and_sequencers_take_layotto_metadata() {
        let (runtime, findings) = build(&[json!({
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
        })]);
        assert_starts_with(
            &errors(&findings),
            &[
                "cfg0.lock.no_host.metadata.redisHost: redis needs",
                "cfg0.lock.zk.metadata.zookeeperHosts: zookeeper needs its servers",
                "cfg0.sequencer.bad_step.metadata.segmentStep: invalid \"x\"",
                "cfg0.sequencer.bad_timeout.metadata.dialTimeout: invalid \"soon\"",
            ],
        );
        let ignored: Vec<&str> = findings.ignored.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(ignored, vec!["cfg0.lock.e.metadata.extra"]);
        let components = runtime.components();
        for name in ["mem", "r", "e"] {
            assert!(components.locks.get(name).is_ok(), "{name}");
        }
        assert!(components.sequencers.get("e").is_ok());
        assert!(components.sequencers.get("bad_step").is_err());
    }

    #[test]
    fn grpc_configs_share_one_runtime_and_names_must_not_clash() {
        let (runtime, findings) = build(&[
            json!({"state": {"a": {"type": "in-memory"}}, "app": {"app_id": "app1"}}),
            json!({
                "state": {"a": {"type": "in-memory"}, "b": {"type": "in-memory"}},
                "lock": {"a": {"type": "in-memory"}},
                "app": {"app_id": "app1"}
            }),
            json!({"app": {"app_id": "other"}}),
        ]);
        assert_eq!(
            errors(&findings),
            vec![
                "cfg1.state.a: state component \"a\" is declared twice: also at cfg0.state.a",
                "cfg2.app: a second, different app block: the first is at cfg0.app",
            ]
        );
        let components = runtime.components();
        assert_eq!(components.state.len(), 2);
        assert!(components.locks.get("a").is_ok());
        assert_eq!(runtime.app_id(), "app1");
        let labels: Vec<String> = components.all().iter().map(|(l, _)| l.dotted()).collect();
        assert_eq!(labels, vec!["state.a", "state.b", "lock.a"]);
    }

    #[test]
    fn a_second_rpcs_component_is_reported_at_its_path() {
        let rpc = json!({"type": "http", "metadata": {"targets": "app2=127.0.0.1:8080"}});
        let (_, findings) = build(&[json!({"rpcs": {"a": rpc.clone(), "b": rpc}})]);
        assert_eq!(
            errors(&findings),
            vec![r#"cfg0.rpcs.b: one rpcs component serves InvokeService; configured: ["a", "b"]"#]
        );
    }
}
