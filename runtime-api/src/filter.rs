//! The `grpc` network filter's configuration: LayOtto's `server_name` and `grpc_config`, plus
//! layotto-rs's own HTTP/2 limits. Built once on the main thread; the resulting server factory
//! builds a router per shard over components shared by all shards.

use std::{rc::Rc, sync::Arc};

use layotto_core::{
    CoreError,
    config::{FilterConfig, Findings, join},
};
use layotto_filters::{
    chain::{Terminal, TerminalFactory},
    registry::BuildContext,
    stream::StreamFilterFactory,
};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    api::RuntimeApi,
    components::Components,
    grpc::server::{GrpcServerFactory, GrpcSettings},
};

/// The filter's `type` in the config.
pub const KIND: &str = "grpc";
/// LayOtto's per-rpc metrics stream filter.
pub const METRIC_FILTER_KIND: &str = "grpc_metric";

#[derive(Deserialize)]
struct GrpcFilterConfig {
    server_name: Option<String>,
    #[serde(default)]
    grpc_config: Value,
    max_message_size: Option<usize>,
    max_concurrent_streams: Option<u32>,
}

/// Builds the runtime API server from a `grpc` filter entry, recording problems in `findings`.
pub fn build(
    filter: &FilterConfig,
    ctx: &BuildContext<'_>,
    findings: &mut Findings,
) -> Option<Arc<dyn TerminalFactory>> {
    let path = join(&filter.path, "config");
    let config: GrpcFilterConfig = findings.decode(&filter.config, &path, &[])?;
    let mut settings = GrpcSettings::default();
    if let Some(size) = config.max_message_size {
        if size == 0 {
            findings.error(join(&path, "max_message_size"), "must be greater than zero");
        }
        settings.max_message_size = size;
    }
    if let Some(streams) = config.max_concurrent_streams {
        if streams == 0 {
            findings.error(
                join(&path, "max_concurrent_streams"),
                "must be greater than zero",
            );
        }
        settings.max_concurrent_streams = streams;
    }
    let components = Arc::new(Components::from_config(
        &config.grpc_config,
        &join(&path, "grpc_config"),
        &ctx.backend,
        &ctx.health,
        findings,
    ));
    if let Some(name) = config.server_name.filter(|name| name != "runtime") {
        findings.ignore(
            join(&path, "server_name"),
            format!("\"{name}\": layotto-rs serves the runtime API whatever the server name"),
        );
    }
    let server = GrpcServerFactory::new(
        settings,
        {
            let components = components.clone();
            Arc::new(move |_shard| RuntimeApi::router(components.clone()))
        },
        ctx.stream_filters.clone(),
        ctx.listener.map_or("grpc", |l| l.name.as_str()),
        ctx.shards,
    );
    ctx.metrics.register(server.stats());
    Some(Arc::new(RuntimeApiFactory { server, components }))
}

/// The gRPC server plus the components it serves, which connect before the listener opens.
struct RuntimeApiFactory {
    server: GrpcServerFactory,
    components: Arc<Components>,
}

impl TerminalFactory for RuntimeApiFactory {
    fn for_shard(&self, shard: usize) -> Rc<dyn Terminal> {
        self.server.for_shard(shard)
    }

    fn start(&self) -> Result<(), CoreError> {
        self.components.start()
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.server.counters()
    }
}

/// `grpc_metric`: layotto-rs always records per-rpc metrics, so the filter only notes that.
pub fn build_metric_filter(
    filter: &FilterConfig,
    _ctx: &BuildContext<'_>,
    findings: &mut Findings,
) -> Option<Arc<dyn StreamFilterFactory>> {
    findings.ignore(
        filter.path.clone(),
        "per-rpc metrics are always recorded (see /metrics); nothing to add",
    );
    None
}
