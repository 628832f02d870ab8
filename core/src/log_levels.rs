//! Log levels changed at run time, as LayOtto's `POST /actuator/logger` changes a component
//! logger's level. The binary puts [`reloadable_filter`] in its `tracing` subscriber; the filter
//! and its control are one per process, like the subscriber itself. [`set_component_level`] is
//! called on the shard serving the actuator request (rare; it rebuilds the filter), loggers on
//! every thread then see the new level.

use std::{collections::BTreeMap, sync::OnceLock};

use tracing::info;
use tracing_subscriber::{EnvFilter, Registry, reload};

use crate::config::LogLevel;

/// The crates of layotto-rs, whose targets the default level applies to (`layotto` names them
/// all, as LayOtto's own logger is called `layotto`).
const CRATES: [&str; 4] = [
    "layotto",
    "layotto_core",
    "layotto_filters",
    "layotto_runtime_api",
];

/// Where the components' modules live: `<block>/<type>` names
/// `layotto_runtime_api::components::<block>::<type>`.
pub const COMPONENTS_TARGET: &str = "layotto_runtime_api::components";

/// Why a level could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum LogLevelError {
    /// The level is not one of LayOtto's names.
    #[error("unknown log level \"{0}\" (trace, debug, info, warn, error, fatal)")]
    UnknownLevel(String),
    /// The component names no logger of layotto-rs.
    #[error(
        "no component logger \"{0}\" (layotto, <block>/<type> such as lock/redis or configstore/etcdv3, or a layotto_* module path)"
    )]
    UnknownComponent(String),
    /// The process's logging was not set up with [`reloadable_filter`].
    #[error("log levels cannot be changed in this process: its logging is not reloadable")]
    NotReloadable,
    /// The subscriber holding the filter is gone.
    #[error("the log filter cannot be replaced")]
    Reload(#[source] reload::Error),
}

/// The filter's handle and the levels it was built from.
#[expect(
    clippy::disallowed_types,
    reason = "taken only by an actuator logger request (rare, uncontended) to rebuild the filter"
)]
struct Control {
    handle: reload::Handle<EnvFilter, Registry>,
    levels: std::sync::Mutex<BTreeMap<String, LogLevel>>,
}

static CONTROL: OnceLock<Control> = OnceLock::new();

/// The process's log filter: `warn` for dependencies, `level` for layotto-rs's crates, and
/// changeable later with [`set_component_level`]. Call once per process.
#[expect(
    clippy::disallowed_types,
    reason = "builds the control's mutex, see `Control`"
)]
pub fn reloadable_filter(level: LogLevel) -> reload::Layer<EnvFilter, Registry> {
    let levels: BTreeMap<String, LogLevel> = CRATES
        .iter()
        .map(|krate| ((*krate).to_owned(), level))
        .collect();
    let (layer, handle) = reload::Layer::new(filter(&levels));
    let control = Control {
        handle,
        levels: std::sync::Mutex::new(levels),
    };
    if CONTROL.set(control).is_err() {
        tracing::warn!("a second log filter was set up; only the first one's levels can change");
    }
    layer
}

/// Sets `component`'s loggers to `level` (LayOtto's names, case-insensitive). `component` is
/// `layotto` (every logger of layotto-rs), LayOtto's `<block>/<type>` (`lock/redis`,
/// `configstore/etcdv3`, `sequencer/etcd`, …) or a `layotto_*` module path.
pub fn set_component_level(component: &str, level: &str) -> Result<(), LogLevelError> {
    let parsed = LogLevel::parse(level).map_err(|_| LogLevelError::UnknownLevel(level.into()))?;
    let targets = component_targets(component)
        .ok_or_else(|| LogLevelError::UnknownComponent(component.into()))?;
    let control = CONTROL.get().ok_or(LogLevelError::NotReloadable)?;
    let rebuilt = {
        let mut levels = control
            .levels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for target in targets {
            levels.insert(target, parsed);
        }
        filter(&levels)
    };
    control
        .handle
        .reload(rebuilt)
        .map_err(LogLevelError::Reload)?;
    info!(component, level = parsed.as_str(), "log level changed");
    Ok(())
}

/// The `tracing` targets `component` names, if it names any.
fn component_targets(component: &str) -> Option<Vec<String>> {
    let is_ident = |part: &str| {
        !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let is_path = |text: &str| text.split("::").all(is_ident);
    if component == "layotto" {
        return Some(CRATES.iter().map(|krate| (*krate).to_owned()).collect());
    }
    if CRATES
        .iter()
        .any(|krate| component == *krate || component.starts_with(&format!("{krate}::")))
    {
        return is_path(component).then(|| vec![component.to_owned()]);
    }
    let (block, kind) = component.split_once('/')?;
    let block = match block {
        "configstore" | "config_store" | "configuration" => "configuration",
        "secretstore" | "secret_store" | "secret" => "secret",
        "bindings" | "binding" => "binding",
        "rpc" | "rpcs" | "invoke" => "invoke",
        "oss" | "file" => "file",
        "pubsub" | "pub_subs" => "pubsub",
        "lock" | "sequencer" | "state" => block,
        _ => return None,
    };
    let kind = match kind {
        "etcdv3" => "etcd".to_owned(),
        "standalone_redis" => "redis".to_owned(),
        "in-memory" => "memory".to_owned(),
        other => other.replace(['.', '-'], "_"),
    };
    is_ident(&kind).then(|| vec![format!("{COMPONENTS_TARGET}::{block}::{kind}")])
}

/// The filter for `levels`: `warn` for everything else.
fn filter(levels: &BTreeMap<String, LogLevel>) -> EnvFilter {
    let directives: Vec<String> = std::iter::once("warn".to_owned())
        .chain(
            levels
                .iter()
                .map(|(target, level)| format!("{target}={}", level.as_str())),
        )
        .collect();
    EnvFilter::new(directives.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layotto_component_names_become_module_targets() {
        let target = |name: &str| component_targets(name).map(|t| t.join(" "));
        assert_eq!(
            target("lock/redis").as_deref(),
            Some("layotto_runtime_api::components::lock::redis")
        );
        assert_eq!(
            target("configstore/etcdv3").as_deref(),
            Some("layotto_runtime_api::components::configuration::etcd")
        );
        assert_eq!(
            target("secretstore/local.file").as_deref(),
            Some("layotto_runtime_api::components::secret::local_file")
        );
        assert_eq!(
            target("layotto").as_deref(),
            Some("layotto layotto_core layotto_filters layotto_runtime_api")
        );
        assert_eq!(
            target("layotto_filters::tcp_proxy").as_deref(),
            Some("layotto_filters::tcp_proxy")
        );
        for unknown in [
            "mongo",
            "nosuch/redis",
            "lock/",
            "lock/a::b",
            "layotto_core::",
            "tokio",
        ] {
            assert_eq!(target(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn the_filter_keeps_dependencies_at_warn() {
        let levels = BTreeMap::from([
            ("layotto".to_owned(), LogLevel::Info),
            (
                "layotto_runtime_api::components::lock::redis".to_owned(),
                LogLevel::Debug,
            ),
        ]);
        assert_eq!(
            filter(&levels).to_string(),
            "layotto_runtime_api::components::lock::redis=debug,layotto=info,warn"
        );
    }
}
